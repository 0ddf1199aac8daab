//! Checks of the backend alone, through the `QueueBackend` trait.

#![allow(
    clippy::unwrap_used,
    reason = "these are test assertions: a check fails loudly at the first unexpected error"
)]

use serde_json::json;
use smartworker_core::{
    ActiveJob, Attempt, Backoff, ClaimRequest, FinishOutcome, FinishRequest, HEAL_QUEUE,
    JobFailure, JobId, JobOptions, JobState, KeepJobs, NewJob, QueueBackend,
};
use std::sync::Arc;
use std::time::Duration;

type Backend = Arc<dyn QueueBackend>;

const LONG: Duration = Duration::from_secs(30);

async fn claim(b: &Backend, queue: &str, max: usize, lock: Duration) -> Vec<ActiveJob> {
    let req = ClaimRequest {
        queue,
        worker: "w1",
        max,
        lock,
    };
    b.claim(req).await.unwrap()
}

async fn claim_one(b: &Backend, queue: &str, lock: Duration) -> ActiveJob {
    let mut claimed = claim(b, queue, 1, lock).await;
    assert_eq!(claimed.len(), 1, "expected one job to claim on {queue}");
    claimed.remove(0)
}

fn attempt(a: &ActiveJob, error: Option<&str>) -> Attempt {
    Attempt {
        number: a.job.attempts_made,
        worker: "w1".into(),
        started_at: 1,
        finished_at: 2,
        error: error.map(str::to_owned),
        stack: error.map(|e| format!("Traceback (most recent call last):\n{e}")),
    }
}

async fn fail(b: &Backend, a: &ActiveJob, error: &str) -> FinishOutcome {
    let req = FinishRequest {
        id: a.job.id.clone(),
        token: a.token.clone(),
        attempt: attempt(a, Some(error)),
        outcome: Err(JobFailure::with_stack(error, format!("stack of {error}"))),
    };
    b.finish(vec![req]).await.unwrap().remove(0)
}

async fn succeed(b: &Backend, a: &ActiveJob) -> FinishOutcome {
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

/// Add, claim, complete: the job is active while held and keeps its result.
pub async fn claimed_job_is_active_and_completes_with_its_result(b: Backend) {
    let id = b.add(NewJob::new("q", "t", json!({"a": 1}))).await.unwrap();
    let claimed = claim(&b, "q", 10, LONG).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job.id, id);
    assert_eq!(claimed[0].job.state, JobState::Active);
    assert_eq!(claimed[0].job.attempts_made, 1);
    assert_eq!(claimed[0].job.data, json!({"a": 1}));
    assert_eq!(b.counts("q").await.unwrap().active, 1);

    assert_eq!(succeed(&b, &claimed[0]).await, FinishOutcome::Completed);
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.result, Some(json!({"ok": true})));
    assert_eq!(job.attempts.len(), 1);
    assert!(job.finished_at.is_some());
    assert!(claim(&b, "q", 10, LONG).await.is_empty());
}

/// BullMQ's order: no priority first, then lower numbers, then the oldest.
pub async fn jobs_without_priority_run_first_then_lower_numbers_then_oldest(b: Backend) {
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
    let order: Vec<String> = claim(&b, "q", 10, LONG)
        .await
        .into_iter()
        .map(|a| a.job.name)
        .collect();
    assert_eq!(order, ["none-a", "none-b", "p1", "p1-late", "p5"]);
}

