//! Behaviour of the embedded SQLite backend, through the `QueueBackend` trait only.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly at the first unexpected error"
)]

use serde_json::json;
use smartworker_core::{
    ActiveJob, Attempt, Backoff, ClaimRequest, FinishOutcome, FinishRequest, HEAL_QUEUE,
    JobFailure, JobId, JobOptions, JobState, KeepJobs, NewJob, QueueBackend,
};
use smartworker_queue::{SqliteBackend, SqliteOptions};
use std::time::Duration;

fn backend() -> SqliteBackend {
    SqliteBackend::open_in_memory(SqliteOptions::default()).unwrap()
}

async fn claim(b: &SqliteBackend, queue: &str, max: usize, lock: Duration) -> Vec<ActiveJob> {
    b.claim(ClaimRequest {
        queue,
        worker: "w1",
        max,
        lock,
    })
    .await
    .unwrap()
}

fn attempt(a: &ActiveJob, error: Option<&str>) -> Attempt {
    Attempt {
        number: a.job.attempts_made,
        worker: "w1".into(),
        started_at: 0,
        finished_at: 1,
        error: error.map(str::to_owned),
        stack: error.map(|e| format!("Traceback (most recent call last):\n{e}")),
    }
}

async fn fail(b: &SqliteBackend, a: &ActiveJob, error: &str) -> FinishOutcome {
    let req = FinishRequest {
        id: a.job.id.clone(),
        token: a.token.clone(),
        attempt: attempt(a, Some(error)),
        outcome: Err(JobFailure::with_stack(error, format!("stack of {error}"))),
    };
    b.finish(vec![req]).await.unwrap().remove(0)
}

async fn succeed(b: &SqliteBackend, a: &ActiveJob) -> FinishOutcome {
    let req = FinishRequest {
        id: a.job.id.clone(),
        token: a.token.clone(),
        attempt: attempt(a, None),
        outcome: Ok(json!({"ok": true})),
    };
    b.finish(vec![req]).await.unwrap().remove(0)
}

fn job_with(queue: &str, opts: JobOptions) -> NewJob {
    NewJob {
        opts,
        ..NewJob::new(queue, "t", json!({"n": 1}))
    }
}

#[tokio::test]
async fn claimed_job_is_active_and_completes_with_its_result() {
    let b = backend();
    let id = b.add(NewJob::new("q", "t", json!({"a": 1}))).await.unwrap();
    let claimed = claim(&b, "q", 10, Duration::from_secs(30)).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job.state, JobState::Active);
    assert_eq!(claimed[0].job.attempts_made, 1);
    assert_eq!(b.counts("q").await.unwrap().active, 1);

    assert_eq!(succeed(&b, &claimed[0]).await, FinishOutcome::Completed);
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.result, Some(json!({"ok": true})));
    assert_eq!(job.attempts.len(), 1);
    assert!(claim(&b, "q", 10, Duration::from_secs(30)).await.is_empty());
}

#[tokio::test]
async fn jobs_without_priority_run_first_then_lower_numbers_then_oldest() {
    let b = backend();
    for (name, priority) in [
        ("p5", 5),
        ("none-a", 0),
        ("p1", 1),
        ("none-b", 0),
        ("p1-late", 1),
    ] {
        let opts = JobOptions {
            priority,
            ..JobOptions::default()
        };
        b.add(NewJob {
            opts,
            ..NewJob::new("q", name, json!(null))
        })
        .await
        .unwrap();
    }
    let order: Vec<String> = claim(&b, "q", 10, Duration::from_secs(30))
        .await
        .into_iter()
        .map(|a| a.job.name)
        .collect();
    assert_eq!(order, ["none-a", "none-b", "p1", "p1-late", "p5"]);
}

#[tokio::test]
async fn delayed_job_waits_for_its_time() {
    let b = backend();
    b.add(job_with(
        "q",
        JobOptions {
            delay: 300,
            ..JobOptions::default()
        },
    ))
    .await
    .unwrap();
    assert_eq!(b.counts("q").await.unwrap().delayed, 1);
    assert!(claim(&b, "q", 1, Duration::from_secs(30)).await.is_empty());
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(claim(&b, "q", 1, Duration::from_secs(30)).await.len(), 1);
}

