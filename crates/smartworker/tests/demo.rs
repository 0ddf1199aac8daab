//! Black-box tests of `smartworker demo`, the README's first command: the real binary, run from
//! an empty directory with a clean environment, against a scripted model server on loopback or
//! against a closed port.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod support;

use smartworker_model::testing::ScriptedModelServer;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Output, closed_port, drain, wait};

/// The longest any demo run may take here before the test calls it a hang.
const DEADLINE: Duration = Duration::from_secs(45);

/// The fixed module, from the repository's fixes folder.
const FIXED_USERS_PY: &str = include_str!("../../../examples/fixes/project/handlers/lib/users.py");

/// A loopback URL on which nothing listens: the port is bound, read, then released.
fn closed_url() -> String {
    format!("http://127.0.0.1:{}/v1", closed_port())
}

/// Runs `smartworker demo` in `cwd` with only PATH, HOME, TMPDIR and `env`, killing it at the
/// deadline so a hang fails the test instead of stalling it.
fn run_demo(cwd: &Path, tmp: &Path, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smartworker"))
        .args(["demo", "--timeout", "40"])
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("TMPDIR", tmp)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait(&mut child, DEADLINE);
    let output = Output {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert!(status.is_some(), "the demo hung:\n{}", output.all());
    output
}

/// Spinners redraw with carriage returns and escape sequences; a pipe must get plain lines.
fn assert_plain(output: &Output) {
    for (name, text) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        assert!(
            !text.contains('\x1b') && !text.contains('\r'),
            "{name} holds terminal control codes:\n{}",
            output.all()
        );
    }
}

/// The directory the demo says it keeps its state in; it must exist under the test's TMPDIR.
fn demo_dir(output: &Output, tmp: &Path) -> PathBuf {
    let line = output
        .stdout
        .lines()
        .find(|l| l.contains("state and example project in"))
        .unwrap_or_else(|| panic!("no demo directory named:\n{}", output.all()));
    let dir = PathBuf::from(line.rsplit(" in ").next().unwrap().trim());
    assert!(
        dir.starts_with(tmp),
        "{} is not under TMPDIR",
        dir.display()
    );
    assert!(dir.join("project/smartworker.toml").is_file(), "{line}");
    dir
}

/// Asserts `needles` occur in `text` in this order.
fn assert_in_order(text: &str, needles: &[&str]) {
    let mut rest = text;
    for needle in needles {
        let Some(at) = rest.find(needle) else {
            panic!("{needle:?} missing (or out of order) in:\n{text}");
        };
        rest = &rest[at + needle.len()..];
    }
}

/// The body of a quoted-printable e-mail as plain text: soft breaks joined, `=XX` decoded.
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let mut bytes = Vec::new();
    let mut rest = joined.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
        match hex.map(|h| u8::from_str_radix(h, 16)) {
            Some(Ok(byte)) if first == b'=' => {
                bytes.push(byte);
                rest = &tail[2..];
            }
            _ => {
                bytes.push(first);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).unwrap()
}

/// A small model's answer: chatty prose, a root-cause line, the whole corrected module.
fn small_model_reply() -> String {
    format!(
        "Looking at the traceback, the job crashes in `normalise_email` before anything is \
         stored.\n\nRoot cause: normalise_email reads data[\"user\"][\"email\"], but the sign-up \
         payload carries the address at the top level as data[\"email\"].\n\nHere is the \
         complete corrected file:\n\n```python\n# handlers/lib/users.py\n{FIXED_USERS_PY}```\n\n\
         With this change the job registers the user. Let me know if you need anything else!\n"
    )
}