/// A delayed job is not claimed before its time, and is after it.
pub async fn delayed_job_waits_for_its_time(b: Backend) {
    let opts = JobOptions {
        delay: 400,
        ..JobOptions::default()
    };
    let id = b.add(job_with("q", opts)).await.unwrap();
    assert_eq!(b.counts("q").await.unwrap().delayed, 1);
    assert_eq!(b.get(&id).await.unwrap().unwrap().state, JobState::Delayed);
    assert!(claim(&b, "q", 1, LONG).await.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(claim(&b, "q", 1, LONG).await.len(), 1);
}

/// Failed attempts wait out their backoff; the last one dead-letters the job with the
/// errors and stack traces of every attempt.
pub async fn failed_job_backs_off_then_is_dead_lettered_with_every_attempt(b: Backend) {
    let opts = JobOptions {
        attempts: 2,
        backoff: Some(Backoff::Fixed { delay: 300 }),
        ..JobOptions::default()
    };
    let id = b.add(job_with("q", opts)).await.unwrap();

    let first = claim_one(&b, "q", LONG).await;
    let FinishOutcome::Retrying { run_at } = fail(&b, &first, "KeyError: 'email'").await else {
        panic!("first failure should retry");
    };
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Delayed);
    assert_eq!(job.run_at, run_at);
    assert!(claim(&b, "q", 1, LONG).await.is_empty(), "backoff ignored");

    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = claim_one(&b, "q", LONG).await;
    assert_eq!(second.job.attempts_made, 2);
    let outcome = fail(&b, &second, "KeyError: 'email' again").await;
    assert_eq!(outcome, FinishOutcome::DeadLettered { heal_job: None });

    let dead = b.list("q", JobState::Dead, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
    let errors: Vec<_> = dead[0]
        .attempts
        .iter()
        .map(|a| a.error.clone().unwrap())
        .collect();
    assert_eq!(errors, ["KeyError: 'email'", "KeyError: 'email' again"]);
    let stack = dead[0].attempts[1].stack.as_deref().unwrap();
    assert!(stack.starts_with("Traceback"), "{stack}");
    assert_eq!(
        dead[0].failed_reason.as_deref(),
        Some("KeyError: 'email' again")
    );
    assert_eq!(b.counts("q").await.unwrap().dead, 1);
}

/// Exponential backoff waits `delay * 2^(n-1)` after attempt n.
pub async fn exponential_backoff_doubles_the_wait(b: Backend) {
    let opts = JobOptions {
        attempts: 3,
        backoff: Some(Backoff::Exponential { delay: 10_000 }),
        ..JobOptions::default()
    };
    b.add(job_with("q", opts)).await.unwrap();
    let a = claim_one(&b, "q", LONG).await;
    let before = now_ms();
    let FinishOutcome::Retrying { run_at } = fail(&b, &a, "boom").await else {
        panic!("should retry");
    };
    let wait = run_at - before;
    assert!(
        (9_000..=11_000).contains(&wait),
        "first retry after {wait} ms"
    );
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// A job with `"reasoning_fix": true` (or the autofix option) gets its heal job in the step
/// that dead-letters it.
pub async fn dead_lettering_a_job_that_asks_for_healing_adds_its_heal_job(b: Backend) {
    let by_data = NewJob::new("signup", "t", json!({"reasoning_fix": true}));
    let by_option = job_with(
        "signup",
        JobOptions {
            autofix: true,
            ..JobOptions::default()
        },
    );
    for job in [by_data, by_option] {
        let id = b.add(job).await.unwrap();
        let a = claim_one(&b, "signup", LONG).await;
        let FinishOutcome::DeadLettered {
            heal_job: Some(heal),
        } = fail(&b, &a, "boom").await
        else {
            panic!("expected a heal job");
        };
        let heal = b.get(&heal).await.unwrap().unwrap();
        assert_eq!(heal.queue, HEAL_QUEUE);
        assert_eq!(heal.data["job_id"], json!(id.0));
        assert_eq!(heal.data["queue"], json!("signup"));
        assert_eq!(heal.state, JobState::Waiting);
        assert_eq!(heal.opts.attempts, 2);
    }
    assert_eq!(b.counts(HEAL_QUEUE).await.unwrap().waiting, 2);
}

/// No heal job for a job that did not ask, nor for a failing heal job.
pub async fn dead_lettering_a_job_that_does_not_ask_for_healing_adds_none(b: Backend) {
    b.add(NewJob::new("q", "t", json!({"reasoning_fix": "yes"})))
        .await
        .unwrap();
    let a = claim_one(&b, "q", LONG).await;
    let outcome = fail(&b, &a, "boom").await;
    assert_eq!(outcome, FinishOutcome::DeadLettered { heal_job: None });
    let heal = NewJob::new(HEAL_QUEUE, "heal", json!({"reasoning_fix": true}));
    b.add(heal).await.unwrap();
    let a = claim_one(&b, HEAL_QUEUE, LONG).await;
    let outcome = fail(&b, &a, "healer crashed").await;
    assert_eq!(outcome, FinishOutcome::DeadLettered { heal_job: None });
    assert_eq!(b.counts(HEAL_QUEUE).await.unwrap().waiting, 0);
}

/// Retry from the dead-letter queue: waiting again, attempts reset, history kept.
pub async fn retry_from_dead_letter_queue_gives_fresh_attempts_and_keeps_history(b: Backend) {
    let id = b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    let a = claim_one(&b, "q", LONG).await;
    fail(&b, &a, "boom").await;

    let err = b.retry_dead(&JobId::from("999")).await.unwrap_err();
    assert_eq!(err.to_string(), "job 999 not found");
    b.retry_dead(&id).await.unwrap();
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.attempts_made, job.attempts.len()),
        (JobState::Waiting, 0, 1)
    );
    assert_eq!(job.failed_reason, None);
    let err = b.retry_dead(&id).await.unwrap_err().to_string();
    assert!(err.contains("is waiting, not dead"), "{err}");

    let again = claim_one(&b, "q", LONG).await;
    assert_eq!(again.job.attempts_made, 1);
    assert_eq!(succeed(&b, &again).await, FinishOutcome::Completed);
    assert_eq!(b.get(&id).await.unwrap().unwrap().attempts.len(), 2);
}

