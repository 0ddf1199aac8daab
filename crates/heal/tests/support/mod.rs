//! What the healing tests share: waiting for a heal job's report, and reading the prompt the
//! scripted model received.

use serde_json::{Value, json};
use smartworker_core::{HEAL_QUEUE, JobId, JobState, QueueBackend};
use std::time::Duration;

/// Waits up to a minute for the heal job of job `id` to complete and returns its report;
/// fails at once when a heal job was dead-lettered instead.
pub async fn heal_report(backend: &dyn QueueBackend, id: &JobId) -> Value {
    for _ in 0..600 {
        let done = backend
            .list(HEAL_QUEUE, JobState::Completed, 100)
            .await
            .expect("listing completed heal jobs");
        if let Some(heal) = done.iter().find(|h| h.data["job_id"] == json!(id.0)) {
            return heal
                .result
                .clone()
                .expect("a completed heal job has a report");
        }
        let dead = backend
            .list(HEAL_QUEUE, JobState::Dead, 100)
            .await
            .expect("listing dead heal jobs");
        assert!(dead.is_empty(), "heal job failed: {dead:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("heal job for {id} did not finish");
}

/// The last user message of a chat request the scripted model received.
pub fn last_user_message(request: &Value) -> String {
    let messages = request["messages"]
        .as_array()
        .expect("a chat request has messages");
    let user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .expect("a chat request has a user message");
    user["content"].as_str().expect("text content").to_owned()
}
