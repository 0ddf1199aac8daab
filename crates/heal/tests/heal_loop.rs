//! The whole healing loop with real parts: the SQLite queue, worker pools, a Python handler,
//! bubblewrap, the memory store, the outbox, and a scripted OpenAI-compatible server on
//! loopback whose replies read like a small model's.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly at the first unexpected error"
)]

mod support;

use serde_json::{Value, json};
use smartworker_core::{HEAL_QUEUE, JobId, JobOptions, JobState, NewJob, QueueBackend};
use smartworker_handler::{CommandHandler, CommandSpec};
use smartworker_heal::{HealHandler, HealSettings, Healer, HealerParts, RemoteEmbedder};
use smartworker_memory::{
    EmbeddedChunks, FailureInput, FallbackEmbedder, MemoryStore, chunks_for_failure,
};
use smartworker_memory_pg::PgBackend;
use smartworker_memory_pg::testing::TestPostgres;
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

const USERS_PY: &str = "handlers/lib/users.py";

/// The fixed module as a small model sends it: chatty, with a path comment in the fence.
const GOOD_REPLY: &str = r#"I see the issue! The `register` function expects the email to be nested under a `user` key, but the job payload has `email` at the top level.

**Root cause:** `register` reads `data["user"]["email"]`, while the sign-up payload is `{"email": ...}`.

Here's the corrected file:

```python
# handlers/lib/users.py
"""User records for the sign-up job."""


def normalise_email(address):
    return address.strip().lower()


def register(data):
    email = normalise_email(data["email"])
    return {"email": email, "active": True}
```

This reads the email straight from the payload. Let me know if you need anything else!"#;

/// A plausible but wrong fix: it trades one KeyError for another.
const WRONG_REPLY: &str = r#"The code assumes a `user` object exists. Use `.get` so it doesn't crash:

```python path=handlers/lib/users.py
"""User records for the sign-up job."""


def normalise_email(address):
    return address.strip().lower()


def register(data):
    email = normalise_email(data.get("user", {})["email"])
    return {"email": email, "active": True}
```"#;

struct Harness {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outbox: PathBuf,
    backend: Arc<dyn QueueBackend>,
    memory: MemoryStore,
    model: ScriptedModelServer,
    workers: Vec<Worker>,
}

