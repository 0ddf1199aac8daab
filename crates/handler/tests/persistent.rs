//! Runs a real Python JSON-lines handler through the persistent command handler.

mod support;

use expect_test::expect;
use serde_json::{Value, json};
use smartworker_core::{Handler, Job, JobId, JobState, NewJob};
use smartworker_handler::{CommandSpec, PersistentCommandHandler, PersistentOptions};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";

/// A JSON-lines handler: `data.action` picks what it does with each request.
const HANDLER: &str = r#"
import json, os, subprocess, sys, time

for line in sys.stdin:
    req = json.loads(line)
    data = req["data"]
    action = data.get("action", "echo")
    if action == "print":
        print("just logging")
        print("[1, 2]")
        print(json.dumps({"id": "someone-else", "ok": True, "result": "wrong"}))
    if action == "crash":
        sys.stderr.write("about to crash on " + req["id"] + "\n")
        sys.stderr.flush()
        os._exit(3)
    if action == "sleep":
        if "pid_file" in data:
            child = subprocess.Popen(["sleep", "100"])
            with open(data["pid_file"], "w") as f:
                f.write(str(child.pid))
        time.sleep(data["seconds"])
    if action == "noise":
        sys.stderr.write("y" * 1000000 + "\n")
        sys.stderr.flush()
    if action == "fail":
        answer = {"id": req["id"], "ok": False, "error": "ValueError: bad email",
                  "stack": "Traceback (most recent call last):\n"
                           "  File \"handler.py\", line 9, in send\n"
                           "ValueError: bad email\n"}
    else:
        answer = {"id": req["id"], "ok": True, "result": {"pid": os.getpid(), "request": req}}
    print(json.dumps(answer), flush=True)
"#;

struct Fixture {
    dir: tempfile::TempDir,
    handler: Arc<PersistentCommandHandler>,
}

fn fixture(processes: usize) -> Fixture {
    fixture_with(processes, None)
}

/// A pool of `processes` copies of [`HANDLER`], with `timeout` as the spec's timeout.
fn fixture_with(processes: usize, timeout: Option<Duration>) -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let script = dir.path().join("handler.py");
    std::fs::write(&script, HANDLER).expect("write the handler script");
    let script = script.to_str().expect("a UTF-8 temporary path");
    let mut spec = CommandSpec::new(PYTHON, &["-u", script], dir.path());
    spec.timeout = timeout;
    let handler = PersistentCommandHandler::new(spec, PersistentOptions::new(processes));
    Fixture {
        dir,
        handler: Arc::new(handler),
    }
}

fn job(id: &str, data: Value) -> Job {
    Job {
        state: JobState::Active,
        attempts_made: 1,
        ..Job::stored(JobId::from(id), NewJob::new("signup", "welcome", data), 0)
    }
}

/// The pid the handler reports in a successful result.
fn pid_of(result: &Value) -> u64 {
    result["pid"].as_u64().expect("the handler reports its pid")
}

/// True once `pid` no longer runs: gone from /proc, or a zombie waiting for its reaper.
fn process_gone(pid: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
    else {
        return true;
    };
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    state.starts_with('Z') || state.starts_with('X')
}