#[test]
fn demo_heals_the_signup_bug_with_a_scripted_model_and_mails_the_verified_diff() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let model = runtime.block_on(ScriptedModelServer::start()).unwrap();
    model.push_content(small_model_reply());
    let cwd = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let llm = model.base_url();
    let embed = closed_url();

    let output = run_demo(
        cwd.path(),
        tmp.path(),
        &[("APP_LLM_URL", &llm), ("APP_EMBED_URL", &embed)],
    );

    assert_eq!(output.code, Some(0), "{}", output.all());
    assert_plain(&output);
    demo_dir(&output, tmp.path());
    assert_in_order(
        &output.stdout,
        &[
            "✗ attempt 1 failed: KeyError: 'user'",
            "✗ attempt 2 failed: KeyError: 'user'",
            "✗ attempt 3 failed: KeyError: 'user'",
            "moved to the dead-letter queue; heal job",
            "▸ triage: KeyError: 'user'",
            "users.py:18 in normalise_email",
            "▸ model: asking",
            "▸ model: answered round 1",
            "▸ sandbox (bubblewrap): the same job re-ran with the fix (round 1): passed",
            "✓ verdict: VERIFIED",
            "▸ e-mail: written to ",
            "Verified fix",
            "normalise_email reads data[\"user\"][\"email\"]",
            "-    email = data[\"user\"][\"email\"]",
            "+    email = data[\"email\"]",
            "The e-mail to the reviewer was written to ",
        ],
    );

    let eml = output
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("▸ e-mail: written to "))
        .unwrap();
    let eml = Path::new(eml.trim());
    assert!(eml.starts_with(tmp.path()), "{}", eml.display());
    assert_eq!(eml.extension().and_then(|e| e.to_str()), Some("eml"));
    let mail = decode_quoted_printable(&std::fs::read_to_string(eml).unwrap());
    assert!(mail.contains("+    email = data[\"email\"]"), "{mail}");
    assert!(
        mail.contains("-    email = data[\"user\"][\"email\"]"),
        "{mail}"
    );

    let requests = model.chat_requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let prompt = requests[0]["messages"].to_string();
    for needle in [
        "Traceback (most recent call last)",
        "KeyError",
        "normalise_email",
    ] {
        assert!(prompt.contains(needle), "{needle:?} missing from {prompt}");
    }
    drop(model);
}

#[test]
fn demo_without_a_model_server_exits_cleanly_with_one_reason_naming_the_url() {
    let cwd = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let llm = closed_url();
    let embed = closed_url();
    let started = Instant::now();

    let output = run_demo(
        cwd.path(),
        tmp.path(),
        &[("APP_LLM_URL", &llm), ("APP_EMBED_URL", &embed)],
    );

    assert_eq!(output.code, Some(0), "{}", output.all());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{}",
        output.all()
    );
    assert_plain(&output);
    demo_dir(&output, tmp.path());
    assert!(!output.stderr.contains("panicked"), "{}", output.all());
    assert_in_order(
        &output.stdout,
        &[
            "moved to the dead-letter queue; heal job",
            "▸ triage: KeyError: 'user'",
            "✗ verdict: not verified",
            "Healing could not produce a verified fix",
        ],
    );
    let conclusion = output
        .stdout
        .split("Healing could not produce a verified fix")
        .nth(1)
        .unwrap();
    let port = llm.rsplit(':').next().unwrap().trim_end_matches("/v1");
    for needle in [
        llm.as_str(),
        "llama-server",
        &format!("--port {port}"),
        "APP_LLM_URL",
    ] {
        assert!(conclusion.contains(needle), "{needle:?}:\n{}", output.all());
    }
    // One reason with one hint: not repeated, and no other port suggested.
    assert_eq!(
        output.stdout.matches("llama-server").count(),
        1,
        "{}",
        output.all()
    );
    assert!(!output.stdout.contains("8100"), "{}", output.all());
}

#[test]
fn demo_runs_from_any_directory_ignoring_the_project_there() {
    let cwd = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // The user's own project, broken: the demo must use its embedded example instead.
    std::fs::write(
        cwd.path().join("smartworker.toml"),
        "[queues.signup]\ncomand = [\"false\"]\n",
    )
    .unwrap();
    let llm = closed_url();
    let embed = closed_url();

    let output = run_demo(
        cwd.path(),
        tmp.path(),
        &[("APP_LLM_URL", &llm), ("APP_EMBED_URL", &embed)],
    );

    assert_eq!(output.code, Some(0), "{}", output.all());
    let dir = demo_dir(&output, tmp.path());
    assert!(
        output.stdout.contains("KeyError: 'user'"),
        "{}",
        output.all()
    );
    assert!(dir.join("project/.smartworker/smartworker.db").is_file());
    assert!(
        !cwd.path().join(".smartworker").exists(),
        "the demo wrote into the cwd"
    );
}