fn copy_fixture(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_fixture(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

impl Harness {
    async fn start(rounds: u32) -> Harness {
        Harness::start_with(rounds, None).await
    }

    /// A harness whose memory is `memory` (PostgreSQL) instead of the queue's SQLite file.
    async fn start_with(rounds: u32, memory: Option<MemoryStore>) -> Harness {
        Harness::start_full(rounds, memory, None, None, WorkspaceOptions::default()).await
    }

    /// Also with an embeddings server at `embed_url` (else none answers and the lexical
    /// fallback embeds), the project's `checks` as `heal.check_command`, and `workspaces`.
    async fn start_full(
        rounds: u32,
        memory: Option<MemoryStore>,
        embed_url: Option<String>,
        checks: Option<Vec<String>>,
        workspaces: WorkspaceOptions,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        std::fs::create_dir_all(&root).unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/signup");
        copy_fixture(&fixture, &root);
        let state = dir.path().join("state");
        let db = state.join("smartworker.db");
        let backend: Arc<dyn QueueBackend> =
            Arc::new(SqliteBackend::open(&db, SqliteOptions::default()).unwrap());
        let memory = memory.unwrap_or_else(|| MemoryStore::open(&db).unwrap());
        let model = ScriptedModelServer::start().await.unwrap();

        let outbox = state.join("outbox");
        let transport = Transport::Outbox {
            dir: outbox.clone(),
        };
        let notifier = Arc::new(Notifier::new(transport, state.join("spool")).unwrap());
        let spec = CommandSpec::new("python3", &["handlers/signup.py"], &root);
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
                    base_url: embed_url.unwrap_or_else(|| "http://127.0.0.1:9/v1".into()),
                    ..EmbedConfig::default()
                })
                .unwrap(),
            ))),
            notifier,
            commands: HashMap::from([("signup".to_owned(), spec.clone())]),
            settings: HealSettings {
                project_root: root.clone(),
                state_dir: state.clone(),
                rounds,
                sandbox: SandboxOptions {
                    wall_timeout: Duration::from_secs(20),
                    ..SandboxOptions::default()
                },
                workspaces,
                backends: SandboxPolicy::default(),
                check_command: checks,
                reviewers: vec!["reviewer@example.com".into()],
                from: "smartworker@localhost".into(),
                secrets: vec![],
                context: Default::default(),
                limits: Default::default(),
                similar: 3,
            },
        });
        let quick = || WorkerOptions {
            idle_poll: Duration::from_millis(50),
            ..WorkerOptions::default()
        };
        let workers = vec![
            Worker::spawn(
                Arc::clone(&backend),
                "signup",
                Arc::new(CommandHandler::new(spec)),
                quick(),
            ),
            Worker::spawn(
                Arc::clone(&backend),
                HEAL_QUEUE,
                Arc::new(HealHandler::new(Arc::new(healer))),
                quick(),
            ),
        ];
        Harness {
            _dir: dir,
            root,
            outbox,
            backend,
            memory,
            model,
            workers,
        }
    }

    async fn signup(&self, email: &str) -> JobId {
        let opts = JobOptions {
            attempts: 2,
            ..JobOptions::default()
        };
        let data = json!({"email": email, "reasoning_fix": true});
        self.backend
            .add(NewJob {
                opts,
                ..NewJob::new("signup", "signup", data)
            })
            .await
            .unwrap()
    }

    /// Waits for the job to be dead-lettered and for its heal job to finish; its result.
    async fn healed(&self, id: &JobId) -> Value {
        let job = self
            .backend
            .wait_finished(id, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(
            job.state,
            JobState::Dead,
            "the buggy job should fail: {job:?}"
        );
        support::heal_report(self.backend.as_ref(), id).await
    }

    fn outbox_messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.outbox) else {
            return vec![];
        };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        paths
            .iter()
            .map(|p| decode_quoted_printable(&std::fs::read_to_string(p).unwrap()))
            .collect()
    }

    async fn stop(self) {
        for worker in self.workers {
            worker.shutdown().await;
        }
    }
}

