//! The persistent command handler: a pool of long-lived processes speaking JSON lines, so a
//! job does not pay for starting a process.
//!
//! # Protocol
//!
//! 1. SmartWorker starts the command lazily, at most [`PersistentOptions::processes`] copies,
//!    each leading its own process group, with `EXECUTION_CONTEXT=host` in its environment.
//!    The per-job variables of the one-shot handler (`SMARTWORKER_JOB_ID`, …) are not set,
//!    because a process outlives its jobs; the request carries the same facts.
//! 2. For each job, one line goes to the process's stdin: the same JSON object the one-shot
//!    handler reads, `{"id","name","queue","data","attempt"}` (see [`crate::job_stdin`]).
//!    A process serves one job at a time; the next request comes only after the answer.
//! 3. The process answers with one JSON line on stdout, carrying the request's `id`:
//!    `{"id": …, "ok": true, "result": <any>}` (a missing `result` is `null`), or
//!    `{"id": …, "ok": false, "error": "<message>", "stack": "<trace>"}` (`stack` optional).
//! 4. Any other stdout line (plain prints, JSON that is not an object, an object with another
//!    `id`) is ignored and logged at DEBUG, so handlers may print freely. Stderr is drained
//!    all the time; its last [`PersistentOptions::stderr_tail_bytes`] are kept.
//!
//! # Guarantees
//!
//! A process that exits mid-job fails that job with its exit status as the message and the
//! stderr tail as the stack. A job that times out (`job.opts.timeout`, else the spec's) has
//! the process's whole group killed. A run future that is dropped kills its process too. In
//! each case the next job gets a fresh process, so no process is reused in an unknown state.
//!
//! # One job, then end of input
//!
//! A sandboxed re-run starts the same command once, writes one request line and closes stdin;
//! a handler should exit when its stdin ends. [`single_run_outcome`] reads that run by the
//! same rules: the answer decides, even if the process then exits non-zero or hangs until the
//! sandbox kills it; without an answer, what ended the process is the failure.

use crate::capture::Capture;
use crate::command::{CommandOutput, CommandSpec, GroupKill, HandlerError, OUTPUT_GRACE, command};
use crate::job::{EXECUTION_CONTEXT_VAR, job_stdin};
use crate::outcome::{MAX_MESSAGE_CHARS, job_outcome, signal_message, timed_out_message};
use async_trait::async_trait;
use serde_json::Value;
use smartworker_core::{Handler, Job, JobFailure, JobId};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// The default number of stderr bytes kept per process.
pub const DEFAULT_STDERR_TAIL_BYTES: usize = 64 * 1024;

/// The longest stdout line shown in a DEBUG log of an ignored line, in characters.
const MAX_LOGGED_LINE_CHARS: usize = 200;

/// How many processes a [`PersistentCommandHandler`] keeps, and how much of their output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistentOptions {
    /// The most processes alive at once, which is also the most jobs run at once (at least 1).
    pub processes: usize,
    /// The most bytes of each process's stderr kept for a failure's stack.
    pub stderr_tail_bytes: usize,
}

impl PersistentOptions {
    /// Options for a pool of `processes` (0 is taken as 1) with the default stderr tail.
    pub fn new(processes: usize) -> Self {
        PersistentOptions {
            processes: processes.max(1),
            stderr_tail_bytes: DEFAULT_STDERR_TAIL_BYTES,
        }
    }
}

impl Default for PersistentOptions {
    fn default() -> Self {
        PersistentOptions::new(1)
    }
}

/// Runs jobs on a pool of long-lived processes of one command, one job per process at a time.
///
/// Processes start on first use and are reused; [`shutdown`](Self::shutdown) or dropping the
/// handler kills them all.
#[derive(Debug)]
pub struct PersistentCommandHandler {
    spec: CommandSpec,
    options: PersistentOptions,
    /// Processes waiting for a job.
    idle: Mutex<Vec<Process>>,
    /// One permit per process slot; closed by `shutdown`.
    slots: Semaphore,
}

