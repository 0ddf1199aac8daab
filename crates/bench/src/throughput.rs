//! Throughput: how many no-op jobs per second one worker completes, on the embedded backend
//! or on Redis (`--redis-url`).
//!
//! Each run uses a fresh queue file in its own temporary directory, or fresh Redis keys. The jobs are added with
//! `add_bulk` before the clock starts; the clock runs from `Worker::spawn` until the worker
//! has recorded the last job as completed in SQLite. A run fails rather than report a number
//! when any attempt fails or the run exceeds its deadline.
//!
//! Beside the rate, each run records the CPU time it used per job (this process, and the
//! handler processes it waited for): on a machine shared with other work the rate moves with
//! the load, while the CPU cost per job moves much less.

use crate::machine::{self, CpuClock};
use crate::stats::median;
use anyhow::{Context, bail, ensure};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use smartworker_core::{
    Attempt, ClaimRequest, FinishRequest, Handler, Job, JobId, NewJob, QueueBackend,
};
use smartworker_handler::{
    CommandHandler, CommandSpec, PersistentCommandHandler, PersistentOptions, handler_fn,
};
use smartworker_worker::{Worker, WorkerOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The queue every run uses.
const QUEUE: &str = "bench";

/// Jobs per `add_bulk` call while filling the queue.
const BULK_CHUNK: usize = 5_000;

/// How often the clock looks at the worker's completed count.
const POLL: Duration = Duration::from_millis(1);

/// Which handler runs the jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandlerKind {
    /// An async Rust function (`handler_fn`) returning `null`.
    Rust,
    /// `CommandHandler`: one process of `--program` per job.
    Command,
    /// `PersistentCommandHandler`: `concurrency` long-lived processes of `--program`, one
    /// JSON line per job each way.
    Persistent,
    /// No worker and no handler: batches of `concurrency` jobs claimed and finished straight
    /// on the backend, one after the other; the backend's own cost.
    Direct,
}

/// Arguments of `throughput`.
#[derive(Args, Debug)]
pub struct ThroughputArgs {
    /// A name for this series in the results, such as `rust` or `bin-true`.
    #[arg(long)]
    pub label: String,
    /// Which handler runs the jobs.
    #[arg(long, value_enum)]
    pub handler: HandlerKind,
    /// The program a command handler starts per job.
    #[arg(long, default_value = "/bin/true")]
    pub program: String,
    /// An argument of the program; repeat for more.
    #[arg(long = "arg", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Jobs per run.
    #[arg(long, default_value_t = 50_000)]
    pub jobs: usize,
    /// Worker concurrency levels to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64, 256])]
    pub concurrency: Vec<usize>,
    /// Runs per level; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// The longest one run may take, in seconds.
    #[arg(long, default_value_t = 60)]
    pub deadline_secs: u64,
    /// Run on this Redis (`redis://127.0.0.1:PORT`) instead of a SQLite file.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Where to write the JSON.
    #[arg(long)]
    pub out: PathBuf,
}

/// One series: a handler measured at several concurrency levels.
#[derive(Debug, Serialize, Deserialize)]
pub struct Throughput {
    /// The series' name.
    pub label: String,
    /// Which handler ran the jobs.
    pub kind: HandlerKind,
    /// What runs each job, in words.
    pub handler: String,
    /// `sqlite` or `redis`.
    #[serde(default)]
    pub backend: String,
    /// Jobs per run.
    pub jobs: usize,
    /// One entry per concurrency level.
    pub levels: Vec<Level>,
}

/// The runs at one concurrency level.
#[derive(Debug, Serialize, Deserialize)]
pub struct Level {
    /// The worker's concurrency.
    pub concurrency: usize,
    /// Jobs per second of each run, in the order they ran.
    pub jobs_per_sec: Vec<f64>,
    /// The median of `jobs_per_sec`.
    pub median_jobs_per_sec: f64,
    /// Jobs per second that `add_bulk` stored while filling the queue (median of the runs).
    pub median_bulk_add_per_sec: f64,
    /// CPU time of this process per job, in µs, user plus system (median of the runs).
    pub median_cpu_us_per_job: f64,
    /// CPU time of the handler processes per job, in µs (median of the runs).
    pub median_child_cpu_us_per_job: f64,
    /// Cores that other processes of the machine kept busy during the runs (median).
    pub median_other_cores: f64,
    /// The 1-minute load average after the level's last run.
    pub load_after: f64,
}

