//! The Docker backend against the real engine `scripts/setup/docker.sh` starts, with the test
//! image it builds locally: isolation, output and stack traces like bubblewrap's, labels,
//! removal after a run and after a dropped run, clean-up of leftovers, and the backend choice.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly at the first unexpected error"
)]

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use serde_json::{Value, json};
use smartworker_core::{Job, JobId, JobState, NewJob};
use smartworker_handler::{CommandOutput, CommandSpec, job_env, job_outcome, job_stdin};
use smartworker_sandbox::{
    BackendChoice, BackendKind, DEFAULT_DOCKER_SOCKET, DockerOptions, DockerSandbox, LABEL_JOB,
    LABEL_PID, LABEL_SANDBOX, SandboxBackend, SandboxError, SandboxOptions, Workspace,
    WorkspaceOptions, remove_leftovers,
};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The image `scripts/setup/docker.sh` builds (same override variable).
fn image() -> String {
    std::env::var("SMARTWORKER_SANDBOX_IMAGE")
        .unwrap_or_else(|_| "smartworker-sandbox-test:3".into())
}

async fn docker() -> DockerSandbox {
    DockerSandbox::connect(&DockerOptions::new(image()))
        .await
        .unwrap_or_else(|err| {
            panic!("the docker sandbox is not ready ({err}); run scripts/setup/docker.sh first")
        })
}

async fn engine() -> Docker {
    Docker::connect_with_unix(DEFAULT_DOCKER_SOCKET, 30, bollard::API_DEFAULT_VERSION)
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
}

fn job(data: Value) -> Job {
    Job {
        state: JobState::Dead,
        attempts_made: 3,
        ..Job::stored(
            JobId::from("docker-7"),
            NewJob::new("signup", "welcome", data),
            0,
        )
    }
}

/// A project holding `handler.py` with `code`, under a canonical temp path.
fn project(code: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    fs::write(root.join("handler.py"), code).unwrap();
    (dir, root)
}

async fn run(code: &str, opts: &SandboxOptions, stdin: &[u8]) -> CommandOutput {
    let (_dir, root) = project(code);
    let ws = Workspace::create(&root, &WorkspaceOptions::default()).unwrap();
    let spec = CommandSpec::new("python3", &["handler.py"], &root);
    docker()
        .await
        .run(&spec, &ws, &root, opts, stdin)
        .await
        .unwrap()
}

/// Every container carrying `label=value`, stopped ones included.
async fn containers_labelled(label: &str, value: &str) -> Vec<String> {
    containers_where(label, value, &[]).await
}

/// The containers carrying `label=value` whose status is one of `statuses` (any when empty).
async fn containers_where(label: &str, value: &str, statuses: &[&str]) -> Vec<String> {
    let mut filters = HashMap::from([("label", vec![format!("{label}={value}")])]);
    if !statuses.is_empty() {
        filters.insert("status", statuses.iter().map(|s| (*s).to_owned()).collect());
    }
    let list = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let found = engine().await.list_containers(Some(list)).await.unwrap();
    found.into_iter().filter_map(|c| c.id).collect()
}

#[tokio::test]
async fn container_runs_the_job_as_a_non_root_user_with_only_its_environment() {
    let code = "import json, os, sys\n\
                print(json.dumps({'job': json.load(sys.stdin), 'cwd': os.getcwd(),\n\
                                  'uid': os.getuid(), 'gid': os.getgid(),\n\
                                  'env': sorted(os.environ)}))\n";
    let (_dir, root) = project(code);
    let ws = Workspace::create(&root, &WorkspaceOptions::default()).unwrap();
    let job = job(json!({"email": "a@b.c"}));
    let opts = SandboxOptions {
        env: job_env(&job, "host"),
        ..SandboxOptions::default()
    };
    let spec = CommandSpec::new("python3", &["handler.py"], &root);

    let out = docker()
        .await
        .run(&spec, &ws, &root, &opts, &job_stdin(&job))
        .await
        .unwrap();
    let seen = job_outcome(&out).unwrap_or_else(|f| panic!("{f:?}"));

    assert_eq!(seen["job"]["data"], json!({"email": "a@b.c"}));
    assert_eq!(seen["cwd"], root.to_string_lossy().as_ref());
    assert_eq!(
        (seen["uid"].clone(), seen["gid"].clone()),
        (json!(61000), json!(61000))
    );
    assert_eq!(
        seen["env"],
        json!([
            "EXECUTION_CONTEXT",
            "HOME",
            "HOSTNAME",
            "PATH",
            "PWD",
            "SMARTWORKER_JOB_ID",
            "SMARTWORKER_JOB_NAME",
            "SMARTWORKER_QUEUE"
        ])
    );
}

