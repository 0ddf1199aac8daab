//! Healing a job of a persistent command handler (JSON lines on a long-lived process), with
//! real parts: the SQLite queue, the Python example handler of `examples/persistent`,
//! bubblewrap and a scripted model. The sandbox re-run must be judged by the handler's answer:
//! `{"ok": false}` followed by a clean exit is a failure, not a verified fix.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly at the first unexpected error"
)]

mod support;

use serde_json::{Value, json};
use smartworker_core::{HEAL_QUEUE, JobId, JobOptions, JobState, NewJob, QueueBackend};
use smartworker_handler::{CommandMode, CommandSpec, PersistentCommandHandler, PersistentOptions};
use smartworker_heal::{HealHandler, HealSettings, Healer, HealerParts, RemoteEmbedder};
use smartworker_memory::{FallbackEmbedder, MemoryStore};
use smartworker_model::testing::ScriptedModelServer;
use smartworker_model::{EmbedClient, EmbedConfig, ModelClient, ModelConfig};
use smartworker_notify::{Notifier, Transport};
use smartworker_queue::{SqliteBackend, SqliteOptions};
use smartworker_sandbox::{SandboxOptions, SandboxPolicy, WorkspaceOptions};
use smartworker_worker::{Worker, WorkerOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::last_user_message;

const QUEUE: &str = "greet";

/// The module fixed, as a small model sends it.
const GOOD_REPLY: &str = r#"The greeting reads the name from a `user` object, but the payload has `name` at the top level.

Root cause: `greeting` reads `data["user"]["name"]` while the job sends `{"name": ...}`.

```python
# handlers/lib/greetings.py
"""Greets a new user by name."""


def greeting(data):
    name = data["name"]
    return f"Hello, {name.strip()}!"


def run(data):
    return {"greeting": greeting(data)}
```
"#;

/// A wrong fix: the handler still fails the job, answers `{"ok": false}` and exits 0.
const WRONG_REPLY: &str = r#"Use `.get` so a missing `user` does not crash the handler:

```python path=handlers/lib/greetings.py
"""Greets a new user by name."""


def greeting(data):
    name = data.get("user", {})["name"]
    return f"Hello, {name.strip()}!"


def run(data):
    return {"greeting": greeting(data)}
```"#;

struct Harness {
    _dir: tempfile::TempDir,
    backend: Arc<dyn QueueBackend>,
    memory: MemoryStore,
    model: ScriptedModelServer,
    workers: Vec<Worker>,
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

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/persistent")
}

impl Harness {
    async fn start(rounds: u32) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        copy_dir(&example(), &root);
        let state = dir.path().join("state");
        let db = state.join("smartworker.db");
        let backend: Arc<dyn QueueBackend> =
            Arc::new(SqliteBackend::open(&db, SqliteOptions::default()).unwrap());
        let memory = MemoryStore::open(&db).unwrap();
        let model = ScriptedModelServer::start().await.unwrap();
        let transport = Transport::Outbox {
            dir: state.join("outbox"),
        };
        let notifier = Arc::new(Notifier::new(transport, state.join("spool")).unwrap());
        let spec = CommandSpec::new("python3", &["handlers/greet_server.py"], &root);
        let healer = Healer::new(HealerParts {
            backend: Arc::clone(&backend),
            memory: memory.clone(),
            model: ModelClient::new(ModelConfig {
                base_url: model.base_url(),
                ..ModelConfig::default()
            })
            .unwrap(),
            embedder: FallbackEmbedder::new(Arc::new(RemoteEmbedder::new(
                EmbedClient::new(EmbedConfig {
                    base_url: "http://127.0.0.1:9/v1".into(),
                    ..EmbedConfig::default()
                })
                .unwrap(),
            ))),
            notifier,
            commands: HashMap::from([(QUEUE.to_owned(), spec.clone())]),
            settings: HealSettings {
                project_root: root.clone(),
                state_dir: state.clone(),
                rounds,
                sandbox: SandboxOptions {
                    wall_timeout: Duration::from_secs(20),
                    ..SandboxOptions::default()
                },
                check_command: None,
                reviewers: vec!["reviewer@example.com".into()],
                from: "smartworker@localhost".into(),
                secrets: vec![],
                context: Default::default(),
                limits: Default::default(),
                similar: 3,
                workspaces: WorkspaceOptions::default(),
                backends: SandboxPolicy::default(),
            },
        })
        .with_command_modes(HashMap::from([(QUEUE.to_owned(), CommandMode::Persistent)]));
        let quick = || WorkerOptions {
            idle_poll: Duration::from_millis(50),
            ..WorkerOptions::default()
        };
        let handler = PersistentCommandHandler::new(spec, PersistentOptions::new(1));
        let workers = vec![
            Worker::spawn(Arc::clone(&backend), QUEUE, Arc::new(handler), quick()),
            Worker::spawn(
                Arc::clone(&backend),
                HEAL_QUEUE,
                Arc::new(HealHandler::new(Arc::new(healer))),
                quick(),
            ),
        ];
        Harness {
            _dir: dir,
            backend,
            memory,
            model,
            workers,
        }
    }

    async fn greet(&self, name: &str) -> JobId {
        let data = json!({"name": name, "reasoning_fix": true});
        let job = NewJob {
            opts: JobOptions::default(),
            ..NewJob::new(QUEUE, "greet", data)
        };
        self.backend.add(job).await.unwrap()
    }

    /// Waits for the job to be dead-lettered and for its heal job to finish; its report.
    async fn healed(&self, id: &JobId) -> Value {
        let job = self
            .backend
            .wait_finished(id, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(job.state, JobState::Dead, "{job:?}");
        let failure = job.last_attempt().unwrap();
        assert_eq!(failure.error.as_deref(), Some("KeyError: 'user'"));
        assert!(
            failure.stack.as_deref().unwrap().contains("greetings.py"),
            "the answer's stack is the attempt's stack: {failure:?}"
        );
        support::heal_report(self.backend.as_ref(), id).await
    }

    async fn stop(self) {
        for worker in self.workers {
            worker.shutdown().await;
        }
    }
}

#[tokio::test]
async fn persistent_handler_fix_is_verified_by_its_answer() {
    let h = Harness::start(1).await;
    h.model.push_content(GOOD_REPLY);
    let id = h.greet(" Ada ").await;

    let report = h.healed(&id).await;
    assert_eq!(report["verified"], true, "{report:#}");
    let asked = last_user_message(&h.model.chat_requests()[0]);
    assert!(asked.contains("KeyError: 'user'"), "{asked}");
    assert!(asked.contains("handlers/lib/greetings.py"), "{asked}");
    let attempts = h.memory.heal_attempts_for_job(&id.0).await.unwrap();
    let record = &attempts[0].record;
    assert_eq!(record.verdict, "passed");
    assert!(
        record.sandbox_stdout.contains(r#""ok": true"#)
            && record.sandbox_stdout.contains("Hello, Ada!"),
        "{record:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn ok_false_answer_is_not_verified_even_though_the_process_exits_0() {
    let h = Harness::start(2).await;
    h.model.push_content(WRONG_REPLY);
    h.model.push_content(WRONG_REPLY);
    let id = h.greet("Ada").await;

    let report = h.healed(&id).await;
    assert_eq!(report["verified"], false, "{report:#}");
    let attempts = h.memory.heal_attempts_for_job(&id.0).await.unwrap();
    assert_eq!(attempts.len(), 2);
    for attempt in &attempts {
        let record = &attempt.record;
        assert_eq!(record.sandbox_exit, Some(0), "{record:?}");
        assert!(
            record.sandbox_stdout.contains(r#""ok": false"#),
            "{record:?}"
        );
        assert_eq!(record.verdict, "failed", "{record:?}");
    }
    // Round 2 is told the new error from the answer's stack, not the (empty) stderr.
    let second = last_user_message(&h.model.chat_requests()[1]);
    assert!(second.contains("KeyError: 'name'"), "{second}");
    assert!(second.contains("greetings.py"), "{second}");
    let fixes = h.memory.list_fixes(10).await.unwrap();
    assert!(!fixes[0].verified);
    h.stop().await;
}
