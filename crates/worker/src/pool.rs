//! One worker: a fetch loop, a task per running job, a finisher that records results in
//! batches, and an upkeep task that renews locks and recovers stalled jobs.
//!
//! Shutdown is in two steps. `stop` ends fetching and lets running jobs finish within the
//! grace period; when the grace period ends, the remaining jobs are interrupted and handed
//! back to the queue without using an attempt. Either way every job the worker took is
//! recorded before [`Worker::shutdown`] returns.

use serde::Serialize;
use smartworker_core::{
    ActiveJob, Attempt, ClaimRequest, FinishOutcome, FinishRequest, Handler, JobFailure, JobId,
    QueueBackend,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

/// The most attempts recorded in one backend call.
const FINISH_BATCH: usize = 512;

/// How often a failed `finish` is tried again before the jobs are left to stalled recovery.
const FINISH_TRIES: u32 = 30;

/// What a worker may be tuned with.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The id recorded with every lock; unique per worker.
    pub worker_id: String,
    /// How many jobs run at once.
    pub concurrency: usize,
    /// How long a lock lasts; it is renewed at half this while the job runs.
    pub lock: Duration,
    /// How often jobs whose worker died are looked for.
    pub stalled_interval: Duration,
    /// The longest idle wait before the queue is looked at again.
    pub idle_poll: Duration,
    /// How long running jobs may take to finish after shutdown starts.
    pub shutdown_grace: Duration,
    /// The timeout of a job that sets none.
    pub default_timeout: Option<Duration>,
    /// The pause between tries of recording results the store refused; after 30 tries the
    /// jobs are left to stalled recovery.
    pub finish_retry_delay: Duration,
    /// Where to send progress events, for displays and streams.
    pub events: Option<broadcast::Sender<WorkerEvent>>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            worker_id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            concurrency: 1,
            lock: Duration::from_secs(30),
            stalled_interval: Duration::from_secs(15),
            idle_poll: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
            default_timeout: None,
            finish_retry_delay: Duration::from_secs(1),
            events: None,
        }
    }
}

/// What a worker reports as jobs move.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// An attempt started.
    Started {
        /// The job.
        job_id: JobId,
        /// Its queue.
        queue: String,
        /// Its name.
        name: String,
        /// The attempt's number, from 1.
        attempt: u32,
    },
    /// An attempt ended and was recorded.
    Finished {
        /// The job.
        job_id: JobId,
        /// Its queue.
        queue: String,
        /// The attempt's number.
        attempt: u32,
        /// The error when the attempt failed.
        error: Option<String>,
        /// Where the job went.
        outcome: FinishOutcome,
    },
}

/// Counts of what a worker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerStats {
    /// Attempts that completed their job.
    pub completed: u64,
    /// Attempts that failed (retried or dead-lettered).
    pub failed: u64,
    /// Attempts whose lock had passed to another worker; their result was dropped.
    pub lock_lost: u64,
    /// Jobs handed back to the queue at shutdown.
    pub released: u64,
}

#[derive(Default)]
struct Counters {
    completed: AtomicU64,
    failed: AtomicU64,
    lock_lost: AtomicU64,
    released: AtomicU64,
}

struct Shared {
    backend: Arc<dyn QueueBackend>,
    queue: String,
    handler: Arc<dyn Handler>,
    opts: WorkerOptions,
    /// Lock tokens of the jobs running now, for renewal.
    held: Mutex<HashMap<JobId, String>>,
    /// Tokens of runs that have ended and whose result (or hand-back) is being recorded: their
    /// locks are still renewed, but one the store no longer knows is not a lost lock, since
    /// the job may just have been finished by that very record.
    finishing: Mutex<HashSet<String>>,
    counters: Counters,
    /// Ends fetching; running jobs go on.
    stop: CancellationToken,
    /// Interrupts running jobs once the grace period is over.
    interrupt: CancellationToken,
}

