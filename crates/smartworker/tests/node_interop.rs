//! Interop with the real `bullmq` npm package on one private Redis: a Node `Queue` feeds
//! SmartWorker's workers and sees their results, a Node `Worker` runs SmartWorker's jobs, and
//! a Node `Queue` reads SmartWorker's jobs, counts and dead-letter queue as BullMQ sees them.
//!
//! The Node side is `tests/node/bullmq.mjs`; `scripts/setup/node.sh` installs its packages.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod support;

use serde_json::{Value, json};
use smartworker_core::{Backoff, JobFailure, JobId, JobOptions, JobState, NewJob, QueueBackend};
use smartworker_handler::handler_fn;
use smartworker_queue_redis::testing::RedisServer;
use smartworker_queue_redis::{RedisBackend, RedisOptions};
use smartworker_worker::{Worker, WorkerOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use support::project::Project;

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/node")
}

/// Runs `node bullmq.mjs <args>` against `redis` and returns the JSON line it prints.
async fn node(redis: &RedisServer, args: &[&str]) -> Value {
    let dir = node_dir();
    assert!(
        dir.join("node_modules/bullmq/package.json").exists(),
        "the bullmq npm package is not installed in {}; run scripts/setup/node.sh",
        dir.display()
    );
    let output = tokio::process::Command::new("node")
        .arg("bullmq.mjs")
        .args(args)
        .current_dir(&dir)
        .env("REDIS_URL", redis.url())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), output)
        .await
        .unwrap_or_else(|_| panic!("node bullmq.mjs {args:?} hung"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node bullmq.mjs {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("node printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

async fn backend(redis: &RedisServer) -> Arc<dyn QueueBackend> {
    Arc::new(
        RedisBackend::connect(RedisOptions::new(redis.url()))
            .await
            .unwrap(),
    )
}

/// A SmartWorker worker on `queue` whose Rust handler doubles `data.n`, and fails the jobs
/// whose data says `"fail": true`.
fn smartworker_worker(backend: &Arc<dyn QueueBackend>, queue: &str) -> Worker {
    let handler = handler_fn(|job| async move {
        if job.data["fail"] == json!(true) {
            return Err(JobFailure::with_stack(
                format!("smartworker refuses job {}", job.data["n"]),
                "Error: refused\n    at handler (src/interop.rs:1:1)",
            ));
        }
        let n = job.data["n"].as_i64().unwrap_or(-1);
        Ok(json!({"by": "smartworker", "doubled": n * 2}))
    });
    let opts = WorkerOptions {
        concurrency: 8,
        idle_poll: Duration::from_millis(50),
        ..WorkerOptions::default()
    };
    Worker::spawn(Arc::clone(backend), queue, Arc::new(handler), opts)
}

fn new_job(queue: &str, n: i64, opts: JobOptions) -> NewJob {
    let data = if n % 4 == 3 {
        json!({"n": n, "fail": true})
    } else {
        json!({"n": n})
    };
    NewJob {
        opts,
        ..NewJob::new(queue, "from-smartworker", data)
    }
}

#[tokio::test]
async fn jobs_added_by_a_node_queue_are_run_by_smartworker_and_node_sees_the_results() {
    let redis = RedisServer::start().unwrap();
    let backend = backend(&redis).await;
    let worker = smartworker_worker(&backend, "interop");

    let args = [
        "produce",
        "--queue",
        "interop",
        "--count",
        "30",
        "--fail-every",
        "10",
    ];
    let produced = node(&redis, &args).await;
    check_outcomes(&produced);

    // SmartWorker reads the jobs Node added, under its own ids.
    let first = format!("interop:{}", produced["ids"][0].as_str().unwrap());
    let job = backend.get(&JobId(first)).await.unwrap().unwrap();
    assert_eq!(
        (job.name.as_str(), job.state),
        ("from-node", JobState::Completed)
    );
    worker.shutdown().await;
}

#[tokio::test]
async fn jobs_added_by_smartworker_are_run_by_a_node_worker() {
    let redis = RedisServer::start().unwrap();
    let backend = backend(&redis).await;
    let jobs = (0..12).map(|n| new_job("to-node", n, JobOptions::default()));
    let ids = backend.add_bulk(jobs.collect()).await.unwrap();

    let worked = node(
        &redis,
        &[
            "work",
            "--queue",
            "to-node",
            "--count",
            "12",
            "--fail-every",
            "4",
        ],
    )
    .await;

    assert_eq!(worked["processed"].as_array().unwrap().len(), 12);
    for (n, id) in ids.iter().enumerate() {
        let job = backend
            .wait_finished(id, Duration::from_secs(10))
            .await
            .unwrap();
        if n % 4 == 3 {
            assert_eq!(job.state, JobState::Dead, "{job:?}");
            let reason = format!("node worker refuses job {n}");
            assert_eq!(job.failed_reason.as_deref(), Some(reason.as_str()));
        } else {
            assert_eq!(job.state, JobState::Completed, "{job:?}");
            assert_eq!(job.result, Some(json!({"by": "node", "doubled": n * 2})));
        }
    }
}

#[tokio::test]
async fn a_node_queue_lists_smartworker_jobs_counts_and_dead_letter_queue() {
    let redis = RedisServer::start().unwrap();
    let backend = backend(&redis).await;
    let retried = JobOptions {
        attempts: 2,
        backoff: Some(Backoff::Fixed { delay: 10 }),
        ..JobOptions::default()
    };
    let jobs = (0..8).map(|n| new_job("listed", n, retried.clone()));
    let ids = backend.add_bulk(jobs.collect()).await.unwrap();
    let worker = smartworker_worker(&backend, "listed");
    for id in &ids {
        backend
            .wait_finished(id, Duration::from_secs(20))
            .await
            .unwrap();
    }
    worker.shutdown().await;
    // With no worker left: one job waiting, one delayed.
    backend
        .add(new_job("listed", 100, JobOptions::default()))
        .await
        .unwrap();
    let later = JobOptions {
        delay: 60_000,
        ..JobOptions::default()
    };
    backend.add(new_job("listed", 101, later)).await.unwrap();

    let seen = node(
        &redis,
        &["inspect", "--queue", "listed", "--dlq", "listed-dlq"],
    )
    .await;

    let queue = &seen["queue"];
    assert_eq!(
        queue["counts"],
        json!({"wait": 1, "active": 0, "delayed": 1, "prioritized": 0, "completed": 6, "failed": 2}),
        "{seen:#}"
    );
    for job in queue["jobs"]["completed"].as_array().unwrap() {
        let n = job["data"]["n"].as_i64().unwrap();
        assert_eq!(
            job["returnvalue"],
            json!({"by": "smartworker", "doubled": n * 2})
        );
        assert_eq!(
            (job["attemptsMade"].as_u64(), job["name"].as_str()),
            (Some(1), Some("from-smartworker"))
        );
        assert!(job["finishedOn"].as_u64().is_some(), "{job}");
    }
    let failed = queue["jobs"]["failed"].as_array().unwrap();
    for job in failed {
        let n = job["data"]["n"].as_i64().unwrap();
        assert_eq!(
            job["failedReason"],
            format!("smartworker refuses job {n}").as_str()
        );
        assert_eq!(job["attemptsMade"], 2, "{job}");
        let stack = job["stacktrace"].as_array().unwrap();
        assert!(
            !stack.is_empty() && stack[0].as_str().unwrap().contains("at handler"),
            "{job}"
        );
    }
    // The dead-letter queue is a BullMQ queue of its own holding the two dead jobs.
    let dlq = &seen["dlq"];
    let dead: usize = ["wait", "failed", "completed", "delayed", "prioritized"]
        .iter()
        .map(|s| dlq["counts"][s].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(dead, 2, "{dlq:#}");
    let mut copied: Vec<i64> = ["wait", "failed"]
        .iter()
        .flat_map(|s| dlq["jobs"][s].as_array().unwrap().clone())
        .map(|j| j["data"]["n"].as_i64().unwrap())
        .collect();
    copied.sort_unstable();
    assert_eq!(copied, [3, 7], "{dlq:#}");
    // SmartWorker counts the same.
    let counts = backend.counts("listed").await.unwrap();
    assert_eq!(
        (counts.completed, counts.dead, counts.delayed),
        (6, 2, 1),
        "{counts:?}"
    );
}

/// Checks what Node saw of 30 jobs, every tenth of which SmartWorker refused.
fn check_outcomes(produced: &Value) {
    let outcomes = produced["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 30);
    for (n, outcome) in outcomes.iter().enumerate() {
        if (n + 1) % 10 == 0 {
            let want = format!("smartworker refuses job {n}");
            assert_eq!(outcome["ok"], false, "{outcome}");
            assert_eq!(outcome["error"], want.as_str(), "{outcome}");
        } else {
            let want = json!({"by": "smartworker", "doubled": n * 2});
            assert_eq!(outcome["value"], want, "{outcome}");
        }
    }
}

#[tokio::test]
async fn a_node_queue_feeds_smartworker_serve_with_a_persistent_handler() {
    let redis = RedisServer::start().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/redis_interop");
    let mut project = Project::copy_of(&fixture);
    project.set("APP_REDIS_URL", redis.url());
    let server = project.serve("serve");

    let args = [
        "produce",
        "--queue",
        "interop",
        "--count",
        "30",
        "--fail-every",
        "10",
    ];
    check_outcomes(&node(&redis, &args).await);

    // The CLI reads the same jobs through the same Redis, under SmartWorker's ids.
    let shown = project.run(&["jobs", "interop:10"]);
    let job: Value =
        serde_json::from_str(&shown.stdout).unwrap_or_else(|_| panic!("{}", shown.all()));
    assert_eq!(
        (job["state"].as_str(), job["failed_reason"].as_str()),
        (Some("dead"), Some("smartworker refuses job 9"))
    );
    let (status, log) = server.stop();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
}
