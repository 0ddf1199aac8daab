//! What the memory store can fail with.

use std::path::PathBuf;

/// Why a memory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The store's folder could not be created.
    #[error("cannot create the folder of memory store {path}: {source}")]
    Io {
        /// The store file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file was written by a newer SmartWorker; opening it could corrupt it.
    #[error("memory schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A vector's length differs from the dimensions stored for its model.
    #[error("embedding model {model:?} has {expected} dimensions, got a vector of {got}")]
    DimensionMismatch {
        /// The model.
        model: String,
        /// The dimensions stored for it.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// A query vector holds NaN or infinity.
    #[error("query vector for model {0:?} holds a non-finite value")]
    NotFinite(String),
    /// No group has that id.
    #[error("failure group {0} not found")]
    UnknownGroup(i64),
    /// No failure has that id.
    #[error("failure {0} not found")]
    UnknownFailure(i64),
    /// No fix has that id.
    #[error("fix {0} not found")]
    UnknownFix(i64),
    /// A fix names a failure of another group.
    #[error("failure {failure_id} belongs to group {actual}, not group {group_id}")]
    FailureNotInGroup {
        /// The failure named.
        failure_id: i64,
        /// The group named.
        group_id: i64,
        /// The group the failure is in.
        actual: i64,
    },
    /// Stored data could not be read back (a truncated vector, malformed JSON).
    #[error("memory store holds unreadable data: {0}")]
    Corrupt(String),
    /// A value could not be turned into JSON for storage.
    #[error("cannot encode {what} as json: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// SQLite failed (disk, lock timeout, constraint).
    #[error("sqlite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database behind another backend failed (PostgreSQL: a query or a constraint).
    #[error("{backend} error: {message}")]
    Database {
        /// Which backend, e.g. `postgres`.
        backend: &'static str,
        /// What the database said.
        message: String,
    },
    /// The database cannot be reached right now (down, refusing connections, timed out).
    #[error("memory store {backend} is unreachable: {message}")]
    Unavailable {
        /// Which backend, e.g. `postgres`.
        backend: &'static str,
        /// Why it cannot be reached.
        message: String,
    },
    /// The database cannot be reached, so the write was kept in a durable local buffer; it is
    /// replayed, in order, once the database is back. Nothing is lost, but no id exists yet.
    #[error("memory store {backend} is unreachable; the write waits in {} to be replayed", .path.display())]
    Buffered {
        /// Which backend, e.g. `postgres`.
        backend: &'static str,
        /// The buffer file.
        path: PathBuf,
    },
    /// The backend does not offer this operation yet.
    #[error("memory store {backend} does not support {operation} yet")]
    Unsupported {
        /// Which backend.
        backend: &'static str,
        /// The operation asked for, e.g. `search`.
        operation: &'static str,
    },
    /// A previous operation panicked while holding the connection.
    #[error("memory store connection is poisoned by an earlier panic")]
    Poisoned,
    /// The blocking task running the query was cancelled or panicked.
    #[error("memory store task failed: {0}")]
    Task(String),
}
