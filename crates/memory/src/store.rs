//! The embedded memory store: failures, groups, fixes, heal attempts and their vectors in the
//! SQLite file the embedded queue uses, with exact vector search.
//!
//! The store records what it is told. It never decides whether a fix is good: `verified` is
//! stored as the heal pipeline reports it, and lookups only filter on it.

use crate::chunk::FailureInput;
use crate::db::{self, Owner};
use crate::embed::EmbeddedChunks;
use crate::error::MemoryError;
use crate::record::{
    FailureRecord, Fix, FixDetail, FixSummary, Group, HealAttempt, HealAttemptRecord, NewFix,
    SimilarFailure,
};
use crate::schema;
use crate::secrets::mask_secrets;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The memory store over one SQLite connection.
///
/// Cloning is cheap and shares the connection. Each async method runs its SQL on tokio's
/// blocking pool, one operation at a time.
///
/// # Cancel safety
/// Dropping a returned future does not stop its SQL: the operation still commits or rolls back
/// as a whole, so a cancelled write may or may not have happened, but never half.
#[derive(Clone)]
pub struct MemoryStore {
    conn: Arc<Mutex<Connection>>,
    secrets: Arc<[String]>,
}

impl MemoryStore {
    /// Opens (or creates) the store in the SQLite file at `path`, creating its folder and the
    /// `mem_` tables when missing. The file may be shared with the embedded queue.
    ///
    /// # Errors
    /// [`MemoryError::SchemaTooNew`] when a newer build wrote the file; I/O or SQLite errors.
    pub fn open(path: &Path) -> Result<Self, MemoryError> {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            std::fs::create_dir_all(parent).map_err(|source| MemoryError::Io {
                path: path.to_owned(),
                source,
            })?;
        }
        Self::prepare(Connection::open(path)?)
    }

    /// A store that lives in memory only, for tests.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn open_in_memory() -> Result<Self, MemoryError> {
        Self::prepare(Connection::open_in_memory()?)
    }

    fn prepare(mut conn: Connection) -> Result<Self, MemoryError> {
        schema::prepare(&mut conn)?;
        Ok(MemoryStore {
            conn: Arc::new(Mutex::new(conn)),
            secrets: Arc::from(Vec::new()),
        })
    }

    /// Sets the secret values masked in every failure's message, stack and payload, and in
    /// sandbox output, before they are stored.
    pub fn with_secrets(mut self, secrets: Vec<String>) -> Self {
        self.secrets = Arc::from(secrets);
        self
    }

    /// Stores a final failure with the vectors of its chunks, in the group of its fingerprint
    /// (created when new).
    ///
    /// Message, stack and payload are masked first, and so are the chunk texts; the vectors are
    /// stored as given. Build chunks from [`FailureInput::masked`] to keep secrets out of them.
    ///
    /// # Errors
    /// [`MemoryError::DimensionMismatch`] when the model's vectors were stored with other
    /// dimensions before; SQLite errors.
    pub async fn record_failure(
        &self,
        input: FailureInput,
        vectors: EmbeddedChunks,
    ) -> Result<FailureRecord, MemoryError> {
        let input = input.masked(&self.secrets);
        let vectors = vectors.map_texts(|text| mask_secrets(text, &self.secrets));
        self.write(move |tx, now| db::insert_failure(tx, &input, &vectors, now))
            .await
    }

    /// The `k` stored failures most similar to `vector`, best first, at most one per group.
    ///
    /// Only vectors of `model` are compared; a model with no stored vectors gives no results.
    /// `exclude_group` leaves out one group, usually the query failure's own.
    ///
    /// # Errors
    /// [`MemoryError::DimensionMismatch`] when `vector`'s length differs from the dimensions
    /// stored for `model`; [`MemoryError::NotFinite`] for a vector with NaN; SQLite errors.
    pub async fn similar_failures(
        &self,
        model: &str,
        vector: &[f32],
        k: usize,
        exclude_group: Option<i64>,
    ) -> Result<Vec<SimilarFailure>, MemoryError> {
        let (model, vector) = (model.to_owned(), vector.to_vec());
        self.read(move |conn| db::similar_failures(conn, &model, &vector, k, exclude_group))
            .await
    }

    /// Stores a fix and links the recorded attempts of its heal job to it.
    ///
    /// # Errors
    /// [`MemoryError::UnknownGroup`], [`MemoryError::UnknownFailure`] or
    /// [`MemoryError::FailureNotInGroup`] when the fix names the wrong things; SQLite errors.
    pub async fn record_fix(&self, fix: NewFix) -> Result<i64, MemoryError> {
        self.write(move |tx, now| db::insert_fix(tx, &fix, now))
            .await
    }

    /// Stores the vectors of a fix's chunks (see [`crate::chunks_for_fix`]).
    ///
    /// # Errors
    /// [`MemoryError::UnknownFix`], [`MemoryError::DimensionMismatch`]; SQLite errors.
    pub async fn record_fix_vectors(
        &self,
        fix_id: i64,
        vectors: EmbeddedChunks,
    ) -> Result<(), MemoryError> {
        self.write(move |tx, _| {
            if !db::fix_exists(tx, fix_id)? {
                return Err(MemoryError::UnknownFix(fix_id));
            }
            if !vectors.chunks().is_empty() {
                db::check_model(tx, vectors.model(), vectors.dimensions())?;
            }
            db::insert_chunks(tx, Owner::Fix(fix_id), &vectors)
        })
        .await
    }

    /// The newest verified fix of a group.
    ///
    /// # Errors
    /// SQLite errors.
    pub async fn verified_fix_for_group(&self, group_id: i64) -> Result<Option<Fix>, MemoryError> {
        self.read(move |conn| db::verified_fix(conn, "group_id = ?1", &group_id))
            .await
    }

    /// The newest verified fix of the group with this fingerprint.
    ///
    /// # Errors
    /// SQLite errors.
    pub async fn verified_fix_for_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<Fix>, MemoryError> {
        let fingerprint = fingerprint.to_owned();
        let filter = "group_id = (SELECT id FROM mem_groups WHERE fingerprint = ?1)";
        self.read(move |conn| db::verified_fix(conn, filter, &fingerprint))
            .await
    }

    /// Stores one heal round. Sandbox stdout and stderr are masked first. When a fix is later
    /// recorded with the same heal job id, the attempt is linked to it.
    ///
    /// # Errors
    /// SQLite errors.
    pub async fn record_heal_attempt(&self, a: HealAttemptRecord) -> Result<i64, MemoryError> {
        let mut a = a;
        a.sandbox_stdout = mask_secrets(&a.sandbox_stdout, &self.secrets);
        a.sandbox_stderr = mask_secrets(&a.sandbox_stderr, &self.secrets);
        self.write(move |tx, now| db::insert_heal_attempt(tx, &a, now))
            .await
    }

    /// The attempts linked to a fix, in round order.
    ///
    /// # Errors
    /// SQLite errors.
    pub async fn heal_attempts_for_fix(
        &self,
        fix_id: i64,
    ) -> Result<Vec<HealAttempt>, MemoryError> {
        self.read(move |conn| db::heal_attempts(conn, "fix_id = ?1", "round, id", &fix_id))
            .await
    }

    /// The attempts made for a job, oldest first: `job_id` may be the failed job or the heal
    /// job.
    ///
    /// # Errors
    /// SQLite errors.
    pub async fn heal_attempts_for_job(
        &self,
        job_id: &str,
    ) -> Result<Vec<HealAttempt>, MemoryError> {
        let job_id = job_id.to_owned();
        let filter = "job_id = ?1 OR heal_job_id = ?1";
        self.read(move |conn| db::heal_attempts(conn, filter, "id", &job_id))
            .await
    }

    /// The newest `limit` fixes, newest first.
    ///
    /// # Errors
    /// SQLite errors.
    pub async fn list_fixes(&self, limit: usize) -> Result<Vec<FixSummary>, MemoryError> {
        self.read(move |conn| db::list_fixes(conn, limit)).await
    }

    /// A fix with its diff, edits and attempts.
    ///
    /// # Errors
    /// SQLite errors.
    pub async fn get_fix(&self, id: i64) -> Result<Option<FixDetail>, MemoryError> {
        self.read(move |conn| {
            let Some(fix) = db::get_fix(conn, id)? else {
                return Ok(None);
            };
            let attempts = db::heal_attempts(conn, "fix_id = ?1", "round, id", &id)?;
            Ok(Some(FixDetail { fix, attempts }))
        })
        .await
    }

    /// The `limit` groups seen most recently, newest first.
    ///
    /// # Errors
    /// SQLite errors.
    pub async fn list_groups(&self, limit: usize) -> Result<Vec<Group>, MemoryError> {
        self.read(move |conn| db::list_groups(conn, limit)).await
    }

    /// One group.
    ///
    /// # Errors
    /// SQLite errors.
    pub async fn get_group(&self, id: i64) -> Result<Option<Group>, MemoryError> {
        self.read(move |conn| db::get_group(conn, id)).await
    }

    /// How many failures are stored.
    ///
    /// # Errors
    /// SQLite errors.
    pub async fn failure_count(&self) -> Result<u64, MemoryError> {
        self.read(db::failure_count).await
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, MemoryError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, MemoryError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let task = tokio::task::spawn_blocking(move || {
            let guard = conn.lock().map_err(|_| MemoryError::Poisoned)?;
            f(&guard)
        });
        task.await.map_err(|e| MemoryError::Task(e.to_string()))?
    }

    /// Runs `f` in an IMMEDIATE transaction (the write lock is taken up front, so the queue's
    /// connection cannot make it fail halfway with a busy upgrade) and commits when it succeeds.
    async fn write<T, F>(&self, f: F) -> Result<T, MemoryError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, i64) -> Result<T, MemoryError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let task = tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| MemoryError::Poisoned)?;
            let tx = guard.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx, now_ms())?;
            tx.commit()?;
            Ok(value)
        });
        task.await.map_err(|e| MemoryError::Task(e.to_string()))?
    }
}

/// Milliseconds since the Unix epoch; 0 on a clock set before 1970.
fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
