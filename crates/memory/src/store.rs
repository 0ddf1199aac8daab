//! The memory store every caller uses: failures, groups, fixes, heal attempts and their
//! vectors, kept by a [`MemoryBackend`] (SQLite by default).
//!
//! The store records what it is told. It never decides whether a fix is good: `verified` is
//! stored as the heal pipeline reports it, and lookups only filter on it. Secrets are masked
//! here, before any backend sees the data.

use crate::backend::MemoryBackend;
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
use crate::secrets::mask_secrets;
use crate::sqlite::SqliteBackend;
use std::path::Path;
use std::sync::Arc;

/// The memory store over one backend.
///
/// Cloning is cheap and shares the backend.
///
/// # Cancel safety
/// Dropping a returned future does not undo a write the backend already started: a cancelled
/// write may or may not have happened, but never half.
#[derive(Clone)]
pub struct MemoryStore {
    backend: Arc<dyn MemoryBackend>,
    secrets: Arc<[String]>,
    grouping: Grouping,
    /// The least similarity of a search hit found by its vector alone; 0 keeps every hit.
    search_floor: f32,
}

impl MemoryStore {
    /// Opens (or creates) the embedded store in the SQLite file at `path`, creating its folder
    /// and the `mem_` tables when missing. The file may be shared with the embedded queue.
    ///
    /// # Errors
    /// [`MemoryError::SchemaTooNew`] when a newer build wrote the file; I/O or SQLite errors.
    pub fn open(path: &Path) -> Result<Self, MemoryError> {
        Ok(Self::from_backend(Arc::new(SqliteBackend::open(path)?)))
    }