#[tokio::test]
async fn failing_handler_in_a_container_reports_the_original_stack_trace() {
    let code = "import json, sys\n\
                def send(data):\n    return data['email']\n\
                send(json.load(sys.stdin)['data'])\n";
    let (_dir, root) = project(code);
    let ws = Workspace::create(&root, &WorkspaceOptions::default()).unwrap();
    let job = job(json!({"name": "x"}));
    let spec = CommandSpec::new("python3", &["handler.py"], &root);
    let opts = SandboxOptions::default();

    let out = docker()
        .await
        .run(&spec, &ws, &root, &opts, &job_stdin(&job))
        .await
        .unwrap();
    let failure = job_outcome(&out).unwrap_err();

    assert_eq!(out.exit_code, Some(1));
    assert_eq!(failure.message, "KeyError: 'email'");
    let frame = format!("File \"{}/handler.py\", line 3, in send", root.display());
    assert!(
        failure.stack.unwrap().contains(&frame),
        "no frame {frame:?}"
    );
}

#[tokio::test]
async fn output_over_the_cap_keeps_its_tail() {
    let (_dir, root) = project("import sys\nsys.stdout.write('x' * 100000 + 'END')\n");
    let ws = Workspace::create(&root, &WorkspaceOptions::default()).unwrap();
    let mut spec = CommandSpec::new("python3", &["handler.py"], &root);
    spec.max_output_bytes = 1000;
    let opts = SandboxOptions::default();
    let out = docker()
        .await
        .run(&spec, &ws, &root, &opts, b"")
        .await
        .unwrap();
    assert!(out.truncated);
    assert!(
        out.stdout.len() <= 1000 && out.stdout.ends_with("END"),
        "{}",
        out.stdout.len()
    );
}

#[tokio::test]
async fn container_is_labelled_and_removed_after_its_run() {
    let code = "print('{}')\n";
    let job = job(json!({}));
    let marker = format!("label-test-{}", std::process::id());
    let opts = SandboxOptions {
        env: vec![("SMARTWORKER_JOB_ID".into(), marker.clone())],
        ..SandboxOptions::default()
    };
    let (_dir, root) = project("import os, time\ntime.sleep(1000)\n");
    let ws = Workspace::create(&root, &WorkspaceOptions::default()).unwrap();
    let spec = CommandSpec::new("python3", &["handler.py"], &root);
    let sandbox = docker().await;
    let mut running = Box::pin(sandbox.run(&spec, &ws, &root, &opts, b""));

    // While it runs, the container carries the job's label and this process's pid.
    let appeared = async {
        loop {
            // Listed as running: a container the engine is still creating may not be
            // inspectable yet.
            if let Some(id) = containers_where(LABEL_JOB, &marker, &["running"])
                .await
                .pop()
            {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let id = tokio::select! {
        out = &mut running => panic!("the run ended by itself: {out:?}"),
        id = tokio::time::timeout(Duration::from_secs(30), appeared) => id.unwrap(),
    };
    let inspected = engine()
        .await
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await;
    let inspected = inspected.unwrap();
    let labels = inspected.config.unwrap().labels.unwrap();
    assert_eq!(labels[LABEL_SANDBOX], "1");
    assert_eq!(labels[LABEL_PID], std::process::id().to_string());
    let host = inspected.host_config.unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));

    // Dropping the run mid-flight removes the container, and with it the sleeping handler.
    drop(running);
    let gone = async {
        while !containers_labelled(LABEL_JOB, &marker).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), gone)
        .await
        .expect("the dropped run's container was not removed");

    // A run that ends by itself removes its container too.
    let out = run(code, &opts, &job_stdin(&job)).await;
    assert_eq!(out.exit_code, Some(0), "{}", out.stderr);
    assert!(containers_labelled(LABEL_JOB, &marker).await.is_empty());
}

/// A pid that belonged to a process that has exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

async fn labelled_sleeper(pid: u32, marker: &str) -> String {
    let labels = HashMap::from([
        (LABEL_SANDBOX.to_owned(), "1".to_owned()),
        (LABEL_JOB.to_owned(), marker.to_owned()),
        (LABEL_PID.to_owned(), pid.to_string()),
    ]);
    let body = ContainerCreateBody {
        image: Some(image()),
        cmd: Some(vec!["sleep".into(), "1000".into()]),
        labels: Some(labels),
        network_disabled: Some(true),
        ..ContainerCreateBody::default()
    };
    let name = format!("{marker}-{pid}");
    let create = CreateContainerOptionsBuilder::default().name(&name).build();
    let docker = engine().await;
    let id = docker
        .create_container(Some(create), body)
        .await
        .unwrap()
        .id;
    docker.start_container(&id, None).await.unwrap();
    id
}

#[tokio::test]
async fn leftovers_of_a_dead_smartworker_are_removed_and_live_ones_kept() {
    let marker = format!("leftover-test-{}", std::process::id());
    let orphan = labelled_sleeper(dead_pid(), &marker).await;
    let live = labelled_sleeper(std::process::id(), &marker).await;

    let removed = remove_leftovers(Path::new(DEFAULT_DOCKER_SOCKET))
        .await
        .unwrap();

    let left = containers_labelled(LABEL_JOB, &marker).await;
    let force = RemoveContainerOptionsBuilder::default().force(true).build();
    engine()
        .await
        .remove_container(&live, Some(force))
        .await
        .unwrap();
    assert!(!left.contains(&orphan), "the orphan survived: {removed:?}");
    assert!(
        left.contains(&live),
        "a live SmartWorker's container was removed"
    );
    assert!(
        removed.iter().any(|name| name.contains(&marker)),
        "{removed:?}"
    );
}

