//! Behaviour of the embedded SQLite backend: the shared conformance suite, plus what only a
//! file-backed store can show.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly at the first unexpected error"
)]

use serde_json::json;
use smartworker_conformance::Subject;
use smartworker_core::{NewJob, QueueBackend};
use smartworker_queue::{SqliteBackend, SqliteOptions};
use std::sync::Arc;

async fn subject() -> Subject {
    let backend = SqliteBackend::open_in_memory(SqliteOptions::default()).unwrap();
    Subject::new(Arc::new(backend))
}

mod conformance {
    smartworker_conformance::suite!(super::subject);
}

#[tokio::test]
async fn jobs_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/queue.db");
    let id = {
        let b = SqliteBackend::open(&path, SqliteOptions::default()).unwrap();
        b.add(NewJob::new("q", "t", json!({"keep": "me"})))
            .await
            .unwrap()
    };
    let b = SqliteBackend::open(&path, SqliteOptions::default()).unwrap();
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!(job.data, json!({"keep": "me"}));
    assert_eq!(b.queues().await.unwrap(), vec!["q".to_owned()]);
}
