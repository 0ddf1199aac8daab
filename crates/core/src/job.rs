//! Jobs, their options and their states, with the pure rules that move a job between states.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// The internal queue that healing jobs run on.
pub const HEAL_QUEUE: &str = "smartworker-heal";

/// The longest queue name accepted, in bytes.
const MAX_QUEUE_NAME: usize = 128;

/// The largest payload accepted, in bytes of its JSON. A job's payload is stored with it, kept
/// with every failure in memory and handed to its handler (and a sandbox) whole; larger data
/// belongs in a file or a database, with the job carrying its name.
pub const MAX_PAYLOAD_BYTES: usize = 16 << 20;

/// A job's id, unique within a backend. Kept as a string because BullMQ allows custom ids.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for JobId {
    fn from(value: &str) -> Self {
        JobId(value.to_owned())
    }
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Ready to run as soon as a worker is free.
    Waiting,
    /// Waiting for its start time: a delayed job or a retry in backoff.
    Delayed,
    /// Held by a worker under a lock.
    Active,
    /// Finished with a result.
    Completed,
    /// Used up its attempts; listed in the dead-letter queue.
    Dead,
}

impl JobState {
    /// Every state, in the order a job usually moves through them.
    pub const ALL: [JobState; 5] = [
        JobState::Waiting,
        JobState::Delayed,
        JobState::Active,
        JobState::Completed,
        JobState::Dead,
    ];