impl PersistentCommandHandler {
    /// A handler keeping up to `options.processes` processes of `spec`. Nothing starts yet.
    pub fn new(spec: CommandSpec, options: PersistentOptions) -> Self {
        let processes = options.processes.max(1);
        PersistentCommandHandler {
            spec,
            options: PersistentOptions {
                processes,
                ..options
            },
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(processes),
        }
    }

    /// The command it runs.
    pub fn spec(&self) -> &CommandSpec {
        &self.spec
    }

    /// Its pool options.
    pub fn options(&self) -> &PersistentOptions {
        &self.options
    }

    /// Starts processes until `processes` are alive, so the first jobs do not wait for them;
    /// returns how many it started. Without it, processes start with the jobs that need them.
    ///
    /// # Errors
    /// [`HandlerError`] when the command cannot be started; the processes started before
    /// stay in the pool.
    pub fn prestart(&self) -> Result<usize, HandlerError> {
        let mut idle = lock(&self.idle);
        idle.retain_mut(|p| matches!(p.child.try_wait(), Ok(None)));
        let busy = self.options.processes - self.slots.available_permits();
        let missing = self.options.processes.saturating_sub(idle.len() + busy);
        for _ in 0..missing {
            idle.push(Process::start(&self.spec, self.options.stderr_tail_bytes)?);
        }
        Ok(missing)
    }

    /// Kills every idle process now and every busy one when its job ends; later jobs fail.
    pub fn shutdown(&self) {
        self.slots.close();
        let idle = std::mem::take(&mut *lock(&self.idle));
        drop(idle);
    }

    /// An idle process that is still alive, or a new one.
    fn checkout(&self) -> Result<Process, HandlerError> {
        while let Some(mut process) = lock(&self.idle).pop() {
            // A process that died while idle (killed from outside, OOM) is replaced quietly.
            if matches!(process.child.try_wait(), Ok(None)) {
                return Ok(process);
            }
        }
        Process::start(&self.spec, self.options.stderr_tail_bytes)
    }

    /// Puts `process` back for the next job, unless the pool is shut down.
    fn give_back(&self, process: Process) {
        if self.slots.is_closed() {
            return;
        }
        lock(&self.idle).push(process);
    }

    fn timeout_for(&self, job: &Job) -> Option<Duration> {
        job.opts
            .timeout
            .map(Duration::from_millis)
            .or(self.spec.timeout)
    }
}

