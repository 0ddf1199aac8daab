//! [`RedisBackend`]: the `QueueBackend` trait on Redis, in BullMQ's layout.

use crate::conn::{Conn, is_refused_credentials};
use crate::mapping::{Fields, bullmq_opts, public_id, read_job, read_state, split_id};
use crate::options::{ConnectError, RedisOptions, has_hash_tag};
use crate::scripts::Scripts;
use async_trait::async_trait;
use redis::Value;
use serde_json::json;
use smartworker_core::{
    ActiveJob, BackendError, ClaimRequest, Counts, FinishOutcome, FinishRequest, HEAL_QUEUE, Job,
    JobId, JobOptions, JobState, NewJob, QueueBackend, heal_job_for, validate_queue_name,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Stands for the dead-lettered job's id in the heal job template; the scripts put the real
/// id in its place, so the heal job's shape stays decided by `smartworker_core::heal_job_for`.
const JOB_ID_PLACEHOLDER: &str = "__SW_JOB_ID__";

/// How often `wait_finished` looks again for a job finished by another process.
const FINISHED_POLL: Duration = Duration::from_millis(50);

/// The Redis queue backend. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    scripts: Scripts,
    opts: RedisOptions,
    /// Ids of jobs this process saw finish, to end waits early.
    finished: broadcast::Sender<JobId>,
}

impl RedisBackend {
    /// Opens the backend and checks that Redis answers now; once connected, the backend
    /// survives Redis restarts by itself.
    ///
    /// # Errors
    /// [`ConnectError`] naming the bad value or the unreachable URL (password hidden).
    pub async fn connect(opts: RedisOptions) -> Result<Self, ConnectError> {
        let backend = RedisBackend::open(opts)?;
        match backend.inner.conn.ping_raw().await {
            Ok(()) => Ok(backend),
            Err(err) => Err(backend.connect_error(&err)),
        }
    }

    /// Opens the backend as [`RedisBackend::open`] does, so Redis may still be away, but
    /// refuses credentials Redis turns down: a server that answers "wrong password" would
    /// otherwise be retried forever.
    ///
    /// # Errors
    /// As [`RedisBackend::open`], and [`ConnectError::Refused`].
    pub async fn open_checked(opts: RedisOptions) -> Result<Self, ConnectError> {
        let backend = RedisBackend::open(opts)?;
        match backend.inner.conn.ping_raw().await {
            Err(err) if is_refused_credentials(&err) => Err(backend.connect_error(&err)),
            _ => Ok(backend),
        }
    }

    /// What a failed first `PING` means: refused credentials, or no answer.
    fn connect_error(&self, err: &redis::RedisError) -> ConnectError {
        let url = self.inner.opts.redacted_url();
        let reason = err.to_string();
        if is_refused_credentials(err) {
            ConnectError::Refused { url, reason }
        } else {
            ConnectError::Unreachable { url, reason }
        }
    }

    /// Opens the backend without waiting for Redis: the first command connects, and until
    /// Redis answers every call fails with [`BackendError::Storage`] (logged once).
    ///
    /// # Errors
    /// [`ConnectError`] for invalid options, or when called outside a Tokio runtime.
    pub fn open(opts: RedisOptions) -> Result<Self, ConnectError> {
        if opts.prefix.is_empty() || opts.prefix.chars().any(char::is_whitespace) {
            return Err(ConnectError::BadPrefix(opts.prefix.clone()));
        }
        if opts.cluster && !has_hash_tag(&opts.prefix) {
            return Err(ConnectError::PrefixWithoutHashTag(opts.prefix.clone()));
        }
        for (queue, name) in &opts.dead_letter_queues {
            validate_queue_name(name).map_err(|e| ConnectError::BadDeadLetterQueue {
                queue: queue.clone(),
                name: name.clone(),
                reason: e.to_string(),
            })?;
        }
        let conn = Conn::open_lazy(&opts)?;
        let (finished, _) = broadcast::channel(1024);
        let inner = Inner {
            conn,
            scripts: Scripts::new(),
            opts,
            finished,
        };
        Ok(RedisBackend {
            inner: Arc::new(inner),
        })
    }

