//! The interface every memory store implements: SQLite in this crate, PostgreSQL in
//! `smartworker-memory-pg`.
//!
//! A backend stores what it is given. Secret masking happens once, in [`crate::MemoryStore`],
//! before anything reaches a backend, so a backend never sees a secret it could leak.

use crate::chunk::FailureInput;
use crate::embed::EmbeddedChunks;
use crate::error::MemoryError;
use crate::group::{
    GroupDetail, GroupQuery, GroupSummary, Grouping, SearchHit, SearchQuery, SimilarGroup,
};
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
    /// A short name for messages, e.g. `sqlite`.
    fn name(&self) -> &'static str {
        "backend"
    }

    /// Stores a final failure and its chunk vectors in the group of its fingerprint.
    async fn record_failure(
        &self,
        input: FailureInput,
        vectors: EmbeddedChunks,
    ) -> Result<FailureRecord, MemoryError>;

    /// Stores a final failure like [`MemoryBackend::record_failure`], choosing its group so:
    /// the group of its fingerprint; else, when `grouping.threshold` is set and the failure has
    /// a [`crate::ChunkKind::Summary`] vector, the group whose representative failure (its
    /// oldest failure with a summary vector of the same model) is nearest by cosine, if that
    /// similarity is at least the threshold; else a new group.
    ///
    /// The default groups by fingerprint only.
    // FIXME: the default ignores `grouping`; a backend must override it to join near-duplicates.
    async fn record_failure_grouped(
        &self,
        input: FailureInput,
        vectors: EmbeddedChunks,
        grouping: Grouping,
    ) -> Result<FailureRecord, MemoryError> {
        let _ = grouping;
        self.record_failure(input, vectors).await
    }

    /// Groups by last seen, newest first: `query.limit` of them, last seen strictly before
    /// `query.before` when set, touching `query.queue` when set; each with its fix counts.
    async fn groups(&self, query: GroupQuery) -> Result<Vec<GroupSummary>, MemoryError> {
        let _ = query;
        Err(self.unsupported("listing groups"))
    }

    /// One group with its newest job ids (at most [`crate::DETAIL_JOB_IDS`]), newest failures
    /// (at most [`crate::DETAIL_FAILURES`]) and fixes, newest first.
    async fn group_detail(&self, id: i64) -> Result<Option<GroupDetail>, MemoryError> {
        let _ = id;
        Err(self.unsupported("group details"))
    }

    /// The `k` other groups whose representative summary vectors are nearest to group `id`'s,
    /// best first, compared only with vectors of the model of `id`'s representative.
    ///
    /// [`MemoryError::UnknownGroup`] for an id no group has; an empty list when the group has
    /// no summary vector.
    async fn similar_groups(&self, id: i64, k: usize) -> Result<Vec<SimilarGroup>, MemoryError> {
        let _ = (id, k);
        Err(self.unsupported("similar groups"))
    }

    /// Up to `query.k` groups ranked by reciprocal rank fusion ([`crate::fuse`]) of a full-text
    /// ranking of the words of `query.text` (error types, messages, frame files and functions)
    /// and, when `query.vector` is given, a ranking by the best cosine of any failure chunk of
    /// the group among vectors of the query's model only.
    ///
    /// [`MemoryError::DimensionMismatch`] when the query vector's length differs from the one
    /// stored for its model; a model with no stored vectors adds nothing to the ranking.
    async fn search(&self, query: SearchQuery) -> Result<Vec<SearchHit>, MemoryError> {
        let _ = query;
        Err(self.unsupported("search"))
    }

    /// The error for an operation this backend does not offer.
    fn unsupported(&self, operation: &'static str) -> MemoryError {
        MemoryError::Unsupported {
            backend: self.name(),
            operation,
        }
    }

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

    /// Checks that the store answers, as cheaply as it can.
    ///
    /// # Errors
    /// When it does not.
    async fn ping(&self) -> Result<(), MemoryError> {
        self.failure_count().await.map(|_| ())
    }
}
