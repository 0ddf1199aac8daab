//! The interface every memory store implements: SQLite in this crate, PostgreSQL in
//! `smartworker-memory-pg`.
//!
//! A backend stores what it is given. Secret masking happens once, in [`crate::MemoryStore`],
//! before anything reaches a backend, so a backend never sees a secret it could leak.

use crate::chunk::FailureInput;
use crate::embed::EmbeddedChunks;
use crate::error::MemoryError;
use crate::record::{
    FailureRecord, Fix, FixDetail, FixSummary, Group, HealAttempt, HealAttemptRecord, NewFix,
    SimilarFailure,
};

/// A place where failures, groups, fixes, heal attempts and their vectors are kept.
///
/// Every method has the meaning of the [`crate::MemoryStore`] method of the same name; inputs
/// arrive already masked. Implementations must be cheap to share across tasks.
///
/// Invariants every backend keeps (the conformance tests check them):
/// - a failure, its group update and its vectors are written together or not at all;
/// - vectors of one model always have that model's first-seen dimensions, and a query is only
///   compared with vectors of its own model;
/// - a store written by a newer schema version is refused, never downgraded.
#[async_trait::async_trait]
pub trait MemoryBackend: Send + Sync + 'static {
    /// Stores a final failure and its chunk vectors in the group of its fingerprint.
    async fn record_failure(
        &self,
        input: FailureInput,
        vectors: EmbeddedChunks,
    ) -> Result<FailureRecord, MemoryError>;

    /// The `k` failures most similar to `vector` among vectors of `model`, best first, at most
    /// one per group, leaving out `exclude_group`.
    async fn similar_failures(
        &self,
        model: &str,
        vector: &[f32],
        k: usize,
        exclude_group: Option<i64>,
    ) -> Result<Vec<SimilarFailure>, MemoryError>;

    /// Stores a fix and links the attempts of its heal job to it; returns its id.
    async fn record_fix(&self, fix: NewFix) -> Result<i64, MemoryError>;

    /// Stores the vectors of a fix's chunks.
    async fn record_fix_vectors(
        &self,
        fix_id: i64,
        vectors: EmbeddedChunks,
    ) -> Result<(), MemoryError>;

    /// The newest verified fix of a group.
    async fn verified_fix_for_group(&self, group_id: i64) -> Result<Option<Fix>, MemoryError>;

    /// The newest verified fix of the group with this fingerprint.
    async fn verified_fix_for_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<Fix>, MemoryError>;

    /// Stores one heal round; returns its id.
    async fn record_heal_attempt(&self, attempt: HealAttemptRecord) -> Result<i64, MemoryError>;

    /// The attempts linked to a fix, in round order.
    async fn heal_attempts_for_fix(&self, fix_id: i64) -> Result<Vec<HealAttempt>, MemoryError>;

    /// The attempts made for a job (failed job or heal job), oldest first.
    async fn heal_attempts_for_job(&self, job_id: &str) -> Result<Vec<HealAttempt>, MemoryError>;

    /// The newest `limit` fixes, newest first.
    async fn list_fixes(&self, limit: usize) -> Result<Vec<FixSummary>, MemoryError>;

    /// A fix with its diff, edits and attempts.
    async fn get_fix(&self, id: i64) -> Result<Option<FixDetail>, MemoryError>;

    /// The `limit` groups seen most recently, newest first.
    async fn list_groups(&self, limit: usize) -> Result<Vec<Group>, MemoryError>;

    /// One group.
    async fn get_group(&self, id: i64) -> Result<Option<Group>, MemoryError>;

    /// How many failures are stored.
    async fn failure_count(&self) -> Result<u64, MemoryError>;
}
