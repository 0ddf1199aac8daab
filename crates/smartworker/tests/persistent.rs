//! Persistent command handlers through the real binary: a `serve` whose queues keep
//! long-lived Python and Node processes, driven by the CLI.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod support;

use serde_json::Value;
use smartworker_model::testing::ScriptedModelServer;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::project::{DEADLINE, Project, eventually};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/persistent")
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/persistent")
}

fn job(project: &Project, id: &str) -> Value {
    let shown = project.run(&["jobs", id]);
    assert_eq!(shown.code, Some(0), "{}", shown.all());
    serde_json::from_str(&shown.stdout).unwrap()
}

/// Enqueues a job without waiting and returns its id.
fn enqueue(project: &Project, queue: &str, data: &str) -> String {
    let added = project.run(&["enqueue", queue, "--data", data]);
    assert_eq!(added.code, Some(0), "{}", added.all());
    added.stdout.trim().to_owned()
}

/// Waits until job `id` has finished one way or the other; the job.
fn finished(project: &Project, id: &str) -> Value {
    let mut last = Value::Null;
    eventually(&format!("job {id} to finish"), DEADLINE, || {
        last = job(project, id);
        last["state"] == "completed" || last["state"] == "dead"
    });
    last
}

#[test]
fn persistent_queue_serves_many_jobs_on_its_few_processes() {
    let project = Project::copy_of(&fixture());
    let server = project.serve("serve");

    let ids: Vec<String> = (0..8)
        .map(|n| enqueue(&project, "echo", &format!(r#"{{"n":{n}}}"#)))
        .collect();
    let mut pids = BTreeSet::new();
    for (n, id) in ids.iter().enumerate() {
        let job = finished(&project, id);
        assert_eq!(job["state"], "completed", "{job:#}");
        assert_eq!(job["result"]["data"]["n"], n, "{job:#}");
        pids.insert(job["result"]["pid"].as_u64().unwrap());
    }
    assert!(
        (1..=2).contains(&pids.len()),
        "8 jobs on `processes = 2` ran in {} processes: {pids:?}",
        pids.len()
    );
    let (status, log) = server.stop();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
}

#[test]
fn crashed_process_fails_its_attempt_and_a_fresh_one_serves_the_retry() {
    let project = Project::copy_of(&fixture());
    let server = project.serve("serve");

    let id = enqueue(&project, "echo", r#"{"action":"crash_first"}"#);
    let job = finished(&project, &id);
    assert_eq!(job["state"], "completed", "{job:#}");
    let attempts = job["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{job:#}");
    assert_eq!(
        attempts[0]["error"],
        "handler process exited with code 3 during the job"
    );
    let stack = attempts[0]["stack"].as_str().unwrap();
    let crashed: u64 = stack
        .strip_prefix("process ")
        .and_then(|rest| rest.split_once(' '))
        .map(|(pid, rest)| {
            assert_eq!(rest.trim(), format!("crashed while serving job {id}"));
            pid.parse().unwrap()
        })
        .unwrap_or_else(|| panic!("the stderr tail is the stack: {stack:?}"));
    assert_ne!(job["result"]["pid"].as_u64().unwrap(), crashed);
    assert!(!Path::new(&format!("/proc/{crashed}")).exists());
    server.stop();
}

#[test]
fn failure_answer_dead_letters_the_job_with_its_message_and_stack() {
    let project = Project::copy_of(&fixture());
    let server = project.serve("serve");
    let id = enqueue(&project, "echo", r#"{"action":"fail"}"#);
    let job = finished(&project, &id);
    assert_eq!(job["state"], "dead", "{job:#}");
    assert_eq!(job["failed_reason"], "ValueError: bad email");
    let attempts = job["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts[1]["stack"]
            .as_str()
            .unwrap()
            .contains("in <module>")
    );
    server.stop();
}

#[test]
fn node_example_answers_and_python_example_fails_with_its_traceback() {
    let project = Project::copy_of(&example());
    let server = project.serve("serve");
    let order = r#"{"items":[{"unit_price":"19.90","qty":2},{"unit_price":"0.35","qty":3}]}"#;
    let total = finished(&project, &enqueue(&project, "total", order));
    assert_eq!(total["state"], "completed", "{total:#}");
    assert_eq!(total["result"], serde_json::json!({"total": "40.85"}));
    let empty = finished(
        &project,
        &enqueue(&project, "total", r#"{"customer":"Ada"}"#),
    );
    assert_eq!(empty["failed_reason"], "Error: order for Ada has no items");
    assert!(
        empty["attempts"][0]["stack"]
            .as_str()
            .unwrap()
            .contains("total_server.mjs"),
        "{empty:#}"
    );

    let greet = finished(&project, &enqueue(&project, "greet", r#"{"name":"Ada"}"#));
    assert_eq!(greet["failed_reason"], "KeyError: 'user'", "{greet:#}");
    let stack = greet["attempts"][0]["stack"].as_str().unwrap();
    assert!(stack.contains("lib/greetings.py\", line"), "{stack}");
    server.stop();
}

/// A wrong fix of the example: the handler still fails the job, answers `{"ok": false}` and
/// exits 0 when its input ends.
const WRONG_REPLY: &str = r#"Root cause: the user object may be missing.

```python path=handlers/lib/greetings.py
"""Greets a new user by name."""


def greeting(data):
    name = data.get("user", {})["name"]
    return f"Hello, {name.strip()}!"


def run(data):
    return {"greeting": greeting(data)}
```"#;

#[test]
fn serve_does_not_verify_a_fix_whose_persistent_rerun_answers_ok_false() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let model = runtime.block_on(ScriptedModelServer::start()).unwrap();
    model.push_content(WRONG_REPLY);
    let mut project = Project::copy_of(&example());
    project.set("APP_LLM_URL", model.base_url());
    project.set("APP_HEAL_ROUNDS", "1");
    let server = project.serve("serve");

    enqueue(&project, "greet", r#"{"name":"Ada"}"#);
    eventually("a fix to be stored", Duration::from_secs(60), || {
        project.run(&["fixes"]).stdout.contains("fix 1")
    });
    let fix: Value = serde_json::from_str(&project.run(&["fixes", "show", "1"]).stdout).unwrap();
    assert_eq!(fix["verified"], false, "{fix:#}");
    let shown = fix.to_string();
    assert!(shown.contains(r#"\"ok\": false"#), "{fix:#}");
    assert_eq!(model.chat_calls(), 1);
    server.stop();
}
