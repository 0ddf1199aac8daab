//! The durable local buffer: writes that could not reach PostgreSQL wait here, in order, in a
//! small SQLite file under the state folder, until they are replayed.
//!
//! A write is in the buffer once [`Buffer::push`] returns: the file is synced on every commit
//! (`synchronous = FULL`). Each write carries the id it is applied under, so replaying a write
//! whose first try did reach the database before the connection died applies it only once.

use serde::{Deserialize, Serialize};
use smartworker_memory::{
    EmbeddedChunks, FailureInput, Grouping, HealAttemptRecord, MemoryError, NewFix,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One write to the memory store.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Write {
    /// `record_failure`.
    Failure {
        input: FailureInput,
        vectors: EmbeddedChunks,
        #[serde(default)]
        grouping: Grouping,
    },
    /// `record_fix`.
    Fix { fix: NewFix },
    /// `record_fix_vectors`.
    FixVectors {
        fix_id: i64,
        vectors: EmbeddedChunks,
    },
    /// `record_heal_attempt`.
    HealAttempt { attempt: HealAttemptRecord },
}

/// A write with the id it is applied under and the time it was made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// Unique per write; recorded in `mem_applied_writes` with the write.
    pub id: String,
    /// The content key of a failure (see `content_key` in lib.rs); the buffer keeps one
    /// waiting write per key, so a heal job retried while the database is down adds nothing.
    #[serde(default)]
    pub key: Option<String>,
    /// When the write was made (ms since the epoch); it becomes the row's `created_at`.
    pub at: i64,
    pub write: Write,
}

/// A buffered write and its place in the buffer.
pub(crate) struct Queued {
    pub seq: i64,
    pub pending: Pending,
}

/// The buffer file.
#[derive(Clone)]
pub(crate) struct Buffer {
    conn: Arc<Mutex<rusqlite::Connection>>,
    path: PathBuf,
}

impl Buffer {
    /// Opens (or creates) the buffer at `path`.
    pub(crate) fn open(path: &Path) -> Result<Buffer, MemoryError> {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            std::fs::create_dir_all(parent).map_err(|source| MemoryError::Io {
                path: path.to_owned(),
                source,
            })?;
        }
        let conn = rusqlite::Connection::open(path)?;
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS pending (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 key TEXT,
                 body TEXT NOT NULL,
                 failed TEXT
             );
             CREATE INDEX IF NOT EXISTS pending_key ON pending (key);",
        )?;
        Ok(Buffer {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    /// The buffer file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a write after every write already waiting; false when the same failure (by
    /// content key) already waits, and nothing was added.
    pub(crate) async fn push(&self, pending: &Pending) -> Result<bool, MemoryError> {
        let body = serde_json::to_string(pending).map_err(|source| MemoryError::Encode {
            what: "buffered write",
            source,
        })?;
        let key = pending.key.clone();
        self.run(move |conn| {
            let added = conn.execute(
                "INSERT INTO pending (key, body) SELECT ?1, ?2
                 WHERE ?1 IS NULL
                    OR NOT EXISTS (SELECT 1 FROM pending WHERE key = ?1 AND failed IS NULL)",
                rusqlite::params![key, body],
            )?;
            Ok(added == 1)
        })
        .await
    }

    /// How many writes wait to be replayed (writes set aside as failed are not counted).
    pub(crate) async fn waiting(&self) -> Result<u64, MemoryError> {
        self.run(|conn| {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM pending WHERE failed IS NULL",
                [],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// The oldest waiting write.
    pub(crate) async fn oldest(&self) -> Result<Option<Queued>, MemoryError> {
        let row = self
            .run(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT seq, body FROM pending WHERE failed IS NULL ORDER BY seq LIMIT 1",
                )?;
                let mut rows = stmt.query([])?;
                let Some(row) = rows.next()? else {
                    return Ok(None);
                };
                Ok(Some((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))
            })
            .await?;
        let Some((seq, body)) = row else {
            return Ok(None);
        };
        let pending = serde_json::from_str(&body).map_err(|e| {
            MemoryError::Corrupt(format!(
                "buffered write {seq} in {}: {e}",
                self.path.display()
            ))
        })?;
        Ok(Some(Queued { seq, pending }))
    }

    /// Removes a replayed write.
    pub(crate) async fn remove(&self, seq: i64) -> Result<(), MemoryError> {
        self.run(move |conn| {
            conn.execute("DELETE FROM pending WHERE seq = ?1", [seq])?;
            Ok(())
        })
        .await
    }

    /// Keeps a write the database refused (it would fail the same way again) out of the
    /// replay, with the reason, for an operator to look at.
    pub(crate) async fn set_aside(&self, seq: i64, reason: String) -> Result<(), MemoryError> {
        self.run(move |conn| {
            conn.execute(
                "UPDATE pending SET failed = ?2 WHERE seq = ?1",
                rusqlite::params![seq, reason],
            )?;
            Ok(())
        })
        .await
    }

    async fn run<T, F>(&self, f: F) -> Result<T, MemoryError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, MemoryError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let task = tokio::task::spawn_blocking(move || {
            let guard = conn.lock().map_err(|_| MemoryError::Poisoned)?;
            f(&guard)
        });
        task.await.map_err(|e| MemoryError::Task(e.to_string()))?
    }
}