/// A report with the wrong token is refused and changes nothing.
pub async fn finishing_with_a_stale_lock_changes_nothing(b: Backend) {
    b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    let mut a = claim_one(&b, "q", LONG).await;
    a.token = "not-the-token".into();
    assert_eq!(succeed(&b, &a).await, FinishOutcome::LockLost);
    assert_eq!(fail(&b, &a, "late").await, FinishOutcome::LockLost);
    assert_eq!(b.counts("q").await.unwrap().active, 1);
    assert!(b.get(&a.job.id).await.unwrap().unwrap().attempts.is_empty());
}

/// A dead worker's job runs again once; a second stall dead-letters it.
pub async fn stalled_job_is_recovered_once_then_dead_lettered(b: Backend) {
    let id = b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    let lock = Duration::from_millis(50);
    let first = claim_one(&b, "q", lock).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(b.recover_stalled("q").await.unwrap(), vec![id.clone()]);
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts_made), (JobState::Waiting, 0));
    assert!(
        job.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("stalled")
    );

    // The dead worker's late report must not overwrite the new run.
    assert_eq!(succeed(&b, &first).await, FinishOutcome::LockLost);

    claim_one(&b, "q", lock).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    b.recover_stalled("q").await.unwrap();
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(
        job.failed_reason.as_deref(),
        Some("job stalled more than allowable limit")
    );
}

/// Renewed locks do not stall; a renewal by another worker is refused.
pub async fn extending_a_lock_keeps_the_job_from_stalling(b: Backend) {
    b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    let a = claim_one(&b, "q", Duration::from_millis(100)).await;
    let held = [(a.job.id.clone(), a.token.clone())];
    let lost = b.extend_locks("w1", &held, LONG).await.unwrap();
    assert!(lost.is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(b.recover_stalled("q").await.unwrap().is_empty());
    let lost = b.extend_locks("w2", &held, LONG).await.unwrap();
    assert_eq!(lost, vec![a.job.id.clone()]);
    let stale = [(a.job.id.clone(), "not-the-token".to_owned())];
    assert_eq!(
        b.extend_locks("w1", &stale, LONG).await.unwrap(),
        vec![a.job.id.clone()]
    );
}

/// A taken custom id returns the existing job; integer custom ids are refused.
pub async fn custom_job_id_deduplicates_and_integer_ids_are_refused(b: Backend) {
    let opts = JobOptions {
        job_id: Some("signup-a@example.com".into()),
        ..JobOptions::default()
    };
    let first = b.add(job_with("q", opts.clone())).await.unwrap();
    let second = b.add(job_with("q", opts)).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(b.counts("q").await.unwrap().waiting, 1);
    let job = b.get(&first).await.unwrap().unwrap();
    assert_eq!(job.opts.job_id.as_deref(), Some("signup-a@example.com"));

    let bad = JobOptions {
        job_id: Some("42".into()),
        ..JobOptions::default()
    };
    let err = b.add(job_with("q", bad)).await.unwrap_err();
    let err = err.to_string();
    assert!(err.contains("custom job id \"42\" is an integer"), "{err}");
}

/// One bad job in a batch stores none of it.
pub async fn bulk_add_stores_all_or_nothing(b: Backend) {
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
    assert_eq!(b.counts("q").await.unwrap().waiting, 100);
}

/// Bulk ids come back in the order of the jobs, across queues.
pub async fn bulk_add_keeps_the_order_of_its_jobs(b: Backend) {
    let jobs = vec![
        NewJob::new("a", "first", json!(1)),
        NewJob::new("b", "second", json!(2)),
        NewJob::new("a", "third", json!(3)),
    ];
    let ids = b.add_bulk(jobs).await.unwrap();
    let mut names = Vec::new();
    for id in &ids {
        let job = b.get(id).await.unwrap().unwrap();
        names.push((job.queue, job.name));
    }
    let expected = [("a", "first"), ("b", "second"), ("a", "third")];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(q, n)| ((*q).to_owned(), (*n).to_owned()))
        .collect();
    assert_eq!(names, expected);
}