fn write_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Undoes the quoted-printable body encoding of an `.eml` file (soft breaks and `=XX` bytes).
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let mut bytes = Vec::with_capacity(joined.len());
    let raw = joined.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (raw[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'=', Some(byte)) => {
                bytes.push(byte);
                i += 3;
            }
            (b, _) => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The body of a chat request's last user message.
#[tokio::test]
async fn buggy_python_job_is_healed_verified_mailed_and_remembered() {
    let h = Harness::start(2).await;
    h.model.push_content(GOOD_REPLY);
    let id = h.signup(" Ada@Example.com").await;

    let report = h.healed(&id).await;
    assert_eq!(report["verified"], true, "{report:#}");
    assert_eq!(report["source"], "model");
    assert_eq!(report["rounds"], 1);
    let diff = report["diff"].as_str().unwrap();
    assert!(
        diff.contains("-    email = normalise_email(data[\"user\"][\"email\"])"),
        "{diff}"
    );
    assert!(
        diff.contains("+    email = normalise_email(data[\"email\"])"),
        "{diff}"
    );

    // The model saw the trace and the code, with line numbers.
    let asked = last_user_message(&h.model.chat_requests()[0]);
    assert!(asked.contains("KeyError: 'user'"), "{asked}");
    assert!(asked.contains("handlers/lib/users.py"), "{asked}");
    assert!(
        asked.contains("   9 |     email = normalise_email(data[\"user\"][\"email\"])"),
        "{asked}"
    );

    // The reviewer's message holds the verdict and the diff.
    let mail = h.outbox_messages();
    assert_eq!(mail.len(), 1);
    assert!(mail[0].contains("Verdict: VERIFIED"), "{}", mail[0]);
    assert!(
        mail[0].contains("+    email = normalise_email(data[\"email\"])"),
        "{}",
        mail[0]
    );
    assert!(mail[0].contains("reviewer@example.com"));

    // The project itself is untouched; the fix was proven in a throw-away copy.
    let users = std::fs::read_to_string(h.root.join(USERS_PY)).unwrap();
    assert!(users.contains("data[\"user\"][\"email\"]"));

    // Memory holds the failure, its group and the verified fix.
    assert_eq!(h.memory.failure_count().await.unwrap(), 1);
    let fixes = h.memory.list_fixes(10).await.unwrap();
    assert_eq!(fixes.len(), 1);
    assert!(fixes[0].verified);
    h.stop().await;
}

#[tokio::test]
async fn second_identical_failure_is_healed_from_memory_without_the_model() {
    let h = Harness::start(2).await;
    h.model.push_content(GOOD_REPLY);
    let first = h.signup("ada@example.com").await;
    assert_eq!(h.healed(&first).await["verified"], true);
    assert_eq!(h.model.chat_calls(), 1);

    let second = h.signup("grace@example.com").await;
    let report = h.healed(&second).await;
    assert_eq!(report["verified"], true, "{report:#}");
    assert_eq!(report["source"], "memory");
    assert_eq!(h.model.chat_calls(), 1, "memory hit must not ask the model");
    assert_eq!(h.memory.failure_count().await.unwrap(), 2);
    let groups = h.memory.list_groups(10).await.unwrap();
    assert_eq!(groups.len(), 1, "both failures belong to one group");
    assert_eq!(groups[0].count, 2);
    assert_eq!(h.outbox_messages().len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn wrong_fix_is_not_verified_and_round_two_is_told_the_new_error() {
    let h = Harness::start(2).await;
    h.model.push_content(WRONG_REPLY);
    h.model.push_content(GOOD_REPLY);
    let id = h.signup("ada@example.com").await;

    let report = h.healed(&id).await;
    assert_eq!(report["verified"], true, "{report:#}");
    assert_eq!(report["rounds"], 2);
    let second = last_user_message(&h.model.chat_requests()[1]);
    assert!(second.contains("It still fails"), "{second}");
    assert!(
        second.contains("KeyError: 'email'"),
        "round 2 must see the new error: {second}"
    );
    h.stop().await;
}

#[tokio::test]
async fn fix_that_fails_every_round_is_reported_not_verified() {
    let h = Harness::start(2).await;
    h.model.push_content(WRONG_REPLY);
    h.model.push_content(WRONG_REPLY);
    let id = h.signup("ada@example.com").await;

    let report = h.healed(&id).await;
    assert_eq!(report["verified"], false);
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("still failed in the sandbox")
    );
    let mail = h.outbox_messages();
    assert!(mail[0].contains("Verdict: NOT VERIFIED"), "{}", mail[0]);
    let fixes = h.memory.list_fixes(10).await.unwrap();
    assert!(
        !fixes[0].verified,
        "an unverified fix must not be stored as verified"
    );
    h.stop().await;
}

#[tokio::test]
async fn reply_without_a_usable_edit_is_refused_with_its_reason() {
    let h = Harness::start(1).await;
    h.model.push_content(
        "The error means the payload is missing a `user` key. You should send the user \
         object from the producer side, e.g. `{\"user\": {\"email\": ...}}`. Hope this helps!",
    );
    let id = h.signup("ada@example.com").await;
    let report = h.healed(&id).await;
    assert_eq!(report["verified"], false);
    assert!(
        report["reason"].as_str().unwrap().contains("refused"),
        "{report:#}"
    );
    assert!(report["fix_id"].is_null());
    let attempts = h.memory.heal_attempts_for_job(&id.0).await.unwrap();
    assert_eq!(attempts[0].record.verdict, "refused");
    assert!(attempts[0].record.refusal.is_some());
    h.stop().await;
}

#[tokio::test]
async fn edits_aimed_outside_the_project_are_refused() {
    let h = Harness::start(2).await;
    let escape = |path: &str| {
        format!("Root cause: bad import.\n\n```python path={path}\nprint('owned')\n```\n")
    };
    h.model.push_content(escape("../../outside.py"));
    h.model.push_content(escape("/tmp/smartworker-escape.py"));
    let id = h.signup("ada@example.com").await;
    let report = h.healed(&id).await;
    assert_eq!(report["verified"], false);
    let attempts = h.memory.heal_attempts_for_job(&id.0).await.unwrap();
    assert_eq!(attempts.len(), 2);
    for attempt in &attempts {
        assert_eq!(attempt.record.verdict, "refused", "{attempt:?}");
    }
    assert!(!Path::new("/tmp/smartworker-escape.py").exists());
    assert!(
        !h.root
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("outside.py")
            .exists()
    );
    h.stop().await;
}

/// Reported: when the job passed but the checks failed, the e-mail said only "the job still
/// failed", the record showed exit 0, and the checks' output was stored nowhere.
#[tokio::test]
async fn failing_checks_are_named_with_their_output_in_the_record_reason_and_mail() {
    let checks = vec!["python3".to_owned(), "tools/check.py".to_owned()];
    let h = Harness::start_full(1, None, None, Some(checks), WorkspaceOptions::default()).await;
    write_file(
        &h.root.join("tools/check.py"),
        "print('checking totals')\nraise SystemExit('expected 6, got 0')\n",
    );
    h.model.push_content(GOOD_REPLY);
    let id = h.signup("ada@example.com").await;
    let report = h.healed(&id).await;
    assert_eq!(report["verified"], false, "{report:#}");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains("the project's checks failed (exit 1)"),
        "{reason}"
    );
    let attempts = h.memory.heal_attempts_for_job(&id.0).await.unwrap();
    let record = &attempts[0].record;
    assert_eq!(record.sandbox_exit, Some(0), "the job itself passed");
    assert!(
        record.sandbox_stderr.contains("checking totals"),
        "{record:?}"
    );
    assert!(
        record.sandbox_stderr.contains("expected 6, got 0"),
        "{record:?}"
    );
    let mail = h.outbox_messages();
    assert!(
        mail[0].contains("the project's checks failed (exit 1)"),
        "{}",
        mail[0]
    );
    assert!(mail[0].contains("expected 6, got 0"), "{}", mail[0]);
    h.stop().await;
}

/// Reported: a project over the workspace limit was reported as "the model's last answer was
/// refused", and the model was asked again in vain.
#[tokio::test]
async fn a_workspace_that_cannot_be_made_ends_healing_with_that_reason() {
    let small = WorkspaceOptions {
        max_files: 1,
        ..WorkspaceOptions::default()
    };
    let h = Harness::start_full(3, None, None, None, small).await;
    h.model.push_content(GOOD_REPLY);
    h.model.push_content(GOOD_REPLY);
    let id = h.signup("ada@example.com").await;
    let report = h.healed(&id).await;
    assert_eq!(report["verified"], false, "{report:#}");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the fix could not be verified: cannot create the workspace"),
        "{reason}"
    );
    assert_eq!(h.model.chat_requests().len(), 1, "asked again in vain");
    let attempts = h.memory.heal_attempts_for_job(&id.0).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].record.verdict, "error");
    h.stop().await;
}

