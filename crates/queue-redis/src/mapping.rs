//! How SmartWorker's jobs are written to and read from BullMQ's job hash.
//!
//! A job hash holds BullMQ's fields (`name`, `data`, `opts`, `timestamp`, `delay`, `priority`,
//! `atm`, `processedOn`, `finishedOn`, `returnvalue`, `failedReason`, `stacktrace`, ...) in the
//! forms BullMQ writes them, so Node's `Queue`, `Worker` and Bull Board read them unchanged.
//! SmartWorker's own history lives beside them in fields named `sw:*` (`sw:attempts`, the JSON
//! list of [`Attempt`]s; `sw:runAt`; `sw:token`; `sw:dlq`/`sw:dlqId`; `sw:origin`), which BullMQ
//! ignores. Reading is lenient: a job written by Node, with options SmartWorker does not know,
//! still reads.

use serde_json::{Map, Value, json};
use smartworker_core::{Attempt, Backoff, Job, JobId, JobOptions, JobState, KeepJobs};
use std::collections::HashMap;

/// A job's fields as HGETALL returns them.
pub(crate) type Fields = HashMap<String, String>;

/// The public id of a job: `<queue>:<BullMQ id>`. Queue names cannot hold `:`, so the first
/// `:` always splits it; BullMQ ids are per queue, so the queue is part of the id.
pub(crate) fn public_id(queue: &str, id: &str) -> JobId {
    JobId(format!("{queue}:{id}"))
}

/// Splits a public id into queue and BullMQ id.
pub(crate) fn split_id(id: &JobId) -> Option<(&str, &str)> {
    let (queue, bare) = id.0.split_once(':')?;
    if queue.is_empty() || bare.is_empty() {
        return None;
    }
    Some((queue, bare))
}

/// Job options in the JSON form BullMQ stores in the `opts` field.
pub(crate) fn bullmq_opts(opts: &JobOptions) -> Value {
    let mut out = Map::new();
    out.insert("attempts".into(), json!(opts.attempts));
    out.insert("delay".into(), json!(opts.delay));
    if opts.priority > 0 {
        out.insert("priority".into(), json!(opts.priority));
    }
    if let Some(backoff) = opts.backoff {
        let (kind, delay) = match backoff {
            Backoff::Fixed { delay } => ("fixed", delay),
            Backoff::Exponential { delay } => ("exponential", delay),
        };
        out.insert("backoff".into(), json!({"type": kind, "delay": delay}));
    }
    if let Some(keep) = keep_form(opts.remove_on_complete) {
        out.insert("removeOnComplete".into(), keep);
    }
    if let Some(keep) = keep_form(opts.remove_on_fail) {
        out.insert("removeOnFail".into(), keep);
    }
    if let Some(id) = &opts.job_id {
        out.insert("jobId".into(), json!(id));
    }
    // Not BullMQ options; BullMQ keeps and ignores them.
    if let Some(timeout) = opts.timeout {
        out.insert("timeout".into(), json!(timeout));
    }
    if opts.autofix {
        out.insert("autofix".into(), json!(true));
    }
    Value::Object(out)
}

/// BullMQ's spelling of a retention rule; `None` keeps every job.
fn keep_form(keep: KeepJobs) -> Option<Value> {
    match (keep.count, keep.age_secs) {
        (None, None) => None,
        (Some(0), None) => Some(json!(true)),
        (Some(count), None) => Some(json!(count)),
        (count, Some(age)) => {
            let mut form = Map::new();
            if let Some(count) = count {
                form.insert("count".into(), json!(count));
            }
            form.insert("age".into(), json!(age));
            Some(Value::Object(form))
        }
    }
}

/// Reads BullMQ's `opts` JSON, keeping what SmartWorker understands and ignoring the rest.
pub(crate) fn read_opts(text: Option<&String>) -> JobOptions {
    let Some(Value::Object(raw)) = text.and_then(|t| serde_json::from_str(t).ok()) else {
        return JobOptions::default();
    };
    let uint = |key: &str| raw.get(key).and_then(Value::as_u64);
    let keep = |key: &str| {
        raw.get(key)
            .and_then(|v| serde_json::from_value::<KeepJobs>(v.clone()).ok())
            .unwrap_or_default()
    };
    JobOptions {
        attempts: uint("attempts")
            .and_then(|a| u32::try_from(a).ok())
            .filter(|a| *a > 0)
            .unwrap_or(1),
        backoff: raw.get("backoff").and_then(read_backoff),
        delay: uint("delay").unwrap_or(0),
        priority: uint("priority")
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0),
        timeout: uint("timeout").filter(|t| *t > 0),
        remove_on_complete: keep("removeOnComplete"),
        remove_on_fail: keep("removeOnFail"),
        autofix: raw.get("autofix").and_then(Value::as_bool) == Some(true),
        job_id: raw.get("jobId").and_then(Value::as_str).map(str::to_owned),
    }
}

