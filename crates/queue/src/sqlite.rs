//! The embedded queue backend: jobs in one SQLite file in WAL mode.
//!
//! Every public operation runs as one `IMMEDIATE` transaction on a single connection, so a job
//! is never half-moved: a crash leaves it either before or after the step. A worker that dies
//! leaves its jobs active under a lock that expires, and [`QueueBackend::recover_stalled`] puts
//! them back.

use crate::schema::{self, code_state, state_code};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde_json::Value;
use smartworker_core::{
    ActiveJob, Attempt, BackendError, ClaimRequest, Counts, FailureStep, FinishOutcome,
    FinishRequest, Job, JobId, JobOptions, JobState, KeepJobs, NewJob, QueueBackend, heal_job_for,
};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, broadcast};

/// The watcher thread's loop: wake the workers whenever the file's data version moves.
fn watch(watcher: &Connection, inner: &Weak<Inner>, interval: Duration) {
    let version = |conn: &Connection| -> Option<i64> {
        conn.query_row("PRAGMA data_version", [], |r| r.get(0)).ok()
    };
    let mut seen = version(watcher);
    loop {
        std::thread::sleep(interval);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let now = version(watcher);
        if now != seen {
            seen = now;
            SqliteBackend::wake_all(&inner);
        }
    }
}

/// The error recorded when a job's worker stopped renewing its lock too often.
const STALLED_TOO_OFTEN: &str = "job stalled more than allowable limit";

/// The error recorded on the attempt a dead worker left behind.
const STALLED_ATTEMPT: &str = "worker stopped renewing the job's lock (stalled); job requeued";

/// The columns [`read_job`] expects, in order.
const JOB_COLUMNS: &str = "seq, custom_id, queue, name, data, opts, state, attempts_made, \
                           attempts, result, failed_reason, created_at, run_at, finished_at";

/// Tuning for the embedded backend.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How many times a job may be recovered from a dead worker before it is dead-lettered.
    /// BullMQ's `maxStalledCount`; the default of 1 matches it.
    pub max_stalled: u32,
    /// The longest an idle worker waits before it looks for due jobs again. Jobs added by
    /// this process wake it at once, and jobs added by other processes within
    /// [`SqliteOptions::watch_interval`].
    pub poll_interval: Duration,
    /// How often the file is checked for commits of other processes (a CLI `enqueue`, a
    /// second `serve`), so their jobs start without waiting for the poll.
    pub watch_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            max_stalled: 1,
            poll_interval: Duration::from_millis(200),
            watch_interval: Duration::from_millis(20),
        }
    }
}

/// The embedded SQLite queue backend. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    /// One wake-up per queue, so a worker idle on that queue starts at once on a new job.
    wake: Mutex<HashMap<String, Arc<Notify>>>,
    /// Ids of jobs that just completed or were dead-lettered.
    finished: broadcast::Sender<JobId>,
    opts: SqliteOptions,
}

impl SqliteBackend {
    /// Opens (creating when missing) the queue file at `path`.
    ///
    /// # Errors
    /// [`BackendError::Storage`] when the file cannot be opened or was written by a newer
    /// schema.
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<Self, BackendError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                BackendError::Storage(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = Connection::open(path)
            .map_err(|e| BackendError::Storage(format!("cannot open {}: {e}", path.display())))?;
        let backend = Self::from_connection(conn, opts)?;
        backend.watch_other_writers(path)?;
        Ok(backend)
    }

    /// Starts a thread that wakes every idle worker when another connection commits to the
    /// file. SQLite's `PRAGMA data_version` on a connection of its own changes exactly then.
    /// The thread ends within one interval of the last clone of this backend being dropped.
    fn watch_other_writers(&self, path: &Path) -> Result<(), BackendError> {
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let watcher = Connection::open_with_flags(path, flags)
            .map_err(|e| BackendError::Storage(format!("cannot watch {}: {e}", path.display())))?;
        let inner = Arc::downgrade(&self.inner);
        let interval = self.inner.opts.watch_interval.max(Duration::from_millis(1));
        std::thread::Builder::new()
            .name("sqlite-watch".into())
            .spawn(move || watch(&watcher, &inner, interval))
            .map_err(|e| BackendError::Storage(format!("cannot start the file watcher: {e}")))?;
        Ok(())
    }