/// Reported: a fix that also rewrote `tests/check.py` to print "checks ok" was verified.
#[tokio::test]
async fn a_fix_may_not_rewrite_the_checks_that_judge_it_or_touch_secrets() {
    let checks = vec!["python3".to_owned(), "tools/check.py".to_owned()];
    let h = Harness::start_full(5, None, None, Some(checks), WorkspaceOptions::default()).await;
    write_file(
        &h.root.join("tools/check.py"),
        "raise SystemExit('the real check')\n",
    );
    write_file(&h.root.join("tools/expected.py"), "TOTAL = 6\n");
    write_file(&h.root.join(".env"), "SECRET_TOKEN=tok-123\n");
    std::os::unix::fs::symlink("tools", h.root.join("t")).unwrap();
    let cheat = |path: &str, text: &str| {
        format!(
            "Fixed! I also simplified the check, it was too strict.\n\n```python path={path}\n\
             {text}\n```\n\n{GOOD_REPLY}"
        )
    };
    h.model
        .push_content(cheat("tools/check.py", "print('checks ok')"));
    h.model
        .push_content(cheat("tests/test_signup.py", "def test_ok():\n    pass"));
    h.model.push_content(cheat(".env", "APP_HEAL_SANDBOX=none"));
    // Reported: the same check reached through an in-project symlink was verified.
    h.model
        .push_content(cheat("t/check.py", "print('checks ok')"));
    // A module the check imports, which the trace never pointed at.
    h.model
        .push_content(cheat("tools/expected.py", "TOTAL = 0"));
    let id = h.signup("ada@example.com").await;
    let report = h.healed(&id).await;
    assert_eq!(report["verified"], false, "{report:#}");
    let attempts = h.memory.heal_attempts_for_job(&id.0).await.unwrap();
    let refusals: Vec<String> = attempts
        .iter()
        .map(|a| a.record.refusal.clone().unwrap_or_default())
        .collect();
    assert_eq!(refusals.len(), 5, "{attempts:?}");
    assert!(refusals[0].contains("tests or checks"), "{refusals:?}");
    assert!(refusals[1].contains("tests or checks"), "{refusals:?}");
    assert!(refusals[2].contains("secrets"), "{refusals:?}");
    assert!(refusals[3].contains("tests or checks"), "{refusals:?}");
    assert!(
        refusals[4].contains("not among the files the trace"),
        "{refusals:?}"
    );
    assert_eq!(
        std::fs::read_to_string(h.root.join(".env")).unwrap(),
        "SECRET_TOKEN=tok-123\n"
    );
    h.stop().await;
}

