//! `smartworker failures list|show|similar` and `smartworker search` as a person runs them: the
//! binary against a state directory whose memory the test filled, no server running.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]

mod support;

use expect_test::expect;
use serde_json::json;
use smartworker_memory::{
    FailureInput, FrameInput, LexicalEmbedder, MemoryStore, chunks_for_failure, embed_chunks,
};
use std::process::Command;
use support::{Output, closed_port};
use tempfile::TempDir;

/// A project whose memory holds two groups: a declined card (twice) and a full disk.
async fn project() -> TempDir {
    let tmp = TempDir::new().unwrap();
    let store = MemoryStore::open(&tmp.path().join(".smartworker/smartworker.db")).unwrap();
    let failures = [
        (
            "7",
            "charge",
            "fp-card",
            "ValueError",
            "card was declined by the bank",
        ),
        (
            "8",
            "charge",
            "fp-card",
            "ValueError",
            "card was declined by the bank",
        ),
        (
            "9",
            "export",
            "fp-disk",
            "OSError",
            "disk full writing the invoice",
        ),
    ];
    for (job, queue, fingerprint, error_type, message) in failures {
        let input = FailureInput {
            job_id: job.into(),
            queue: queue.into(),
            job_name: queue.into(),
            fingerprint: fingerprint.into(),
            error_type: error_type.into(),
            message: message.into(),
            stack: String::new(),
            frames: vec![FrameInput {
                file: format!("handlers/{queue}.py"),
                line: Some(3),
                function: Some(queue.into()),
                code: None,
            }],
            payload: json!({}),
        };
        let vectors = embed_chunks(&LexicalEmbedder, chunks_for_failure(&input))
            .await
            .unwrap();
        store.record_failure(input, vectors).await.unwrap();
    }
    tmp
}

fn run(root: &TempDir, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_smartworker"))
        .args(args)
        .current_dir(root.path())
        .env(
            "APP_EMBED_URL",
            format!("http://127.0.0.1:{}/v1", closed_port()),
        )
        .env(
            "APP_LLM_URL",
            format!("http://127.0.0.1:{}/v1", closed_port()),
        )
        .output()
        .unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn failures_list_similar_and_search_print_one_line_per_group() {
    let root = project().await;
    let list = run(&root, &["failures", "list"]);
    let similar = run(&root, &["failures", "similar", "1", "--k", "1"]);
    let search = run(&root, &["search", "disk invoice", "--k", "1"]);
    for out in [&list, &similar, &search] {
        assert_eq!(out.code, Some(0), "{}", out.all());
    }
    expect![[r#"
        group   count fixes    score  queues           error
        2           1     0        -  export           OSError: disk full writing the invoice
        1           2     0        -  charge           ValueError: card was declined by the bank
        group   count fixes    score  queues           error
        2           1     0    0.329  export           OSError: disk full writing the invoice
        group   count fixes    score  queues           error
        2           1     0    0.033  export           OSError: disk full writing the invoice
    "#]]
    .assert_eq(&format!(
        "{}{}{}",
        list.stdout, similar.stdout, search.stdout
    ));
}

#[tokio::test]
async fn failures_show_prints_the_group_as_json_and_an_unknown_one_fails() {
    let root = project().await;
    let shown = run(&root, &["failures", "show", "1"]);
    assert_eq!(shown.code, Some(0), "{}", shown.all());
    let detail: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(detail["count"], 2);
    assert_eq!(detail["job_ids"], json!(["8", "7"]));

    let missing = run(&root, &["failures", "show", "42"]);
    assert_eq!(missing.code, Some(1), "{}", missing.all());
    assert!(
        missing.stderr.contains("failure group 42 not found"),
        "{}",
        missing.all()
    );
}