    /// A backend on a private in-memory database, for tests and one-shot runs.
    ///
    /// # Errors
    /// [`BackendError::Storage`] when SQLite cannot start.
    pub fn open_in_memory(opts: SqliteOptions) -> Result<Self, BackendError> {
        let conn = Connection::open_in_memory().map_err(storage)?;
        Self::from_connection(conn, opts)
    }

    fn from_connection(conn: Connection, opts: SqliteOptions) -> Result<Self, BackendError> {
        // WAL lets readers (the CLI, the dashboard) run beside the workers' writes;
        // NORMAL sync is durable across process crashes, which is the failure we guard.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(storage)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(storage)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(storage)?;
        schema::migrate(&conn).map_err(BackendError::Storage)?;
        let (finished, _) = broadcast::channel(1024);
        let inner = Inner {
            conn: Mutex::new(conn),
            wake: Mutex::default(),
            finished,
            opts,
        };
        Ok(SqliteBackend {
            inner: Arc::new(inner),
        })
    }

    /// Wakes one idle worker of every queue this process waits on.
    fn wake_all(inner: &Inner) {
        let wake = inner.wake.lock().unwrap_or_else(|p| p.into_inner());
        for notify in wake.values() {
            notify.notify_one();
        }
    }

    /// Runs `f` on the connection in a blocking thread.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &SqliteOptions) -> Result<T, BackendError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut conn = inner
                .conn
                .lock()
                .map_err(|_| BackendError::Storage("queue connection poisoned".into()))?;
            f(&mut conn, &inner.opts)
        })
        .await
        .map_err(|e| BackendError::Storage(format!("queue task failed: {e}")))?
    }

    fn notifier(&self, queue: &str) -> Arc<Notify> {
        let mut wake = self.inner.wake.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(wake.entry(queue.to_owned()).or_default())
    }

    fn wake(&self, queues: impl IntoIterator<Item = String>) {
        for queue in queues {
            self.notifier(&queue).notify_one();
        }
    }
}

