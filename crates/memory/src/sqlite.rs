//! The embedded backend: the memory tables in the SQLite file the embedded queue uses, with
//! exact vector search.
//!
//! The SQL lives in `db.rs` and the tables in `schema.rs`; this file only runs it on tokio's
//! blocking pool, one operation at a time over one connection.

use crate::backend::MemoryBackend;
use crate::chunk::FailureInput;
use crate::db::{self, Owner};
use crate::embed::EmbeddedChunks;
use crate::error::MemoryError;
use crate::group::{
    GroupDetail, GroupQuery, GroupSummary, Grouping, SearchHit, SearchQuery, SimilarGroup,
};
use crate::record::{
    FailureRecord, Fix, FixDetail, FixSummary, Group, HealAttempt, HealAttemptRecord, NewFix,
    SimilarFailure,
};
use crate::schema;
use crate::sqlite_groups;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The memory tables over one SQLite connection.
///
/// # Cancel safety
/// Dropping a returned future does not stop its SQL: the operation still commits or rolls back
/// as a whole, so a cancelled write may or may not have happened, but never half.
#[derive(Clone)]
pub struct SqliteBackend {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteBackend {
    /// Opens (or creates) the SQLite file at `path`, creating its folder and the `mem_` tables
    /// when missing. The file may be shared with the embedded queue.
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

    /// A database that lives in memory only, for tests.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn open_in_memory() -> Result<Self, MemoryError> {
        Self::prepare(Connection::open_in_memory()?)
    }

    fn prepare(mut conn: Connection) -> Result<Self, MemoryError> {
        schema::prepare(&mut conn)?;
        Ok(SqliteBackend {
            conn: Arc::new(Mutex::new(conn)),
        })
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

#[async_trait::async_trait]
impl MemoryBackend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn record_failure(
        &self,
        input: FailureInput,
        vectors: EmbeddedChunks,
    ) -> Result<FailureRecord, MemoryError> {
        let grouping = Grouping::default();
        self.write(move |tx, now| db::insert_failure(tx, &input, &vectors, grouping, now))
            .await
    }

    async fn record_failure_grouped(
        &self,
        input: FailureInput,
        vectors: EmbeddedChunks,
        grouping: Grouping,
    ) -> Result<FailureRecord, MemoryError> {
        self.write(move |tx, now| db::insert_failure(tx, &input, &vectors, grouping, now))
            .await
    }

    async fn groups(&self, query: GroupQuery) -> Result<Vec<GroupSummary>, MemoryError> {
        self.read(move |conn| sqlite_groups::groups(conn, &query))
            .await
    }

    async fn group_detail(&self, id: i64) -> Result<Option<GroupDetail>, MemoryError> {
        self.read(move |conn| sqlite_groups::group_detail(conn, id))
            .await
    }

    async fn similar_groups(&self, id: i64, k: usize) -> Result<Vec<SimilarGroup>, MemoryError> {
        self.read(move |conn| sqlite_groups::similar_groups(conn, id, k))
            .await
    }

    async fn search(&self, query: SearchQuery) -> Result<Vec<SearchHit>, MemoryError> {
        self.read(move |conn| sqlite_groups::search(conn, &query))
            .await
    }

    async fn similar_failures(
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

    async fn record_fix(&self, fix: NewFix) -> Result<i64, MemoryError> {
        self.write(move |tx, now| db::insert_fix(tx, &fix, now))
            .await
    }

    async fn record_fix_vectors(
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

    async fn verified_fix_for_group(&self, group_id: i64) -> Result<Option<Fix>, MemoryError> {
        self.read(move |conn| db::verified_fix(conn, "group_id = ?1", &group_id))
            .await
    }

    async fn verified_fix_for_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<Fix>, MemoryError> {
        let fingerprint = fingerprint.to_owned();
        let filter = "group_id = (SELECT id FROM mem_groups WHERE fingerprint = ?1)";
        self.read(move |conn| db::verified_fix(conn, filter, &fingerprint))
            .await
    }

    async fn record_heal_attempt(&self, attempt: HealAttemptRecord) -> Result<i64, MemoryError> {
        self.write(move |tx, now| db::insert_heal_attempt(tx, &attempt, now))
            .await
    }

    async fn heal_attempts_for_fix(&self, fix_id: i64) -> Result<Vec<HealAttempt>, MemoryError> {
        self.read(move |conn| db::heal_attempts(conn, "fix_id = ?1", "round, id", &fix_id))
            .await
    }

    async fn heal_attempts_for_job(&self, job_id: &str) -> Result<Vec<HealAttempt>, MemoryError> {
        let job_id = job_id.to_owned();
        let filter = "job_id = ?1 OR heal_job_id = ?1";
        self.read(move |conn| db::heal_attempts(conn, filter, "id", &job_id))
            .await
    }

    async fn list_fixes(&self, limit: usize) -> Result<Vec<FixSummary>, MemoryError> {
        self.read(move |conn| db::list_fixes(conn, limit)).await
    }

    async fn get_fix(&self, id: i64) -> Result<Option<FixDetail>, MemoryError> {
        self.read(move |conn| {
            let Some(fix) = db::get_fix(conn, id)? else {
                return Ok(None);
            };
            let attempts = db::heal_attempts(conn, "fix_id = ?1", "round, id", &id)?;
            Ok(Some(FixDetail { fix, attempts }))
        })
        .await
    }

    async fn list_groups(&self, limit: usize) -> Result<Vec<Group>, MemoryError> {
        self.read(move |conn| db::list_groups(conn, limit)).await
    }

    async fn get_group(&self, id: i64) -> Result<Option<Group>, MemoryError> {
        self.read(move |conn| db::get_group(conn, id)).await
    }

    async fn failure_count(&self) -> Result<u64, MemoryError> {
        self.read(db::failure_count).await
    }
}

/// Milliseconds since the Unix epoch; 0 on a clock set before 1970.
fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