#[tokio::test]
async fn failed_job_backs_off_then_lands_in_dead_letter_queue_with_every_attempt() {
    let b = backend();
    let opts = JobOptions {
        attempts: 2,
        backoff: Some(Backoff::Fixed { delay: 200 }),
        ..JobOptions::default()
    };
    let id = b.add(job_with("q", opts)).await.unwrap();

    let first = claim(&b, "q", 1, Duration::from_secs(30)).await.remove(0);
    let FinishOutcome::Retrying { .. } = fail(&b, &first, "KeyError: 'email'").await else {
        panic!("first failure should retry");
    };
    assert_eq!(b.get(&id).await.unwrap().unwrap().state, JobState::Delayed);
    assert!(
        claim(&b, "q", 1, Duration::from_secs(30)).await.is_empty(),
        "backoff ignored"
    );

    tokio::time::sleep(Duration::from_millis(250)).await;
    let second = claim(&b, "q", 1, Duration::from_secs(30)).await.remove(0);
    assert_eq!(second.job.attempts_made, 2);
    let outcome = fail(&b, &second, "KeyError: 'email' again").await;
    assert_eq!(outcome, FinishOutcome::DeadLettered { heal_job: None });

    let dead = b.list("q", JobState::Dead, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let errors: Vec<_> = dead[0]
        .attempts
        .iter()
        .map(|a| a.error.clone().unwrap())
        .collect();
    assert_eq!(errors, ["KeyError: 'email'", "KeyError: 'email' again"]);
    assert!(
        dead[0].attempts[1]
            .stack
            .as_deref()
            .unwrap()
            .starts_with("Traceback")
    );
    assert_eq!(
        dead[0].failed_reason.as_deref(),
        Some("KeyError: 'email' again")
    );
}

#[tokio::test]
async fn dead_lettering_a_job_that_asks_for_healing_adds_its_heal_job() {
    let b = backend();
    let id = b
        .add(NewJob::new("signup", "t", json!({"reasoning_fix": true})))
        .await
        .unwrap();
    let a = claim(&b, "signup", 1, Duration::from_secs(30))
        .await
        .remove(0);
    let FinishOutcome::DeadLettered {
        heal_job: Some(heal),
    } = fail(&b, &a, "boom").await
    else {
        panic!("expected a heal job");
    };
    let heal = b.get(&heal).await.unwrap().unwrap();
    assert_eq!(heal.queue, HEAL_QUEUE);
    assert_eq!(heal.data["job_id"], json!(id.0));
    assert_eq!(heal.state, JobState::Waiting);
}

#[tokio::test]
async fn retry_from_dead_letter_queue_gives_fresh_attempts_and_keeps_history() {
    let b = backend();
    let id = b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    let a = claim(&b, "q", 1, Duration::from_secs(30)).await.remove(0);
    fail(&b, &a, "boom").await;

    let err = b.retry_dead(&JobId::from("999")).await.unwrap_err();
    assert_eq!(err.to_string(), "job 999 not found");
    b.retry_dead(&id).await.unwrap();
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.attempts_made, job.attempts.len()),
        (JobState::Waiting, 0, 1)
    );
    assert!(
        b.retry_dead(&id)
            .await
            .unwrap_err()
            .to_string()
            .contains("is waiting, not dead")
    );

    let again = claim(&b, "q", 1, Duration::from_secs(30)).await.remove(0);
    assert_eq!(again.job.attempts_made, 1);
}

#[tokio::test]
async fn finishing_with_a_stale_lock_changes_nothing() {
    let b = backend();
    b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    let mut a = claim(&b, "q", 1, Duration::from_secs(30)).await.remove(0);
    a.token = "not-the-token".into();
    assert_eq!(succeed(&b, &a).await, FinishOutcome::LockLost);
    assert_eq!(b.counts("q").await.unwrap().active, 1);
}

