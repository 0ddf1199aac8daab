//! Turns a command's output into a job's result or failure.
//!
//! The contract with command handlers: exit 0 and print the result as JSON (last); anything
//! else is a failure whose stack trace is stderr.

use crate::command::CommandOutput;
use nix::sys::signal::Signal;
use serde_json::Value;
use smartworker_core::JobFailure;
use std::time::Duration;

/// The longest failure message kept, in characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 500;

/// The job's result for a command's output.
///
/// - exit 0: stdout as JSON. The whole of stdout is tried first, then each non-empty line from
///   the last, so a handler may log before printing its result. Empty stdout is `null`; stdout
///   that holds no JSON at all becomes its last line as a JSON string.
/// - a non-zero exit: the message is the last meaningful line of stderr (Python's
///   `KeyError: 'email'`, Node's `Error: …`), the stack is all of stderr.
/// - a timeout: `timed out after Ns`; a signal: `killed by signal SIGKILL`.
///
/// # Errors
/// The [`JobFailure`] for every outcome but a clean exit.
pub fn job_outcome(out: &CommandOutput) -> Result<Value, JobFailure> {
    if out.timed_out {
        return Err(failure(timed_out_message(out.duration), &out.stderr));
    }
    if let Some(signal) = out.signal {
        return Err(failure(signal_message(signal), &out.stderr));
    }
    match out.exit_code {
        Some(0) => Ok(parse_result(&out.stdout)),
        Some(code) => {
            let message = last_meaningful_line(&out.stderr)
                .map_or_else(|| format!("exited with code {code}"), str::to_owned);
            Err(failure(message, &out.stderr))
        }
        None => Err(failure(
            "ended without an exit code".to_owned(),
            &out.stderr,
        )),
    }
}

fn failure(message: String, stderr: &str) -> JobFailure {
    let message: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    if stderr.trim().is_empty() {
        return JobFailure::new(message);
    }
    JobFailure::with_stack(message, stderr)
}

/// `timed out after 30s`, from the elapsed time rounded to a tenth of a second (the kill and
/// the reaping add a few milliseconds to the configured timeout).
pub(crate) fn timed_out_message(elapsed: Duration) -> String {
    let tenths = (elapsed.as_secs_f64() * 10.0).round() / 10.0;
    format!("timed out after {tenths}s")
}

pub(crate) fn signal_message(signal: i32) -> String {
    match Signal::try_from(signal) {
        Ok(name) => format!("killed by signal {name}"),
        Err(_) => format!("killed by signal {signal}"),
    }
}

fn parse_result(stdout: &str) -> Value {
    let trimmed = stdout.trim();
    if trimmed.is_empty() {
        return Value::Null;
    }
    if let Ok(value) = serde_json::from_str(trimmed) {
        return value;
    }
    let mut lines = trimmed
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty());
    if let Some(value) = lines.clone().find_map(|l| serde_json::from_str(l).ok()) {
        return value;
    }
    lines
        .next()
        .map_or(Value::Null, |l| Value::String(l.to_owned()))
}

/// The line of stderr that says what went wrong: the last one that is not blank, a stack
/// frame, or a runtime's closing banner.
fn last_meaningful_line(stderr: &str) -> Option<&str> {
    let mut lines = stderr.lines().rev().map(str::trim);
    while let Some(line) = lines.next() {
        // Node prints an error's own properties after its last frame, in braces
        // (`at … {`, `code: 'MODULE_NOT_FOUND',`, `}`); none of that names the error.
        if line == "}" {
            lines.by_ref().find(|l| l.ends_with('{'));
            continue;
        }
        if !line.is_empty() && !is_noise(line) {
            return Some(line);
        }
    }
    None
}

fn is_noise(line: &str) -> bool {
    const NOISE_PREFIXES: [&str; 4] = ["at ", "Node.js v", "Bun v", "note: run with"];
    NOISE_PREFIXES.iter().any(|p| line.starts_with(p)) || line == "^"
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    fn output(exit_code: Option<i32>, stdout: &str, stderr: &str) -> CommandOutput {
        CommandOutput {
            exit_code,
            signal: None,
            stdout: stdout.to_owned(),
            stderr: stderr.to_owned(),
            timed_out: false,
            duration: Duration::from_millis(2003),
            truncated: false,
            memory_killed: false,
        }
    }

    /// Reported: a missing Node module failed with the message `}`.
    #[test]
    fn node_error_properties_after_the_frames_are_not_the_message() {
        let stderr = "node:internal/modules/cjs/loader:1228\n  throw err;\n  ^\n\n\
            Error: Cannot find module '/app/x.js'\n    at Module._resolveFilename \
            (node:internal/modules/cjs/loader:1225:15)\n    at node:internal/main/run_main_module:28:49 {\n  \
            code: 'MODULE_NOT_FOUND',\n  requireStack: []\n}\n\nNode.js v20.20.2\n";
        check(
            &output(Some(1), "", stderr),
            expect![[r#"failed "Error: Cannot find module '/app/x.js'" stack=true"#]],
        );
    }

    fn check(out: &CommandOutput, expect: Expect) {
        let shown = match job_outcome(out) {
            Ok(value) => format!("ok {value}"),
            Err(failure) => format!(
                "failed {:?} stack={}",
                failure.message,
                failure.stack.is_some()
            ),
        };
        expect.assert_eq(&shown);
    }

    #[test]
    fn last_json_line_wins_over_earlier_logs() {
        check(
            &output(
                Some(0),
                "starting\n{\"a\":1}\nsent mail\n{\"ok\":true}\n\n",
                "",
            ),
            expect![[r#"ok {"ok":true}"#]],
        );
    }

    #[test]
    fn pretty_printed_json_is_one_result() {
        check(
            &output(Some(0), "{\n  \"a\": [1,\n 2]\n}\n", ""),
            expect![[r#"ok {"a":[1,2]}"#]],
        );
    }

    #[test]
    fn empty_stdout_is_null_and_plain_text_is_a_string() {
        check(&output(Some(0), " \n", ""), expect!["ok null"]);
        check(
            &output(Some(0), "done\nall good\n", ""),
            expect![[r#"ok "all good""#]],
        );
    }

    #[test]
    fn node_error_message_skips_frames_and_banner() {
        let stderr = "/app/job.js:3\n    throw new Error('no email')\n    ^\n\n\
                      Error: no email\n    at Object.<anonymous> (/app/job.js:3:11)\n\n\
                      Node.js v20.11.0\n";
        check(
            &output(Some(1), "", stderr),
            expect![[r#"failed "Error: no email" stack=true"#]],
        );
    }

    #[test]
    fn silent_failure_names_the_exit_code() {
        check(
            &output(Some(3), "", ""),
            expect![[r#"failed "exited with code 3" stack=false"#]],
        );
    }

    #[test]
    fn timeout_and_signal_are_named() {
        let mut out = output(None, "", "");
        out.timed_out = true;
        out.signal = Some(9);
        check(
            &out,
            expect![[r#"failed "timed out after 2s" stack=false"#]],
        );
        out.timed_out = false;
        check(
            &out,
            expect![[r#"failed "killed by signal SIGKILL" stack=false"#]],
        );
    }
}