fn storage(err: impl std::fmt::Display) -> BackendError {
    BackendError::Storage(err.to_string())
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The public id of a row: its custom id when it has one, else its sequence number.
fn public_id(seq: i64, custom: Option<String>) -> JobId {
    JobId(custom.unwrap_or_else(|| seq.to_string()))
}

/// Finds the row behind a public id.
fn seq_of(conn: &Connection, id: &JobId) -> Result<Option<i64>, BackendError> {
    if let Ok(seq) = id.0.parse::<i64>() {
        return Ok(Some(seq));
    }
    conn.query_row("SELECT seq FROM jobs WHERE custom_id = ?1", [&id.0], |r| {
        r.get(0)
    })
    .optional()
    .map_err(storage)
}

fn require_seq(conn: &Connection, id: &JobId) -> Result<i64, BackendError> {
    seq_of(conn, id)?.ok_or_else(|| BackendError::NotFound(id.clone()))
}

fn read_job(row: &Row<'_>) -> rusqlite::Result<Job> {
    let json_col = |i: usize| -> rusqlite::Result<Value> {
        let text: String = row.get(i)?;
        serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    let opts: JobOptions = serde_json::from_value(json_col(5)?).unwrap_or_default();
    let attempts: Vec<Attempt> = serde_json::from_value(json_col(8)?).unwrap_or_default();
    let result: Option<String> = row.get(9)?;
    Ok(Job {
        id: public_id(row.get(0)?, row.get(1)?),
        queue: row.get(2)?,
        name: row.get(3)?,
        data: json_col(4)?,
        opts,
        state: code_state(row.get(6)?),
        attempts_made: row.get(7)?,
        attempts,
        result: result.and_then(|r| serde_json::from_str(&r).ok()),
        failed_reason: row.get(10)?,
        created_at: row.get(11)?,
        run_at: row.get(12)?,
        finished_at: row.get(13)?,
    })
}

fn load_job(conn: &Connection, seq: i64) -> Result<Option<Job>, BackendError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE seq = ?1");
    conn.query_row(&sql, [seq], read_job)
        .optional()
        .map_err(storage)
}

/// Inserts one job inside an open transaction, returning its id.
fn insert_job(conn: &Connection, job: &NewJob, now: i64) -> Result<JobId, BackendError> {
    job.validate()?;
    if let Some(custom) = &job.opts.job_id {
        let existing: Option<i64> = conn
            .query_row("SELECT seq FROM jobs WHERE custom_id = ?1", [custom], |r| {
                r.get(0)
            })
            .optional()
            .map_err(storage)?;
        if existing.is_some() {
            return Ok(JobId(custom.clone()));
        }
    }
    let (state, run_at) = job.opts.first_run(now);
    let opts = serde_json::to_string(&job.opts).map_err(storage)?;
    let data = serde_json::to_string(&job.data).map_err(storage)?;
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO jobs (custom_id, queue, name, data, opts, state, priority, run_at, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(storage)?;
    stmt.execute(params![
        job.opts.job_id,
        job.queue,
        job.name,
        data,
        opts,
        state_code(state),
        job.opts.priority,
        run_at,
        now,
    ])
    .map_err(storage)?;
    Ok(public_id(conn.last_insert_rowid(), job.opts.job_id.clone()))
}

/// Moves the runnable jobs of a queue to active, inside one transaction.
fn claim_jobs(
    conn: &mut Connection,
    queue: &str,
    worker: &str,
    max: usize,
    lock: Duration,
) -> Result<Vec<ActiveJob>, BackendError> {
    let now = now_ms();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(storage)?;
    tx.prepare_cached("UPDATE jobs SET state = 0 WHERE queue = ?1 AND state = 1 AND run_at <= ?2")
        .and_then(|mut s| s.execute(params![queue, now]))
        .map_err(storage)?;
    // One statement moves the whole batch; the token is shared by the batch and checked
    // together with the row's own id.
    let token = uuid::Uuid::new_v4().simple().to_string();
    let sql = format!(
        "UPDATE jobs SET state = 2, attempts_made = attempts_made + 1, lock_token = ?1, \
         lock_worker = ?2, lock_until = ?3 WHERE seq IN (SELECT seq FROM jobs \
         WHERE queue = ?4 AND state = 0 ORDER BY priority, seq LIMIT ?5) RETURNING {JOB_COLUMNS}"
    );
    let mut claimed: Vec<ActiveJob> = {
        let mut stmt = tx.prepare_cached(&sql).map_err(storage)?;
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let until = now.saturating_add(ms(lock));
        let rows = stmt
            .query_map(params![token, worker, until, queue, limit], read_job)
            .map_err(storage)?;
        rows.map(|job| {
            job.map(|job| ActiveJob {
                job,
                token: token.clone(),
            })
        })
        .collect::<Result<_, _>>()
        .map_err(storage)?
    };
    // RETURNING gives no order; workers start jobs in priority order.
    claimed.sort_by_key(|a| {
        (
            a.job.opts.priority,
            a.job.id.0.parse::<i64>().unwrap_or(i64::MAX),
        )
    });
    tx.commit().map_err(storage)?;
    Ok(claimed)
}

/// What one finished attempt changed, for the notifications sent after commit.
struct Finished {
    outcome: FinishOutcome,
    finished_id: Option<JobId>,
    woken_queue: Option<String>,
}

impl Finished {
    /// The lock had passed on: nothing changed and nobody is told.
    fn lock_lost() -> Finished {
        Finished {
            outcome: FinishOutcome::LockLost,
            finished_id: None,
            woken_queue: None,
        }
    }
}

/// Records one finished attempt inside an open transaction.
fn finish_one(
    tx: &Connection,
    req: &FinishRequest,
    now: i64,
    retention: &mut BTreeSet<(String, JobState, KeepJobs)>,
) -> Result<Finished, BackendError> {
    let lost = Finished::lock_lost();
    let Some(seq) = seq_of(tx, &req.id)? else {
        return Ok(lost);
    };
    let attempt = serde_json::to_string(&req.attempt).map_err(storage)?;
    match &req.outcome {
        Ok(result) => {
            let result = serde_json::to_string(result).map_err(storage)?;
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE jobs SET state = 3, result = ?1, finished_at = ?2, \
                     attempts = json_insert(attempts, '$[#]', json(?3)), stalled_count = 0, \
                     lock_token = NULL, lock_worker = NULL, lock_until = NULL \
                     WHERE seq = ?4 AND state = 2 AND lock_token = ?5 RETURNING queue, opts",
                )
                .map_err(storage)?;
            let row: Option<(String, String)> = stmt
                .query_row(params![result, now, attempt, seq, req.token], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(storage)?;
            let Some((queue, opts)) = row else {
                return Ok(lost);
            };
            let opts: JobOptions = serde_json::from_str(&opts).unwrap_or_default();
            if opts.remove_on_complete != KeepJobs::default() {
                retention.insert((queue, JobState::Completed, opts.remove_on_complete));
            }
            Ok(Finished {
                outcome: FinishOutcome::Completed,
                finished_id: Some(req.id.clone()),
                woken_queue: None,
            })
        }
        Err(failure) => fail_one(tx, req, seq, &attempt, &failure.message, now, retention),
    }
}

/// Records a failed attempt: a retry after backoff, or the dead-letter queue.
fn fail_one(
    tx: &Connection,
    req: &FinishRequest,
    seq: i64,
    attempt: &str,
    message: &str,
    now: i64,
    retention: &mut BTreeSet<(String, JobState, KeepJobs)>,
) -> Result<Finished, BackendError> {
    let lost = Finished::lock_lost();
    let sql =
        format!("SELECT {JOB_COLUMNS} FROM jobs WHERE seq = ?1 AND state = 2 AND lock_token = ?2");
    let Some(job) = tx
        .query_row(&sql, params![seq, req.token], read_job)
        .optional()
        .map_err(storage)?
    else {
        return Ok(lost);
    };
    match job.after_failure(job.attempts_made, now) {
        FailureStep::Retry { run_at } => {
            let state = if run_at <= now {
                JobState::Waiting
            } else {
                JobState::Delayed
            };
            tx.prepare_cached(
                "UPDATE jobs SET state = ?1, run_at = ?2, \
                 attempts = json_insert(attempts, '$[#]', json(?3)), \
                 lock_token = NULL, lock_worker = NULL, lock_until = NULL WHERE seq = ?4",
            )
            .and_then(|mut s| s.execute(params![state_code(state), run_at, attempt, seq]))
            .map_err(storage)?;
            Ok(Finished {
                outcome: FinishOutcome::Retrying { run_at },
                finished_id: None,
                woken_queue: Some(job.queue),
            })
        }
        FailureStep::DeadLetter => {
            mark_dead(tx, seq, message, attempt, now)?;
            dead_lettered(tx, &job, now, retention)
        }
    }
}

/// Moves an active row to the dead-letter queue, recording its last attempt.
fn mark_dead(
    tx: &Connection,
    seq: i64,
    reason: &str,
    attempt: &str,
    now: i64,
) -> Result<(), BackendError> {
    tx.prepare_cached(
        "UPDATE jobs SET state = 4, failed_reason = ?1, finished_at = ?2, \
         attempts = json_insert(attempts, '$[#]', json(?3)), \
         lock_token = NULL, lock_worker = NULL, lock_until = NULL WHERE seq = ?4",
    )
    .and_then(|mut s| s.execute(params![reason, now, attempt, seq]))
    .map_err(storage)?;
    Ok(())
}

/// Puts an active row back to waiting without counting its attempt (the attempt never
/// finished), recording why; `stalls` is added to its stalled count.
fn requeue_uncounted(
    tx: &Connection,
    seq: i64,
    attempt: &str,
    stalls: u32,
) -> Result<(), BackendError> {
    tx.prepare_cached(
        "UPDATE jobs SET state = 0, attempts_made = MAX(attempts_made - 1, 0), \
         stalled_count = stalled_count + ?1, \
         attempts = json_insert(attempts, '$[#]', json(?2)), \
         lock_token = NULL, lock_worker = NULL, lock_until = NULL WHERE seq = ?3",
    )
    .and_then(|mut s| s.execute(params![stalls, attempt, seq]))
    .map_err(storage)?;
    Ok(())
}

/// Adds the healing job of a job that was just dead-lettered, in the same transaction.
fn dead_lettered(
    tx: &Connection,
    job: &Job,
    now: i64,
    retention: &mut BTreeSet<(String, JobState, KeepJobs)>,
) -> Result<Finished, BackendError> {
    if job.opts.remove_on_fail != KeepJobs::default() {
        retention.insert((job.queue.clone(), JobState::Dead, job.opts.remove_on_fail));
    }
    let heal = heal_job_for(job);
    let heal_job = heal.as_ref().map(|h| insert_job(tx, h, now)).transpose()?;
    Ok(Finished {
        outcome: FinishOutcome::DeadLettered { heal_job },
        finished_id: Some(job.id.clone()),
        woken_queue: heal.map(|h| h.queue),
    })
}

/// Deletes finished jobs beyond what their retention keeps.
fn apply_retention(
    tx: &Connection,
    queue: &str,
    state: JobState,
    keep: KeepJobs,
    now: i64,
) -> Result<(), BackendError> {
    let code = state_code(state);
    if let Some(count) = keep.count {
        tx.prepare_cached(&format!(
            "DELETE FROM jobs WHERE queue = ?1 AND state = {code} AND seq NOT IN \
                 (SELECT seq FROM jobs WHERE queue = ?1 AND state = {code} \
                  ORDER BY finished_at DESC, seq DESC LIMIT ?2)"
        ))
        .and_then(|mut s| s.execute(params![queue, i64::try_from(count).unwrap_or(i64::MAX)]))
        .map_err(storage)?;
    }
    if let Some(age) = keep.age_secs {
        let cutoff = now.saturating_sub(i64::try_from(age).unwrap_or(i64::MAX / 1000) * 1000);
        tx.prepare_cached(&format!(
            "DELETE FROM jobs WHERE queue = ?1 AND state = {code} AND finished_at < ?2"
        ))
        .and_then(|mut s| s.execute(params![queue, cutoff]))
        .map_err(storage)?;
    }
    Ok(())
}

fn finish_batch(
    conn: &mut Connection,
    done: &[FinishRequest],
) -> Result<Vec<Finished>, BackendError> {
    let now = now_ms();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(storage)?;
    let mut retention = BTreeSet::new();
    let mut finished = Vec::with_capacity(done.len());
    for req in done {
        finished.push(finish_one(&tx, req, now, &mut retention)?);
    }
    for (queue, state, keep) in retention {
        apply_retention(&tx, &queue, state, keep, now)?;
    }
    tx.commit().map_err(storage)?;
    Ok(finished)
}

/// Puts the expired jobs of a queue back to waiting, or dead-letters those that stalled too
/// often.
fn recover(
    conn: &mut Connection,
    queue: &str,
    max_stalled: u32,
) -> Result<Vec<JobId>, BackendError> {
    let now = now_ms();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(storage)?;
    let sql = format!(
        "SELECT {JOB_COLUMNS}, stalled_count, lock_worker FROM jobs \
         WHERE queue = ?1 AND state = 2 AND lock_until < ?2"
    );
    let stalled: Vec<(Job, u32, Option<String>)> = {
        let mut stmt = tx.prepare_cached(&sql).map_err(storage)?;
        let rows = stmt
            .query_map(params![queue, now], |r| {
                Ok((read_job(r)?, r.get(14)?, r.get(15)?))
            })
            .map_err(storage)?;
        rows.collect::<Result<_, _>>().map_err(storage)?
    };
    let mut retention = BTreeSet::new();
    let mut recovered = Vec::with_capacity(stalled.len());
    for (job, stalled_count, worker) in stalled {
        let seq = require_seq(&tx, &job.id)?;
        let too_often = stalled_count >= max_stalled;
        let error = if too_often {
            STALLED_TOO_OFTEN
        } else {
            STALLED_ATTEMPT
        };
        let attempt = Attempt {
            number: job.attempts_made,
            worker: worker.unwrap_or_default(),
            started_at: job.run_at,
            finished_at: now,
            error: Some(error.to_owned()),
            stack: None,
        };
        let attempt = serde_json::to_string(&attempt).map_err(storage)?;
        if too_often {
            mark_dead(&tx, seq, STALLED_TOO_OFTEN, &attempt, now)?;
            dead_lettered(&tx, &job, now, &mut retention)?;
        } else {
            requeue_uncounted(&tx, seq, &attempt, 1)?;
        }
        recovered.push(job.id);
    }
    for (queue, state, keep) in retention {
        apply_retention(&tx, &queue, state, keep, now)?;
    }
    tx.commit().map_err(storage)?;
    Ok(recovered)
}

#[async_trait]
impl QueueBackend for SqliteBackend {
    async fn add(&self, job: NewJob) -> Result<JobId, BackendError> {
        let mut ids = self.add_bulk(vec![job]).await?;
        ids.pop()
            .ok_or_else(|| BackendError::Storage("add stored no job".into()))
    }

    async fn add_bulk(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>, BackendError> {
        let queues: BTreeSet<String> = jobs.iter().map(|j| j.queue.clone()).collect();
        let ids = self
            .with_conn(move |conn, _| {
                let now = now_ms();
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(storage)?;
                let ids = jobs
                    .iter()
                    .map(|j| insert_job(&tx, j, now))
                    .collect::<Result<_, _>>()?;
                tx.commit().map_err(storage)?;
                Ok(ids)
            })
            .await?;
        self.wake(queues);
        Ok(ids)
    }

    async fn claim(&self, req: ClaimRequest<'_>) -> Result<Vec<ActiveJob>, BackendError> {
        let (queue, worker) = (req.queue.to_owned(), req.worker.to_owned());
        let (max, lock) = (req.max, req.lock);
        self.with_conn(move |conn, _| claim_jobs(conn, &queue, &worker, max, lock))
            .await
    }

    async fn finish(&self, done: Vec<FinishRequest>) -> Result<Vec<FinishOutcome>, BackendError> {
        let finished = self
            .with_conn(move |conn, _| finish_batch(conn, &done))
            .await?;
        let mut woken = BTreeSet::new();
        let mut outcomes = Vec::with_capacity(finished.len());
        for f in finished {
            if let Some(id) = f.finished_id {
                // Nobody listening is fine: waiters also poll.
                let _ = self.inner.finished.send(id);
            }
            woken.extend(f.woken_queue);
            outcomes.push(f.outcome);
        }
        self.wake(woken);
        Ok(outcomes)
    }

    async fn extend_locks(
        &self,
        worker: &str,
        ids: &[(JobId, String)],
        lock: Duration,
    ) -> Result<Vec<JobId>, BackendError> {
        let worker = worker.to_owned();
        let ids = ids.to_vec();
        self.with_conn(move |conn, _| {
            let until = now_ms().saturating_add(ms(lock));
            let tx = conn.transaction().map_err(storage)?;
            let mut lost = Vec::new();
            for (id, token) in ids {
                let Some(seq) = seq_of(&tx, &id)? else {
                    lost.push(id);
                    continue;
                };
                let changed = tx
                    .prepare_cached(
                        "UPDATE jobs SET lock_until = ?1 WHERE seq = ?2 AND state = 2 \
                         AND lock_token = ?3 AND lock_worker = ?4",
                    )
                    .and_then(|mut s| s.execute(params![until, seq, token, worker]))
                    .map_err(storage)?;
                if changed == 0 {
                    lost.push(id);
                }
            }
            tx.commit().map_err(storage)?;
            Ok(lost)
        })
        .await
    }

    async fn release(&self, id: &JobId, token: &str, reason: &str) -> Result<(), BackendError> {
        let (id, token, reason) = (id.clone(), token.to_owned(), reason.to_owned());
        let queue = self
            .with_conn(move |conn, _| {
                let seq = require_seq(conn, &id)?;
                let sql = format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE seq = ?1 AND state = 2 AND lock_token = ?2"
                );
                let Some(job) =
                    conn.query_row(&sql, params![seq, token], read_job).optional().map_err(storage)?
                else {
                    return Ok(None);
                };
                let now = now_ms();
                let attempt = Attempt {
                    number: job.attempts_made,
                    worker: String::new(),
                    started_at: now,
                    finished_at: now,
                    error: Some(reason),
                    stack: None,
                };
                let attempt = serde_json::to_string(&attempt).map_err(storage)?;
                requeue_uncounted(conn, seq, &attempt, 0)?;
                Ok(Some(job.queue))
            })
            .await?;
        self.wake(queue);
        Ok(())
    }

    async fn recover_stalled(&self, queue: &str) -> Result<Vec<JobId>, BackendError> {
        let q = queue.to_owned();
        let ids = self
            .with_conn(move |conn, opts| recover(conn, &q, opts.max_stalled))
            .await?;
        if !ids.is_empty() {
            self.wake([queue.to_owned()]);
        }
        Ok(ids)
    }

    async fn wait_for_work(&self, queue: &str, max_wait: Duration) {
        let q = queue.to_owned();
        let next_due: Option<i64> = self
            .with_conn(move |conn, _| {
                conn.query_row(
                    "SELECT MIN(run_at) FROM jobs WHERE queue = ?1 AND state = 1",
                    [q],
                    |r| r.get(0),
                )
                .map_err(storage)
            })
            .await
            .unwrap_or(None);
        let mut wait = max_wait.min(self.inner.opts.poll_interval.max(Duration::from_millis(1)));
        if let Some(due) = next_due {
            let until_due = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
            wait = wait.min(Duration::from_millis(until_due));
        }
        let notify = self.notifier(queue);
        let _ = tokio::time::timeout(wait, notify.notified()).await;
    }

    async fn wait_finished(&self, id: &JobId, timeout: Duration) -> Result<Job, BackendError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut finished = self.inner.finished.subscribe();
        loop {
            let job = self
                .get(id)
                .await?
                .ok_or_else(|| BackendError::NotFound(id.clone()))?;
            let now = tokio::time::Instant::now();
            if job.is_finished() || now >= deadline {
                return Ok(job);
            }
            let poll = self.inner.opts.poll_interval.min(deadline - now);
            tokio::select! {
                _ = finished.recv() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, BackendError> {
        let id = id.clone();
        self.with_conn(move |conn, _| match seq_of(conn, &id)? {
            Some(seq) => load_job(conn, seq),
            None => Ok(None),
        })
        .await
    }

    async fn list(
        &self,
        queue: &str,
        state: JobState,
        limit: usize,
    ) -> Result<Vec<Job>, BackendError> {
        let queue = queue.to_owned();
        self.with_conn(move |conn, _| {
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ?1 AND state = {} \
                 ORDER BY seq DESC LIMIT ?2",
                state_code(state)
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(storage)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(params![queue, limit], read_job)
                .map_err(storage)?;
            rows.collect::<Result<_, _>>().map_err(storage)
        })
        .await
    }

    async fn counts(&self, queue: &str) -> Result<Counts, BackendError> {
        let queue = queue.to_owned();
        self.with_conn(move |conn, _| {
            let mut counts = Counts::default();
            for state in JobState::ALL {
                // A literal state code lets SQLite use that state's partial index.
                let sql = format!(
                    "SELECT COUNT(*) FROM jobs WHERE queue = ?1 AND state = {}",
                    state_code(state)
                );
                let n: u64 = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| s.query_row([&queue], |r| r.get(0)))
                    .map_err(storage)?;
                counts.add(state, n);
            }
            Ok(counts)
        })
        .await
    }

    async fn queues(&self) -> Result<Vec<String>, BackendError> {
        self.with_conn(|conn, _| {
            let mut stmt = conn
                .prepare("SELECT DISTINCT queue FROM jobs ORDER BY queue")
                .map_err(storage)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(storage)?;
            rows.collect::<Result<_, _>>().map_err(storage)
        })
        .await
    }

    async fn retry_dead(&self, id: &JobId) -> Result<(), BackendError> {
        let job_id = id.clone();
        let queue = self
            .with_conn(move |conn, _| {
                let seq = require_seq(conn, &job_id)?;
                let job = load_job(conn, seq)?.ok_or(BackendError::NotFound(job_id))?;
                if job.state != JobState::Dead {
                    return Err(BackendError::WrongState {
                        id: job.id,
                        state: job.state,
                        expected: JobState::Dead,
                    });
                }
                conn.execute(
                    "UPDATE jobs SET state = 0, attempts_made = 0, stalled_count = 0, \
                     failed_reason = NULL, finished_at = NULL, run_at = ?1 \
                     WHERE seq = ?2 AND state = 4",
                    params![now_ms(), seq],
                )
                .map_err(storage)?;
                Ok(job.queue)
            })
            .await?;
        self.wake([queue]);
        Ok(())
    }

    async fn remove(&self, id: &JobId) -> Result<(), BackendError> {
        let id = id.clone();
        self.with_conn(move |conn, _| {
            let seq = require_seq(conn, &id)?;
            let job = load_job(conn, seq)?.ok_or(BackendError::NotFound(id))?;
            if job.state == JobState::Active {
                return Err(BackendError::WrongState {
                    id: job.id,
                    state: job.state,
                    expected: JobState::Dead,
                });
            }
            conn.execute("DELETE FROM jobs WHERE seq = ?1", [seq])
                .map_err(storage)?;
            Ok(())
        })
        .await
    }
}