impl Shared {
    fn emit(&self, event: WorkerEvent) {
        if let Some(events) = &self.opts.events {
            // No subscriber is not an error.
            let _ = events.send(event);
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, String>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops renewing the lock of one run. The same job may already run again here under a
    /// new token (its old lock expired and this worker claimed it anew); that run keeps its
    /// renewal.
    fn release_hold(&self, id: &JobId, token: &str) {
        release_hold(&mut self.held(), id, token);
        self.finishing().remove(token);
    }

    fn finishing(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.finishing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ids among `lost` whose run is still going under the token that was renewed: the
    /// rest ended meanwhile, and their record tells whether their lock held.
    fn lost_while_running(&self, renewed: &[(JobId, String)], lost: Vec<JobId>) -> Vec<JobId> {
        lost_while_running(&self.held(), &self.finishing(), renewed, lost)
    }

    fn stats(&self) -> WorkerStats {
        let c = &self.counters;
        WorkerStats {
            completed: c.completed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            lock_lost: c.lock_lost.load(Ordering::Relaxed),
            released: c.released.load(Ordering::Relaxed),
        }
    }
}

/// What a job task tells the finisher.
enum Report {
    Finish(FinishRequest),
    Release { id: JobId, token: String },
}

/// A running worker on one queue.
pub struct Worker {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Starts a worker on `queue` that runs jobs with `handler`.
    pub fn spawn(
        backend: Arc<dyn QueueBackend>,
        queue: impl Into<String>,
        handler: Arc<dyn Handler>,
        opts: WorkerOptions,
    ) -> Worker {
        let queue = queue.into();
        let span = info_span!("worker", queue = %queue, worker = %opts.worker_id);
        let shared = Arc::new(Shared {
            backend,
            queue,
            handler,
            opts,
            held: Mutex::default(),
            finishing: Mutex::default(),
            counters: Counters::default(),
            stop: CancellationToken::new(),
            interrupt: CancellationToken::new(),
        });
        let task = tokio::spawn(run(Arc::clone(&shared)).instrument(span));
        Worker { shared, task }
    }

    /// The token that starts a graceful shutdown when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.shared.stop.clone()
    }

    /// What the worker has done so far.
    pub fn stats(&self) -> WorkerStats {
        self.shared.stats()
    }

    /// Stops fetching, lets running jobs end (within the grace period) and returns the stats.
    pub async fn shutdown(self) -> WorkerStats {
        self.shared.stop.cancel();
        self.join().await
    }

    /// Waits until the worker has stopped (after its stop token is cancelled).
    pub async fn join(self) -> WorkerStats {
        if let Err(err) = self.task.await {
            error!(error = %err, "worker task ended abnormally");
        }
        self.shared.stats()
    }
}

async fn run(shared: Arc<Shared>) {
    info!(concurrency = shared.opts.concurrency, "worker started");
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let finisher = tokio::spawn(finisher(Arc::clone(&shared), done_rx).in_current_span());
    let upkeep_stop = CancellationToken::new();
    let upkeep = tokio::spawn(upkeep(Arc::clone(&shared), upkeep_stop.clone()).in_current_span());

    let mut jobs = JoinSet::new();
    fetch_loop(&shared, &done_tx, &mut jobs).await;

    // Let running jobs end; after the grace period, interrupt and hand back the rest.
    let drain = async { while jobs.join_next().await.is_some() {} };
    if tokio::time::timeout(shared.opts.shutdown_grace, drain)
        .await
        .is_err()
    {
        warn!(
            running = jobs.len(),
            "grace period over; interrupting running jobs"
        );
        shared.interrupt.cancel();
        while jobs.join_next().await.is_some() {}
    }
    drop(done_tx);
    if let Err(err) = finisher.await {
        error!(error = %err, "finisher ended abnormally");
    }
    upkeep_stop.cancel();
    let _ = upkeep.await;
    info!(stats = ?shared.stats(), "worker stopped");
}

/// Takes permits for free slots, claims that many jobs, and starts a task for each.
async fn fetch_loop(
    shared: &Arc<Shared>,
    done: &mpsc::UnboundedSender<Report>,
    jobs: &mut JoinSet<()>,
) {
    let slots = Arc::new(Semaphore::new(shared.opts.concurrency.max(1)));
    let mut outage = Outage::default();
    loop {
        let first = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            () = shared.stop.cancelled() => return,
        };
        // Other slots free up at the same moment under load; one yield lets them batch.
        tokio::task::yield_now().await;
        let mut permits = vec![first];
        while let Ok(p) = Arc::clone(&slots).try_acquire_owned() {
            permits.push(p);
        }
        while jobs.try_join_next().is_some() {}

        let req = ClaimRequest {
            queue: &shared.queue,
            worker: &shared.opts.worker_id,
            max: permits.len(),
            lock: shared.opts.lock,
        };
        let claimed = match shared.backend.claim(req).await {
            Ok(claimed) => {
                outage.ended("taking jobs again");
                claimed
            }
            Err(err) => {
                outage.failed("cannot take jobs; retrying every second", &err);
                drop(permits);
                pause(shared, Duration::from_secs(1)).await;
                continue;
            }
        };
        if claimed.is_empty() {
            drop(permits);
            tokio::select! {
                () = shared.backend.wait_for_work(&shared.queue, shared.opts.idle_poll) => {}
                () = shared.stop.cancelled() => return,
            }
            continue;
        }
        for (active, permit) in claimed.into_iter().zip(permits) {
            shared
                .held()
                .insert(active.job.id.clone(), active.token.clone());
            jobs.spawn(run_job(Arc::clone(shared), active, permit, done.clone()).in_current_span());
        }
    }
}

async fn pause(shared: &Shared, wait: Duration) {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = shared.stop.cancelled() => {}
    }
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Runs one attempt and reports it; holds the slot's permit until then.
async fn run_job(
    shared: Arc<Shared>,
    active: ActiveJob,
    _permit: OwnedSemaphorePermit,
    done: mpsc::UnboundedSender<Report>,
) {
    let ActiveJob { job, token } = active;
    let (id, number) = (job.id.clone(), job.attempts_made);
    let span = info_span!("job", job_id = %id, queue = %job.queue, attempt = number);
    shared.emit(WorkerEvent::Started {
        job_id: id.clone(),
        queue: job.queue.clone(),
        name: job.name.clone(),
        attempt: number,
    });
    let started_at = now_ms();
    let timeout = job
        .opts
        .timeout
        .map(Duration::from_millis)
        .or(shared.opts.default_timeout);

    let Some(outcome) = attempt(&shared, job, timeout).instrument(span).await else {
        shared.finishing().insert(token.clone());
        let _ = done.send(Report::Release { id, token });
        return;
    };
    let attempt = Attempt {
        number,
        worker: shared.opts.worker_id.clone(),
        started_at,
        finished_at: now_ms(),
        error: outcome.as_ref().err().map(|f| f.message.clone()),
        stack: outcome.as_ref().err().and_then(|f| f.stack.clone()),
    };
    shared.finishing().insert(token.clone());
    let _ = done.send(Report::Finish(FinishRequest {
        id,
        token,
        attempt,
        outcome,
    }));
}

/// Runs the handler in a task of its own, so a panic or a timeout becomes a failed attempt.
///
/// Returns `None` when the worker interrupted the job at shutdown.
async fn attempt(
    shared: &Shared,
    job: smartworker_core::Job,
    timeout: Option<Duration>,
) -> Option<Result<serde_json::Value, JobFailure>> {
    let handler = Arc::clone(&shared.handler);
    let mut task = tokio::spawn(async move { handler.run(&job).await }.in_current_span());
    let expiry = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        joined = &mut task => Some(joined.unwrap_or_else(|err| Err(join_failure(err)))),
        () = expiry => {
            task.abort();
            let ms = timeout.map_or(0, |t| t.as_millis());
            Some(Err(JobFailure::new(format!("job timed out after {ms} ms"))))
        }
        () = shared.interrupt.cancelled() => {
            task.abort();
            None
        }
    }
}