#[tokio::test]
async fn stalled_job_is_recovered_once_then_dead_lettered() {
    let b = backend();
    let id = b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    let lock = Duration::from_millis(20);
    let first = claim(&b, "q", 1, lock).await.remove(0);
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(b.recover_stalled("q").await.unwrap(), vec![id.clone()]);
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts_made), (JobState::Waiting, 0));

    // The dead worker's late report must not overwrite the new run.
    assert_eq!(succeed(&b, &first).await, FinishOutcome::LockLost);

    claim(&b, "q", 1, lock).await.remove(0);
    tokio::time::sleep(Duration::from_millis(40)).await;
    b.recover_stalled("q").await.unwrap();
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(
        job.failed_reason.as_deref(),
        Some("job stalled more than allowable limit")
    );
}

#[tokio::test]
async fn extending_a_lock_keeps_the_job_from_stalling() {
    let b = backend();
    b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    let a = claim(&b, "q", 1, Duration::from_millis(30)).await.remove(0);
    let held = [(a.job.id.clone(), a.token.clone())];
    let lost = b
        .extend_locks("w1", &held, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(lost.is_empty());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(b.recover_stalled("q").await.unwrap().is_empty());
    let lost = b
        .extend_locks("w2", &held, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(lost, vec![a.job.id.clone()]);
}

#[tokio::test]
async fn custom_job_id_deduplicates_and_integer_ids_are_refused() {
    let b = backend();
    let opts = JobOptions {
        job_id: Some("signup-a@example.com".into()),
        ..JobOptions::default()
    };
    let first = b.add(job_with("q", opts.clone())).await.unwrap();
    let second = b.add(job_with("q", opts)).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(b.counts("q").await.unwrap().waiting, 1);
    assert!(b.get(&first).await.unwrap().is_some());

    let bad = JobOptions {
        job_id: Some("42".into()),
        ..JobOptions::default()
    };
    let err = b.add(job_with("q", bad)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("custom job id \"42\" is an integer"),
        "{err}"
    );
}

#[tokio::test]
async fn bulk_add_stores_all_or_nothing() {
    let b = backend();
    let jobs = vec![
        NewJob::new("q", "t", json!(1)),
        NewJob::new("bad queue", "t", json!(2)),
    ];
    assert!(b.add_bulk(jobs).await.is_err());
    assert_eq!(b.counts("q").await.unwrap().waiting, 0);
    let ids = b
        .add_bulk((0..100).map(|i| NewJob::new("q", "t", json!(i))).collect())
        .await;
    assert_eq!(ids.unwrap().len(), 100);
}

#[tokio::test]
async fn completed_jobs_beyond_the_retention_count_are_removed() {
    let b = backend();
    let keep = KeepJobs {
        count: Some(2),
        age_secs: None,
    };
    let opts = JobOptions {
        remove_on_complete: keep,
        ..JobOptions::default()
    };
    for _ in 0..5 {
        b.add(job_with("q", opts.clone())).await.unwrap();
    }
    for a in claim(&b, "q", 5, Duration::from_secs(30)).await {
        succeed(&b, &a).await;
    }
    assert_eq!(b.counts("q").await.unwrap().completed, 2);
}

#[tokio::test]
async fn wait_finished_returns_when_another_task_completes_the_job() {
    let b = backend();
    let id = b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    let worker = b.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let a = claim(&worker, "q", 1, Duration::from_secs(30))
            .await
            .remove(0);
        succeed(&worker, &a).await;
    });
    let job = b.wait_finished(&id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(job.state, JobState::Completed);
    let missing = b
        .wait_finished(&JobId::from("nope"), Duration::from_millis(10))
        .await;
    assert!(missing.is_err());
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

#[tokio::test]
async fn removing_an_active_job_is_refused() {
    let b = backend();
    let id = b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    claim(&b, "q", 1, Duration::from_secs(30)).await;
    assert!(b.remove(&id).await.is_err());
    let other = b.add(NewJob::new("q", "t", json!(2))).await.unwrap();
    b.remove(&other).await.unwrap();
    assert!(b.get(&other).await.unwrap().is_none());
}

#[tokio::test]
async fn released_job_returns_to_waiting_without_using_an_attempt() {
    let b = backend();
    let id = b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    let a = claim(&b, "q", 1, Duration::from_secs(30)).await.remove(0);
    b.release(&id, &a.token, "worker shut down").await.unwrap();
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts_made), (JobState::Waiting, 0));
    assert_eq!(job.attempts[0].error.as_deref(), Some("worker shut down"));
}
