//! Black-box tests of the `smartworker` operator commands: the real binary, run in a copy of a
//! small fixture project with a clean environment, against a `serve` it starts itself and, for
//! healing, a scripted model server on loopback.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod support;

use expect_test::expect;
use serde_json::Value;
use smartworker_model::testing::ScriptedModelServer;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use support::{Output, closed_port, drain, wait};

/// The longest any one command may take before the test calls it a hang.
const DEADLINE: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cli")
        .join(name)
}

impl Output {
    #[track_caller]
    fn success(self) -> Output {
        assert_eq!(self.code, Some(0), "{}", self.all());
        self
    }

    /// Asserts a clean failure: exit 1, one `error:` line holding `needle`, no panic.
    #[track_caller]
    fn failure(self, needle: &str) -> Output {
        assert_eq!(self.code, Some(1), "{}", self.all());
        assert!(
            self.stderr.starts_with("error: ") && self.stderr.contains(needle),
            "{needle:?} missing:\n{}",
            self.all()
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.all());
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.all()))
    }
}

/// A copy of the fixture project in a temporary directory; every command runs in it with only
/// PATH, HOME and loopback settings in its environment.
struct Project {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&fixture("project"), dir.path());
        let closed = format!("http://127.0.0.1:{}/v1", closed_port());
        let env = [
            ("APP_HOST", "127.0.0.1".to_owned()),
            ("APP_LLM_URL", closed.clone()),
            ("APP_EMBED_URL", closed),
        ];
        Project {
            dir,
            env: env.map(|(k, v)| (k.to_owned(), v)).to_vec(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn set(&mut self, name: &str, value: impl Into<String>) {
        self.env.push((name.to_owned(), value.into()));
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_smartworker"));
        command
            .args(args)
            .current_dir(self.root())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).unwrap();
        drop(input);
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        let status = wait(&mut child, DEADLINE);
        let output = Output {
            code: status.and_then(|s| s.code()),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        };
        assert!(status.is_some(), "{args:?} hung:\n{}", output.all());
        output
    }

    /// Starts `smartworker serve` on a free loopback port and waits until it serves.
    fn serve(&self) -> Server {
        self.serve_through(self.command(&["serve"]))
    }

    /// Starts `serve` through `wrapper`, a program that ends by running its own arguments, in
    /// the project with the project's variables.
    fn serve_wrapped(&self, wrapper: &[&str]) -> Server {
        let serve = self.command(&["serve"]);
        let mut command = Command::new(wrapper[0]);
        command
            .args(&wrapper[1..])
            .arg(serve.get_program())
            .args(serve.get_args())
            .current_dir(self.root())
            .env_clear()
            .envs(serve.get_envs().filter_map(|(k, v)| Some((k, v?))));
        self.serve_through(command)
    }

    fn serve_through(&self, mut command: Command) -> Server {
        let log = self.root().join("serve.log");
        let port = closed_port().to_string();
        let child = command
            .env("APP_PORT", &port)
            .stdin(Stdio::null())
            .stdout(File::create(self.root().join("serve.out")).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let server = Server { child, log };
        server.wait_for_log("smartworker serving");
        server
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Polls `done` until it holds or the deadline passes.
#[track_caller]
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `smartworker serve`; killed on drop if a test fails before stopping it.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    #[track_caller]
    fn wait_for_log(&self, needle: &str) {
        eventually(&format!("{needle:?} in the serve log"), || {
            self.log().contains(needle)
        });
    }

    /// Sends SIGTERM and returns the exit status and the whole log. It waits past the
    /// server's 30 s grace for running jobs, plus the wait for their containers' removal.
    fn stop(mut self) -> (Option<ExitStatus>, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = wait(&mut self.child, DEADLINE * 2);
        (status, self.log())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fixture trace whose project paths lie under `root`.
fn trace_under(name: &str, root: &Path) -> String {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    text.replace("{ROOT}", root.to_str().unwrap())
}

/// The parts of `triage`'s JSON that its contract names, one frame a line, with the project
/// root shown as `{ROOT}`.
fn triage_summary(output: &Output, root: &Path) -> String {
    let trace = output.json();
    let mut text = format!("{}: {}\n", trace["error_type"], trace["message"]);
    for frame in trace["frames"].as_array().unwrap() {
        text.push_str(&format!(
            "{} {}:{}:{} in_app={}\n",
            frame["function"], frame["file"], frame["line"], frame["column"], frame["in_app"]
        ));
    }
    text.replace(root.to_str().unwrap(), "{ROOT}")
}

/// The `in_app` flags of a trace's frames, innermost first.
fn in_app_flags(output: &Output) -> Vec<bool> {
    let frames = output.json()["frames"].as_array().unwrap().clone();
    frames
        .iter()
        .map(|f| f["in_app"].as_bool().unwrap())
        .collect()
}

#[test]
fn triage_reads_a_python_traceback_from_a_file_innermost_frame_first() {
    let project = Project::new();
    let file = project.root().join("trace.txt");
    std::fs::write(&file, trace_under("python_trace.txt", project.root())).unwrap();

    let rooted = project
        .run(&["triage", "trace.txt", "--root", "."])
        .success();

    expect![[r#"
        "KeyError": "'user'"
        "decode" "/usr/lib/python3.12/json/decoder.py":337:null in_app=false
        "normalise_email" "{ROOT}/handlers/lib/users.py":18:null in_app=true
        "with_retries" "/opt/shared-tools/retry.py":12:null in_app=false
        "main" "{ROOT}/handlers/signup.py":24:null in_app=true
        "<module>" "{ROOT}/handlers/signup.py":30:null in_app=true
    "#]]
    .assert_eq(&triage_summary(&rooted, project.root()));
    // Without a root, a frame outside the project looks like the application's own.
    let guessed = project.run(&["triage", file.to_str().unwrap()]).success();
    assert_eq!(in_app_flags(&guessed), [false, true, true, true, true]);
}

#[test]
fn triage_reads_a_node_stack_from_stdin_and_marks_frames_under_root_in_app() {
    let project = Project::new();
    let root = project.root().to_str().unwrap();
    let trace = trace_under("node_trace.txt", project.root());

    let output = project
        .run_with_stdin(&["triage", "--root", root], &trace)
        .success();

    expect![[r#"
        "TypeError": "Cannot read properties of undefined (reading 'cents')"
        "toCents" "{ROOT}/handlers/lib/money.js":12:23 in_app=true
        null "{ROOT}/handlers/invoice.js":20:31 in_app=true
        "Array.map" "<anonymous>":null:null in_app=false
        "applyDiscounts" "/home/ci/shared/discounts.js":7:14 in_app=false
        "main" "{ROOT}/handlers/invoice.js":18:9 in_app=true
        "Object.<anonymous>" "{ROOT}/node_modules/dayjs/index.js":3:1 in_app=false
        "Module._compile" "node:internal/modules/cjs/loader":1256:14 in_app=false
    "#]]
    .assert_eq(&triage_summary(&output, project.root()));
}

#[test]
fn triage_resolves_a_relative_root_against_the_working_directory() {
    let project = Project::new();
    let file = project.root().join("handlers/greet.py");
    let trace = format!(
        "Traceback (most recent call last):\n  File \"{}\", line 8, in greeting\n    \
         name = data[\"user\"][\"name\"]\nKeyError: 'user'\n",
        file.display()
    );
    std::fs::create_dir(project.root().join("elsewhere")).unwrap();
    let inside = project.run_with_stdin(&["triage", "--root", "handlers"], &trace);
    let outside = project.run_with_stdin(&["triage", "--root", "elsewhere"], &trace);
    assert_eq!(inside.success().json()["frames"][0]["in_app"], true);
    assert_eq!(outside.success().json()["frames"][0]["in_app"], false);
    project
        .run_with_stdin(&["triage", "--root", "nowhere"], &trace)
        .failure("--root nowhere is not a directory");
}

#[test]
fn triage_of_garbage_is_still_valid_json() {
    let project = Project::new();
    let output = project
        .run_with_stdin(&["triage"], "\u{0}\u{7f}not a trace at all\n{{{{\n")
        .success();
    let trace = output.json();
    assert_eq!(trace["frames"], serde_json::json!([]), "{}", output.all());
    let empty = project.run_with_stdin(&["triage"], "").success();
    assert!(empty.json().is_object(), "{}", empty.all());
}

#[test]
fn triage_of_a_missing_file_fails_naming_it() {
    let project = Project::new();
    project
        .run(&["triage", "no-such-trace.txt"])
        .failure("error: reading no-such-trace.txt: ");
}

#[test]
fn serve_runs_jobs_from_the_cli_dead_letters_failures_and_stops_on_sigterm() {
    let project = Project::new();
    let server = project.serve();

    let echo = project
        .run(&["enqueue", "echo", "--data", r#"{"a":1}"#, "--wait", "20"])
        .success();
    let (id, job) = echo.stdout.split_once('\n').unwrap();
    assert_eq!(id, "1");
    let job: Value = serde_json::from_str(job).unwrap();
    assert_eq!(job["state"], "completed", "{}", echo.all());
    assert_eq!(job["result"], serde_json::json!({"echo": {"a": 1}}));
    for key in ["k1", "k2"] {
        let data = format!(r#"{{"key":"{key}"}}"#);
        let output = project.run(&["enqueue", "boom", "--data", &data, "--wait", "20"]);
        output.failure(&format!("failed: KeyError: '{key}'"));
    }

    let (status, log) = server.stop();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );
    assert!(!log.contains('\x1b'), "colour codes in a log file:\n{log}");

    // With the server gone, the CLI works on the state directory directly.
    let dead = project.run(&["dead", "list"]).success();
    expect![[r#"
        id       queue                state      attempts  last error
        3        boom                 dead              2  KeyError: 'k2'
        2        boom                 dead              2  KeyError: 'k1'
    "#]]
    .assert_eq(&dead.stdout);
    let all = project.run(&["jobs"]).success();
    assert_eq!(all.stdout.lines().count(), 4, "{}", all.all());
    assert!(
        all.stdout
            .contains("1        echo                 completed")
    );
    let completed = project.run(&["jobs", "--state", "completed"]).success();
    assert_eq!(completed.stdout.lines().count(), 2, "{}", completed.all());
    let shown = project.run(&["jobs", "2"]).success().json();
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(shown["failed_reason"], "KeyError: 'k1'");

    let retried = project.run(&["dead", "retry", "2"]).success();
    assert!(retried.stdout.contains("job 2 is waiting again"));
    let job = project.run(&["jobs", "2"]).success().json();
    assert_eq!(
        (job["state"].as_str(), job["attempts_made"].as_u64()),
        (Some("waiting"), Some(0))
    );
    project
        .run(&["dead", "remove", "2"])
        .failure("job 2 is waiting, not in the dead-letter queue");
    project.run(&["dead", "remove", "3"]).success();
    project.run(&["jobs", "3"]).failure("job 3 not found");
    let dead = project.run(&["dead", "list"]).success();
    assert_eq!(dead.stdout, "no jobs\n");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_instead_of_panicking() {
    let project = Project::new();
    project.run(&["enqueue", "echo"]).success();
    let trace = trace_under("python_trace.txt", project.root());
    std::fs::write(project.root().join("trace.txt"), trace).unwrap();
    for args in [&["jobs"][..], &["jobs", "1"], &["triage", "trace.txt"]] {
        // The reading end is closed before the command starts, as `| head` does once satisfied.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut child = project
            .command(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = drain(child.stderr.take().unwrap());
        let status = wait(&mut child, DEADLINE).unwrap();
        let stderr = stderr.join().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn wrong_input_gets_a_clear_error_and_a_non_zero_exit() {
    let project = Project::new();
    project
        .run(&["enqueue", "echo", "--data", "{bad"])
        .failure("--data is not valid JSON");
    project
        .run(&["enqueue", "echo", "--opts", r#"{"atempts":2}"#])
        .failure("unknown field `atempts`");
    project.run(&["jobs", "--state", "nope"]).failure(
        r#"unknown state "nope"; expected one of waiting, delayed, active, completed, dead"#,
    );
    project
        .run(&["dead", "retry", "999"])
        .failure("job 999 not found");
    project
        .run(&["dead", "remove", "999"])
        .failure("job 999 not found");
    project
        .run(&["fixes", "show", "999"])
        .failure("fix 999 not found");
    project
        .run(&["fixes", "apply", "999"])
        .failure("fix 999 not found");
    project.run(&["jobs", "42"]).failure("job 42 not found");
    // Nothing above may have added a job.
    assert_eq!(project.run(&["jobs"]).success().stdout, "no jobs\n");
}

#[test]
fn enqueue_reads_data_from_stdin_and_refuses_a_queue_without_handler() {
    let project = Project::new();
    let output = project
        .run_with_stdin(&["enqueue", "echo", "--data", "-"], r#"{"from":"stdin"}"#)
        .success();
    assert_eq!(output.stdout, "1\n");
    let job = project.run(&["jobs", "1"]).success().json();
    assert_eq!(job["data"], serde_json::json!({"from": "stdin"}));
    project
        .run(&["enqueue", "nowhere"])
        .failure(r#"queue "nowhere" has no handler"#);
    // Had the refused job been stored, its queue would be listed.
    project
        .run(&["jobs", "--queue", "nowhere"])
        .failure(r#"no queue named "nowhere"; known: "#);
    project
        .run(&["dead", "list", "--queue", "nowhere"])
        .failure(r#"no queue named "nowhere""#);
    // A queue with a handler but no jobs yet is not a typo.
    assert_eq!(
        project.run(&["jobs", "--queue", "greet"]).success().stdout,
        "no jobs\n"
    );
}

#[test]
fn enqueue_wait_without_a_server_says_the_job_is_still_waiting() {
    let project = Project::new();
    project
        .run(&["enqueue", "echo", "--wait", "1"])
        .failure("job 1 is still waiting after 1s; is `smartworker serve` running?");
}

#[test]
fn config_errors_name_the_file_the_key_and_the_line() {
    let project = Project::new();
    project
        .run(&["--config", "missing.toml", "jobs"])
        .failure("config file missing.toml does not exist");
    std::fs::write(
        project.root().join("typo.toml"),
        "[queues.echo]\ncommand = [\"true\"]\nattempst = 3\n",
    )
    .unwrap();
    let typo = project.run(&["--config", "typo.toml", "jobs"]);
    let typo = typo.failure("typo.toml:3: queues.echo.attempst: unknown key");
    assert_eq!(typo.stderr.lines().count(), 1, "{}", typo.all());
    // A directory is not a config file; its error says so once.
    let dir = project
        .run(&["--config", "handlers", "jobs"])
        .failure("handlers");
    assert_eq!(
        dir.stderr.matches("Is a directory").count(),
        1,
        "{}",
        dir.all()
    );
}

#[test]
fn doctor_prints_a_line_per_check_and_does_not_hang_on_closed_ports() {
    let mut project = Project::new();
    let port = closed_port().to_string();
    for name in ["APP_REDIS", "APP_SMTP", "APP_DB"] {
        project.set(&format!("{name}_HOST"), "127.0.0.1");
        project.set(&format!("{name}_PORT"), &port);
    }
    project.set("APP_DB_USER", "smartworker");
    project.set("APP_DB_PASSWORD", "not-a-secret");
    let started = Instant::now();

    // Failing checks make doctor exit non-zero, so scripts can gate on it.
    let output = project
        .run(&["doctor"])
        .failure("check(s) failed: redis, postgresql");

    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{}",
        output.all()
    );
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert!(
        lines[0].starts_with("check") && lines[0].contains("status"),
        "{}",
        output.all()
    );
    let checks = [
        "redis",
        "postgresql",
        "model server",
        "embeddings server",
        "smtp",
        "bubblewrap",
        "docker",
    ];
    for check in checks {
        assert!(
            lines.iter().any(|l| l.starts_with(check)),
            "no {check} line:\n{}",
            output.all()
        );
    }
    for check in ["redis", "postgresql", "smtp"] {
        let line = lines.iter().find(|l| l.starts_with(check)).unwrap();
        assert!(
            line.contains("FAIL") && line.contains(&format!("127.0.0.1:{port}")),
            "{line}"
        );
    }
    assert!(
        lines.last().unwrap().contains("of 7 checks passed"),
        "{}",
        output.all()
    );
}

/// A small model's reply carrying the fixed handler.
fn greet_fix_reply() -> String {
    let fixed = std::fs::read_to_string(fixture("greet_fixed.py")).unwrap();
    format!(
        "The handler reads the name from a `user` object the payload does not have.\n\n\
         Root cause: greeting reads data[\"user\"][\"name\"] but the payload is {{\"name\": ...}}.\n\n\
         ```python\n# handlers/greet.py\n{fixed}```\n"
    )
}

#[test]
fn a_verified_fix_is_listed_shown_and_applied_then_its_job_runs_again() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let model = runtime.block_on(ScriptedModelServer::start()).unwrap();
    model.push_content(greet_fix_reply());
    let mut project = Project::new();
    project.set("APP_LLM_URL", model.base_url());

    let server = project.serve();
    project
        .run(&[
            "enqueue",
            "greet",
            "--data",
            r#"{"name":" Ada "}"#,
            "--wait",
            "20",
        ])
        .failure("job 1 failed: KeyError: 'user'");
    eventually("a verified fix", || {
        project
            .run(&["fixes"])
            .success()
            .stdout
            .contains("verified")
    });
    let (status, log) = server.stop();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    assert_eq!(model.chat_calls(), 1);

    let listed = project.run(&["fixes", "list"]).success();
    let first = listed.stdout.lines().next().unwrap();
    assert!(
        first.starts_with("fix 1    job 1      verified"),
        "{}",
        listed.all()
    );
    assert!(
        first.contains("greeting reads data[\"user\"][\"name\"]"),
        "{first}"
    );
    let shown = project.run(&["fixes", "show", "1"]).success().json();
    assert_eq!(shown["verified"], true);
    let diff = shown["diff"].as_str().unwrap();
    assert!(diff.contains("+    name = data[\"name\"]"), "{diff}");

    let handler = project.root().join("handlers/greet.py");
    let before = std::fs::read_to_string(&handler).unwrap();
    assert!(before.contains("data[\"user\"]"));
    // A change made in the project since the fix was found must survive applying it.
    let local = before.replace(
        "\"\"\"Greets a new user by name.\"\"\"",
        "\"\"\"Greets users.\"\"\"",
    );
    std::fs::write(&handler, &local).unwrap();
    let applied = project.run(&["fixes", "apply", "1"]).success();
    assert!(
        applied
            .stdout
            .contains("-    name = data[\"user\"][\"name\"]"),
        "{}",
        applied.all()
    );
    assert!(
        applied.stdout.contains("job 1 is waiting again"),
        "{}",
        applied.all()
    );
    let fixed = std::fs::read_to_string(fixture("greet_fixed.py")).unwrap();
    let expected = fixed.replace(
        "\"\"\"Greets a new user by name.\"\"\"",
        "\"\"\"Greets users.\"\"\"",
    );
    assert_ne!(
        expected, fixed,
        "the fixture's docstring changed; update this test"
    );
    assert_eq!(std::fs::read_to_string(&handler).unwrap(), expected);
    let job = project.run(&["jobs", "1"]).success().json();
    assert_eq!(job["state"], "waiting");

    // The retried job now passes on the host with the applied fix.
    let server = project.serve();
    eventually("job 1 to complete", || {
        project.run(&["jobs", "1"]).success().json()["state"] == "completed"
    });
    let job = project.run(&["jobs", "1"]).success().json();
    assert_eq!(
        job["result"],
        serde_json::json!({"greeting": "Hello, Ada!"})
    );
    let (status, log) = server.stop();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    drop(runtime);
}

#[test]
fn job_of_a_killed_server_runs_again_after_restart() {
    let project = Project::new();
    let server = project.serve();
    let id = project
        .run(&["enqueue", "slow", "--data", r#"{"sleep": 2}"#])
        .success();
    let id = id.stdout.trim().to_owned();
    eventually("the job to start", || {
        project.run(&["jobs", &id]).json()["state"] == "active"
    });

    // SIGKILL: no shutdown, no chance to record or hand back the job.
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert_eq!(project.run(&["jobs", &id]).json()["state"], "active");

    let restarted = project.serve();
    eventually("the job to complete after the restart", || {
        project.run(&["jobs", &id]).json()["state"] == "completed"
    });
    let job = project.run(&["jobs", &id]).json();
    assert_eq!(job["result"], serde_json::json!({"slept": 2}));
    let history = job["attempts"].as_array().unwrap();
    assert!(
        history[0]["error"].as_str().unwrap().contains("stalled"),
        "{job:#}"
    );
    assert_eq!(
        job["attempts_made"], 1,
        "the stalled run must not use the only attempt"
    );
    let (status, log) = restarted.stop();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
}

#[test]
fn docker_sandbox_settings_are_accepted_and_a_bad_one_is_named() {
    let mut project = Project::new();
    project.set("APP_HEAL_SANDBOX", "docker");
    project.set("APP_HEAL_SANDBOX_IMAGE", "smartworker-sandbox-test:3");
    project.run(&["jobs"]).success();
    project.set("APP_HEAL_SANDBOX", "firejail");
    project
        .run(&["jobs"])
        .failure(r#"APP_HEAL_SANDBOX: "firejail" is not one of auto, bubblewrap, docker"#);
}

/// Live processes whose working directory is `root` and whose command line holds `needle`.
fn processes_in(root: &Path, needle: &str) -> Vec<u32> {
    let root = std::fs::canonicalize(root).unwrap();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let zombie = stat.rsplit(')').next()?.trim_start().starts_with('Z');
            let found = cwd == root && String::from_utf8_lossy(&cmdline).contains(needle);
            (found && !zombie).then_some(pid)
        })
        .collect()
}

#[test]
fn sandboxed_job_dies_with_a_killed_server() {
    let mut project = Project::new();
    project.set("EXECUTION_CONTEXT", "sandbox");
    project.set("APP_HEAL_SANDBOX", "bubblewrap");
    let mut server = project.serve();
    project
        .run(&["enqueue", "slow", "--data", r#"{"sleep": 120}"#])
        .success();
    eventually("the sandboxed job to start", || {
        !processes_in(project.root(), "time.sleep").is_empty()
    });

    // SIGKILL: SmartWorker gets no chance to stop anything; the sandbox must follow it anyway.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    eventually("the sandboxed job to die with the server", || {
        processes_in(project.root(), "time.sleep").is_empty()
    });
}

/// Ids of the containers a SmartWorker with process id `pid` started, stopped ones included.
fn containers_of(pid: u32) -> Vec<String> {
    docker_ps(pid, &["--all"])
}

/// `docker ps -q` of the containers labelled with SmartWorker process id `pid`, and `more`.
fn docker_ps(pid: u32, more: &[&str]) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!("label=smartworker.pid={pid}"))
        .args(more)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Ids of the running containers a SmartWorker with process id `pid` started.
fn running_containers_of(pid: u32) -> Vec<String> {
    docker_ps(pid, &["--filter", "status=running"])
}

fn sandbox_image() -> String {
    std::env::var("SMARTWORKER_SANDBOX_IMAGE")
        .unwrap_or_else(|_| "smartworker-sandbox-test:3".into())
}

/// A project whose jobs run in Docker sandboxes (`EXECUTION_CONTEXT=sandbox`).
fn docker_project() -> Project {
    let mut project = Project::new();
    project.set("EXECUTION_CONTEXT", "sandbox");
    project.set("APP_HEAL_SANDBOX", "docker");
    project.set("APP_HEAL_SANDBOX_IMAGE", sandbox_image());
    project
}

/// Serves `project` and waits until a job sleeping for two minutes runs in its container.
fn serve_with_a_long_container_job(project: &Project) -> Server {
    let server = project.serve();
    let pid = server.child.id();
    project
        .run(&["enqueue", "slow", "--data", r#"{"sleep": 120}"#])
        .success();
    eventually("the job's container to start", || {
        !running_containers_of(pid).is_empty()
    });
    server
}

/// Reported: Docker has no `--die-with-parent`, so a SIGKILLed SmartWorker left its
/// container running the handler until the next start-up removed it.
#[test]
fn container_job_dies_with_a_killed_server() {
    let project = docker_project();
    let mut server = serve_with_a_long_container_job(&project);
    let pid = server.child.id();

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // Well before the handler's 120 s sleep ends: only the container's lifeline stops it.
    eventually("the container to stop with the server", || {
        running_containers_of(pid).is_empty()
    });
    for id in containers_of(pid) {
        let removed = Command::new("docker").args(["rm", "-f", &id]).output();
        assert!(removed.unwrap().status.success());
    }
}

/// Reported: a job still running in a container when SIGTERM's grace ran out left the stopped
/// container behind until the next start-up; its removal was a task the exit cut short.
#[test]
fn a_server_stopped_mid_run_removes_its_container_before_it_exits() {
    let project = docker_project();
    let server = serve_with_a_long_container_job(&project);
    let pid = server.child.id();
    // The job outlives the 30 s grace, so it is interrupted and handed back.
    let (status, log) = server.stop();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    assert_eq!(containers_of(pid), Vec::<String>::new(), "{log}");
}

/// On a machine without bubblewrap, `auto` takes Docker. Bubblewrap is hidden from `serve`
/// alone: in a mount namespace of its own, `/usr/bin/bwrap` is `/dev/null`.
#[test]
fn auto_takes_docker_where_bubblewrap_is_missing() {
    let mut project = Project::new();
    project.set("EXECUTION_CONTEXT", "sandbox");
    project.set("APP_HEAL_SANDBOX", "auto");
    let hide_bwrap = "mount --bind /dev/null \"$(command -v bwrap)\" && exec \"$@\"";
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        hide_bwrap,
        "sh",
    ];

    // Without an image Docker is no option either: the job is refused, never run bare.
    let server = project.serve_wrapped(&wrapper);
    let refused = project.run(&["enqueue", "where", "--wait", "20"]);
    let all = refused.all();
    assert!(all.contains("no sandbox is available"), "{all}");
    assert!(all.contains("bubblewrap is not installed"), "{all}");
    let (status, log) = server.stop();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");

    project.set("APP_HEAL_SANDBOX_IMAGE", sandbox_image());
    let server = project.serve_wrapped(&wrapper);
    let ran = project.run(&["enqueue", "where", "--wait", "20"]).success();
    let (_, job) = ran.stdout.split_once('\n').unwrap();
    let job: Value = serde_json::from_str(job).unwrap();
    assert_eq!(
        job["result"],
        serde_json::json!({"hostname": "sandbox"}),
        "{}",
        ran.all()
    );
    let (status, log) = server.stop();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
}

#[test]
fn container_and_workspace_of_a_killed_server_are_removed_when_it_starts_again() {
    let project = docker_project();
    let mut server = project.serve();
    let pid = server.child.id();
    // Short, so the job's second run after the restart ends well within the stop's grace.
    let id = project
        .run(&["enqueue", "slow", "--data", r#"{"sleep": 3}"#])
        .success();
    let id = id.stdout.trim().to_owned();
    eventually("the job's container to start", || {
        !containers_of(pid).is_empty()
    });

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(
        !containers_of(pid).is_empty(),
        "nothing was left behind, so the restart proves nothing"
    );

    let workspaces = |pid: u32| {
        let prefix = format!("smartworker-ws-{pid}-");
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .count()
    };
    assert_eq!(
        workspaces(pid),
        1,
        "the killed server's workspace should be left behind"
    );

    let restarted = project.serve();
    restarted.wait_for_log("removed sandbox containers left behind");
    assert!(containers_of(pid).is_empty());
    assert_eq!(
        workspaces(pid),
        0,
        "the restart did not remove the workspace"
    );
    // The job itself runs again once its lock has expired, in a container of the new server.
    eventually("the job to complete after the restart", || {
        project.run(&["jobs", &id]).json()["state"] == "completed"
    });
    assert!(
        containers_of(restarted.child.id()).is_empty(),
        "a finished run left its container"
    );
    let (status, log) = restarted.stop();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
}