    /// The lowercase name used in storage, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Delayed => "delayed",
            JobState::Active => "active",
            JobState::Completed => "completed",
            JobState::Dead => "dead",
        }
    }

    /// Parses the lowercase name; `failed` is accepted for `dead`, as BullMQ users call it.
    pub fn parse(name: &str) -> Option<JobState> {
        match name {
            "waiting" | "wait" => Some(JobState::Waiting),
            "delayed" => Some(JobState::Delayed),
            "active" => Some(JobState::Active),
            "completed" => Some(JobState::Completed),
            "dead" | "failed" => Some(JobState::Dead),
            _ => None,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` honours width and alignment, so states line up in tables.
        f.pad(self.as_str())
    }
}

/// How long to wait before the next attempt of a failed job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Backoff {
    /// The same delay before every retry.
    Fixed {
        /// Milliseconds between attempts.
        delay: u64,
    },
    /// `delay * 2^(n-1)` before retry `n`, as BullMQ computes it.
    Exponential {
        /// Milliseconds before the first retry.
        delay: u64,
    },
}

impl Backoff {
    /// The delay before the next attempt, given how many attempts have been made so far (≥ 1).
    pub fn delay_after(self, attempts_made: u32) -> u64 {
        match self {
            Backoff::Fixed { delay } => delay,
            Backoff::Exponential { delay } => {
                let exponent = attempts_made.saturating_sub(1).min(32);
                delay.saturating_mul(1u64 << exponent)
            }
        }
    }
}

/// How many finished jobs of one kind to keep; `None` in both fields keeps them all.
///
/// Read in each of BullMQ's forms: `true` (remove at once), `false` (keep all), a number (keep
/// that many of the newest) or `{"count": N, "age": seconds}` (`age_secs` is accepted too).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(from = "KeepJobsForm")]
pub struct KeepJobs {
    /// Keep at most this many of the newest jobs.
    pub count: Option<u64>,
    /// Keep jobs finished at most this many seconds ago.
    pub age_secs: Option<u64>,
}

/// The forms BullMQ producers send for `removeOnComplete` and `removeOnFail`.
#[derive(Deserialize)]
#[serde(untagged)]
enum KeepJobsForm {
    Remove(bool),
    Count(u64),
    Limits {
        #[serde(default)]
        count: Option<u64>,
        #[serde(default, alias = "age")]
        age_secs: Option<u64>,
    },
}

impl From<KeepJobsForm> for KeepJobs {
    fn from(form: KeepJobsForm) -> Self {
        match form {
            KeepJobsForm::Remove(true) => KeepJobs {
                count: Some(0),
                age_secs: None,
            },
            KeepJobsForm::Remove(false) => KeepJobs::default(),
            KeepJobsForm::Count(count) => KeepJobs {
                count: Some(count),
                age_secs: None,
            },
            KeepJobsForm::Limits { count, age_secs } => KeepJobs { count, age_secs },
        }
    }
}

/// What a producer may ask of a job. Field names follow BullMQ's where they exist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct JobOptions {
    /// How many times the job may run before it is dead-lettered (at least 1).
    pub attempts: u32,
    /// The wait between attempts; none retries at once.
    pub backoff: Option<Backoff>,
    /// Milliseconds to wait before the first attempt.
    pub delay: u64,
    /// 0 is "no priority"; otherwise a lower number runs first, as in BullMQ.
    pub priority: u32,
    /// Milliseconds one attempt may take before its handler is stopped.
    pub timeout: Option<u64>,
    /// Retention of completed jobs.
    pub remove_on_complete: KeepJobs,
    /// Retention of dead-lettered jobs.
    pub remove_on_fail: KeepJobs,
    /// Heal the job when it fails for good.
    pub autofix: bool,
    /// A producer-chosen id; adding a job whose id exists returns the existing job.
    pub job_id: Option<String>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            attempts: 1,
            backoff: None,
            delay: 0,
            priority: 0,
            timeout: None,
            remove_on_complete: KeepJobs::default(),
            remove_on_fail: KeepJobs::default(),
            autofix: false,
            job_id: None,
        }
    }
}

impl JobOptions {
    /// The state a new job is stored in and when it may first run, for a job added at `now`.
    pub fn first_run(&self, now: i64) -> (JobState, i64) {
        let delay = i64::try_from(self.delay).unwrap_or(i64::MAX);
        let state = if delay > 0 {
            JobState::Delayed
        } else {
            JobState::Waiting
        };
        (state, now.saturating_add(delay))
    }
}

/// A job as a producer hands it over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// The queue it goes on.
    pub queue: String,
    /// The job's name, which handlers may dispatch on.
    pub name: String,
    /// The payload.
    pub data: Value,
    /// Options.
    #[serde(default)]
    pub opts: JobOptions,
}

impl NewJob {
    /// A job with default options.
    pub fn new(queue: impl Into<String>, name: impl Into<String>, data: Value) -> Self {
        NewJob {
            queue: queue.into(),
            name: name.into(),
            data,
            opts: JobOptions::default(),
        }
    }

    /// Checks what a backend cannot store: an empty or oversized queue name, zero attempts.
    ///
    /// # Errors
    /// Returns the first problem found, naming the offending value.
    pub fn validate(&self) -> Result<(), InvalidJob> {
        validate_queue_name(&self.queue)?;
        if self.opts.attempts == 0 {
            return Err(InvalidJob::ZeroAttempts);
        }
        if self.opts.timeout == Some(0) {
            return Err(InvalidJob::ZeroTimeout);
        }
        if self.opts.job_id.as_deref().is_some_and(str::is_empty) {
            return Err(InvalidJob::EmptyCustomId);
        }
        if payload_exceeds(&self.data, MAX_PAYLOAD_BYTES) {
            return Err(InvalidJob::PayloadTooLarge);
        }
        if self.name.len() > MAX_QUEUE_NAME {
            return Err(InvalidJob::NameTooLong(self.name.len()));
        }
        if self.opts.priority > MAX_PRIORITY {
            return Err(InvalidJob::PriorityTooHigh(self.opts.priority));
        }
        if let Some(id) = &self.opts.job_id
            && id.parse::<i64>().is_ok()
        {
            return Err(InvalidJob::IntegerCustomId(id.clone()));
        }
        Ok(())
    }
}

/// The highest job priority, as in BullMQ: its priority counter shares one score with it.
pub const MAX_PRIORITY: u32 = 1 << 21;

/// Why a job or queue name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidJob {
    /// The queue name is empty.
    #[error("queue name is empty")]
    EmptyQueue,
    /// The queue name is too long or holds characters that break key layouts.
    #[error("queue name {0:?} is invalid: use at most 128 letters, digits, '-', '_' or '.'")]
    BadQueueName(String),
    /// `attempts` was 0.
    #[error("attempts must be at least 1")]
    ZeroAttempts,
    /// `jobId` was empty, so the job could never be looked up.
    #[error("custom job id is empty")]
    EmptyCustomId,
    /// `timeout` was 0, which would fail every attempt at once.
    #[error("timeout must be at least 1 ms; leave it out for no timeout")]
    ZeroTimeout,
    /// The job name is too long.
    #[error("job name is {0} bytes long; the limit is 128")]
    NameTooLong(usize),
    /// The payload's JSON is larger than [`MAX_PAYLOAD_BYTES`].
    #[error("payload is larger than the limit of {MAX_PAYLOAD_BYTES} bytes of JSON")]
    PayloadTooLarge,
    /// `priority` was above [`MAX_PRIORITY`], which BullMQ's sorted-set score cannot hold.
    #[error("priority {0} is too high: use 1 (first) to 2097152, or 0 for none")]
    PriorityTooHigh(u32),
    /// A producer-chosen id that is an integer would collide with generated ids (as in BullMQ).
    #[error("custom job id {0:?} is an integer; custom ids must not be integers")]
    IntegerCustomId(String),
}

/// Whether `data` takes more than `limit` bytes as JSON; stops writing once it does.
fn payload_exceeds(data: &Value, limit: usize) -> bool {
    /// Counts bytes and fails once past the limit, so a huge payload is not serialised whole.
    struct Budget(usize);
    impl std::io::Write for Budget {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self
                .0
                .checked_sub(buf.len())
                .ok_or(std::io::ErrorKind::FileTooLarge)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Budget(limit), data).is_err()
}

/// Checks a queue name: 1 to 128 ASCII letters, digits, `-`, `_` or `.`.
///
/// # Errors
/// [`InvalidJob::EmptyQueue`] or [`InvalidJob::BadQueueName`].
pub fn validate_queue_name(name: &str) -> Result<(), InvalidJob> {
    if name.is_empty() {
        return Err(InvalidJob::EmptyQueue);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.len() > MAX_QUEUE_NAME || !name.chars().all(allowed) {
        return Err(InvalidJob::BadQueueName(name.to_owned()));
    }
    Ok(())
}

/// One run of a job, kept for as long as the job is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// The worker that ran it.
    pub worker: String,
    /// When it started, in ms since the epoch.
    pub started_at: i64,
    /// When it ended.
    pub finished_at: i64,
    /// The error message when it failed.
    pub error: Option<String>,
    /// The stack trace (for a command, its stderr) when it failed.
    pub stack: Option<String>,
}

/// A stored job with its history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The id.
    pub id: JobId,
    /// The queue.
    pub queue: String,
    /// The name.
    pub name: String,
    /// The payload.
    pub data: Value,
    /// The options it was added with.
    pub opts: JobOptions,
    /// Where it is now.
    pub state: JobState,
    /// Attempts made since it was added or last retried from the dead-letter queue.
    pub attempts_made: u32,
    /// Every attempt, oldest first, including those before a retry from the dead-letter queue.
    pub attempts: Vec<Attempt>,
    /// The handler's result once completed.
    pub result: Option<Value>,
    /// The last error once dead-lettered.
    pub failed_reason: Option<String>,
    /// When it was added, in ms since the epoch.
    pub created_at: i64,
    /// When it may run next (delayed jobs and retries).
    pub run_at: i64,
    /// When it finished for good.
    pub finished_at: Option<i64>,
}

impl Job {
    /// The job `new` becomes when stored with `id` at `now`: waiting (or delayed), no attempts.
    pub fn stored(id: JobId, new: NewJob, now: i64) -> Job {
        let (state, run_at) = new.opts.first_run(now);
        Job {
            id,
            queue: new.queue,
            name: new.name,
            data: new.data,
            opts: new.opts,
            state,
            attempts_made: 0,
            attempts: Vec::new(),
            result: None,
            failed_reason: None,
            created_at: now,
            run_at,
            finished_at: None,
        }
    }

    /// True once the job will not run again by itself.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, JobState::Completed | JobState::Dead)
    }

    /// The most recent attempt.
    pub fn last_attempt(&self) -> Option<&Attempt> {
        self.attempts.last()
    }

    /// Where a failed attempt sends the job: a retry at a time, or the dead-letter queue.
    ///
    /// `attempts_made` counts the attempt that just failed.
    pub fn after_failure(&self, attempts_made: u32, now: i64) -> FailureStep {
        if attempts_made >= self.opts.attempts {
            return FailureStep::DeadLetter;
        }
        let wait = self
            .opts
            .backoff
            .map_or(0, |b| b.delay_after(attempts_made));
        FailureStep::Retry {
            run_at: now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)),
        }
    }
}

/// The outcome of [`Job::after_failure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureStep {
    /// Run again at this time.
    Retry {
        /// ms since the epoch.
        run_at: i64,
    },
    /// Attempts are used up.
    DeadLetter,
}

/// True when the job asks to be healed: the `autofix` option, or `"reasoning_fix": true` in
/// its data as the TypeScript predecessor spelled it.
pub fn autofix_requested(opts: &JobOptions, data: &Value) -> bool {
    opts.autofix || data.get("reasoning_fix").and_then(Value::as_bool) == Some(true)
}

/// The healing job that a dead-lettered job starts, if it asked for healing.
///
/// Backends add it in the same step that dead-letters the job, so a crash cannot lose it.
/// Healing jobs never heal themselves.
pub fn heal_job_for(job: &Job) -> Option<NewJob> {
    if job.queue == HEAL_QUEUE || !autofix_requested(&job.opts, &job.data) {
        return None;
    }
    let data = serde_json::json!({ "job_id": job.id, "queue": job.queue });
    let mut heal = NewJob::new(HEAL_QUEUE, "heal", data);
    heal.opts.attempts = 2;
    heal.opts.backoff = Some(Backoff::Fixed { delay: 5_000 });
    Some(heal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(opts: JobOptions, data: Value) -> Job {
        let new = NewJob {
            opts,
            ..NewJob::new("signup", "signup", data)
        };
        Job {
            state: JobState::Active,
            ..Job::stored(JobId::from("1"), new, 0)
        }
    }

    #[test]
    fn exponential_backoff_doubles_from_the_base_delay() {
        let b = Backoff::Exponential { delay: 100 };
        let delays: Vec<u64> = (1..=4).map(|n| b.delay_after(n)).collect();
        assert_eq!(delays, [100, 200, 400, 800]);
        assert_eq!(Backoff::Fixed { delay: 7 }.delay_after(9), 7);
    }

    #[test]
    fn exponential_backoff_saturates_instead_of_overflowing() {
        let b = Backoff::Exponential {
            delay: u64::MAX / 2,
        };
        assert_eq!(b.delay_after(200), u64::MAX);
    }

    #[test]
    fn failure_retries_until_attempts_are_used_up() {
        let opts = JobOptions {
            attempts: 3,
            backoff: Some(Backoff::Fixed { delay: 50 }),
            ..JobOptions::default()
        };
        let j = job(opts, json!({}));
        assert_eq!(
            j.after_failure(1, 1000),
            FailureStep::Retry { run_at: 1050 }
        );
        assert_eq!(j.after_failure(3, 1000), FailureStep::DeadLetter);
    }

    #[test]
    fn reasoning_fix_in_data_requests_healing() {
        let j = job(JobOptions::default(), json!({"reasoning_fix": true}));
        let heal = heal_job_for(&j).expect("heal job");
        assert_eq!(heal.queue, HEAL_QUEUE);
        assert_eq!(heal.data["job_id"], "1");
        assert!(
            heal_job_for(&job(JobOptions::default(), json!({"reasoning_fix": "yes"}))).is_none()
        );
    }

    #[test]
    fn heal_jobs_never_heal_themselves() {
        let mut j = job(
            JobOptions {
                autofix: true,
                ..JobOptions::default()
            },
            json!({}),
        );
        j.queue = HEAL_QUEUE.into();
        assert!(heal_job_for(&j).is_none());
    }

    #[test]
    fn queue_names_that_break_key_layouts_are_refused() {
        assert!(validate_queue_name("login-DLQ_2.v1").is_ok());
        for bad in ["", "a:b", "a b", "{x}", &"q".repeat(129)] {
            assert!(validate_queue_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn retention_is_read_in_each_of_bullmqs_forms() {
        let keep = |v: Value| serde_json::from_value::<KeepJobs>(v).unwrap();
        assert_eq!(
            keep(json!(true)),
            KeepJobs {
                count: Some(0),
                age_secs: None
            }
        );
        assert_eq!(keep(json!(false)), KeepJobs::default());
        assert_eq!(
            keep(json!(100)),
            KeepJobs {
                count: Some(100),
                age_secs: None
            }
        );
        let both = KeepJobs {
            count: Some(5),
            age_secs: Some(3600),
        };
        assert_eq!(keep(json!({"count": 5, "age": 3600})), both);
        assert_eq!(
            keep(serde_json::to_value(both).unwrap()),
            both,
            "round trip"
        );
        assert!(serde_json::from_value::<KeepJobs>(json!("yes")).is_err());
    }

    #[test]
    fn empty_custom_id_is_refused() {
        let mut job = NewJob::new("q", "t", json!({}));
        job.opts.job_id = Some(String::new());
        assert_eq!(job.validate(), Err(InvalidJob::EmptyCustomId));
    }

    #[test]
    fn zero_timeout_is_refused_instead_of_failing_every_attempt() {
        let mut job = NewJob::new("q", "t", json!({}));
        job.opts.timeout = Some(0);
        assert_eq!(job.validate(), Err(InvalidJob::ZeroTimeout));
        job.opts.timeout = Some(1);
        assert_eq!(job.validate(), Ok(()));
    }

    #[test]
    fn a_payload_over_the_limit_is_refused() {
        let text = "x".repeat(MAX_PAYLOAD_BYTES - 4);
        // The JSON of a string is its text in quotes: one byte under the limit, then three over.
        let fits = NewJob::new("q", "t", json!(text.clone() + "x"));
        assert_eq!(fits.validate(), Ok(()));
        let over = NewJob::new("q", "t", json!(text + "xxxxx"));
        assert_eq!(over.validate(), Err(InvalidJob::PayloadTooLarge));
        assert_eq!(
            over.validate().unwrap_err().to_string(),
            "payload is larger than the limit of 16777216 bytes of JSON"
        );
    }

    /// Reported: a priority of 4,000,000 was stored, which BullMQ readers cannot order.
    #[test]
    fn a_priority_above_bullmqs_highest_is_refused() {
        let mut job = NewJob::new("q", "t", json!({}));
        job.opts.priority = MAX_PRIORITY;
        assert_eq!(job.validate(), Ok(()));
        job.opts.priority = MAX_PRIORITY + 1;
        assert_eq!(
            job.validate(),
            Err(InvalidJob::PriorityTooHigh(MAX_PRIORITY + 1))
        );
    }

    #[test]
    fn job_options_use_bullmq_field_names() {
        let opts: JobOptions = serde_json::from_value(json!({
            "attempts": 3, "backoff": {"type": "exponential", "delay": 1000},
            "removeOnComplete": {"count": 10}, "jobId": "abc"
        }))
        .unwrap();
        assert_eq!(opts.backoff, Some(Backoff::Exponential { delay: 1000 }));
        assert_eq!(opts.remove_on_complete.count, Some(10));
        assert!(serde_json::from_value::<JobOptions>(json!({"atempts": 3})).is_err());
    }
}
