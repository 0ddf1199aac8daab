//! No job lost on Redis: several `smartworker serve` processes share one private Redis while
//! one of them is killed with SIGKILL every few seconds and started again, or while Redis
//! itself is killed and restarted from its append-only file.
//!
//! Every run of a job appends the job's id to `runs.log` (see the fixture's handler), so the
//! tests count the runs a killed worker never reported: delivery is at least once, and each
//! test prints how many jobs ran more than once.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod support;

use serde_json::json;
use smartworker_core::{Job, JobId, JobState, NewJob, QueueBackend};
use smartworker_queue_redis::testing::{RedisServer, ServerOptions};
use smartworker_queue_redis::{RedisBackend, RedisOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::project::{Project, Server};

const QUEUE: &str = "chaos";

fn project(redis: &RedisServer) -> Project {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/redis_chaos");
    let mut project = Project::copy_of(&fixture);
    project.set("APP_REDIS_URL", redis.url());
    project
}

/// Starts worker process `n` (its `generation`-th life) with a state directory of its own,
/// as if it ran on a machine of its own.
fn worker(project: &Project, n: usize, generation: usize) -> Server {
    let state = project.root().join(format!("state-{n}"));
    let env = [("APP_STATE_DIR", state.display().to_string())];
    project.serve_with(&format!("worker-{n}-{generation}"), &env)
}

async fn add_jobs(redis: &RedisServer, count: usize) -> (RedisBackend, Vec<JobId>) {
    let backend = RedisBackend::connect(RedisOptions::new(redis.url()))
        .await
        .unwrap();
    let jobs = (0..count)
        .map(|n| NewJob::new(QUEUE, "chaos", json!({ "n": n })))
        .collect();
    let ids = backend.add_bulk(jobs).await.unwrap();
    (backend, ids)
}

/// Jobs completed so far, or `None` while Redis does not answer.
async fn completed(backend: &RedisBackend) -> Option<u64> {
    backend.counts(QUEUE).await.ok().map(|c| c.completed)
}

/// Jobs that finished one way or the other (completed or dead-lettered); 0 while Redis does
/// not answer.
async fn finished(backend: &RedisBackend) -> u64 {
    let counts = backend.counts(QUEUE).await;
    counts.map_or(0, |c| c.completed + c.dead)
}

/// How many times each job ran, from `runs.log`.
fn runs(project: &Project) -> BTreeMap<String, usize> {
    let log = std::fs::read_to_string(project.root().join("runs.log")).unwrap_or_default();
    let mut runs = BTreeMap::new();
    for id in log.lines().filter(|l| !l.is_empty()) {
        *runs.entry(id.to_owned()).or_default() += 1;
    }
    runs
}

/// Checks that every job completed exactly once in its record and ran at least once; returns
/// how many jobs ran more than once.
async fn every_job_completed_once(
    backend: &RedisBackend,
    ids: &[JobId],
    project: &Project,
) -> usize {
    let counts = backend.counts(QUEUE).await.unwrap();
    assert_eq!(counts.completed, ids.len() as u64, "{counts:?}");
    assert_eq!(
        (counts.waiting, counts.active, counts.delayed, counts.dead),
        (0, 0, 0, 0),
        "{counts:?}"
    );
    let runs = runs(project);
    for id in ids {
        let job: Job = backend.get(id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Completed, "{job:?}");
        let passed = job.attempts.iter().filter(|a| a.error.is_none()).count();
        assert_eq!(passed, 1, "job {id} completed {passed} times: {job:?}");
        assert!(
            runs.get(&id.0).is_some_and(|n| *n >= 1),
            "job {id} never ran"
        );
    }
    assert_eq!(runs.len(), ids.len(), "runs of unknown jobs: {runs:?}");
    runs.values().filter(|n| **n > 1).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_lose_no_job_while_one_is_killed_every_few_seconds() {
    const JOBS: usize = 1200;
    const EVERY: Duration = Duration::from_secs(2);
    let redis = RedisServer::start().unwrap();
    let project = project(&redis);
    let (backend, ids) = add_jobs(&redis, JOBS).await;

    let mut workers: Vec<Server> = (0..3).map(|n| worker(&project, n, 0)).collect();
    let started = Instant::now();
    let mut kills = 0;
    while finished(&backend).await < JOBS as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "only {} of {JOBS} jobs finished after {kills} kills",
            finished(&backend).await
        );
        tokio::time::sleep(EVERY).await;
        let n = kills % workers.len();
        let victim = std::mem::replace(&mut workers[n], worker(&project, n, kills + 1));
        victim.kill();
        kills += 1;
    }
    let took = started.elapsed();
    for server in workers {
        let (status, log) = server.stop();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    }

    let twice = every_job_completed_once(&backend, &ids, &project).await;
    let total: usize = runs(&project).values().sum();
    eprintln!(
        "chaos: {JOBS} jobs on 3 workers in {took:.1?}, {kills} SIGKILLs; {twice} jobs ran more \
         than once ({} runs in all)",
        total
    );
    assert!(
        kills >= 3,
        "the run ended before every worker was killed once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_resume_after_redis_restarts_and_lose_nothing() {
    const JOBS: usize = 600;
    let append_only = ServerOptions {
        append_only: true,
        ..ServerOptions::default()
    };
    let mut redis = RedisServer::start_with(append_only).unwrap();
    let project = project(&redis);
    let (backend, ids) = add_jobs(&redis, JOBS).await;
    let workers: Vec<Server> = (0..2).map(|n| worker(&project, n, 0)).collect();

    // Let about a third of the jobs finish, then take Redis away mid-run.
    let third = (JOBS / 3) as u64;
    let waited = Instant::now();
    while completed(&backend).await < Some(third) {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the run did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.kill().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart().unwrap();
    let restarted = Instant::now();
    let before = loop {
        if let Some(done) = completed(&backend).await {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let resumed = loop {
        let done = completed(&backend).await.unwrap_or(0);
        if done > before || done == JOBS as u64 {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(60),
            "workers never resumed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    while completed(&backend).await < Some(JOBS as u64) {
        assert!(
            restarted.elapsed() < Duration::from_secs(90),
            "the run never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for server in workers {
        let (status, log) = server.stop();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
        // The backend says that Redis went away and that it is back a few times at most, not
        // once per job. FIXME: it should be exactly once each; a request that succeeded just
        // before the kill can report "reachable again" after the first failure, so today the
        // pair may show twice. The worker pool also warns about each failed poll (about once
        // a second per queue) while Redis is away.
        let lost = log.matches("lost the connection to redis").count();
        let back = log.matches("redis is reachable again").count();
        assert!((1..=3).contains(&lost) && (1..=3).contains(&back), "{log}");
        assert!(
            log.rfind("lost the connection") < log.rfind("reachable again"),
            "{log}"
        );
    }
    let twice = every_job_completed_once(&backend, &ids, &project).await;
    eprintln!(
        "redis restart: {JOBS} jobs, {before} done when redis came back, first new completion \
         {resumed:.1?} after the restart; {twice} jobs ran more than once"
    );
}
