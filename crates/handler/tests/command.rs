//! Runs real processes (python3 and sh) through `run_command` and the command handler.

mod support;

use serde_json::{Value, json};
use smartworker_core::{Handler, Job, JobFailure, JobId, JobState, NewJob};
use smartworker_handler::{
    CommandHandler, CommandSpec, HandlerError, handler_fn, job_outcome, run_command,
};
use std::path::Path;
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";

fn job(data: Value) -> Job {
    Job {
        state: JobState::Active,
        attempts_made: 2,
        ..Job::stored(JobId::from("42"), NewJob::new("signup", "welcome", data), 0)
    }
}

fn python(code: &str) -> CommandSpec {
    CommandSpec::new(PYTHON, &["-c", code], std::env::temp_dir())
}

fn sh(script: &str) -> CommandSpec {
    CommandSpec::new("/bin/sh", &["-c", script], std::env::temp_dir())
}

/// True once `pid` no longer runs: gone from /proc, or a zombie waiting for its reaper.
fn process_gone(pid: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")) else {
        return true;
    };
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    state.starts_with('Z') || state.starts_with('X')
}

fn wait_until_gone(pid: &str) -> bool {
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
async fn payload_round_trips_through_stdin_and_result_through_stdout() {
    let code = "import json, os, sys\n\
                job = json.load(sys.stdin)\n\
                print('logging before the result')\n\
                print(json.dumps({'job': job, 'ctx': os.environ['EXECUTION_CONTEXT'],\n\
                                  'id': os.environ['SMARTWORKER_JOB_ID'],\n\
                                  'queue': os.environ['SMARTWORKER_QUEUE'],\n\
                                  'name': os.environ['SMARTWORKER_JOB_NAME']}))";
    let handler = CommandHandler::new(python(code));
    let result = handler
        .run(&job(json!({"email": "a@b.c", "n": [1, 2]})))
        .await;
    let expected = json!({
        "job": {"id": "42", "name": "welcome", "queue": "signup",
                "data": {"email": "a@b.c", "n": [1, 2]}, "attempt": 2},
        "ctx": "host", "id": "42", "queue": "signup", "name": "welcome",
    });
    assert_eq!(result, Ok(expected));
}

#[tokio::test]
async fn python_traceback_becomes_the_stack_and_its_last_line_the_message() {
    let code = "import json, sys\n\
                def send(data):\n    return data['email']\n\
                send(json.load(sys.stdin)['data'])";
    let handler = CommandHandler::new(python(code));
    let failure = handler.run(&job(json!({"name": "x"}))).await.unwrap_err();
    assert_eq!(failure.message, "KeyError: 'email'");
    let stack = failure.stack.unwrap();
    assert!(
        stack.starts_with("Traceback (most recent call last):"),
        "{stack}"
    );
    assert!(stack.contains("in send"), "{stack}");
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let mut spec = sh("sleep 100 & echo $!; sleep 100");
    spec.timeout = Some(Duration::from_millis(500));
    let started = Instant::now();
    let out = run_command(&spec, b"").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(out.timed_out);
    assert_eq!(out.signal, Some(9));
    let grandchild = out.stdout.trim();
    assert!(!grandchild.is_empty(), "no pid printed");
    assert!(
        wait_until_gone(grandchild),
        "grandchild {grandchild} still runs"
    );
    let failure = job_outcome(&out).unwrap_err();
    support::assert_timed_out_after(&failure.message, 0.5);
}

#[tokio::test]
async fn dropping_the_future_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!("sleep 100 & echo $! > {}; sleep 100", pid_file.display());
    let spec = sh(&script);
    let run = tokio::time::timeout(Duration::from_millis(500), run_command(&spec, b""));
    assert!(run.await.is_err(), "the command should still be running");
    let grandchild = std::fs::read_to_string(&pid_file).unwrap();
    assert!(
        wait_until_gone(grandchild.trim()),
        "grandchild {grandchild} still runs"
    );
}

