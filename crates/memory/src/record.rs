//! The records the memory store keeps and returns: groups, fixes and heal attempts.
//!
//! Every type here is plain data that serialises to the JSON the HTTP API returns. Times are
//! milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The result of recording a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// The stored failure.
    pub failure_id: i64,
    /// The group it joined.
    pub group_id: i64,
    /// True when this failure created the group.
    pub new_group: bool,
}

/// Failures that share a fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The id.
    pub id: i64,
    /// The fingerprint every failure of the group has.
    pub fingerprint: String,
    /// The error type of the first failure.
    pub error_type: String,
    /// The (masked) message of the first failure.
    pub message: String,
    /// How many failures joined the group.
    pub count: u64,
    /// When the first one was recorded.
    pub first_seen: i64,
    /// When the last one was recorded.
    pub last_seen: i64,
    /// Every queue a failure of the group came from, sorted.
    pub queues: Vec<String>,
    /// The newest job ids, oldest first, at most [`crate::MAX_GROUP_JOB_IDS`].
    pub last_job_ids: Vec<String>,
}

/// A stored failure close to a query vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimilarFailure {
    /// The failure whose chunk matched best.
    pub failure_id: i64,
    /// Its group.
    pub group_id: i64,
    /// Cosine similarity of the best matching chunk, from -1 to 1.
    pub score: f32,
    /// The failure's error type.
    pub error_type: String,
    /// The failure's (masked) message.
    pub message: String,
    /// The group's newest verified fix, or its newest fix when none is verified.
    pub fix: Option<FixSummary>,
}

/// Where a fix came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FixSource {
    /// A language model proposed it.
    Model,
    /// It was reused from an earlier fix in memory.
    Memory,
}

impl FixSource {
    /// The lowercase name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            FixSource::Model => "model",
            FixSource::Memory => "memory",
        }
    }

    /// Parses the name written by [`FixSource::as_str`].
    pub fn parse(name: &str) -> Option<FixSource> {
        match name {
            "model" => Some(FixSource::Model),
            "memory" => Some(FixSource::Memory),
            _ => None,
        }
    }
}

/// A fix to record. Memory stores `verified` as it is told; it never judges a fix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewFix {
    /// The group the fix is for.
    pub group_id: i64,
    /// The failure it was made for; it must belong to `group_id`.
    pub failure_id: i64,
    /// The failed job.
    pub job_id: String,
    /// The failed job's queue.
    pub queue: String,
    /// True when the job succeeded in the sandbox with the fix applied.
    pub verified: bool,
    /// The root cause, in the model's words.
    pub root_cause: String,
    /// The unified diff.
    pub diff: String,
    /// The edits as parsed from the model's reply, to apply the fix again.
    pub edits_json: Value,
    /// Where the fix came from.
    pub source: FixSource,
    /// The model that proposed it (for a reused fix, the model of the original).
    pub model: String,
    /// How many model rounds it took.
    pub rounds: u32,
    /// The heal job that produced it; its recorded attempts are linked to the fix.
    #[serde(default)]
    pub heal_job_id: Option<String>,
}

/// A fix without its diff and edits, for lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixSummary {
    /// The id.
    pub id: i64,
    /// Its group.
    pub group_id: i64,
    /// The failure it was made for.
    pub failure_id: i64,
    /// The failed job.
    pub job_id: String,
    /// The failed job's queue.
    pub queue: String,
    /// As recorded.
    pub verified: bool,
    /// Where it came from.
    pub source: FixSource,
    /// The model that proposed it.
    pub model: String,
    /// Model rounds.
    pub rounds: u32,
    /// The root cause.
    pub root_cause: String,
    /// The heal job that produced it.
    pub heal_job_id: Option<String>,
    /// When it was recorded.
    pub created_at: i64,
}

/// A stored fix with its diff and edits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    /// Everything but the diff and edits.
    #[serde(flatten)]
    pub summary: FixSummary,
    /// The unified diff.
    pub diff: String,
    /// The edits, to apply the fix again.
    pub edits_json: Value,
}

/// A fix with the heal attempts that led to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FixDetail {
    /// The fix.
    #[serde(flatten)]
    pub fix: Fix,
    /// Its attempts, in round order.
    pub attempts: Vec<HealAttempt>,
}

/// How long the steps of one heal round took, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttemptTimings {
    /// Waiting for the model's reply.
    pub model_ms: u64,
    /// Parsing and applying the edits.
    pub apply_ms: u64,
    /// The sandbox run.
    pub sandbox_ms: u64,
    /// The whole round.
    pub total_ms: u64,
}

/// One round of healing, as the heal pipeline reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealAttemptRecord {
    /// The heal job.
    pub heal_job_id: String,
    /// The failed job being healed.
    pub job_id: String,
    /// 1 for the first round.
    pub round: u32,
    /// The prompt sent to the model.
    pub prompt: String,
    /// The model's reply.
    pub reply: String,
    /// The edits parsed from the reply.
    pub edits_json: Value,
    /// The sandbox run's stdout (masked before storage).
    pub sandbox_stdout: String,
    /// The sandbox run's stderr (masked before storage).
    pub sandbox_stderr: String,
    /// The sandbox run's exit code; none when it did not run or was killed.
    pub sandbox_exit: Option<i32>,
    /// The round's outcome, as the heal pipeline names it.
    pub verdict: String,
    /// Why the edits were refused, when they were.
    pub refusal: Option<String>,
    /// Step durations.
    #[serde(default)]
    pub timings: AttemptTimings,
}

/// A stored heal attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealAttempt {
    /// The id.
    pub id: i64,
    /// The fix it led to, once one is recorded for its heal job.
    pub fix_id: Option<i64>,
    /// When it was recorded.
    pub created_at: i64,
    /// What the pipeline reported.
    #[serde(flatten)]
    pub record: HealAttemptRecord,
}
