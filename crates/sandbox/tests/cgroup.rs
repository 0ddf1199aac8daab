//! Each bubblewrap run in a cgroup of its own: memory and processes limited for the run as a
//! whole, the cgroup gone after the run, and a crashed SmartWorker's cgroups removed at
//! start-up.
//!
//! These tests read cgroup v1's `memory` and `pids` hierarchies under `/sys/fs/cgroup`, which
//! is what this test machine has; a cgroup v2 host is not covered by them.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly at the first unexpected error"
)]

use serde_json::Value;
use smartworker_handler::{CommandOutput, CommandSpec};
use smartworker_sandbox::{
    SandboxOptions, Workspace, WorkspaceOptions, remove_leftover_cgroups, run_sandboxed,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where this machine mounts each cgroup v1 hierarchy.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A project holding `handler.py` with `code`, under a canonical temp path.
fn project(code: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("test setup");
    let root = fs::canonicalize(dir.path()).expect("test setup");
    fs::write(root.join("handler.py"), code).expect("test setup");
    (dir, root)
}

async fn run_in_sandbox(code: &str, opts: &SandboxOptions) -> CommandOutput {
    let (_dir, root) = project(code);
    let ws = Workspace::create(&root, &WorkspaceOptions::default()).expect("test setup");
    let spec = CommandSpec::new("python3", &["handler.py"], &root);
    run_sandboxed(&spec, &ws, &root, opts, b"")
        .await
        .expect("sandboxed run starts")
}

/// The JSON a handler printed last, if it got that far.
fn printed(out: &CommandOutput) -> Option<Value> {
    let line = out.stdout.lines().last()?;
    serde_json::from_str(line).ok()
}

fn memory_note(bytes: u64) -> String {
    format!(
        "smartworker: the sandbox was killed for using more than its memory limit of {bytes} bytes"
    )
}

/// Reported: six children each touching 200 MiB under a 256 MiB limit got 1.2 GiB, since the
/// limit was each process's address space.
#[tokio::test]
async fn children_together_over_the_memory_limit_are_killed_and_the_output_says_so() {
    let code = "import json, os, time\n\
                children = []\n\
                for _ in range(4):\n    \
                    pid = os.fork()\n    \
                    if pid == 0:\n        \
                        hog = b'x' * (100 << 20)\n        \
                        time.sleep(2)\n        \
                        os._exit(0)\n    \
                    children.append(pid)\n\
                statuses = [os.waitpid(pid, 0)[1] for pid in children]\n\
                print(json.dumps({'finished': sum(1 for s in statuses if s == 0)}))\n";
    let opts = SandboxOptions {
        memory_bytes: 192 << 20,
        ..SandboxOptions::default()
    };

    let out = run_in_sandbox(code, &opts).await;

    assert!(!out.timed_out, "{out:?}");
    let finished = printed(&out).and_then(|seen| seen["finished"].as_u64());
    assert!(
        finished.is_none_or(|n| n < 4),
        "400 MiB in four processes ran under a 192 MiB limit: {out:?}"
    );
    assert!(out.stderr.contains(&memory_note(192 << 20)), "{out:?}");
    assert!(out.memory_killed, "{out:?}");
}

/// Reported: 881,000 empty files in `/tmp` in 7 s raised the host's unreclaimable kernel
/// memory from 49 MB to 742 MB; tmpfs's size caps bytes, not inodes.
#[tokio::test]
async fn files_without_end_in_tmp_are_stopped_by_the_memory_limit() {
    // Bounded at 400,000 files, so a limit that does not bite cannot hurt the machine much.
    let code = "import errno, json\n\
                made, error = 0, None\n\
                try:\n    \
                    while made < 400000:\n        \
                        open(f'/tmp/f{made}', 'w').close()\n        \
                        made += 1\n\
                except OSError as e:\n    \
                    error = errno.errorcode.get(e.errno)\n\
                print(json.dumps({'made': made, 'error': error}))\n";
    let opts = SandboxOptions {
        memory_bytes: 64 << 20,
        wall_timeout: Duration::from_secs(120),
        ..SandboxOptions::default()
    };
    let started = Instant::now();

    let out = run_in_sandbox(code, &opts).await;

    assert!(!out.timed_out, "stopped by the wall timeout only: {out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let seen = printed(&out);
    let made = seen.as_ref().and_then(|s| s["made"].as_u64());
    assert!(made.is_none_or(|n| n < 400_000), "{seen:?}");
    let refused = seen.as_ref().is_some_and(|s| s["error"] == "ENOMEM");
    let killed = out.stderr.contains(&memory_note(64 << 20));
    assert!(
        refused || killed,
        "no sign of the memory limit: {seen:?} {out:?}"
    );
}

/// What the host saw of a run while it went on.
struct Watched {
    out: CommandOutput,
    /// The memory and pids cgroups the handler ran in.
    cgroups: Vec<PathBuf>,
    /// `memory.limit_in_bytes` of its memory cgroup.
    memory_limit: Option<String>,
    /// The most handler processes that existed at once.
    most: usize,
}

/// Runs `code` with `marker` on its command line, watching its processes from the host.
async fn run_watched(code: &str, marker: &str, opts: SandboxOptions) -> Watched {
    let (_dir, root) = project(code);
    let ws = Workspace::create(&root, &WorkspaceOptions::default()).unwrap();
    let spec = CommandSpec::new("python3", &["handler.py", marker], &root);
    let run = tokio::spawn(async move { run_sandboxed(&spec, &ws, &root, &opts, b"").await });

    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut most, mut cgroups, mut memory_limit) = (0, Vec::new(), None);
    while !run.is_finished() && Instant::now() < deadline {
        let pids = processes_with(marker);
        most = most.max(pids.len());
        if let Some(pid) = pids.first()
            && cgroups.is_empty()
        {
            cgroups = cgroups_of(*pid);
            memory_limit = cgroups
                .iter()
                .find_map(|d| fs::read_to_string(d.join("memory.limit_in_bytes")).ok());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = run.await.unwrap().unwrap();
    Watched {
        out,
        cgroups,
        memory_limit: memory_limit.map(|l| l.trim().to_owned()),
        most,
    }
}

/// Both of the run's cgroups were its own and are gone.
fn assert_run_cgroups_gone(cgroups: &[PathBuf]) {
    assert_eq!(
        cgroups.len(),
        2,
        "the handler ran in no cgroup of its own: {cgroups:?}"
    );
    for dir in cgroups {
        assert!(is_run_cgroup(dir), "{dir:?} is not a run cgroup");
        assert!(!dir.exists(), "{dir:?} outlived its run");
    }
}

#[tokio::test]
async fn no_more_than_max_processes_exist_at_once_and_the_cgroup_is_gone_after() {
    let marker = format!("smartworker-pids-{}", std::process::id());
    // Forks until refused (at most 64), holds them all for a while, then ends them.
    let code = "import json, os, time\n\
                children, error = [], None\n\
                for _ in range(64):\n    \
                    try:\n        pid = os.fork()\n    \
                    except OSError as e:\n        error = e.strerror\n        break\n    \
                    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    \
                    children.append(pid)\n\
                time.sleep(3)\n\
                for pid in children:\n    os.kill(pid, 9)\n\
                print(json.dumps({'started': len(children), 'error': error}))\n";
    let opts = SandboxOptions {
        max_processes: 16,
        ..SandboxOptions::default()
    };

    let watched = run_watched(code, &marker, opts).await;

    let out = &watched.out;
    let seen = printed(out).unwrap_or_else(|| panic!("{out:?}"));
    assert!(seen["started"].as_u64().unwrap() < 16, "{seen}");
    assert_eq!(seen["error"], "Resource temporarily unavailable");
    assert!((2..=16).contains(&watched.most), "{} at once", watched.most);
    assert_run_cgroups_gone(&watched.cgroups);
}

#[tokio::test]
async fn the_memory_cgroup_holds_the_limit_and_is_gone_after_a_failed_run() {
    let marker = format!("smartworker-memory-{}", std::process::id());
    let code = "import time\ntime.sleep(2)\nraise SystemExit(3)\n";
    let opts = SandboxOptions {
        memory_bytes: 100 << 20,
        ..SandboxOptions::default()
    };

    let watched = run_watched(code, &marker, opts).await;

    assert_eq!(watched.out.exit_code, Some(3), "{:?}", watched.out);
    assert_eq!(watched.memory_limit.as_deref(), Some("104857600"));
    assert_run_cgroups_gone(&watched.cgroups);
}

#[tokio::test]
async fn the_cgroup_is_gone_after_a_run_that_timed_out() {
    let marker = format!("smartworker-timeout-{}", std::process::id());
    let code = "import os\nos.fork()\nwhile True:\n    pass\n";
    let opts = SandboxOptions {
        wall_timeout: Duration::from_secs(2),
        ..SandboxOptions::default()
    };

    let watched = run_watched(code, &marker, opts).await;

    assert!(watched.out.timed_out, "{:?}", watched.out);
    assert_run_cgroups_gone(&watched.cgroups);
    assert!(
        processes_with(&marker).is_empty(),
        "a process outlived its run"
    );
}

#[test]
fn a_dead_smartworkers_cgroup_is_emptied_and_removed_at_start_up() {
    let dead = dead_pid();
    let namespace = pid_namespace();
    let name = format!("smartworker-{namespace}-{dead}-0");
    let live = format!("smartworker-{namespace}-{}-999999", std::process::id());
    let parents = own_cgroup_parents();
    let mut sleeper = Command::new("sleep").arg("1000").spawn().unwrap();
    for parent in &parents {
        fs::create_dir(parent.join(&name)).unwrap();
        fs::create_dir(parent.join(&live)).unwrap();
        fs::write(
            parent.join(&name).join("cgroup.procs"),
            sleeper.id().to_string(),
        )
        .unwrap();
    }

    let removed = remove_leftover_cgroups();

    for parent in &parents {
        assert!(
            !parent.join(&name).exists(),
            "{parent:?}/{name} left behind"
        );
        assert!(removed.contains(&parent.join(&name)), "{removed:?}");
        assert!(
            parent.join(&live).exists(),
            "a live SmartWorker's cgroup was removed"
        );
        fs::remove_dir(parent.join(&live)).unwrap();
    }
    let status = sleeper.wait().unwrap();
    assert!(
        !status.success(),
        "the leftover's process was not killed: {status:?}"
    );
}

/// Live handler processes (Python's, not zombies) whose command line holds `marker`; not the
/// wrapping shells and bubblewrap, whose command lines hold it too.
fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z'));
            let cmdline = String::from_utf8_lossy(&cmdline);
            let program = cmdline.split('\0').next().unwrap_or_default();
            let handler = Path::new(program)
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("python"));
            (!zombie && handler && cmdline.contains(marker)).then_some(pid)
        })
        .collect()
}

/// The memory and pids cgroup directories of process `pid`.
fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    own.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controller, path) = (fields.next()?, fields.next()?, fields.next()?);
            ["memory", "pids"].contains(&controller).then(|| {
                Path::new(CGROUP_ROOT)
                    .join(controller)
                    .join(path.trim_start_matches('/'))
            })
        })
        .collect()
}

/// This test process's own memory and pids cgroups, where run cgroups are made.
fn own_cgroup_parents() -> Vec<PathBuf> {
    cgroups_of(std::process::id())
}

fn is_run_cgroup(dir: &Path) -> bool {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let prefix = format!("smartworker-{}-{}-", pid_namespace(), std::process::id());
    name.starts_with(&prefix)
}

fn pid_namespace() -> String {
    let link = fs::read_link("/proc/self/ns/pid").unwrap();
    let link = link.to_string_lossy().into_owned();
    link.trim_start_matches("pid:[")
        .trim_end_matches(']')
        .to_owned()
}

/// The pid of a process that has ended.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}
