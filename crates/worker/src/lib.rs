//! The worker pool: takes jobs from one queue of a backend and runs them with a handler.
//!
//! It owns fetching, concurrency, lock renewal, stalled-job recovery, timeouts and graceful
//! shutdown. It never decides how a handler runs, and it never loses a result: every attempt
//! that ends is reported to the backend, and a job interrupted by shutdown is handed back.

mod pool;

pub use pool::{Worker, WorkerEvent, WorkerOptions, WorkerStats};