#[async_trait]
impl Handler for PersistentCommandHandler {
    /// # Cancel safety
    /// Dropping the future drops the process serving the job, which kills its group; the
    /// next job starts a fresh process.
    async fn run(&self, job: &Job) -> Result<Value, JobFailure> {
        let Ok(_slot) = self.slots.acquire().await else {
            return Err(JobFailure::new(format!(
                "persistent handler {:?} is shut down",
                self.spec.program
            )));
        };
        let mut process = self
            .checkout()
            .map_err(|err| JobFailure::new(err.to_string()))?;

        let served = serve(&mut process, job, self.timeout_for(job)).await;
        if served.reusable {
            self.give_back(process);
        }
        served.result
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How one job went on one process.
struct Served {
    result: Result<Value, JobFailure>,
    /// False when the process died or was killed and must not serve another job.
    reusable: bool,
}

/// Sends `job` to `process` and waits for its answer, its death or the timeout.
async fn serve(process: &mut Process, job: &Job, limit: Option<Duration>) -> Served {
    let started = Instant::now();
    let request = job_stdin(job);
    let exchange = process.exchange(&request, &job.id);
    let Some(limit) = limit else {
        return exchange.await;
    };
    if let Ok(served) = tokio::time::timeout(limit, exchange).await {
        return served;
    }

    let message = timed_out_message(started.elapsed());
    let stderr = process.kill_and_collect_stderr().await;
    Served {
        result: Err(failure(message, &stderr)),
        reusable: false,
    }
}

/// One long-lived child. Dropping it kills its process group.
#[derive(Debug)]
struct Process {
    child: Child,
    group: GroupKill,
    pipes: Pipes,
    stderr: Arc<Mutex<Capture>>,
    drain: JoinHandle<()>,
}

/// The child's stdin and stdout, with the part of a stdout line read so far.
#[derive(Debug)]
struct Pipes {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Bytes of the current line; kept here so a dropped read loses nothing.
    pending: Vec<u8>,
    /// True when the current line grew past `max_line` and is being skipped.
    overflow: bool,
    max_line: usize,
}

impl Process {
    fn start(spec: &CommandSpec, stderr_tail_bytes: usize) -> Result<Process, HandlerError> {
        if !spec.cwd.is_dir() {
            return Err(HandlerError::MissingCwd(spec.cwd.clone()));
        }
        let spawn_error = |source| HandlerError::Spawn {
            program: spec.program.clone(),
            source,
        };
        let mut cmd = command(spec);
        cmd.env(EXECUTION_CONTEXT_VAR, "host");
        let mut child = cmd.spawn().map_err(spawn_error)?;
        let group = GroupKill::of(&child);

        let (Some(stdin), Some(stdout), Some(stderr_pipe)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(spawn_error(io::Error::other(
                "the child's pipes are missing",
            )));
        };
        let stderr = Arc::new(Mutex::new(Capture::new(stderr_tail_bytes)));
        let drain = tokio::spawn(drain_stderr(stderr_pipe, Arc::clone(&stderr)));
        tracing::debug!(program = %spec.program, pid = ?child.id(), "started handler process");
        Ok(Process {
            child,
            group,
            pipes: Pipes {
                stdin,
                stdout: BufReader::new(stdout),
                pending: Vec::new(),
                overflow: false,
                max_line: spec.max_output_bytes,
            },
            stderr,
            drain,
        })
    }

    /// Writes the request and reads stdout until the answer, watching for the child's exit.
    async fn exchange(&mut self, request: &[u8], id: &JobId) -> Served {
        // The read goes first so an answer written just before the exit still counts.
        let exited = tokio::select! {
            biased;
            answer = self.pipes.talk(request, id) => match answer {
                Some(result) => return Served { result, reusable: true },
                None => None,
            },
            status = self.child.wait() => status.ok(),
        };
        self.lost(exited, id).await
    }

    /// The job's outcome once the child exited or closed its pipes mid-job.
    async fn lost(&mut self, exited: Option<ExitStatus>, id: &JobId) -> Served {
        let status = match exited {
            Some(status) => Some(status),
            None => tokio::time::timeout(OUTPUT_GRACE, self.child.wait())
                .await
                .ok()
                .and_then(Result::ok),
        };

        // An answer may still sit in the pipe behind the exit; it is the job's result.
        self.group.kill();
        let late = tokio::time::timeout(OUTPUT_GRACE, self.pipes.answer(id)).await;
        if let Ok(Some(result)) = late {
            return Served {
                result,
                reusable: false,
            };
        }

        let message = death_message(status);
        tracing::warn!(job_id = %id, reason = %message, "handler process lost mid-job");
        let stderr = self.kill_and_collect_stderr().await;
        Served {
            result: Err(failure(message, &stderr)),
            reusable: false,
        }
    }

    /// Kills the group and returns the stderr tail, waiting briefly for its last bytes.
    async fn kill_and_collect_stderr(&mut self) -> String {
        self.group.kill();
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(OUTPUT_GRACE, &mut self.drain).await;
        lock(&self.stderr).text()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // The group dies with `group`; a drainer held up by an escaped grandchild must not
        // outlive the process it served.
        self.drain.abort();
    }
}

impl Pipes {
    /// Sends the request, then reads lines until the answer. `None` when a pipe broke.
    async fn talk(&mut self, request: &[u8], id: &JobId) -> Option<Result<Value, JobFailure>> {
        if self.stdin.write_all(request).await.is_err() || self.stdin.flush().await.is_err() {
            return None;
        }
        self.answer(id).await
    }

    /// Reads stdout lines until one answers job `id`. `None` at the end of stdout.
    async fn answer(&mut self, id: &JobId) -> Option<Result<Value, JobFailure>> {
        loop {
            let line = self.next_line().await.ok()??;
            if let Some(result) = parse_answer(&line, id) {
                return Some(result);
            }
            let shown: String = String::from_utf8_lossy(&line)
                .chars()
                .take(MAX_LOGGED_LINE_CHARS)
                .collect();
            tracing::debug!(job_id = %id, line = %shown.trim_end(), "ignored handler output");
        }
    }

    /// The next whole stdout line, without its newline; lines past `max_line` are skipped.
    ///
    /// # Cancel safety
    /// Bytes already read stay in `pending`, so a dropped call loses nothing.
    async fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            let buf = self.stdout.fill_buf().await?;
            if buf.is_empty() {
                return Ok(None);
            }
            let newline = buf.iter().position(|b| *b == b'\n');
            let end = newline.map_or(buf.len(), |i| i + 1);
            let room = self.max_line.saturating_sub(self.pending.len());
            let chunk = &buf[..newline.unwrap_or(end)];
            self.overflow |= chunk.len() > room;
            self.pending
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.stdout.consume(end);

            if newline.is_none() {
                continue;
            }
            let line = std::mem::take(&mut self.pending);
            if std::mem::take(&mut self.overflow) {
                tracing::debug!(bytes_kept = line.len(), "skipped an overlong handler line");
                continue;
            }
            return Ok(Some(line));
        }
    }
}