#[tokio::test]
async fn docker_choice_without_an_engine_or_image_is_refused_with_reasons() {
    let missing_socket = BackendChoice {
        kind: BackendKind::Docker,
        image: Some(image()),
        docker_socket: PathBuf::from("/nonexistent/smartworker/docker.sock"),
    };
    let err = missing_socket.resolve().await.unwrap_err();
    assert!(matches!(err, SandboxError::NoneAvailable { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "no sandbox is available (heal.sandbox = \"docker\"): docker: no docker engine answers \
         on \"/nonexistent/smartworker/docker.sock\": no such socket"
    );

    let missing_image = BackendChoice {
        kind: BackendKind::Docker,
        image: Some("smartworker-no-such-image:0".into()),
        ..BackendChoice::default()
    };
    let err = missing_image.resolve().await.unwrap_err().to_string();
    assert!(
        err.contains("\"smartworker-no-such-image:0\" is not on this engine"),
        "{err}"
    );

    let no_image = BackendChoice {
        kind: BackendKind::Docker,
        ..BackendChoice::default()
    };
    let err = no_image.resolve().await.unwrap_err().to_string();
    assert!(
        err.ends_with("docker: no image is configured (sandbox_image)"),
        "{err}"
    );
}

#[tokio::test]
async fn auto_prefers_bubblewrap_and_docker_choice_runs_docker() {
    let auto = BackendChoice {
        image: Some(image()),
        ..BackendChoice::default()
    };
    assert_eq!(auto.resolve().await.unwrap().name(), "bubblewrap");
    let docker = BackendChoice {
        kind: BackendKind::Docker,
        image: Some(image()),
        ..BackendChoice::default()
    };
    let backend = docker.resolve().await.unwrap();
    assert!(matches!(backend, SandboxBackend::Docker(_)));
    assert_eq!(backend.name(), "docker");
}

/// Reported: the file-size limit bounded each file, not a run's writes in all, so many files
/// under the limit could still fill the host's disk through the bind-mounted workspace.
#[tokio::test]
async fn what_a_container_writes_in_all_is_bounded_however_many_files() {
    let code = include_str!("fixtures/fill.py");
    let opts = SandboxOptions {
        workspace_bytes: 8 << 20,
        tmp_bytes: 4 << 20,
        ..SandboxOptions::default()
    };
    let (_dir, root) = project(code);
    let ws = Workspace::create(&root, &WorkspaceOptions::default()).unwrap();
    let spec = CommandSpec::new("python3", &["handler.py"], &root);

    let out = docker()
        .await
        .run(&spec, &ws, &root, &opts, br#"[".", "/tmp"]"#)
        .await
        .unwrap();

    let seen = job_outcome(&out).unwrap_or_else(|f| panic!("{f:?}"));
    for (place, limit_mib) in [(".", 8), ("/tmp", 4)] {
        assert_eq!(seen[place]["error"], "ENOSPC", "{place}: {seen}");
        let mib = seen[place]["mib"].as_u64().unwrap();
        assert!(mib <= limit_mib, "{place} took {mib} MiB: {seen}");
    }
    // Nothing the container wrote reached the host's copy.
    assert!(!ws.path().join("part-0.bin").exists());
}

#[tokio::test]
async fn container_user_has_a_name_and_no_host_account_is_listed() {
    let code = "import getpass, json\n\
                print(json.dumps({'user': getpass.getuser(),\n\
                                  'passwd': open('/etc/passwd').read().splitlines()}))\n";
    let out = run(code, &SandboxOptions::default(), b"").await;
    let seen = job_outcome(&out).unwrap_or_else(|f| panic!("{f:?}"));
    assert_eq!(
        seen,
        json!({"user": "sandbox",
               "passwd": ["sandbox:x:61000:61000:sandbox:/tmp:/usr/sbin/nologin"]})
    );
}

#[tokio::test]
async fn paths_with_a_colon_are_mounted_whole() {
    let dir = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(dir.path()).unwrap();
    let (root, workspaces) = (base.join("app:v2"), base.join("scratch:1"));
    fs::create_dir(&root).unwrap();
    fs::create_dir(&workspaces).unwrap();
    fs::write(
        root.join("handler.py"),
        "import json, os\nprint(json.dumps(os.getcwd()))\n",
    )
    .unwrap();
    let opts = WorkspaceOptions {
        parent_dir: Some(workspaces),
        ..WorkspaceOptions::default()
    };
    let ws = Workspace::create(&root, &opts).unwrap();
    let spec = CommandSpec::new("python3", &["handler.py"], &root);

    let out = docker()
        .await
        .run(&spec, &ws, &root, &SandboxOptions::default(), b"")
        .await
        .unwrap();

    let seen = job_outcome(&out).unwrap_or_else(|f| panic!("{f:?}"));
    assert_eq!(seen, json!(root.to_string_lossy()));
}