    /// An embedded store that lives in memory only, for tests.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn open_in_memory() -> Result<Self, MemoryError> {
        Ok(Self::from_backend(Arc::new(
            SqliteBackend::open_in_memory()?
        )))
    }

    /// A store over any backend, e.g. PostgreSQL from `smartworker-memory-pg`.
    pub fn from_backend(backend: Arc<dyn MemoryBackend>) -> Self {
        MemoryStore {
            backend,
            secrets: Arc::from(Vec::new()),
            grouping: Grouping::default(),
            search_floor: 0.0,
        }
    }

    /// Sets the secret values masked in every failure's message, stack and payload, and in
    /// sandbox output, before they are stored.
    pub fn with_secrets(mut self, secrets: Vec<String>) -> Self {
        self.secrets = Arc::from(secrets);
        self
    }

    /// Leaves out of [`MemoryStore::search`] the groups that no search word matched and whose
    /// best similarity to the query is below `floor`: without it, a search for something never
    /// seen still lists the least unlike groups. Like the group threshold, the floor depends on
    /// the embedding model ([`crate::DEFAULT_SEARCH_FLOOR`] is for all-MiniLM-L6-v2).
    pub fn with_search_floor(mut self, floor: f32) -> Self {
        self.search_floor = floor;
        self
    }

    /// Joins a failure with a new fingerprint to the nearest group whose representative
    /// failure's summary vector has at least this cosine similarity (see
    /// [`MemoryBackend::record_failure_grouped`]). Without it, failures group by fingerprint
    /// only. The threshold depends on the embedding model; SmartWorker's default was chosen
    /// for all-MiniLM-L6-v2. Failures embedded by the lexical fallback always group by
    /// fingerprint only.
    pub fn with_group_threshold(mut self, threshold: f32) -> Self {
        self.grouping = Grouping {
            threshold: Some(threshold),
        };
        self
    }

    /// Stores a final failure with the vectors of its chunks, in the group of its fingerprint
    /// (created when new), or of its nearest near-duplicate when a group threshold is set.
    ///
    /// Message, stack and payload are masked first, and so are the chunk texts; the vectors are
    /// stored as given. Build chunks from [`FailureInput::masked`] to keep secrets out of them.
    ///
    /// # Errors
    /// [`MemoryError::DimensionMismatch`] when the model's vectors were stored with other
    /// dimensions before; backend errors.
    pub async fn record_failure(
        &self,
        input: FailureInput,
        vectors: EmbeddedChunks,
    ) -> Result<FailureRecord, MemoryError> {
        let input = input.masked(&self.secrets);
        let vectors = vectors.map_texts(|text| mask_secrets(text, &self.secrets));
        // The threshold was measured for a real model; the lexical fallback's similarities
        // spread differently, so its failures group by fingerprint only.
        let measured = vectors.model() != crate::embed::LEXICAL_MODEL;
        match self.grouping.threshold.filter(|_| measured) {
            Some(_) => {
                let grouping = self.grouping;
                self.backend
                    .record_failure_grouped(input, vectors, grouping)
                    .await
            }
            None => self.backend.record_failure(input, vectors).await,
        }
    }

    /// The `k` stored failures most similar to `vector`, best first, at most one per group.
    ///
    /// Only vectors of `model` are compared; a model with no stored vectors gives no results.
    /// `exclude_group` leaves out one group, usually the query failure's own.
    ///
    /// # Errors
    /// [`MemoryError::DimensionMismatch`] when `vector`'s length differs from the dimensions
    /// stored for `model`; [`MemoryError::NotFinite`] for a vector with NaN; backend errors.
    pub async fn similar_failures(
        &self,
        model: &str,
        vector: &[f32],
        k: usize,
        exclude_group: Option<i64>,
    ) -> Result<Vec<SimilarFailure>, MemoryError> {
        self.backend
            .similar_failures(model, vector, k, exclude_group)
            .await
    }

    /// Stores a fix and links the recorded attempts of its heal job to it.
    ///
    /// # Errors
    /// [`MemoryError::UnknownGroup`], [`MemoryError::UnknownFailure`] or
    /// [`MemoryError::FailureNotInGroup`] when the fix names the wrong things; backend errors.
    pub async fn record_fix(&self, fix: NewFix) -> Result<i64, MemoryError> {
        self.backend.record_fix(fix).await
    }

    /// Stores the vectors of a fix's chunks (see [`crate::chunks_for_fix`]).
    ///
    /// # Errors
    /// [`MemoryError::UnknownFix`], [`MemoryError::DimensionMismatch`]; backend errors.
    pub async fn record_fix_vectors(
        &self,
        fix_id: i64,
        vectors: EmbeddedChunks,
    ) -> Result<(), MemoryError> {
        self.backend.record_fix_vectors(fix_id, vectors).await
    }

    /// The newest verified fix of a group.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn verified_fix_for_group(&self, group_id: i64) -> Result<Option<Fix>, MemoryError> {
        self.backend.verified_fix_for_group(group_id).await
    }

    /// The newest verified fix of the group with this fingerprint.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn verified_fix_for_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<Fix>, MemoryError> {
        self.backend.verified_fix_for_fingerprint(fingerprint).await
    }

    /// Stores one heal round. Sandbox stdout and stderr are masked first. When a fix is later
    /// recorded with the same heal job id, the attempt is linked to it.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn record_heal_attempt(&self, a: HealAttemptRecord) -> Result<i64, MemoryError> {
        let mut a = a;
        a.sandbox_stdout = mask_secrets(&a.sandbox_stdout, &self.secrets);
        a.sandbox_stderr = mask_secrets(&a.sandbox_stderr, &self.secrets);
        self.backend.record_heal_attempt(a).await
    }

    /// The attempts linked to a fix, in round order.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn heal_attempts_for_fix(
        &self,
        fix_id: i64,
    ) -> Result<Vec<HealAttempt>, MemoryError> {
        self.backend.heal_attempts_for_fix(fix_id).await
    }

    /// The attempts made for a job, oldest first: `job_id` may be the failed job or the heal
    /// job.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn heal_attempts_for_job(
        &self,
        job_id: &str,
    ) -> Result<Vec<HealAttempt>, MemoryError> {
        self.backend.heal_attempts_for_job(job_id).await
    }

    /// The newest `limit` fixes, newest first.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn list_fixes(&self, limit: usize) -> Result<Vec<FixSummary>, MemoryError> {
        self.backend.list_fixes(limit).await
    }

    /// A fix with its diff, edits and attempts.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn get_fix(&self, id: i64) -> Result<Option<FixDetail>, MemoryError> {
        self.backend.get_fix(id).await
    }

    /// The `limit` groups seen most recently, newest first.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn list_groups(&self, limit: usize) -> Result<Vec<Group>, MemoryError> {
        self.backend.list_groups(limit).await
    }

    /// One group.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn get_group(&self, id: i64) -> Result<Option<Group>, MemoryError> {
        self.backend.get_group(id).await
    }

    /// Checks that the store answers (`/healthz`).
    ///
    /// # Errors
    /// Backend errors, such as PostgreSQL being away.
    pub async fn ping(&self) -> Result<(), MemoryError> {
        self.backend.ping().await
    }

    /// How many failures are stored.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn failure_count(&self) -> Result<u64, MemoryError> {
        self.backend.failure_count().await
    }

    /// Groups by last seen, newest first, with their fix counts; see [`GroupQuery`] for paging
    /// and the queue filter.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn groups(&self, query: GroupQuery) -> Result<Vec<GroupSummary>, MemoryError> {
        self.backend.groups(query).await
    }

    /// A group with its newest job ids, failures and fixes.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn group_detail(&self, id: i64) -> Result<Option<GroupDetail>, MemoryError> {
        self.backend.group_detail(id).await
    }

    /// The `k` groups most like group `id`, best first (same embedding model only).
    ///
    /// # Errors
    /// [`MemoryError::UnknownGroup`]; backend errors.
    pub async fn similar_groups(
        &self,
        id: i64,
        k: usize,
    ) -> Result<Vec<SimilarGroup>, MemoryError> {
        self.backend.similar_groups(id, k).await
    }

    /// Groups matching a text, by full-text and (with a query vector) vector ranking fused.
    ///
    /// # Errors
    /// [`MemoryError::DimensionMismatch`] or [`MemoryError::NotFinite`] for a query vector that
    /// cannot be compared with its model's stored vectors; backend errors.
    pub async fn search(&self, query: SearchQuery) -> Result<Vec<SearchHit>, MemoryError> {
        let mut hits = self.backend.search(query).await?;
        hits.retain(|hit| {
            hit.text_rank.is_some() || hit.similarity.is_some_and(|s| s >= self.search_floor)
        });
        Ok(hits)
    }
}
