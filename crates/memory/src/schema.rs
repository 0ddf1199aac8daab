//! The memory tables (all prefixed `mem_`, so they share a file with the queue's tables) and
//! the schema version check.
//!
//! The version lives in its own table rather than SQLite's `user_version`, which belongs to
//! whoever else uses the file. A file from a newer build is refused, never downgraded.

use crate::error::MemoryError;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::time::Duration;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = 2;

/// How long a write waits for the queue's connection to release the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA_V1: &str = "
CREATE TABLE mem_groups (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    error_type TEXT NOT NULL,
    message TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    queues TEXT NOT NULL,
    last_job_ids TEXT NOT NULL
);
CREATE INDEX mem_groups_last_seen ON mem_groups (last_seen);

CREATE TABLE mem_failures (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES mem_groups (id),
    job_id TEXT NOT NULL,
    queue TEXT NOT NULL,
    job_name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    error_type TEXT NOT NULL,
    message TEXT NOT NULL,
    stack TEXT NOT NULL,
    frames TEXT NOT NULL,
    payload TEXT NOT NULL,
    embedding_model TEXT NOT NULL,
    embedding_dimensions INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX mem_failures_group ON mem_failures (group_id);

CREATE TABLE mem_embedding_models (
    model TEXT PRIMARY KEY,
    dimensions INTEGER NOT NULL
);

CREATE TABLE mem_fixes (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES mem_groups (id),
    failure_id INTEGER NOT NULL REFERENCES mem_failures (id),
    job_id TEXT NOT NULL,
    queue TEXT NOT NULL,
    verified INTEGER NOT NULL,
    root_cause TEXT NOT NULL,
    diff TEXT NOT NULL,
    edits_json TEXT NOT NULL,
    source TEXT NOT NULL,
    model TEXT NOT NULL,
    rounds INTEGER NOT NULL,
    heal_job_id TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX mem_fixes_group ON mem_fixes (group_id, verified);

CREATE TABLE mem_chunks (
    id INTEGER PRIMARY KEY,
    failure_id INTEGER REFERENCES mem_failures (id),
    fix_id INTEGER REFERENCES mem_fixes (id),
    ordinal INTEGER NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    model TEXT NOT NULL REFERENCES mem_embedding_models (model),
    dimensions INTEGER NOT NULL,
    vector BLOB NOT NULL,
    CHECK ((failure_id IS NULL) <> (fix_id IS NULL))
);
CREATE INDEX mem_chunks_model ON mem_chunks (model, failure_id);

CREATE TABLE mem_heal_attempts (
    id INTEGER PRIMARY KEY,
    fix_id INTEGER REFERENCES mem_fixes (id),
    heal_job_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    reply TEXT NOT NULL,
    edits_json TEXT NOT NULL,
    sandbox_stdout TEXT NOT NULL,
    sandbox_stderr TEXT NOT NULL,
    sandbox_exit INTEGER,
    verdict TEXT NOT NULL,
    refusal TEXT,
    model_ms INTEGER NOT NULL,
    apply_ms INTEGER NOT NULL,
    sandbox_ms INTEGER NOT NULL,
    total_ms INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX mem_heal_attempts_heal_job ON mem_heal_attempts (heal_job_id);
CREATE INDEX mem_heal_attempts_job ON mem_heal_attempts (job_id);
CREATE INDEX mem_heal_attempts_fix ON mem_heal_attempts (fix_id);
";

/// Version 2: full-text search over failures and an index for the summary vectors grouping
/// compares. The full-text rows of failures stored by version 1 are filled in.
const SCHEMA_V2: &str = "
CREATE VIRTUAL TABLE mem_failures_fts USING fts5 (
    error_type, message, frames, tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO mem_failures_fts (rowid, error_type, message, frames)
    SELECT id, error_type, message,
        (SELECT coalesce(group_concat(
             coalesce(json_extract(value, '$.file'), '') || ' ' ||
             coalesce(json_extract(value, '$.function'), ''), ' '), '')
         FROM json_each(mem_failures.frames))
    FROM mem_failures;
CREATE INDEX mem_chunks_kind ON mem_chunks (kind, model, failure_id);
";

/// Sets the connection up and brings the tables to [`SCHEMA_VERSION`].
///
/// # Errors
/// [`MemoryError::SchemaTooNew`] for a file from a newer build; SQLite errors otherwise.
pub(crate) fn prepare(conn: &mut Connection) -> Result<(), MemoryError> {
    configure(conn)?;

    // IMMEDIATE takes the write lock up front, so two processes opening a new file at once
    // cannot both decide to create the tables.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS mem_schema (version INTEGER NOT NULL)")?;
    let found: Option<i64> = tx
        .query_row("SELECT max(version) FROM mem_schema", [], |r| r.get(0))
        .optional()?
        .flatten();

    match found {
        None => {
            tx.execute_batch(SCHEMA_V1)?;
            tx.execute_batch(SCHEMA_V2)?;
            tx.execute(
                "INSERT INTO mem_schema (version) VALUES (?1)",
                [SCHEMA_VERSION],
            )?;
        }
        Some(1) => {
            tx.execute_batch(SCHEMA_V2)?;
            tx.execute("INSERT INTO mem_schema (version) VALUES (2)", [])?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(MemoryError::SchemaTooNew {
                found: v,
                supported: SCHEMA_VERSION,
            });
        }
        Some(_) => {}
    }
    tx.commit()?;
    Ok(())
}

/// WAL lets the queue's connection read while memory writes; the busy timeout makes a write
/// wait for the other connection's write instead of failing at once.
fn configure(conn: &Connection) -> Result<(), MemoryError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let _mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}
