//! Enqueue-to-start latency at a steady rate, on the embedded backend or on Redis.
//!
//! A producer adds one job at a time on a fixed schedule; each job carries the wall-clock
//! time (µs since the epoch) taken just before its `add` call, and the handler records how
//! long ago that was when it starts. The producer and the worker share one process and so
//! one SQLite connection (or one Redis connection), as an embedding application would.

use crate::machine::CpuClock;
use crate::stats::percentile;
use anyhow::{Context, bail, ensure};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use smartworker_core::{Job, JobFailure, NewJob, QueueBackend};
use smartworker_handler::handler_fn;
use smartworker_worker::{Worker, WorkerOptions};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The queue every run uses.
const QUEUE: &str = "latency";

/// The payload field holding the enqueue time.
const ENQUEUED_FIELD: &str = "enqueued_us";

/// How long the jobs still queued when the producer stops may take to start.
const DRAIN: Duration = Duration::from_secs(30);

/// Arguments of `latency`.
#[derive(Args, Debug)]
pub struct LatencyArgs {
    /// Jobs added per second.
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// How long the producer runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// The worker's concurrency.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Run on this Redis (`redis://127.0.0.1:PORT`) instead of a SQLite file.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Where to write the JSON.
    #[arg(long)]
    pub out: PathBuf,
}

/// What one latency run measured; times in milliseconds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Latency {
    /// The rate asked for, jobs per second.
    pub target_rate: u32,
    /// The rate the producer kept, jobs per second.
    pub achieved_rate: f64,
    /// How long the producer ran, in seconds.
    pub secs: u64,
    /// The worker's concurrency.
    pub concurrency: usize,
    /// Jobs measured.
    pub jobs: usize,
    /// Median enqueue-to-start time.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The slowest start.
    pub max_ms: f64,
    /// The median time one `add` call took, as the producer saw it.
    pub add_p50_ms: f64,
    /// The 99th percentile of the time one `add` call took.
    pub add_p99_ms: f64,
    /// CPU time of this process per job, in µs.
    pub cpu_us_per_job: f64,
    /// Cores that other processes of the machine kept busy while the producer ran.
    pub other_cores: f64,
}

/// Runs the producer for `args.secs` at `args.rate` and collects the start delays.
///
/// # Errors
/// When the queue file cannot be made, an `add` fails, or the queued jobs do not all start
/// within 30 s of the producer's end.
pub async fn run(args: &LatencyArgs) -> anyhow::Result<Latency> {
    ensure!(args.rate > 0, "--rate must be at least 1");
    let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let backend = crate::backend::open(args.redis_url.as_deref(), dir.path()).await?;

    let delays = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&delays);
    let handler = handler_fn(move |job: Job| {
        let recorder = Arc::clone(&recorder);
        async move { record_start(&job, &recorder) }
    });
    let opts = WorkerOptions {
        concurrency: args.concurrency,
        ..WorkerOptions::default()
    };
    let worker = Worker::spawn(Arc::clone(&backend), QUEUE, Arc::new(handler), opts);

    let cpu = CpuClock::start()?;
    let produced = produce(&backend, args).await;
    let (own_us, child_us, machine_us) = cpu.used_us()?;
    let total = args.rate as usize * args.secs as usize;
    let drained = wait_for_starts(&delays, total).await;
    worker.shutdown().await;
    let produced = produced?;
    drained?;

    let delays = lock(&delays).clone();
    let mut result = summarise(args, &produced, delays);
    result.cpu_us_per_job = own_us / result.jobs.max(1) as f64;
    let other_us = (machine_us - own_us - child_us).max(0.0);
    result.other_cores = other_us / 1e6 / produced.elapsed.as_secs_f64();
    Ok(result)
}

/// What the producer saw: how long it ran and how long each `add` took (µs).
struct Produced {
    elapsed: Duration,
    add_us: Vec<u64>,
}

/// Adds `rate × secs` jobs, job `i` at `i / rate` seconds after the start.
async fn produce(backend: &Arc<dyn QueueBackend>, args: &LatencyArgs) -> anyhow::Result<Produced> {
    let total = u64::from(args.rate) * args.secs;
    let gap = Duration::from_secs(1) / args.rate;
    let started = tokio::time::Instant::now();
    let mut add_us = Vec::new();
    for i in 0..total {
        let due = started + gap * u32::try_from(i).context("too many jobs")?;
        tokio::time::sleep_until(due).await;
        let job = NewJob::new(QUEUE, "tick", json!({ ENQUEUED_FIELD: now_us() }));
        let before = Instant::now();
        backend.add(job).await?;
        add_us.push(micros(before.elapsed()));
    }
    Ok(Produced {
        elapsed: started.elapsed(),
        add_us,
    })
}

fn record_start(job: &Job, delays: &Mutex<Vec<u64>>) -> Result<Value, JobFailure> {
    let Some(enqueued) = job.data.get(ENQUEUED_FIELD).and_then(Value::as_u64) else {
        return Err(JobFailure::new(format!(
            "job {} has no {ENQUEUED_FIELD}",
            job.id
        )));
    };
    lock(delays).push(now_us().saturating_sub(enqueued));
    Ok(Value::Null)
}

async fn wait_for_starts(delays: &Mutex<Vec<u64>>, total: usize) -> anyhow::Result<()> {
    let until = Instant::now() + DRAIN;
    loop {
        let started = lock(delays).len();
        if started >= total {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("only {started} of {total} jobs started within {DRAIN:?} of the last add");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn summarise(args: &LatencyArgs, produced: &Produced, mut delays: Vec<u64>) -> Latency {
    delays.sort_unstable();
    let mut add_us = produced.add_us.clone();
    add_us.sort_unstable();
    let ms = |us: u64| us as f64 / 1000.0;
    Latency {
        target_rate: args.rate,
        achieved_rate: add_us.len() as f64 / produced.elapsed.as_secs_f64(),
        secs: args.secs,
        concurrency: args.concurrency,
        jobs: delays.len(),
        p50_ms: ms(percentile(&delays, 50.0)),
        p90_ms: ms(percentile(&delays, 90.0)),
        p99_ms: ms(percentile(&delays, 99.0)),
        max_ms: ms(delays.last().copied().unwrap_or(0)),
        add_p50_ms: ms(percentile(&add_us, 50.0)),
        add_p99_ms: ms(percentile(&add_us, 99.0)),
        cpu_us_per_job: 0.0,
        other_cores: 0.0,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_us() -> u64 {
    micros(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn short_run_measures_every_job_it_added() {
        let args = LatencyArgs {
            rate: 200,
            secs: 1,
            concurrency: 8,
            redis_url: None,
            out: PathBuf::new(),
        };
        let result = run(&args).await.unwrap();
        assert_eq!(result.jobs, 200);
        assert!(result.p50_ms <= result.p99_ms && result.p99_ms <= result.max_ms);
        // How fast the producer kept up depends on the machine's load; only its presence is
        // checked here (speed belongs to the benchmark's report).
        assert!(result.achieved_rate > 0.0, "{}", result.achieved_rate);
    }

    #[test]
    fn job_without_its_enqueue_time_fails() {
        let new = NewJob::new(QUEUE, "tick", json!({}));
        let job = Job::stored(smartworker_core::JobId("7".to_owned()), new, 0);
        let delays = Mutex::new(Vec::new());
        let err = record_start(&job, &delays).unwrap_err();
        assert_eq!(err.message, "job 7 has no enqueued_us");
        assert!(lock(&delays).is_empty());
    }
}