#[tokio::test]
async fn background_processes_left_at_exit_are_killed_and_not_waited_for() {
    let started = Instant::now();
    let out = run_command(&sh("sleep 100 & echo $!; echo '{\"done\":1}'"), b"")
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(job_outcome(&out), Ok(json!({"done": 1})));
    let grandchild = out.stdout.lines().next().unwrap();
    assert!(
        wait_until_gone(grandchild),
        "grandchild {grandchild} still runs"
    );
}

#[tokio::test]
async fn huge_output_is_capped_keeping_the_tail() {
    let code = "import sys\n\
                sys.stdout.write('x' * 5_000_000 + '\\n{\"end\": true}\\n')\n\
                sys.stderr.write('y' * 5_000_000 + '\\nValueError: last\\n')\n\
                sys.exit(1)";
    let mut spec = python(code);
    spec.max_output_bytes = 1000;
    let out = run_command(&spec, b"").await.unwrap();
    assert!(out.truncated);
    assert_eq!(out.stdout.len(), 1000);
    assert_eq!(out.stderr.len(), 1000);
    assert!(out.stdout.ends_with("{\"end\": true}\n"));
    assert_eq!(job_outcome(&out).unwrap_err().message, "ValueError: last");
}

#[tokio::test]
async fn missing_program_is_an_error_naming_it() {
    let spec = CommandSpec::new("/nonexistent/handler-bin", &[], std::env::temp_dir());
    let err = run_command(&spec, b"").await.unwrap_err();
    assert!(matches!(err, HandlerError::Spawn { .. }));
    assert_eq!(
        err.to_string(),
        "cannot start \"/nonexistent/handler-bin\": No such file or directory (os error 2)"
    );
    let handler = CommandHandler::new(spec);
    let failure = handler.run(&job(json!({}))).await.unwrap_err();
    assert!(
        failure.message.contains("/nonexistent/handler-bin"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn child_that_ignores_stdin_is_not_an_error() {
    let payload = vec![b'a'; 1 << 20];
    let out = run_command(&sh("echo '[1]'"), &payload).await.unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(job_outcome(&out), Ok(json!([1])));
}

#[tokio::test]
async fn death_by_signal_is_named() {
    let out = run_command(&sh("kill -TERM $$"), b"").await.unwrap();
    assert_eq!((out.exit_code, out.signal), (None, Some(15)));
    assert_eq!(
        job_outcome(&out).unwrap_err().message,
        "killed by signal SIGTERM"
    );
}

#[tokio::test]
async fn job_timeout_overrides_the_spec_timeout() {
    let mut spec = sh("sleep 100");
    spec.timeout = Some(Duration::from_secs(60));
    let mut slow = job(json!({}));
    slow.opts.timeout = Some(300);
    let started = Instant::now();
    let failure = CommandHandler::new(spec).run(&slow).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    support::assert_timed_out_after(&failure.message, 0.3);
}

#[tokio::test]
async fn cleared_environment_keeps_only_the_given_variables() {
    let mut spec = sh("env");
    spec.clear_env = true;
    spec.env = vec![("ONLY".into(), "this".into())];
    let out = run_command(&spec, b"").await.unwrap();
    let mut vars: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("PWD="))
        .collect();
    vars.sort_unstable();
    assert_eq!(vars, ["ONLY=this"]);
}

#[tokio::test]
async fn function_handler_gets_the_job() {
    let handler = handler_fn(|job: Job| async move {
        match job.data.get("email") {
            Some(email) => Ok(json!({"sent": email})),
            None => Err(JobFailure::new("no email")),
        }
    });
    let sent = handler.run(&job(json!({"email": "a@b.c"}))).await;
    assert_eq!(sent, Ok(json!({"sent": "a@b.c"})));
    let failed = handler.run(&job(json!({}))).await;
    assert_eq!(failed, Err(JobFailure::new("no email")));
}
