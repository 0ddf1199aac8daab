//! The seccomp policy under the real bubblewrap and Docker: refused calls fail with `EPERM` (each probe is
//! chosen so that without the filter it would succeed or fail differently), while ordinary
//! Python and Node handlers, threads and child processes included, still run.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly at the first unexpected error"
)]

use serde_json::{Value, json};
use smartworker_handler::{CommandOutput, CommandSpec, job_outcome};
use smartworker_sandbox::{
    BackendChoice, BackendKind, SandboxBackend, SandboxOptions, Workspace, WorkspaceOptions,
};
use std::fs;

/// The backend named `kind`; Docker runs the image `scripts/setup/docker.sh` builds.
async fn backend(kind: BackendKind) -> SandboxBackend {
    let image = std::env::var("SMARTWORKER_SANDBOX_IMAGE")
        .unwrap_or_else(|_| "smartworker-sandbox-test:3".into());
    let choice = BackendChoice {
        kind,
        image: Some(image),
        ..BackendChoice::default()
    };
    choice
        .resolve()
        .await
        .unwrap_or_else(|err| panic!("{kind} is not ready ({err}); run scripts/test.sh's setup"))
}

/// Runs `program file` in a `kind` sandbox over a project holding `file` with `code`.
async fn run(kind: BackendKind, program: &str, file: &str, code: &str) -> CommandOutput {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    fs::write(root.join(file), code).unwrap();
    let ws = Workspace::create(&root, &WorkspaceOptions::default()).unwrap();
    let spec = CommandSpec::new(program, &[file], &root);
    let opts = SandboxOptions::default();
    let sandbox = backend(kind).await;
    sandbox.run(&spec, &ws, &root, &opts, b"{}").await.unwrap()
}

fn stdout_json(out: &CommandOutput) -> Value {
    assert_eq!(out.exit_code, Some(0), "stderr: {}", out.stderr);
    job_outcome(out).unwrap()
}

/// Each probe prints the errno name it got, or `ok`. Without the filter: `clone` with
/// `CLONE_NEWUSER` (run first: after `unshare` the uid is unmapped and the kernel refuses it
/// anyway), `ptrace` and `unshare` succeed, `mount` fails with ENOENT (its target is looked up before the privilege
/// check), TIOCSTI on a pipe with ENOTTY, `setns` on fd -1 with EBADF, and `clone3` with a
/// null argument with EFAULT or EINVAL.
const PROBES: &str = r#"
import ctypes, errno, json, os, platform

libc = ctypes.CDLL(None, use_errno=True)

def outcome(result):
    if result == 0:
        return "ok"
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))

def call(fn, *args):
    ctypes.set_errno(0)
    return outcome(fn(*args))

def clone_newuser():
    nr = {"x86_64": 56, "aarch64": 220}[platform.machine()]
    ctypes.set_errno(0)
    pid = libc.syscall(ctypes.c_long(nr), ctypes.c_ulong(0x10000000 | 17), None, None, None, None)
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
        return "ok"
    return outcome(pid)

def clone3():
    nr = 435
    ctypes.set_errno(0)
    return outcome(libc.syscall(ctypes.c_long(nr), None, ctypes.c_size_t(0)))

status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
tiocsti = 0x5412
print(json.dumps({
    "seccomp_mode": status["Seccomp"].strip(),
    "clone_newuser": clone_newuser(),
    "ptrace": call(libc.ptrace, ctypes.c_long(0), 0, None, None),
    "unshare_user": call(libc.unshare, 0x10000000),
    "setns": call(libc.setns, -1, 0),
    "mount": call(libc.mount, b"none", b"/no-such-target", b"tmpfs", ctypes.c_ulong(0), None),
    "tiocsti": call(libc.ioctl, 0, ctypes.c_ulong(tiocsti), ctypes.c_char_p(b"x")),
    "clone3": clone3(),
}))
"#;

#[tokio::test]
async fn refused_system_calls_fail_with_eperm_under_bubblewrap() {
    refused_system_calls_fail_with_eperm(BackendKind::Bubblewrap).await;
}

#[tokio::test]
async fn refused_system_calls_fail_with_eperm_under_docker() {
    refused_system_calls_fail_with_eperm(BackendKind::Docker).await;
}

async fn refused_system_calls_fail_with_eperm(kind: BackendKind) {
    let out = run(kind, "python3", "probe.py", PROBES).await;
    let seen = stdout_json(&out);
    assert_eq!(
        seen,
        json!({
            "seccomp_mode": "2",
            "ptrace": "EPERM",
            "unshare_user": "EPERM",
            "setns": "EPERM",
            "mount": "EPERM",
            "tiocsti": "EPERM",
            "clone_newuser": "EPERM",
            "clone3": "ENOSYS",
        })
    );
}

#[tokio::test]
async fn ordinary_python_handler_with_threads_and_a_child_still_runs() {
    for kind in [BackendKind::Bubblewrap, BackendKind::Docker] {
        ordinary_python_handler_runs(kind).await;
    }
}

async fn ordinary_python_handler_runs(kind: BackendKind) {
    let code = r#"
import json, subprocess, sys, threading
job = json.load(sys.stdin)
results = []
threads = [threading.Thread(target=lambda n=n: results.append(n * n)) for n in range(4)]
for t in threads: t.start()
for t in threads: t.join()
child = subprocess.run(["sh", "-c", "echo child"], capture_output=True, text=True, check=True)
print(json.dumps({"job": job, "squares": sorted(results), "child": child.stdout.strip()}))
"#;
    let out = run(kind, "python3", "handler.py", code).await;
    assert_eq!(
        stdout_json(&out),
        json!({"job": {}, "squares": [0, 1, 4, 9], "child": "child"})
    );
}

#[tokio::test]
async fn ordinary_node_handler_with_a_child_still_runs() {
    for kind in [BackendKind::Bubblewrap, BackendKind::Docker] {
        ordinary_node_handler_runs(kind).await;
    }
}

async fn ordinary_node_handler_runs(kind: BackendKind) {
    let code = r#"
const fs = require("fs");
const { execFileSync } = require("child_process");
const job = JSON.parse(fs.readFileSync(0, "utf8"));
const child = execFileSync("sh", ["-c", "echo child"], { encoding: "utf8" }).trim();
fs.readFile(__filename, "utf8", (err, text) => {
  if (err) throw err;
  console.log(JSON.stringify({ job, child, read: text.length > 0 }));
});
"#;
    let out = run(kind, "node", "handler.js", code).await;
    assert_eq!(
        stdout_json(&out),
        json!({"job": {}, "child": "child", "read": true})
    );
}