/// Reads stderr to its end, keeping the tail where failures can read it.
async fn drain_stderr(mut pipe: ChildStderr, tail: Arc<Mutex<Capture>>) {
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => lock(&tail).push(&chunk[..n]),
        }
    }
}

/// The outcome of job `id` from one run of a persistent handler that was fed its request and
/// then end of input (see the module docs).
///
/// The first stdout line answering `id` decides. Without one, a process that failed, was
/// killed or timed out fails as a one-shot command would, and one that exited 0 fails for not
/// answering; the stack is its stderr.
///
/// # Errors
/// The job's [`JobFailure`] unless the answer says `"ok": true`.
pub fn single_run_outcome(output: &CommandOutput, id: &JobId) -> Result<Value, JobFailure> {
    let answer = output
        .stdout
        .lines()
        .find_map(|line| parse_answer(line.as_bytes(), id));
    if let Some(result) = answer {
        return result;
    }
    job_outcome(output)?;
    let message = format!("handler exited without answering job {id}");
    Err(failure(message, &output.stderr))
}

/// The job's outcome if `line` answers job `id`; `None` for any other line.
fn parse_answer(line: &[u8], id: &JobId) -> Option<Result<Value, JobFailure>> {
    let Ok(Value::Object(mut answer)) = serde_json::from_slice::<Value>(line) else {
        return None;
    };
    if !answer.get("id").is_some_and(|v| same_id(v, id)) {
        return None;
    }
    match answer.get("ok") {
        Some(Value::Bool(true)) => Some(Ok(answer.remove("result").unwrap_or(Value::Null))),
        Some(Value::Bool(false)) => Some(Err(reported_failure(&answer))),
        _ => Some(Err(JobFailure::new(format!(
            "handler answer for job {id} has no boolean \"ok\""
        )))),
    }
}

/// True when `value` names job `id`: its string, or the same number written as one.
fn same_id(value: &Value, id: &JobId) -> bool {
    match value {
        Value::String(s) => *s == id.0,
        Value::Number(n) => n.to_string() == id.0,
        _ => false,
    }
}

fn reported_failure(answer: &serde_json::Map<String, Value>) -> JobFailure {
    let message = match answer.get("error") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Null) | None => "handler reported a failure without a message".to_owned(),
        Some(other) => other.to_string(),
    };
    let stack = answer.get("stack").and_then(Value::as_str).unwrap_or("");
    failure(message, stack)
}

/// `handler process exited with code 3 during the job`, or the signal that killed it.
fn death_message(status: Option<ExitStatus>) -> String {
    let Some(status) = status else {
        return "handler process closed its stdout during the job".to_owned();
    };
    if let Some(code) = status.code() {
        return format!("handler process exited with code {code} during the job");
    }
    match status.signal() {
        Some(signal) => format!("handler process {} during the job", signal_message(signal)),
        None => "handler process ended without an exit code during the job".to_owned(),
    }
}