/// One timed run.
struct Run {
    jobs_per_sec: f64,
    bulk_add_per_sec: f64,
    cpu_us_per_job: f64,
    child_cpu_us_per_job: f64,
    other_cores: f64,
}

/// Measures every level of `args`, `args.repeats` runs each.
///
/// # Errors
/// When a queue file cannot be made, a job fails, or a run passes its deadline.
pub async fn run(args: &ThroughputArgs) -> anyhow::Result<Throughput> {
    ensure!(
        args.jobs > 0,
        "--jobs must be at least 1, not {}",
        args.jobs
    );
    ensure!(args.repeats > 0, "--repeats must be at least 1");
    let mut levels = Vec::new();
    for &concurrency in &args.concurrency {
        levels.push(level(args, concurrency).await?);
    }
    Ok(Throughput {
        label: args.label.clone(),
        kind: args.handler,
        handler: describe_handler(args),
        backend: crate::backend::name(args.redis_url.as_deref()).to_owned(),
        jobs: args.jobs,
        levels,
    })
}

async fn level(args: &ThroughputArgs, concurrency: usize) -> anyhow::Result<Level> {
    let mut runs = Vec::new();
    for _ in 0..args.repeats {
        let run = one_run(args, concurrency)
            .await
            .with_context(|| format!("{} at concurrency {concurrency}", args.label))?;
        eprintln!(
            "  {:<12} concurrency {concurrency:>4}: {:>9.0} jobs/s",
            args.label, run.jobs_per_sec
        );
        runs.push(run);
    }
    let of = |f: fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    Ok(Level {
        concurrency,
        median_jobs_per_sec: of(|r| r.jobs_per_sec),
        median_bulk_add_per_sec: of(|r| r.bulk_add_per_sec),
        median_cpu_us_per_job: of(|r| r.cpu_us_per_job),
        median_child_cpu_us_per_job: of(|r| r.child_cpu_us_per_job),
        median_other_cores: of(|r| r.other_cores),
        load_after: machine::load()?[0],
        jobs_per_sec: runs.iter().map(|r| r.jobs_per_sec).collect(),
    })
}

async fn one_run(args: &ThroughputArgs, concurrency: usize) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let backend = crate::backend::open(args.redis_url.as_deref(), dir.path()).await?;
    let bulk_add_per_sec = fill(&backend, args.jobs).await?;

    let cpu = CpuClock::start()?;
    let elapsed = match args.handler {
        HandlerKind::Direct => drive_direct(&backend, args.jobs, concurrency).await?,
        _ => drive_worker(args, &backend, concurrency, dir.path()).await?,
    };
    let (cpu_us, child_cpu_us, machine_us) = cpu.used_us()?;
    let other_us = (machine_us - cpu_us - child_cpu_us).max(0.0);

    // The clock stopped on the worker's count; the file must agree with it.
    let counts = backend.counts(QUEUE).await?;
    ensure!(
        counts.completed == args.jobs as u64,
        "the queue file holds {} completed jobs, not {}",
        counts.completed,
        args.jobs
    );
    let jobs = args.jobs as f64;
    Ok(Run {
        jobs_per_sec: jobs / elapsed.as_secs_f64(),
        bulk_add_per_sec,
        cpu_us_per_job: cpu_us / jobs,
        child_cpu_us_per_job: child_cpu_us / jobs,
        other_cores: other_us / 1e6 / elapsed.as_secs_f64(),
    })
}