    /// The options the backend was opened with.
    pub fn options(&self) -> &RedisOptions {
        &self.inner.opts
    }

    /// Checks that Redis answers.
    ///
    /// # Errors
    /// [`BackendError::Storage`] when it does not.
    pub async fn ping(&self) -> Result<(), BackendError> {
        self.inner.conn.cmd::<String>(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// The key prefix of a queue, such as `bull:signup:`; its jobs are `bull:signup:<id>`.
    pub fn queue_key(&self, queue: &str) -> String {
        format!("{}:{queue}:", self.inner.opts.prefix)
    }

    /// The heal job template and dead-letter queue for jobs of `queue`, as the scripts read
    /// them.
    fn dead_letter_settings(&self, queue: &str) -> serde_json::Value {
        let dlq = self.inner.opts.dead_letter_queue(queue);
        let mut settings = json!({ "dlq": self.queue_key(&dlq) });
        let probe = NewJob {
            opts: JobOptions {
                autofix: true,
                ..JobOptions::default()
            },
            ..NewJob::new(queue, "", serde_json::Value::Null)
        };
        let probe = Job::stored(JobId(JOB_ID_PLACEHOLDER.into()), probe, 0);
        if let Some(heal) = heal_job_for(&probe) {
            settings["healQ"] = json!(self.queue_key(&heal.queue));
            settings["healName"] = json!(heal.name);
            settings["healData"] = json!(heal.data.to_string());
            settings["healOpts"] = json!(bullmq_opts(&heal.opts).to_string());
        }
        settings
    }

    async fn read(&self, queue: &str, what: &str, arg: &str) -> Result<Vec<Job>, BackendError> {
        let q = self.queue_key(queue);
        let route = format!("{q}meta");
        let reply: Value = self
            .inner
            .conn
            .script(&self.inner.scripts.read, &route, &[&q, what, arg])
            .await?;
        let jobs = items(reply)
            .into_iter()
            .filter_map(job_reply)
            .map(|(id, state, fields)| read_job(queue, &id, &state, &fields))
            .collect();
        Ok(jobs)
    }

    async fn retry_origin(&self, id: &JobId) -> Result<Option<JobId>, BackendError> {
        let Some((queue, bare)) = split_id(id) else {
            return Ok(None);
        };
        let key = format!("{}{bare}", self.queue_key(queue));
        let origin: Option<String> = self
            .inner
            .conn
            .cmd(redis::cmd("HGET").arg(&key).arg("sw:origin"))
            .await?;
        Ok(origin.map(JobId))
    }

    async fn retry_once(&self, id: &JobId) -> Result<RetryReply, BackendError> {
        let (queue, bare) = split_id(id).ok_or_else(|| BackendError::NotFound(id.clone()))?;
        let q = self.queue_key(queue);
        let now = now_ms().to_string();
        let reply: Value = self
            .inner
            .conn
            .script(
                &self.inner.scripts.retry,
                &format!("{q}meta"),
                &[&q, bare, &now],
            )
            .await?;
        let parts: Vec<String> = items(reply).iter().filter_map(text).collect();
        Ok(match parts.first().map(String::as_str) {
            Some("ok") => RetryReply::Done,
            Some("state") => RetryReply::State(read_state(parts.get(1).map_or("", |s| s))),
            _ => RetryReply::Missing,
        })
    }
}

enum RetryReply {
    Done,
    Missing,
    State(JobState),
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn storage(err: impl std::fmt::Display) -> BackendError {
    BackendError::Storage(err.to_string())
}

/// The elements of an array reply; anything else is empty.
fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => Vec::new(),
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

/// `{id, second, {field, value, ...}}` as the claim and read scripts return each job.
fn job_reply(value: Value) -> Option<(String, String, Fields)> {
    let mut parts = items(value).into_iter();
    let id = text(&parts.next()?)?;
    let second = text(&parts.next()?)?;
    let flat: Vec<String> = items(parts.next()?).iter().filter_map(text).collect();
    let fields = flat
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    Some((id, second, fields))
}

fn finish_outcome(value: Value, heal_queue: &str) -> FinishOutcome {
    let parts = items(value);
    match parts.first().and_then(text).as_deref() {
        Some("completed") => FinishOutcome::Completed,
        Some("retry") => FinishOutcome::Retrying {
            run_at: parts.get(1).and_then(int).unwrap_or_else(now_ms),
        },
        Some("dead") => FinishOutcome::DeadLettered {
            heal_job: parts
                .get(1)
                .and_then(text)
                .map(|id| public_id(heal_queue, &id)),
        },
        _ => FinishOutcome::LockLost,
    }
}

#[async_trait]
impl QueueBackend for RedisBackend {
    async fn add(&self, job: NewJob) -> Result<JobId, BackendError> {
        let mut ids = self.add_bulk(vec![job]).await?;
        ids.pop()
            .ok_or_else(|| BackendError::Storage("add stored no job".into()))
    }

    async fn add_bulk(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>, BackendError> {
        // Everything is checked before the script runs: a script stopped half-way keeps
        // what it wrote, so it must never meet a job it would refuse.
        for job in &jobs {
            job.validate()?;
        }
        let Some(first) = jobs.first() else {
            return Ok(Vec::new());
        };
        let route = format!("{}meta", self.queue_key(&first.queue));
        let payload: Vec<serde_json::Value> = jobs
            .iter()
            .map(|job| {
                json!({
                    "q": self.queue_key(&job.queue),
                    "name": job.name,
                    "data": job.data.to_string(),
                    "opts": bullmq_opts(&job.opts).to_string(),
                    "customId": job.opts.job_id.clone().unwrap_or_default(),
                    "delay": job.opts.delay,
                    "priority": job.opts.priority,
                })
            })
            .collect();
        let payload = serde_json::to_string(&payload).map_err(storage)?;
        let now = now_ms().to_string();
        let reply: Value = self
            .inner
            .conn
            .script(&self.inner.scripts.add, &route, &[&payload, &now])
            .await?;
        let ids: Vec<String> = items(reply).iter().filter_map(text).collect();
        if ids.len() != jobs.len() {
            return Err(BackendError::Storage(format!(
                "redis stored {} of {} jobs",
                ids.len(),
                jobs.len()
            )));
        }
        Ok(jobs
            .iter()
            .zip(ids)
            .map(|(job, id)| public_id(&job.queue, &id))
            .collect())
    }

    async fn claim(&self, req: ClaimRequest<'_>) -> Result<Vec<ActiveJob>, BackendError> {
        if req.max == 0 {
            return Ok(Vec::new());
        }
        let q = self.queue_key(req.queue);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let args = [
            q.clone(),
            now_ms().to_string(),
            req.max.to_string(),
            token,
            ms(req.lock).max(1).to_string(),
            req.worker.to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply: Value = self
            .inner
            .conn
            .script(&self.inner.scripts.claim, &format!("{q}meta"), &args)
            .await?;
        Ok(items(reply)
            .into_iter()
            .filter_map(job_reply)
            .map(|(id, token, fields)| ActiveJob {
                job: read_job(req.queue, &id, "active", &fields),
                token,
            })
            .collect())
    }

    async fn finish(&self, done: Vec<FinishRequest>) -> Result<Vec<FinishOutcome>, BackendError> {
        let mut outcomes = vec![FinishOutcome::LockLost; done.len()];
        let mut payload = Vec::new();
        let mut slots = Vec::new();
        for (slot, req) in done.iter().enumerate() {
            let Some((queue, bare)) = split_id(&req.id) else {
                continue;
            };
            let mut entry = json!({
                "q": self.queue_key(queue),
                "name": queue,
                "id": bare,
                "qid": req.id.0,
                "token": req.token,
                "attempt": serde_json::to_string(&req.attempt).map_err(storage)?,
            });
            match &req.outcome {
                Ok(value) => {
                    entry["ok"] = json!(true);
                    entry["value"] = json!(value.to_string());
                }
                Err(failure) => {
                    let stack = failure.stack.as_deref().unwrap_or(&failure.message);
                    entry["ok"] = json!(false);
                    entry["reason"] = json!(failure.message);
                    entry["stack"] = json!(json!(stack).to_string());
                    if let (Some(e), serde_json::Value::Object(settings)) =
                        (entry.as_object_mut(), self.dead_letter_settings(queue))
                    {
                        e.extend(settings);
                    }
                }
            }
            payload.push(entry);
            slots.push(slot);
        }
        let Some(first) = done.first() else {
            return Ok(outcomes);
        };
        if payload.is_empty() {
            return Ok(outcomes);
        }
        let route = split_id(&first.id).map_or_else(
            || format!("{}meta", self.queue_key(HEAL_QUEUE)),
            |(queue, _)| format!("{}meta", self.queue_key(queue)),
        );
        let payload = serde_json::to_string(&payload).map_err(storage)?;
        let now = now_ms().to_string();
        let reply: Value = self
            .inner
            .conn
            .script(&self.inner.scripts.finish, &route, &[&payload, &now])
            .await?;
        for (slot, value) in slots.into_iter().zip(items(reply)) {
            let outcome = finish_outcome(value, HEAL_QUEUE);
            if matches!(
                outcome,
                FinishOutcome::Completed | FinishOutcome::DeadLettered { .. }
            ) {
                // Nobody listening is fine: waiters also poll.
                let _ = self.inner.finished.send(done[slot].id.clone());
            }
            outcomes[slot] = outcome;
        }
        Ok(outcomes)
    }

    async fn extend_locks(
        &self,
        worker: &str,
        ids: &[(JobId, String)],
        lock: Duration,
    ) -> Result<Vec<JobId>, BackendError> {
        let mut lost = Vec::new();
        let mut payload = Vec::new();
        let mut sent = Vec::new();
        for (id, token) in ids {
            let Some((queue, bare)) = split_id(id) else {
                lost.push(id.clone());
                continue;
            };
            payload.push(json!({"q": self.queue_key(queue), "id": bare, "token": token}));
            sent.push(id.clone());
        }
        let Some(first) = sent.first().and_then(split_id) else {
            return Ok(lost);
        };
        let route = format!("{}meta", self.queue_key(first.0));
        let payload = serde_json::to_string(&payload).map_err(storage)?;
        let lock = ms(lock).max(1).to_string();
        let reply: Value = self
            .inner
            .conn
            .script(
                &self.inner.scripts.extend,
                &route,
                &[&payload, worker, &lock],
            )
            .await?;
        for index in items(reply).iter().filter_map(int) {
            let found = usize::try_from(index - 1).ok().and_then(|i| sent.get(i));
            lost.extend(found.cloned());
        }
        Ok(lost)
    }

    async fn release(&self, id: &JobId, token: &str, reason: &str) -> Result<(), BackendError> {
        let (queue, bare) = split_id(id).ok_or_else(|| BackendError::NotFound(id.clone()))?;
        let q = self.queue_key(queue);
        let now = now_ms().to_string();
        let _: Value = self
            .inner
            .conn
            .script(
                &self.inner.scripts.release,
                &format!("{q}meta"),
                &[&q, bare, token, reason, &now],
            )
            .await?;
        Ok(())
    }

    async fn recover_stalled(&self, queue: &str) -> Result<Vec<JobId>, BackendError> {
        let q = self.queue_key(queue);
        let settings = self.dead_letter_settings(queue).to_string();
        let now = now_ms().to_string();
        let max = self.inner.opts.max_stalled.to_string();
        let reply: Value = self
            .inner
            .conn
            .script(
                &self.inner.scripts.stalled,
                &format!("{q}meta"),
                &[&q, queue, &now, &max, &settings],
            )
            .await?;
        Ok(items(reply)
            .iter()
            .filter_map(text)
            .map(|id| public_id(queue, &id))
            .collect())
    }

    async fn wait_for_work(&self, queue: &str, max_wait: Duration) {
        let q = self.queue_key(queue);
        let mut wait = max_wait;
        let first: Result<Vec<String>, _> = self
            .inner
            .conn
            .cmd(
                redis::cmd("ZRANGE")
                    .arg(format!("{q}delayed"))
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES"),
            )
            .await;
        if let Some(score) = first.ok().and_then(|f| f.get(1)?.parse::<f64>().ok()) {
            let due = (score / 4096.0) as i64;
            let until_due = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
            wait = wait.min(Duration::from_millis(until_due));
        }
        if wait.is_zero() {
            return;
        }
        // BZPOPMIN on BullMQ's marker wakes as soon as any producer, Node's included, adds
        // a runnable job. Its timeout is in seconds; 0 would mean "forever".
        let secs = wait.as_secs_f64().max(0.01);
        let popped = self
            .inner
            .conn
            .blocking::<Value>(
                redis::cmd("BZPOPMIN").arg(format!("{q}marker")).arg(secs),
                wait,
            )
            .await;
        if popped.is_err() {
            // Redis is away: do not spin; the caller's next claim reports the error.
            tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
        }
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
            let poll = FINISHED_POLL.min(deadline - now);
            tokio::select! {
                _ = finished.recv() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, BackendError> {
        let Some((queue, bare)) = split_id(id) else {
            return Ok(None);
        };
        if validate_queue_name(queue).is_err() {
            return Ok(None);
        }
        Ok(self.read(queue, "get", bare).await?.pop())
    }

    async fn list(
        &self,
        queue: &str,
        state: JobState,
        limit: usize,
    ) -> Result<Vec<Job>, BackendError> {
        let what = match state {
            JobState::Waiting => "waiting",
            JobState::Delayed => "delayed",
            JobState::Active => "active",
            JobState::Completed => "completed",
            JobState::Dead => "failed",
        };
        self.read(queue, what, &limit.to_string()).await
    }

    async fn counts(&self, queue: &str) -> Result<Counts, BackendError> {
        let q = self.queue_key(queue);
        let reply: Value = self
            .inner
            .conn
            .script(&self.inner.scripts.counts, &format!("{q}meta"), &[&q])
            .await?;
        let n: Vec<u64> = items(reply)
            .iter()
            .map(|v| int(v).and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
            .collect();
        let at = |i: usize| n.get(i).copied().unwrap_or(0);
        Ok(Counts {
            waiting: at(0),
            delayed: at(1),
            active: at(2),
            completed: at(3),
            dead: at(4),
        })
    }

    async fn queues(&self) -> Result<Vec<String>, BackendError> {
        // FIXME: SCAN walks every key under the prefix; with millions of jobs, listing queues
        // (GET /queues, GET /dead) gets slow, and a registry of queue names would be needed.
        let prefix = format!("{}:", self.inner.opts.prefix);
        let pattern = format!("{}*:meta", glob_escape(&prefix));
        let mut cursor = 0u64;
        let mut found = std::collections::BTreeSet::new();
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .inner
                .conn
                .cmd_at(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                    &prefix,
                )
                .await?;
            for key in keys {
                let name = key
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(":meta"));
                if let Some(name) = name.filter(|n| validate_queue_name(n).is_ok()) {
                    found.insert(name.to_owned());
                }
            }
            if next == 0 {
                return Ok(found.into_iter().collect());
            }
            cursor = next;
        }
    }

    async fn retry_dead(&self, id: &JobId) -> Result<(), BackendError> {
        match self.retry_once(id).await? {
            RetryReply::Done => return Ok(()),
            RetryReply::Missing => return Err(BackendError::NotFound(id.clone())),
            RetryReply::State(state) => {
                // A copy in a dead-letter queue stands for its original.
                if let Some(origin) = self.retry_origin(id).await?
                    && let RetryReply::Done = self.retry_once(&origin).await?
                {
                    return Ok(());
                }
                Err(BackendError::WrongState {
                    id: id.clone(),
                    state,
                    expected: JobState::Dead,
                })
            }
        }
    }

    async fn remove(&self, id: &JobId) -> Result<(), BackendError> {
        let (queue, bare) = split_id(id).ok_or_else(|| BackendError::NotFound(id.clone()))?;
        let q = self.queue_key(queue);
        let reply: String = self
            .inner
            .conn
            .script(&self.inner.scripts.remove, &format!("{q}meta"), &[&q, bare])
            .await?;
        match reply.as_str() {
            "ok" => Ok(()),
            "active" => Err(BackendError::WrongState {
                id: id.clone(),
                state: JobState::Active,
                expected: JobState::Dead,
            }),
            _ => Err(BackendError::NotFound(id.clone())),
        }
    }
}

/// Escapes the glob characters SCAN's MATCH gives a meaning to.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