#[tokio::test]
async fn fix_that_reaches_for_the_network_fails_in_the_sandbox() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let h = Harness::start(1).await;
    h.model.push_content(format!(
        "Root cause: the user must be fetched from the user service.\n\n```python path={USERS_PY}\n\
         import urllib.request\n\n\ndef register(data):\n    \
         body = urllib.request.urlopen('http://127.0.0.1:{port}/user', timeout=3).read()\n    \
         return {{\"email\": body.decode(), \"active\": True}}\n```\n"
    ));
    let id = h.signup("ada@example.com").await;
    let report = h.healed(&id).await;
    assert_eq!(report["verified"], false, "{report:#}");
    let attempts = h.memory.heal_attempts_for_job(&id.0).await.unwrap();
    assert_eq!(attempts[0].record.verdict, "failed");
    let stderr = &attempts[0].record.sandbox_stderr;
    assert!(
        stderr.contains("URLError") || stderr.contains("refused"),
        "{stderr}"
    );
    assert!(
        listener.accept().is_err(),
        "the sandbox reached the host's listener"
    );
    h.stop().await;
}

#[tokio::test]
async fn fix_writing_through_a_symlink_that_leaves_the_project_is_refused() {
    let h = Harness::start(1).await;
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), h.root.join("ext")).unwrap();
    // A correct fix, plus a write through the link: the workspace copy has no link there, so
    // only a check against the project itself can see where the write would land.
    h.model.push_content(format!(
        "{GOOD_REPLY}\n\n```text path=ext/victim.txt\nowned\n```\n"
    ));
    let id = h.signup("ada@example.com").await;
    let report = h.healed(&id).await;
    assert_eq!(report["verified"], false, "{report:#}");
    let attempts = h.memory.heal_attempts_for_job(&id.0).await.unwrap();
    assert_eq!(attempts[0].record.verdict, "refused");
    assert!(
        attempts[0]
            .record
            .refusal
            .as_deref()
            .unwrap()
            .contains("symlink"),
        "{attempts:?}"
    );
    assert!(!outside.path().join("victim.txt").exists());
    h.stop().await;
}

/// Memory in a fresh database of this file's PostgreSQL test server.
async fn postgres_memory() -> MemoryStore {
    let pg = TestPostgres::shared().unwrap();
    let db = pg.fresh_database().unwrap();
    let backend = PgBackend::connect(pg.options(&db)).await.unwrap();
    MemoryStore::from_backend(Arc::new(backend))
}

#[tokio::test]
async fn the_healing_loop_works_unchanged_with_memory_in_postgres() {
    let h = Harness::start_with(2, Some(postgres_memory().await)).await;
    h.model.push_content(GOOD_REPLY);
    let first = h.signup("ada@example.com").await;
    let report = h.healed(&first).await;
    assert_eq!(report["verified"], true, "{report:#}");
    assert_eq!(report["source"], "model");

    // The second failure of the same bug reuses the verified fix stored in PostgreSQL.
    let second = h.signup("grace@example.com").await;
    let report = h.healed(&second).await;
    assert_eq!(report["verified"], true, "{report:#}");
    assert_eq!(report["source"], "memory");
    assert_eq!(h.model.chat_calls(), 1, "memory hit must not ask the model");

    assert_eq!(h.memory.failure_count().await.unwrap(), 2);
    let groups = h.memory.list_groups(10).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].count, 2);
    let fixes = h.memory.list_fixes(10).await.unwrap();
    assert_eq!(fixes.len(), 2);
    let detail = h.memory.get_fix(fixes[1].id).await.unwrap().unwrap();
    assert_eq!(
        detail.attempts.len(),
        1,
        "the model round is linked to its fix"
    );
    assert_eq!(h.outbox_messages().len(), 2);
    h.stop().await;
}