/// `removeOnComplete: {count: 2}` keeps the two newest completed jobs.
pub async fn completed_jobs_beyond_the_retention_count_are_removed(b: Backend) {
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
    for a in claim(&b, "q", 5, LONG).await {
        succeed(&b, &a).await;
    }
    assert_eq!(b.counts("q").await.unwrap().completed, 2);
}

/// A waiter sees a job finished by another task.
pub async fn wait_finished_returns_when_another_task_completes_the_job(b: Backend) {
    let id = b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    let worker = Arc::clone(&b);
    let task = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let a = claim_one(&worker, "q", LONG).await;
        succeed(&worker, &a).await;
    });
    let job = b.wait_finished(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(job.state, JobState::Completed);
    task.await.unwrap();
}

/// Waiting on an id that does not exist is an error, not a hang.
pub async fn wait_finished_on_a_missing_job_is_not_found(b: Backend) {
    b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    let missing = b
        .wait_finished(&JobId::from("nope"), Duration::from_millis(10))
        .await;
    assert!(missing.is_err());
}

/// Active jobs cannot be removed; others can.
pub async fn removing_an_active_job_is_refused(b: Backend) {
    let id = b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    claim(&b, "q", 1, LONG).await;
    assert!(b.remove(&id).await.is_err());
    let other = b.add(NewJob::new("q", "t", json!(2))).await.unwrap();
    b.remove(&other).await.unwrap();
    assert!(b.get(&other).await.unwrap().is_none());
    assert_eq!(b.counts("q").await.unwrap().waiting, 0);
}

/// A released job waits again and keeps its attempts.
pub async fn released_job_returns_to_waiting_without_using_an_attempt(b: Backend) {
    let id = b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    let a = claim_one(&b, "q", LONG).await;
    b.release(&id, &a.token, "worker shut down").await.unwrap();
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts_made), (JobState::Waiting, 0));
    assert_eq!(job.attempts[0].error.as_deref(), Some("worker shut down"));
    let again = claim_one(&b, "q", LONG).await;
    assert_eq!(again.job.attempts_made, 1);
}

/// Counts move with the job: waiting, delayed, active, completed, dead.
pub async fn counts_follow_a_job_through_its_states(b: Backend) {
    let delayed = JobOptions {
        delay: 60_000,
        ..JobOptions::default()
    };
    b.add(job_with("q", delayed)).await.unwrap();
    for n in 0..3 {
        b.add(NewJob::new("q", "t", json!(n))).await.unwrap();
    }
    let c = b.counts("q").await.unwrap();
    assert_eq!((c.waiting, c.delayed, c.active), (3, 1, 0));
    let mut held = claim(&b, "q", 3, LONG).await;
    assert_eq!(b.counts("q").await.unwrap().active, 3);
    succeed(&b, &held.remove(0)).await;
    fail(&b, &held.remove(0), "boom").await;
    let c = b.counts("q").await.unwrap();
    assert_eq!(
        (c.waiting, c.delayed, c.active, c.completed, c.dead),
        (0, 1, 1, 1, 1)
    );
    assert_eq!(b.list("q", JobState::Active, 10).await.unwrap().len(), 1);
    assert_eq!(b.list("q", JobState::Delayed, 10).await.unwrap().len(), 1);
    assert_eq!(b.list("q", JobState::Completed, 10).await.unwrap().len(), 1);
}

/// Every queue that holds a job is listed.
pub async fn queues_lists_every_queue_that_holds_jobs(b: Backend) {
    b.add(NewJob::new("alpha", "t", json!(1))).await.unwrap();
    b.add(NewJob::new("beta.v2", "t", json!(1))).await.unwrap();
    let queues = b.queues().await.unwrap();
    assert!(queues.contains(&"alpha".to_owned()), "{queues:?}");
    assert!(queues.contains(&"beta.v2".to_owned()), "{queues:?}");
}

/// A claim never takes more than it asked for, and a later claim takes the rest.
pub async fn claim_takes_at_most_the_requested_number(b: Backend) {
    let jobs = (0..7).map(|i| NewJob::new("q", "t", json!(i))).collect();
    b.add_bulk(jobs).await.unwrap();
    assert_eq!(claim(&b, "q", 5, LONG).await.len(), 5);
    assert_eq!(claim(&b, "q", 5, LONG).await.len(), 2);
    assert_eq!(claim(&b, "q", 0, LONG).await.len(), 0);
}