/// BullMQ's backoff: a number (a fixed delay) or `{type, delay}`; custom types are not run
/// by SmartWorker and read as no backoff.
fn read_backoff(value: &Value) -> Option<Backoff> {
    if let Some(delay) = value.as_u64() {
        return Some(Backoff::Fixed { delay });
    }
    let delay = value.get("delay").and_then(Value::as_u64).unwrap_or(0);
    match value.get("type").and_then(Value::as_str)? {
        "fixed" => Some(Backoff::Fixed { delay }),
        "exponential" => Some(Backoff::Exponential { delay }),
        _ => None,
    }
}

/// The SmartWorker state of a BullMQ state name.
pub(crate) fn read_state(state: &str) -> JobState {
    match state {
        "delayed" => JobState::Delayed,
        "active" => JobState::Active,
        "completed" => JobState::Completed,
        "failed" => JobState::Dead,
        // wait, paused, prioritized, waiting-children and anything newer.
        _ => JobState::Waiting,
    }
}

fn int(fields: &Fields, key: &str) -> Option<i64> {
    fields
        .get(key)
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as i64)
}

/// A job from its hash. `state` is BullMQ's state name.
pub(crate) fn read_job(queue: &str, id: &str, state: &str, fields: &Fields) -> Job {
    let state = read_state(state);
    let opts = read_opts(fields.get("opts"));
    let data = fields
        .get("data")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.clone())))
        .unwrap_or(Value::Null);
    let finished_attempts = int(fields, "atm").and_then(|a| u32::try_from(a).ok());
    let running = u32::from(state == JobState::Active);
    let created_at = int(fields, "timestamp").unwrap_or(0);
    let run_at = int(fields, "sw:runAt")
        .unwrap_or_else(|| created_at.saturating_add(int(fields, "delay").unwrap_or(0)));
    let finished = matches!(state, JobState::Completed | JobState::Dead);
    Job {
        id: public_id(queue, id),
        queue: queue.to_owned(),
        name: fields.get("name").cloned().unwrap_or_default(),
        data,
        opts,
        state,
        attempts_made: finished_attempts.unwrap_or(0).saturating_add(running),
        attempts: fields
            .get("sw:attempts")
            .and_then(|a| serde_json::from_str::<Vec<Attempt>>(a).ok())
            .unwrap_or_default(),
        result: fields
            .get("returnvalue")
            .filter(|_| state == JobState::Completed)
            .map(|r| serde_json::from_str(r).unwrap_or_else(|_| Value::String(r.clone()))),
        failed_reason: fields
            .get("failedReason")
            .filter(|_| state == JobState::Dead)
            .cloned(),
        created_at,
        run_at,
        finished_at: int(fields, "finishedOn").filter(|_| finished),
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test fails loudly at the first unexpected error"
    )]

    use super::*;

    #[test]
    fn options_round_trip_through_bullmqs_form() {
        let opts = JobOptions {
            attempts: 3,
            backoff: Some(Backoff::Exponential { delay: 100 }),
            delay: 50,
            priority: 2,
            timeout: Some(900),
            remove_on_complete: KeepJobs {
                count: Some(0),
                age_secs: None,
            },
            remove_on_fail: KeepJobs {
                count: Some(5),
                age_secs: Some(60),
            },
            autofix: true,
            job_id: Some("signup-a".into()),
        };
        let text = bullmq_opts(&opts).to_string();
        assert_eq!(read_opts(Some(&text)), opts);
        let form: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(form["removeOnComplete"], json!(true));
        assert_eq!(form["removeOnFail"], json!({"count": 5, "age": 60}));
        assert_eq!(
            form["backoff"],
            json!({"type": "exponential", "delay": 100})
        );
    }

    #[test]
    fn options_written_by_node_read_without_error() {
        let node = r#"{"attempts":2,"backoff":3000,"lifo":false,"kl":100,"de":{"id":"x"}}"#;
        let opts = read_opts(Some(&node.to_owned()));
        assert_eq!(opts.attempts, 2);
        assert_eq!(opts.backoff, Some(Backoff::Fixed { delay: 3000 }));
        assert_eq!(
            read_opts(Some(&"not json".to_owned())),
            JobOptions::default()
        );
    }

    #[test]
    fn public_ids_carry_their_queue() {
        let id = public_id("signup", "17");
        assert_eq!(id.0, "signup:17");
        assert_eq!(split_id(&id), Some(("signup", "17")));
        assert_eq!(split_id(&JobId::from("q:a:b")), Some(("q", "a:b")));
        assert_eq!(split_id(&JobId::from("17")), None);
        assert_eq!(split_id(&JobId::from(":17")), None);
    }
}