fn join_failure(err: tokio::task::JoinError) -> JobFailure {
    if !err.is_panic() {
        return JobFailure::new("handler was cancelled");
    }
    let panic = err.into_panic();
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".to_owned());
    JobFailure::with_stack(
        format!("handler panicked: {text}"),
        format!("panicked at: {text}"),
    )
}

/// Records finished attempts in batches, in the order they ended.
async fn finisher(shared: Arc<Shared>, mut done: mpsc::UnboundedReceiver<Report>) {
    while let Some(first) = done.recv().await {
        let mut finishes = Vec::new();
        let mut releases = Vec::new();
        let mut next = Some(first);
        while let Some(report) = next.take() {
            match report {
                Report::Finish(req) => finishes.push(req),
                Report::Release { id, token } => releases.push((id, token)),
            }
            if finishes.len() < FINISH_BATCH {
                next = done.try_recv().ok();
            }
        }
        record_releases(&shared, releases).await;
        record_finishes(&shared, finishes).await;
    }
}

async fn record_releases(shared: &Shared, releases: Vec<(JobId, String)>) {
    for (id, token) in releases {
        shared.release_hold(&id, &token);
        let reason = "worker shut down before the job finished; job handed back";
        match shared.backend.release(&id, &token, reason).await {
            Ok(()) => {
                shared.counters.released.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => warn!(job_id = %id, error = %err, "cannot hand back job; it will stall"),
        }
    }
}

async fn record_finishes(shared: &Shared, finishes: Vec<FinishRequest>) {
    if finishes.is_empty() {
        return;
    }
    let mut tries = 0;
    let outcomes = loop {
        match shared.backend.finish(finishes.clone()).await {
            Ok(outcomes) => break outcomes,
            Err(err) if tries < FINISH_TRIES => {
                tries += 1;
                warn!(error = %err, jobs = finishes.len(), "cannot record results; retrying");
                tokio::time::sleep(shared.opts.finish_retry_delay).await;
            }
            Err(err) => {
                error!(
                    error = %err, jobs = finishes.len(),
                    "results not recorded; the jobs will run again once their locks expire"
                );
                // Renewing would keep those locks, and so the jobs, in place for ever.
                for req in &finishes {
                    shared.release_hold(&req.id, &req.token);
                }
                return;
            }
        }
    };
    for (req, outcome) in finishes.into_iter().zip(outcomes) {
        shared.release_hold(&req.id, &req.token);
        count_outcome(shared, &req, &outcome);
        shared.emit(WorkerEvent::Finished {
            job_id: req.id,
            queue: shared.queue.clone(),
            attempt: req.attempt.number,
            error: req.attempt.error,
            outcome,
        });
    }
}

fn count_outcome(shared: &Shared, req: &FinishRequest, outcome: &FinishOutcome) {
    let c = &shared.counters;
    match outcome {
        FinishOutcome::Completed => {
            c.completed.fetch_add(1, Ordering::Relaxed);
            debug!(job_id = %req.id, "job completed");
        }
        FinishOutcome::Retrying { run_at } => {
            c.failed.fetch_add(1, Ordering::Relaxed);
            debug!(job_id = %req.id, run_at, error = req.attempt.error.as_deref().unwrap_or_default(), "attempt failed; retrying");
        }
        FinishOutcome::DeadLettered { heal_job } => {
            c.failed.fetch_add(1, Ordering::Relaxed);
            warn!(
                job_id = %req.id, heal_job = ?heal_job, error = req.attempt.error.as_deref().unwrap_or_default(),
                "job used up its attempts; moved to the dead-letter queue"
            );
        }
        FinishOutcome::LockLost => {
            c.lock_lost.fetch_add(1, Ordering::Relaxed);
            warn!(job_id = %req.id, "lock lost before the result was recorded; result dropped");
        }
    }
}

/// The ids among `lost` (of the `renewed` runs) still held under the same token and not
/// finishing: only those lost their lock while running.
fn lost_while_running(
    held: &HashMap<JobId, String>,
    finishing: &HashSet<String>,
    renewed: &[(JobId, String)],
    lost: Vec<JobId>,
) -> Vec<JobId> {
    lost.into_iter()
        .filter(|id| {
            renewed.iter().any(|(renewed_id, token)| {
                renewed_id == id && held.get(id) == Some(token) && !finishing.contains(token)
            })
        })
        .collect()
}

/// Forgets the lock of the run that holds `token`, and only that run's.
fn release_hold(held: &mut HashMap<JobId, String>, id: &JobId, token: &str) {
    if held.get(id).is_some_and(|held_token| held_token == token) {
        held.remove(id);
    }
}

/// A step that runs again and again (claiming, renewing locks, checking for stalled jobs) and
/// fails while the backend is down: the operator hears it once when it starts failing and once
/// when it works again, not at every try.
#[derive(Default)]
struct Outage {
    since: Option<std::time::Instant>,
}

impl Outage {
    fn failed(&mut self, what: &str, err: &dyn std::fmt::Display) {
        if self.since.is_some() {
            debug!(error = %err, "{what}");
            return;
        }
        warn!(error = %err, "{what}");
        self.since = Some(std::time::Instant::now());
    }

    fn ended(&mut self, what: &str) {
        if let Some(since) = self.since.take() {
            info!(after_secs = since.elapsed().as_secs(), "{what}");
        }
    }
}

/// Renews the locks of running jobs and recovers jobs whose worker died.
async fn upkeep(shared: Arc<Shared>, stop: CancellationToken) {
    let mut renew = tokio::time::interval(shared.opts.lock / 2);
    let mut stalled = tokio::time::interval(shared.opts.stalled_interval);
    let (mut renew_outage, mut stalled_outage) = (Outage::default(), Outage::default());
    loop {
        tokio::select! {
            _ = renew.tick() => renew_locks(&shared, &mut renew_outage).await,
            _ = stalled.tick(), if !shared.stop.is_cancelled() => {
                recover(&shared, &mut stalled_outage).await;
            }
            () = stop.cancelled() => return,
        }
    }
}

async fn renew_locks(shared: &Shared, outage: &mut Outage) {
    let held: Vec<(JobId, String)> = shared
        .held()
        .iter()
        .map(|(id, token)| (id.clone(), token.clone()))
        .collect();
    if held.is_empty() {
        return;
    }
    match shared
        .backend
        .extend_locks(&shared.opts.worker_id, &held, shared.opts.lock)
        .await
    {
        Ok(lost) => {
            outage.ended("renewing locks again");
            let lost = shared.lost_while_running(&held, lost);
            if !lost.is_empty() {
                warn!(jobs = ?lost, "locks lost while the jobs ran");
            }
        }
        Err(err) => outage.failed("cannot renew locks", &err),
    }
}

async fn recover(shared: &Shared, outage: &mut Outage) {
    match shared.backend.recover_stalled(&shared.queue).await {
        Ok(ids) => {
            outage.ended("checking for stalled jobs again");
            if !ids.is_empty() {
                info!(jobs = ?ids, "recovered jobs whose worker stopped");
            }
        }
        Err(err) => outage.failed("cannot check for stalled jobs", &err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reported: after Redis came back, an old run's dropped result stopped the renewal of the
    /// job's new run on the same worker, and the new run was dead-lettered as stalled.
    #[test]
    fn an_old_runs_end_keeps_the_new_runs_lock_renewed() {
        let id = JobId::from("slow:12");
        let mut held = HashMap::from([(id.clone(), "second-run".to_owned())]);

        release_hold(&mut held, &id, "first-run");
        assert_eq!(held.get(&id).map(String::as_str), Some("second-run"));

        release_hold(&mut held, &id, "second-run");
        assert!(held.is_empty());
    }

    /// Reported: under load, "locks lost while the jobs ran" was logged with nothing lost: a
    /// renewal sent while those jobs' results were being recorded found them finished.
    #[test]
    fn a_job_finished_during_its_renewal_is_not_reported_lost() {
        let (running, finishing, finished) =
            (JobId::from("q:1"), JobId::from("q:2"), JobId::from("q:3"));
        let renewed: Vec<(JobId, String)> = [&running, &finishing, &finished]
            .iter()
            .map(|id| ((*id).clone(), format!("token-{}", id.0)))
            .collect();
        // The third's result was recorded and its hold released before the renewal answered.
        let held: HashMap<JobId, String> = renewed[..2].iter().cloned().collect();
        let in_flight = HashSet::from(["token-q:2".to_owned()]);
        let every_one = vec![running.clone(), finishing, finished];

        let lost = lost_while_running(&held, &in_flight, &renewed, every_one);

        assert_eq!(lost, vec![running]);
    }
}