/// Runs a worker until it has recorded every job and returns the time from its start until
/// then (its shutdown is not timed; its CPU is counted).
async fn drive_worker(
    args: &ThroughputArgs,
    backend: &Arc<dyn QueueBackend>,
    concurrency: usize,
    cwd: &Path,
) -> anyhow::Result<Duration> {
    let opts = WorkerOptions {
        concurrency,
        ..WorkerOptions::default()
    };
    let handler = make_handler(args, cwd, concurrency).await?;
    let started = Instant::now();
    let worker = Worker::spawn(Arc::clone(backend), QUEUE, handler, opts);
    let waited = wait_for_all(&worker, args.jobs, Duration::from_secs(args.deadline_secs)).await;
    let elapsed = started.elapsed();
    worker.shutdown().await;
    waited.map(|()| elapsed)
}

/// Claims and finishes batches of `batch` jobs until `jobs` are completed; returns how long
/// that took.
async fn drive_direct(
    backend: &Arc<dyn QueueBackend>,
    jobs: usize,
    batch: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut done = 0;
    while done < jobs {
        let req = ClaimRequest {
            queue: QUEUE,
            worker: "direct",
            max: batch,
            lock: Duration::from_secs(30),
        };
        let claimed = backend.claim(req).await?;
        ensure!(
            !claimed.is_empty(),
            "the queue ran dry after {done} of {jobs} jobs"
        );
        done += claimed.len();
        let finishes = claimed
            .into_iter()
            .map(|active| FinishRequest {
                attempt: Attempt {
                    number: active.job.attempts_made,
                    worker: "direct".to_owned(),
                    started_at: active.job.run_at,
                    finished_at: active.job.run_at,
                    error: None,
                    stack: None,
                },
                id: active.job.id,
                token: active.token,
                outcome: Ok(Value::Null),
            })
            .collect();
        backend.finish(finishes).await?;
    }
    Ok(started.elapsed())
}

/// Adds `jobs` no-op jobs in chunks and returns how many per second were stored.
async fn fill(backend: &Arc<dyn QueueBackend>, jobs: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut added = 0;
    while added < jobs {
        let n = BULK_CHUNK.min(jobs - added);
        let chunk = (added..added + n)
            .map(|i| NewJob::new(QUEUE, "noop", json!({ "i": i })))
            .collect();
        backend.add_bulk(chunk).await?;
        added += n;
    }
    Ok(jobs as f64 / started.elapsed().as_secs_f64())
}

