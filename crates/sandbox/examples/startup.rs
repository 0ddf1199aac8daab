//! Start-up overhead of a sandboxed run: an empty handler in a project of 1,000 files, run on
//! the host (no sandbox), under bubblewrap and under Docker, `BENCH_RUNS` times each (default
//! 40), one run after the other. Prints p50/p99/mean per phase and writes the raw numbers as
//! JSON to the path in the first argument. Run by `bench/sandbox.sh`; see `bench/SANDBOX.md`.
//!
//! A sandboxed run is what healing pays per verification: copy the project into a workspace,
//! run the handler in the sandbox (handing the workspace to the sandbox user included), remove
//! the workspace. The host run has no copy: it is the same command in the project itself.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a benchmark prints its table and stops at the first error"
)]

use serde_json::json;
use smartworker_handler::{CommandSpec, run_command};
use smartworker_sandbox::{
    BackendChoice, BackendKind, SandboxBackend, SandboxOptions, Workspace, WorkspaceOptions,
};
use std::path::Path;
use std::time::Instant;

/// The handlers measured: the smallest possible program, and an empty Python handler, which
/// adds the interpreter's own start-up.
const HANDLERS: [(&str, &str, &[&str]); 2] = [
    ("true", "true", &[]),
    // The system interpreter by path: a bare `python3` may be a shell shim (pyenv) on the host,
    // while the sandboxes use `/usr/bin/python3`, and the comparison would be unfair.
    ("python-empty", "/usr/bin/python3", &["handler.py"]),
];

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sandbox.json".into());
    let runs: usize = std::env::var("BENCH_RUNS").map_or(40, |r| r.parse().unwrap());
    let image = std::env::var("SMARTWORKER_SANDBOX_IMAGE")
        .unwrap_or_else(|_| "smartworker-sandbox-test:3".into());
    // Where workspaces are made: the system's temp dir unless BENCH_WORKSPACE_DIR says, e.g.
    // /dev/shm to see what a copy costs in memory rather than on disk.
    let workspaces = WorkspaceOptions {
        parent_dir: std::env::var_os("BENCH_WORKSPACE_DIR").map(Into::into),
        ..WorkspaceOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    make_project(&root, 1000);

    let docker = BackendChoice {
        kind: BackendKind::Docker,
        image: Some(image.clone()),
        ..BackendChoice::default()
    };
    let docker = docker.resolve().await.unwrap();
    let modes: [(&str, Option<SandboxBackend>); 3] = [
        ("none", None),
        ("bubblewrap", Some(SandboxBackend::Bubblewrap)),
        ("docker", Some(docker)),
    ];

    let shown = workspaces
        .parent_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    println!(
        "{runs} runs each, project of 1,000 files, workspaces in {}; milliseconds",
        shown.display()
    );
    println!(
        "{:<13} {:<11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "handler",
        "sandbox",
        "copy p50",
        "run p50",
        "run p99",
        "rm p50",
        "total p50",
        "total p99",
        "mean"
    );
    let mut results = Vec::new();
    for (name, program, args) in HANDLERS {
        for (mode, backend) in &modes {
            let spec = CommandSpec::new(program, args, &root);
            let samples = measure(&spec, &root, backend.as_ref(), &workspaces, runs).await;
            let row = summarise(&samples);
            println!(
                "{name:<13} {mode:<11} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                row["copy_ms"]["p50"].as_f64().unwrap(),
                row["run_ms"]["p50"].as_f64().unwrap(),
                row["run_ms"]["p99"].as_f64().unwrap(),
                row["remove_ms"]["p50"].as_f64().unwrap(),
                row["total_ms"]["p50"].as_f64().unwrap(),
                row["total_ms"]["p99"].as_f64().unwrap(),
                row["total_ms"]["mean"].as_f64().unwrap(),
            );
            results.push(json!({"handler": name, "sandbox": mode, "runs": runs, "ms": row}));
        }
    }
    let report = json!({"files": 1000, "image": image, "workspaces": shown,
                        "results": results});
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
}

/// `files` files of about 1 KiB in 10 packages, plus the empty handler.
fn make_project(root: &Path, files: usize) {
    std::fs::write(root.join("handler.py"), "").unwrap();
    for n in 0..files - 1 {
        let package = root.join(format!("pkg{}", n % 10));
        std::fs::create_dir_all(&package).unwrap();
        let body = format!("def f{n}(x):\n    return x + {n}\n\n").repeat(30);
        std::fs::write(package.join(format!("mod{n}.py")), body).unwrap();
    }
}

/// One sample per run: (copy, run, remove, total) in milliseconds.
async fn measure(
    spec: &CommandSpec,
    root: &Path,
    backend: Option<&SandboxBackend>,
    workspaces: &WorkspaceOptions,
    runs: usize,
) -> Vec<[f64; 4]> {
    let opts = SandboxOptions::default();
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let Some(backend) = backend else {
            let out = run_command(spec, b"{}").await.unwrap();
            assert_eq!(out.exit_code, Some(0), "{}", out.stderr);
            let ms = millis(started);
            samples.push([0.0, ms, 0.0, ms]);
            continue;
        };
        let ws = Workspace::create(root, workspaces).unwrap();
        let copied = millis(started);
        let ran = Instant::now();
        let out = backend.run(spec, &ws, root, &opts, b"{}").await.unwrap();
        assert_eq!(out.exit_code, Some(0), "{}", out.stderr);
        let run = millis(ran);
        let removing = Instant::now();
        ws.destroy().unwrap();
        samples.push([copied, run, millis(removing), millis(started)]);
    }
    samples
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// p50, p99, mean, min and max of each phase.
fn summarise(samples: &[[f64; 4]]) -> serde_json::Value {
    let phase = |i: usize| {
        let mut values: Vec<f64> = samples.iter().map(|s| s[i]).collect();
        values.sort_by(f64::total_cmp);
        let rank = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        json!({"p50": rank(0.5), "p99": rank(0.99), "mean": mean,
               "min": values[0], "max": values[values.len() - 1]})
    };
    json!({"copy_ms": phase(0), "run_ms": phase(1), "remove_ms": phase(2), "total_ms": phase(3)})
}