/// PostgreSQL dies while jobs run: good jobs keep completing, the buggy job is still
/// dead-lettered, and its failure waits in the buffer until the server is back.
#[tokio::test]
async fn jobs_run_on_while_postgres_is_down_and_no_failure_is_lost() {
    let mut pg = TestPostgres::start().unwrap();
    pg.create_database("memory").unwrap();
    let backend = PgBackend::connect(pg.options("memory")).await.unwrap();
    let memory = MemoryStore::from_backend(Arc::new(backend.clone()));
    let h = Harness::start_with(2, Some(memory)).await;
    pg.kill();

    let good_data = json!({"user": {"email": "ada@example.com"}});
    let mut good = Vec::new();
    for _ in 0..3 {
        good.push(
            h.backend
                .add(NewJob::new("signup", "signup", good_data.clone()))
                .await
                .unwrap(),
        );
    }
    let buggy = h.signup("grace@example.com").await;
    for id in &good {
        let job = h
            .backend
            .wait_finished(id, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(job.state, JobState::Completed, "{job:?}");
    }
    let job = h
        .backend
        .wait_finished(&buggy, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Dead);

    // The heal job cannot remember the failure, says why, and the failure is buffered.
    let heal = wait_for_heal_job(&h, &buggy).await;
    let error = heal.failed_reason.clone().unwrap_or_default();
    assert!(error.contains("postgres is unreachable"), "{error}");
    assert_eq!(backend.buffered_writes(), 1);

    pg.restart().unwrap();
    assert_eq!(backend.replay().await.unwrap(), 0);
    assert_eq!(h.memory.failure_count().await.unwrap(), 1);
    let group = &h.memory.list_groups(1).await.unwrap()[0];
    assert_eq!(group.last_job_ids, std::slice::from_ref(&buggy.0));
    h.stop().await;
}

/// The finished heal job of a failed job.
async fn wait_for_heal_job(h: &Harness, id: &JobId) -> smartworker_core::Job {
    for _ in 0..600 {
        for state in [JobState::Dead, JobState::Completed] {
            let jobs = h.backend.list(HEAL_QUEUE, state, 100).await.unwrap();
            if let Some(heal) = jobs.into_iter().find(|j| j.data["job_id"] == json!(id.0)) {
                return heal;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no finished heal job for {id}");
}

/// Reported: after the embeddings server's model changed vector length under the same name,
/// every later failure failed to be stored and its healing was dead-lettered.
#[tokio::test]
async fn a_failure_is_remembered_when_the_embedding_models_length_changed() {
    let embeddings = ScriptedModelServer::start_with_dimensions(16)
        .await
        .unwrap();
    let h = Harness::start_full(
        1,
        None,
        Some(embeddings.base_url()),
        None,
        WorkspaceOptions::default(),
    )
    .await;
    let earlier = FailureInput {
        job_id: "earlier".into(),
        queue: "signup".into(),
        job_name: "signup".into(),
        fingerprint: "earlier-fingerprint".into(),
        error_type: "KeyError".into(),
        message: "'user'".into(),
        stack: "Traceback ...\nKeyError: 'user'".into(),
        frames: vec![],
        payload: json!({}),
    };
    let chunks = chunks_for_failure(&earlier);
    let vectors = vec![vec![0.5f32; 8]; chunks.len()];
    let stored = EmbeddedChunks::new("bge-large-en-v1.5", 8, chunks, vectors).unwrap();
    h.memory.record_failure(earlier, stored).await.unwrap();
    h.model
        .push_content("The payload has no `user` key; send it from the producer. Hope this helps!");

    let id = h.signup("ada@example.com").await;
    h.healed(&id).await;
    assert_eq!(h.memory.failure_count().await.unwrap(), 2);
    h.stop().await;
}