fn wait_until_gone(pid: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test]
async fn many_jobs_are_served_by_one_process() {
    let fx = fixture(1);
    let mut pids = BTreeSet::new();
    let mut last = Value::Null;
    for n in 0..20 {
        last = fx
            .handler
            .run(&job(&n.to_string(), json!({"n": n})))
            .await
            .unwrap();
        pids.insert(pid_of(&last));
    }
    assert_eq!(pids.len(), 1, "{pids:?}");
    expect![[r#"
        {
          "attempt": 1,
          "data": {
            "n": 19
          },
          "id": "19",
          "name": "welcome",
          "queue": "signup"
        }"#]]
    .assert_eq(&serde_json::to_string_pretty(&last["request"]).unwrap());
}

#[tokio::test]
async fn prints_that_are_not_answers_are_ignored() {
    let fx = fixture(1);
    let result = fx
        .handler
        .run(&job("1", json!({"action": "print"})))
        .await
        .unwrap();
    assert_eq!(result["request"]["id"], "1");
    let next = fx.handler.run(&job("2", json!({}))).await.unwrap();
    assert_eq!(pid_of(&next), pid_of(&result));
}

#[tokio::test]
async fn reported_failure_keeps_its_stack_and_the_process() {
    let fx = fixture(1);
    let before = fx.handler.run(&job("1", json!({}))).await.unwrap();
    let failure = fx
        .handler
        .run(&job("2", json!({"action": "fail"})))
        .await
        .unwrap_err();
    expect![[r#"
        JobFailure {
            message: "ValueError: bad email",
            stack: Some(
                "Traceback (most recent call last):\n  File \"handler.py\", line 9, in send\nValueError: bad email\n",
            ),
        }
    "#]]
    .assert_debug_eq(&failure);
    let after = fx.handler.run(&job("3", json!({}))).await.unwrap();
    assert_eq!(pid_of(&after), pid_of(&before));
}

#[tokio::test]
async fn crash_fails_the_job_and_the_next_job_gets_a_new_process() {
    let fx = fixture(1);
    let before = pid_of(&fx.handler.run(&job("1", json!({}))).await.unwrap());
    let failure = fx
        .handler
        .run(&job("2", json!({"action": "crash"})))
        .await
        .unwrap_err();
    expect![[r#"
        JobFailure {
            message: "handler process exited with code 3 during the job",
            stack: Some(
                "about to crash on 2\n",
            ),
        }
    "#]]
    .assert_debug_eq(&failure);
    assert!(
        wait_until_gone(before),
        "crashed process {before} still runs"
    );

    let after = pid_of(&fx.handler.run(&job("3", json!({}))).await.unwrap());
    assert_ne!(after, before);
}

#[tokio::test]
async fn timeout_kills_the_process_group_and_replaces_the_process() {
    let fx = fixture(1);
    let before = pid_of(&fx.handler.run(&job("1", json!({}))).await.unwrap());
    let pid_file = fx.dir.path().join("grandchild");
    let mut slow = job(
        "2",
        json!({"action": "sleep", "seconds": 100, "pid_file": pid_file}),
    );
    slow.opts.timeout = Some(500);

    let started = Instant::now();
    let failure = fx.handler.run(&slow).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    support::assert_timed_out_after(&failure.message, 0.5);
    assert!(
        wait_until_gone(before),
        "timed-out process {before} still runs"
    );
    let grandchild: u64 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert!(
        wait_until_gone(grandchild),
        "grandchild {grandchild} still runs"
    );

    let after = pid_of(&fx.handler.run(&job("3", json!({}))).await.unwrap());
    assert_ne!(after, before);
}

#[tokio::test]
async fn spec_timeout_applies_when_the_job_has_none() {
    let fx = fixture_with(1, Some(Duration::from_millis(300)));
    let slow = job("1", json!({"action": "sleep", "seconds": 100}));
    let failure = fx.handler.run(&slow).await.unwrap_err();
    support::assert_timed_out_after(&failure.message, 0.3);
}

#[tokio::test]
async fn dropped_run_kills_its_process_and_the_next_job_gets_a_new_one() {
    let fx = fixture(1);
    let before = pid_of(&fx.handler.run(&job("1", json!({}))).await.unwrap());
    let slow = job("2", json!({"action": "sleep", "seconds": 100}));
    let run = tokio::time::timeout(Duration::from_millis(300), fx.handler.run(&slow));
    assert!(run.await.is_err(), "the job should still be running");
    assert!(
        wait_until_gone(before),
        "abandoned process {before} still runs"
    );

    let after = pid_of(&fx.handler.run(&job("3", json!({}))).await.unwrap());
    assert_ne!(after, before);
}

#[tokio::test]
async fn thirty_concurrent_jobs_use_at_most_three_processes() {
    let fx = fixture(3);
    let mut jobs = tokio::task::JoinSet::new();
    for n in 0..30 {
        let handler = Arc::clone(&fx.handler);
        jobs.spawn(async move {
            let sleepy = job(&n.to_string(), json!({"action": "sleep", "seconds": 0.05}));
            handler.run(&sleepy).await
        });
    }
    let mut pids = BTreeSet::new();
    while let Some(done) = jobs.join_next().await {
        pids.insert(pid_of(&done.unwrap().unwrap()));
    }
    assert_eq!(pids.len(), 3, "{pids:?}");
}

#[tokio::test]
async fn prestart_fills_the_pool_once_and_jobs_use_those_processes() {
    let fx = fixture(3);
    assert_eq!(fx.handler.prestart().unwrap(), 3);
    assert_eq!(
        fx.handler.prestart().unwrap(),
        0,
        "the pool is already full"
    );
    let mut jobs = tokio::task::JoinSet::new();
    for n in 0..12 {
        let handler = Arc::clone(&fx.handler);
        jobs.spawn(async move { handler.run(&job(&n.to_string(), json!({}))).await });
    }
    let mut pids = BTreeSet::new();
    while let Some(done) = jobs.join_next().await {
        pids.insert(pid_of(&done.unwrap().unwrap()));
    }
    assert!(pids.len() <= 3, "{pids:?}");
    assert_eq!(
        fx.handler.prestart().unwrap(),
        0,
        "no process died or was added"
    );
}

#[tokio::test]
async fn loud_stderr_does_not_block_the_process() {
    let fx = fixture(1);
    for n in 0..5 {
        let result = fx
            .handler
            .run(&job(&n.to_string(), json!({"action": "noise"})))
            .await;
        assert!(result.is_ok(), "{result:?}");
    }
}

#[tokio::test]
async fn shutdown_kills_the_processes_and_refuses_later_jobs() {
    let fx = fixture(1);
    let pid = pid_of(&fx.handler.run(&job("1", json!({}))).await.unwrap());
    fx.handler.shutdown();
    assert!(wait_until_gone(pid), "process {pid} survived shutdown");
    let failure = fx.handler.run(&job("2", json!({}))).await.unwrap_err();
    assert_eq!(
        failure.message,
        format!("persistent handler {PYTHON:?} is shut down")
    );
}

#[tokio::test]
async fn dropping_the_handler_kills_its_processes() {
    let fx = fixture(1);
    let pid = pid_of(&fx.handler.run(&job("1", json!({}))).await.unwrap());
    drop(fx);
    assert!(wait_until_gone(pid), "process {pid} survived the handler");
}

#[tokio::test]
async fn missing_program_is_a_clear_failure() {
    let spec = CommandSpec::new("/nonexistent/handler-bin", &[], std::env::temp_dir());
    let handler = PersistentCommandHandler::new(spec, PersistentOptions::new(2));
    let failure = handler.run(&job("1", json!({}))).await.unwrap_err();
    expect![[r#"
        JobFailure {
            message: "cannot start \"/nonexistent/handler-bin\": No such file or directory (os error 2)",
            stack: None,
        }
    "#]]
    .assert_debug_eq(&failure);
}
