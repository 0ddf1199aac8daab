//! How PostgreSQL and pool errors become [`MemoryError`]s: "unreachable" (worth buffering a
//! write for) versus a real database error (a retry would fail the same way).

use deadpool_postgres::PoolError;
use smartworker_memory::MemoryError;

/// The backend name in error messages.
pub(crate) const BACKEND: &str = "postgres";

/// A driver error: unreachable when the connection is gone or the server is shutting down or
/// starting, a database error otherwise.
pub(crate) fn pg_error(err: tokio_postgres::Error) -> MemoryError {
    if is_unavailable(&err) {
        return MemoryError::Unavailable {
            backend: BACKEND,
            message: describe(&err),
        };
    }
    db_error(err)
}

/// A driver error reported as a database error whatever its kind.
pub(crate) fn db_error(err: tokio_postgres::Error) -> MemoryError {
    MemoryError::Database {
        backend: BACKEND,
        message: describe(&err),
    }
}

/// A pool error: every kind but a database error means no connection could be had.
pub(crate) fn pool_error(err: PoolError) -> MemoryError {
    match err {
        PoolError::Backend(e) => pg_error(e),
        other => MemoryError::Unavailable {
            backend: BACKEND,
            message: other.to_string(),
        },
    }
}

/// An operation that did not finish within its time limit.
pub(crate) fn timed_out(what: &str, limit: std::time::Duration) -> MemoryError {
    MemoryError::Unavailable {
        backend: BACKEND,
        message: format!("{what} took longer than {} ms", limit.as_millis()),
    }
}

/// True when the error says nothing about the query: the connection failed or closed, or the
/// server is shutting down, starting up or out of resources (SQLSTATE classes 08, 57 and 53).
pub(crate) fn is_unavailable(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    let Some(db) = err.as_db_error() else {
        // No server error: unreachable when the cause is I/O (refused, reset, timed out); a
        // conversion error of a value is the query's fault and stays a database error.
        let io = std::error::Error::source(err).is_some_and(|s| s.is::<std::io::Error>());
        return io;
    };
    let code = db.code().code();
    code.starts_with("08") || code.starts_with("57") || code.starts_with("53")
}

/// The server's message with its detail, or the driver's own description.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => {
            let source = std::error::Error::source(err).map(ToString::to_string);
            match source {
                Some(s) => format!("{err}: {s}"),
                None => err.to_string(),
            }
        }
    }
}
