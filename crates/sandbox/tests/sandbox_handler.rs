//! `EXECUTION_CONTEXT=sandbox`: every job of a command queue runs under bubblewrap.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly at the first unexpected error"
)]

use serde_json::json;
use smartworker_core::{Handler, Job, JobId, JobState, NewJob};
use smartworker_handler::CommandSpec;
use smartworker_sandbox::{SandboxHandler, SandboxOptions};

fn job(data: serde_json::Value) -> Job {
    Job {
        state: JobState::Active,
        attempts_made: 1,
        ..Job::stored(JobId::from("7"), NewJob::new("q", "t", data), 0)
    }
}

const HANDLER: &str = r#"
import json, os, sys
job = json.load(sys.stdin)
with open("written.txt", "w") as f:
    f.write("by the job")
print(json.dumps({"context": os.environ.get("EXECUTION_CONTEXT"),
                  "job_id": os.environ.get("SMARTWORKER_JOB_ID"),
                  "passed": os.environ.get("PASSED"),
                  "data": job["data"]}))
"#;

#[tokio::test]
async fn every_job_runs_in_a_fresh_sandbox_and_leaves_the_project_untouched() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("handler.py"), HANDLER).unwrap();
    let mut spec = CommandSpec::new("python3", &["handler.py"], project.path());
    spec.env = vec![("PASSED".into(), "by the queue".into())];
    let handler = SandboxHandler::new(
        spec,
        project.path().to_path_buf(),
        SandboxOptions::default(),
    );

    let result = handler.run(&job(json!({"n": 1}))).await.unwrap();
    let expected =
        json!({"context": "sandbox", "job_id": "7", "passed": "by the queue", "data": {"n": 1}});
    assert_eq!(result, expected);
    assert!(
        !project.path().join("written.txt").exists(),
        "the job wrote to the host project"
    );
}

#[tokio::test]
async fn a_failing_job_in_the_sandbox_reports_its_stack_trace() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("handler.py"),
        "raise KeyError('email')\n",
    )
    .unwrap();
    let spec = CommandSpec::new("python3", &["handler.py"], project.path());
    let handler = SandboxHandler::new(
        spec,
        project.path().to_path_buf(),
        SandboxOptions::default(),
    );
    let failure = handler.run(&job(json!({}))).await.unwrap_err();
    assert_eq!(failure.message, "KeyError: 'email'");
    assert!(failure.stack.unwrap().contains("handler.py"));
}
