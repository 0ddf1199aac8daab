//! The embedded backend's tables, and the codes its `state` column uses.
//!
//! The schema carries a version in `PRAGMA user_version`; a file written by a newer
//! SmartWorker is refused rather than silently misread.

use rusqlite::Connection;
use smartworker_core::JobState;

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// The tables and indexes of version 1.
///
/// Generated ids are `seq`; producer-chosen ids live in `custom_id` and, as in BullMQ, may not
/// be integers, so an id that parses as an integer always means `seq`.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    custom_id     TEXT,
    queue         TEXT NOT NULL,
    name          TEXT NOT NULL,
    data          TEXT NOT NULL,
    opts          TEXT NOT NULL,
    state         INTEGER NOT NULL,
    priority      INTEGER NOT NULL,
    run_at        INTEGER NOT NULL,
    attempts_made INTEGER NOT NULL DEFAULT 0,
    stalled_count INTEGER NOT NULL DEFAULT 0,
    attempts      TEXT NOT NULL DEFAULT '[]',
    result        TEXT,
    failed_reason TEXT,
    created_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    lock_token    TEXT,
    lock_worker   TEXT,
    lock_until    INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_custom_id ON jobs(custom_id)
    WHERE custom_id IS NOT NULL;
-- Partial indexes, one per state that is searched: a state change touches only the indexes
-- of the states it leaves and enters, which keeps claims and finishes cheap.
CREATE INDEX IF NOT EXISTS jobs_waiting ON jobs(queue, priority, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS jobs_delayed ON jobs(queue, run_at) WHERE state = 1;
CREATE INDEX IF NOT EXISTS jobs_active ON jobs(queue, lock_until) WHERE state = 2;
CREATE INDEX IF NOT EXISTS jobs_completed ON jobs(queue, finished_at) WHERE state = 3;
CREATE INDEX IF NOT EXISTS jobs_dead ON jobs(queue, finished_at) WHERE state = 4;
";

/// Opens the schema on a fresh or existing connection.
pub(crate) fn migrate(conn: &Connection) -> Result<(), String> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "queue schema version {version} is newer than this build understands \
             ({SCHEMA_VERSION}); upgrade smartworker"
        ));
    }
    conn.execute_batch(SCHEMA_V1).map_err(|e| e.to_string())?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| e.to_string())
}

/// The integer stored for a state.
pub(crate) fn state_code(state: JobState) -> i64 {
    match state {
        JobState::Waiting => 0,
        JobState::Delayed => 1,
        JobState::Active => 2,
        JobState::Completed => 3,
        JobState::Dead => 4,
    }
}

/// The state an integer stands for; unknown codes read as dead so they surface to an operator.
pub(crate) fn code_state(code: i64) -> JobState {
    match code {
        0 => JobState::Waiting,
        1 => JobState::Delayed,
        2 => JobState::Active,
        3 => JobState::Completed,
        _ => JobState::Dead,
    }
}