/// Waits until the worker has recorded `jobs` completions; fails on a failed attempt.
async fn wait_for_all(worker: &Worker, jobs: usize, deadline: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    loop {
        let stats = worker.stats();
        if stats.failed > 0 {
            bail!(
                "{} attempts failed; a no-op job must not fail",
                stats.failed
            );
        }
        if stats.completed >= jobs as u64 {
            return Ok(());
        }
        if Instant::now() > until {
            bail!(
                "only {} of {jobs} jobs completed within {}s",
                stats.completed,
                deadline.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The handler of a run. A persistent pool is started and has answered one warm-up job per
/// process before the clock starts, so the rate is its steady state rather than its start-up.
async fn make_handler(
    args: &ThroughputArgs,
    cwd: &Path,
    concurrency: usize,
) -> anyhow::Result<Arc<dyn Handler>> {
    let argv: Vec<&str> = args.args.iter().map(String::as_str).collect();
    let spec = CommandSpec::new(args.program.clone(), &argv, cwd);
    Ok(match args.handler {
        HandlerKind::Rust | HandlerKind::Direct => {
            Arc::new(handler_fn(|_job| async { Ok(Value::Null) }))
        }
        HandlerKind::Command => Arc::new(CommandHandler::new(spec)),
        HandlerKind::Persistent => {
            let pool = PersistentCommandHandler::new(spec, PersistentOptions::new(concurrency));
            pool.prestart()
                .context("cannot start the persistent handler's processes")?;
            let pool: Arc<dyn Handler> = Arc::new(pool);
            warm_up(&pool, concurrency).await?;
            pool
        }
    })
}

/// Runs `n` jobs at once through `handler`, outside any queue, so each of its `n` processes
/// has loaded its interpreter and answered once.
async fn warm_up(handler: &Arc<dyn Handler>, n: usize) -> anyhow::Result<()> {
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..n {
        let handler = Arc::clone(handler);
        let job = Job::stored(
            JobId(format!("warm-up-{i}")),
            NewJob::new(QUEUE, "warm-up", json!({ "i": i })),
            0,
        );
        runs.spawn(async move { handler.run(&job).await });
    }
    while let Some(done) = runs.join_next().await {
        if let Err(failure) = done.context("a warm-up job panicked")? {
            bail!("a warm-up job failed: {}", failure.message);
        }
    }
    Ok(())
}

fn describe_handler(args: &ThroughputArgs) -> String {
    match args.handler {
        HandlerKind::Rust => "handler_fn returning null".to_owned(),
        HandlerKind::Direct => "no worker: claim and finish batches on the backend".to_owned(),
        HandlerKind::Command | HandlerKind::Persistent => {
            let mut words = vec![args.program.clone()];
            words.extend(args.args.iter().map(|a| shell_quote(a)));
            let kind = match args.handler {
                HandlerKind::Persistent => "PersistentCommandHandler",
                _ => "CommandHandler",
            };
            format!("{kind}: {}", words.join(" "))
        }
    }
}

/// `word` as a shell would need it, for display only.
fn shell_quote(word: &str) -> String {
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=".contains(c));
    if plain && !word.is_empty() {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(handler: HandlerKind, jobs: usize) -> ThroughputArgs {
        ThroughputArgs {
            label: "test".to_owned(),
            handler,
            program: "/bin/sh".to_owned(),
            args: vec!["-c".to_owned(), "echo null".to_owned()],
            jobs,
            concurrency: vec![4],
            repeats: 1,
            deadline_secs: 30,
            redis_url: None,
            out: PathBuf::new(),
        }
    }

    #[tokio::test]
    async fn rust_run_completes_every_job_and_reports_a_rate() {
        let result = run(&args(HandlerKind::Rust, 300)).await.unwrap();
        let level = &result.levels[0];
        assert_eq!(level.concurrency, 4);
        assert_eq!(level.jobs_per_sec.len(), 1);
        assert!(level.median_jobs_per_sec > 0.0);
        assert!(level.median_bulk_add_per_sec > 0.0);
        assert!(level.median_cpu_us_per_job > 0.0);
    }

    #[tokio::test]
    async fn direct_run_completes_every_job_without_a_worker() {
        let result = run(&args(HandlerKind::Direct, 250)).await.unwrap();
        assert_eq!(result.kind, HandlerKind::Direct);
        assert!(result.levels[0].median_jobs_per_sec > 0.0);
    }

    #[tokio::test]
    async fn command_run_starts_a_process_per_job() {
        let result = run(&args(HandlerKind::Command, 20)).await.unwrap();
        assert_eq!(result.handler, "CommandHandler: /bin/sh -c 'echo null'");
        assert!(result.levels[0].median_jobs_per_sec > 0.0);
        assert!(result.levels[0].median_child_cpu_us_per_job > 0.0);
    }

    #[tokio::test]
    async fn persistent_run_on_redis_completes_every_job_on_prestarted_processes() {
        let redis = smartworker_queue_redis::testing::RedisServer::start().unwrap();
        let mut persistent = args(HandlerKind::Persistent, 200);
        persistent.program = "python3".to_owned();
        persistent.args = vec![
            "-c".to_owned(),
            "import json, sys\nfor line in sys.stdin:\n    \
             print(json.dumps({'id': json.loads(line)['id'], 'ok': True}), flush=True)"
                .to_owned(),
        ];
        persistent.redis_url = Some(redis.url());
        let result = run(&persistent).await.unwrap();
        assert_eq!(result.backend, "redis");
        assert!(
            result
                .handler
                .starts_with("PersistentCommandHandler: python3")
        );
        assert!(result.levels[0].median_jobs_per_sec > 0.0);
    }

    #[tokio::test]
    async fn failing_command_fails_the_run_instead_of_timing_it() {
        let mut failing = args(HandlerKind::Command, 5);
        failing.args = vec!["-c".to_owned(), "exit 3".to_owned()];
        let err = run(&failing).await.unwrap_err();
        assert!(format!("{err:#}").contains("attempts failed"), "{err:#}");
    }
}