fn failure(message: String, stack: &str) -> JobFailure {
    let message: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    if stack.trim().is_empty() {
        return JobFailure::new(message);
    }
    JobFailure::with_stack(message, stack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    fn check(line: &str, expect: Expect) {
        let shown = match parse_answer(line.as_bytes(), &JobId::from("7")) {
            None => "ignored".to_owned(),
            Some(Ok(value)) => format!("ok {value}"),
            Some(Err(failure)) => format!("failed {:?} stack={:?}", failure.message, failure.stack),
        };
        expect.assert_eq(&shown);
    }

    #[test]
    fn answers_for_the_job_become_results_or_failures() {
        check(
            r#"{"id":"7","ok":true,"result":{"a":1}}"#,
            expect![[r#"ok {"a":1}"#]],
        );
        check(r#"{"id":7,"ok":true}"#, expect!["ok null"]);
        check(
            r#"{"id":"7","ok":false,"error":"boom","stack":"at x\n"}"#,
            expect![[r#"failed "boom" stack=Some("at x\n")"#]],
        );
        check(
            r#"{"id":"7","ok":false}"#,
            expect![[r#"failed "handler reported a failure without a message" stack=None"#]],
        );
        check(
            r#"{"id":"7","ok":"yes"}"#,
            expect![[r#"failed "handler answer for job 7 has no boolean \"ok\"" stack=None"#]],
        );
    }

    #[test]
    fn lines_that_do_not_answer_the_job_are_ignored() {
        check("hello", expect!["ignored"]);
        check("[1, 2]", expect!["ignored"]);
        check(r#"{"ok":true}"#, expect!["ignored"]);
        check(r#"{"id":"8","ok":true}"#, expect!["ignored"]);
        check(r#"{"id":null,"ok":true}"#, expect!["ignored"]);
    }

    fn single_run(exit_code: Option<i32>, stdout: &str, stderr: &str) -> String {
        let output = CommandOutput {
            exit_code,
            signal: None,
            stdout: stdout.to_owned(),
            stderr: stderr.to_owned(),
            timed_out: false,
            duration: Duration::from_millis(40),
            truncated: false,
            memory_killed: false,
        };
        match single_run_outcome(&output, &JobId::from("7")) {
            Ok(value) => format!("ok {value}"),
            Err(failure) => format!("failed {:?} stack={:?}", failure.message, failure.stack),
        }
    }

    #[test]
    fn single_run_is_judged_by_its_answer_not_its_exit_code() {
        let shown = [
            single_run(
                Some(0),
                "{\"id\":\"7\",\"ok\":false,\"error\":\"KeyError: 'a'\"}\n",
                "",
            ),
            single_run(
                Some(0),
                "log\n{\"id\":\"7\",\"ok\":true,\"result\":1}\n",
                "",
            ),
            single_run(Some(1), "{\"id\":\"7\",\"ok\":true}\n", "crashed at exit\n"),
        ];
        expect![[r#"
            [
                "failed \"KeyError: 'a'\" stack=None",
                "ok 1",
                "ok null",
            ]
        "#]]
        .assert_debug_eq(&shown);
    }

    #[test]
    fn single_run_without_an_answer_fails_with_what_ended_it() {
        let shown = [
            single_run(Some(0), "{\"id\":\"8\",\"ok\":true}\n{\"ok\":true}\n", ""),
            single_run(Some(2), "", "Traceback:\nKeyError: 'email'\n"),
            single_run(Some(0), "", "reading stdin\n"),
        ];
        expect![[r#"
            [
                "failed \"handler exited without answering job 7\" stack=None",
                "failed \"KeyError: 'email'\" stack=Some(\"Traceback:\\nKeyError: 'email'\\n\")",
                "failed \"handler exited without answering job 7\" stack=Some(\"reading stdin\\n\")",
            ]
        "#]]
        .assert_debug_eq(&shown);
    }

    #[test]
    fn death_messages_name_the_status() {
        let exited = ExitStatus::from_raw(3 << 8);
        let killed = ExitStatus::from_raw(9);
        let shown = [Some(exited), Some(killed), None].map(death_message);
        expect![[r#"
            [
                "handler process exited with code 3 during the job",
                "handler process killed by signal SIGKILL during the job",
                "handler process closed its stdout during the job",
            ]
        "#]]
        .assert_debug_eq(&shown);
    }
}
