//! Two backends on one file stand for two processes (a `serve` and a CLI `enqueue`, or two
//! `serve`s): each has its own connection and its own wake-ups, so only the file tells one
//! that the other added a job.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

use serde_json::json;
use smartworker_core::{NewJob, QueueBackend};
use smartworker_queue::{SqliteBackend, SqliteOptions};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::Mutex;

/// The tests count this process's watcher threads, so they run one at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Options under which only the file watcher can end a wait: the poll would take an hour.
fn poll_hourly() -> SqliteOptions {
    SqliteOptions {
        poll_interval: Duration::from_secs(3600),
        ..SqliteOptions::default()
    }
}

#[tokio::test]
async fn idle_worker_wakes_when_another_process_adds_a_job() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let worker_side = SqliteBackend::open(&path, poll_hourly()).unwrap();
    let producer_side = SqliteBackend::open(&path, poll_hourly()).unwrap();

    let waiting = tokio::spawn(async move {
        worker_side
            .wait_for_work("emails", Duration::from_secs(3600))
            .await;
    });
    producer_side
        .add(NewJob::new(
            "emails",
            "send",
            json!({"to": "a@example.test"}),
        ))
        .await
        .unwrap();

    // Without the watcher the wait lasts the hour-long poll; the bound here is only a guard
    // against hanging the suite, far above the watcher's 20 ms interval.
    let woke = tokio::time::timeout(Duration::from_secs(60), waiting).await;
    assert!(
        woke.is_ok(),
        "the idle worker was not woken by the other writer"
    );
}

/// The thread ids of this process's threads named `sqlite-watch`.
fn watcher_threads() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| {
            let path = t.unwrap().path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let tid = path.file_name()?.to_string_lossy().into_owned();
            (name.trim() == "sqlite-watch").then_some(tid)
        })
        .collect()
}

/// Polls `done` for up to five seconds; a new thread names itself only once it runs, and an
/// old one ends only at its next interval.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[tokio::test]
async fn watcher_thread_ends_with_its_backend() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let before = watcher_threads();

    let backend = SqliteBackend::open(&path, SqliteOptions::default()).unwrap();
    let mut started = BTreeSet::new();
    let found = eventually(|| {
        started = watcher_threads().difference(&before).cloned().collect();
        !started.is_empty()
    })
    .await;
    assert!(found, "no watcher thread started");

    drop(backend);
    let ended = eventually(|| watcher_threads().is_disjoint(&started)).await;
    assert!(ended, "the watcher thread outlived its backend");
}
