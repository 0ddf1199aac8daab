//! The embedded memory store against real SQLite files in temporary folders.

use expect_test::expect;
use serde_json::{Value, json};
use smartworker_memory::{
    AttemptTimings, Chunk, ChunkKind, EmbeddedChunks, FailureInput, FixSource, FrameInput,
    HealAttemptRecord, LEXICAL_MODEL, LexicalEmbedder, MemoryError, MemoryStore, NewFix,
    SCHEMA_VERSION, chunks_for_failure, embed_chunks,
};
use std::path::PathBuf;
use tempfile::TempDir;

fn store_file() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(".smartworker").join("smartworker.db");
    (dir, path)
}

fn failure(job_id: &str, fingerprint: &str, error_type: &str, message: &str) -> FailureInput {
    FailureInput {
        job_id: job_id.into(),
        queue: "signup".into(),
        job_name: "welcome".into(),
        fingerprint: fingerprint.into(),
        error_type: error_type.into(),
        message: message.into(),
        stack: format!("{error_type}: {message}\n  at createUser (src/users.ts:12:5)"),
        frames: vec![FrameInput {
            file: "src/users.ts".into(),
            line: Some(12),
            function: Some("createUser".into()),
            code: Some("const email = payload.user.email;".into()),
        }],
        payload: json!({"user": {"email": "bob@example.org"}}),
    }
}

async fn lexical(input: &FailureInput) -> EmbeddedChunks {
    embed_chunks(&LexicalEmbedder, chunks_for_failure(input))
        .await
        .expect("lexical embedding never fails")
}

/// Records a failure with lexical vectors.
async fn record(store: &MemoryStore, input: FailureInput) -> smartworker_memory::FailureRecord {
    let vectors = lexical(&input).await;
    store
        .record_failure(input, vectors)
        .await
        .expect("record failure")
}

fn vectors_of(model: &str, dims: usize, values: &[f32]) -> EmbeddedChunks {
    let chunk = Chunk {
        kind: ChunkKind::Error,
        text: "E: m".into(),
    };
    let mut vector = vec![0.0; dims];
    vector[..values.len()].copy_from_slice(values);
    EmbeddedChunks::new(model, dims, vec![chunk], vec![vector]).expect("vectors fit")
}

fn new_fix(group_id: i64, failure_id: i64, verified: bool, root_cause: &str) -> NewFix {
    NewFix {
        group_id,
        failure_id,
        job_id: "1".into(),
        queue: "signup".into(),
        verified,
        root_cause: root_cause.into(),
        diff: "--- a/src/users.ts\n+++ b/src/users.ts\n".into(),
        edits_json: json!([{"path": "src/users.ts", "search": "a", "replace": "b"}]),
        source: FixSource::Model,
        model: "qwen2.5-coder".into(),
        rounds: 1,
        heal_job_id: None,
    }
}

fn attempt(heal_job_id: &str, round: u32, verdict: &str) -> HealAttemptRecord {
    HealAttemptRecord {
        heal_job_id: heal_job_id.into(),
        job_id: "1".into(),
        round,
        prompt: "fix this".into(),
        reply: "```diff```".into(),
        edits_json: json!([]),
        sandbox_stdout: "connecting to postgres://app:pa55@localhost/db".into(),
        sandbox_stderr: String::new(),
        sandbox_exit: Some(1),
        verdict: verdict.into(),
        refusal: None,
        timings: AttemptTimings {
            model_ms: 1200,
            apply_ms: 3,
            sandbox_ms: 450,
            total_ms: 1700,
        },
    }
}

#[tokio::test]
async fn similar_failures_rank_the_related_failure_first() {
    let (_dir, path) = store_file();
    let store = MemoryStore::open(&path).unwrap();
    let related = record(
        &store,
        failure(
            "1",
            "fp-a",
            "KeyError",
            "'email' missing in create_user payload",
        ),
    )
    .await;
    let mut unrelated_input = failure("2", "fp-b", "SmtpError", "relay refused the connection");
    unrelated_input.frames = vec![];
    unrelated_input.payload = json!([1, 2]);
    let unrelated = record(&store, unrelated_input).await;

    let query = LexicalEmbedder.embed_text("KeyError: 'email' missing in createUser");
    let found = store
        .similar_failures(LEXICAL_MODEL, &query, 5, None)
        .await
        .unwrap();

    let order: Vec<i64> = found.iter().map(|s| s.failure_id).collect();
    assert_eq!(order, [related.failure_id, unrelated.failure_id]);
    assert!(found[0].score > found[1].score + 0.3, "{found:?}");
    assert_eq!(found[0].error_type, "KeyError");

    let without_own = store
        .similar_failures(LEXICAL_MODEL, &query, 5, Some(related.group_id))
        .await
        .unwrap();
    assert_eq!(without_own.len(), 1);
    assert_eq!(without_own[0].group_id, unrelated.group_id);

    let top_one = store.similar_failures(LEXICAL_MODEL, &query, 1, None).await;
    assert_eq!(top_one.unwrap().len(), 1);
}

#[tokio::test]
async fn similar_failures_return_one_failure_per_group() {
    let store = MemoryStore::open_in_memory().unwrap();
    record(&store, failure("1", "fp-a", "KeyError", "email")).await;
    let newest = record(&store, failure("2", "fp-a", "KeyError", "email")).await;

    let query = LexicalEmbedder.embed_text("KeyError: email");
    let found = store
        .similar_failures(LEXICAL_MODEL, &query, 5, None)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].failure_id, newest.failure_id,
        "ties go to the newer failure"
    );
}

#[tokio::test]
async fn search_with_another_model_ignores_other_models_vectors() {
    let store = MemoryStore::open_in_memory().unwrap();
    let input = failure("1", "fp-a", "E", "m");
    store
        .record_failure(input.clone(), vectors_of("bge-small", 4, &[1.0, 0.0]))
        .await
        .unwrap();
    let mut other = failure("2", "fp-b", "E", "m");
    other.queue = "billing".into();
    store
        .record_failure(other, vectors_of("other-model", 4, &[1.0, 0.0]))
        .await
        .unwrap();

    let never_stored = store.similar_failures(LEXICAL_MODEL, &[1.0; 384], 5, None);
    assert!(never_stored.await.unwrap().is_empty());

    let found = store
        .similar_failures("bge-small", &[1.0, 0.0, 0.0, 0.0], 5, None)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].failure_id, 1);
    assert!((found[0].score - 1.0).abs() < 1e-6);
}

#[tokio::test]
async fn dimension_mismatch_is_an_error_not_a_comparison() {
    let store = MemoryStore::open_in_memory().unwrap();
    record(&store, failure("1", "fp-a", "E", "m")).await;

    let err = store
        .similar_failures(LEXICAL_MODEL, &[1.0; 16], 5, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"embedding model "lexical-hash-v1" has 384 dimensions, got a vector of 16"#
    );

    let wrong = vectors_of(LEXICAL_MODEL, 16, &[1.0]);
    let err = store
        .record_failure(failure("2", "fp-b", "E", "m"), wrong)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        MemoryError::DimensionMismatch {
            expected: 384,
            got: 16,
            ..
        }
    ));
    assert_eq!(
        store.failure_count().await.unwrap(),
        1,
        "nothing half-stored"
    );
}

#[tokio::test]
async fn verified_fix_lookup_returns_only_verified_fixes() {
    let store = MemoryStore::open_in_memory().unwrap();
    let f = record(&store, failure("1", "fp-a", "E", "m")).await;

    let unverified = store
        .record_fix(new_fix(f.group_id, f.failure_id, false, "guess"))
        .await
        .unwrap();
    assert!(
        store
            .verified_fix_for_group(f.group_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .verified_fix_for_fingerprint("fp-a")
            .await
            .unwrap()
            .is_none()
    );

    let verified = store
        .record_fix(new_fix(
            f.group_id,
            f.failure_id,
            true,
            "email may be missing",
        ))
        .await
        .unwrap();
    store
        .record_fix(new_fix(f.group_id, f.failure_id, false, "later guess"))
        .await
        .unwrap();

    let by_group = store
        .verified_fix_for_group(f.group_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_group.summary.id, verified);
    assert!(by_group.summary.verified);
    assert_eq!(by_group.edits_json[0]["path"], "src/users.ts");
    let by_fp = store
        .verified_fix_for_fingerprint("fp-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_fp.summary.id, verified);
    assert!(
        store
            .verified_fix_for_fingerprint("fp-z")
            .await
            .unwrap()
            .is_none()
    );

    let listed: Vec<i64> = store
        .list_fixes(10)
        .await
        .unwrap()
        .iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(listed, [verified + 1, verified, unverified]);
}

#[tokio::test]
async fn similar_failure_carries_the_groups_verified_fix() {
    let store = MemoryStore::open_in_memory().unwrap();
    let f = record(&store, failure("1", "fp-a", "KeyError", "email")).await;
    let verified = store
        .record_fix(new_fix(
            f.group_id,
            f.failure_id,
            true,
            "email may be missing",
        ))
        .await
        .unwrap();
    store
        .record_fix(new_fix(
            f.group_id,
            f.failure_id,
            false,
            "newer but unverified",
        ))
        .await
        .unwrap();

    let query = LexicalEmbedder.embed_text("KeyError: email");
    let found = store
        .similar_failures(LEXICAL_MODEL, &query, 1, None)
        .await
        .unwrap();
    let fix = found[0].fix.as_ref().unwrap();
    assert_eq!((fix.id, fix.verified), (verified, true));
}

#[tokio::test]
async fn fix_for_a_failure_of_another_group_is_refused() {
    let store = MemoryStore::open_in_memory().unwrap();
    let a = record(&store, failure("1", "fp-a", "E", "m")).await;
    let b = record(&store, failure("2", "fp-b", "E", "m")).await;

    let err = store
        .record_fix(new_fix(a.group_id, b.failure_id, true, "x"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "failure 2 belongs to group 2, not group 1");
    let err = store.record_fix(new_fix(99, a.failure_id, true, "x")).await;
    assert!(matches!(err, Err(MemoryError::UnknownGroup(99))));
    let err = store.record_fix(new_fix(a.group_id, 99, true, "x")).await;
    assert!(matches!(err, Err(MemoryError::UnknownFailure(99))));
}

#[tokio::test]
async fn heal_attempts_are_linked_to_the_fix_of_their_heal_job() {
    let store = MemoryStore::open_in_memory().unwrap();
    let f = record(&store, failure("1", "fp-a", "E", "m")).await;
    store
        .record_heal_attempt(attempt("h1", 2, "verified"))
        .await
        .unwrap();
    store
        .record_heal_attempt(attempt("h1", 1, "still_failing"))
        .await
        .unwrap();
    store
        .record_heal_attempt(attempt("h0", 1, "refused"))
        .await
        .unwrap();

    let mut fix = new_fix(f.group_id, f.failure_id, true, "email may be missing");
    fix.heal_job_id = Some("h1".into());
    let fix_id = store.record_fix(fix).await.unwrap();

    let detail = store.get_fix(fix_id).await.unwrap().unwrap();
    let rounds: Vec<u32> = detail.attempts.iter().map(|a| a.record.round).collect();
    assert_eq!(rounds, [1, 2]);
    assert!(detail.attempts.iter().all(|a| a.fix_id == Some(fix_id)));
    assert_eq!(detail.attempts[0].record.timings.model_ms, 1200);
    assert_eq!(
        detail.attempts[0].record.sandbox_stdout,
        "connecting to postgres://app:***@localhost/db"
    );
    assert_eq!(store.heal_attempts_for_fix(fix_id).await.unwrap().len(), 2);

    let for_job = store.heal_attempts_for_job("1").await.unwrap();
    let recorded: Vec<(&str, u32)> = for_job
        .iter()
        .map(|a| (a.record.heal_job_id.as_str(), a.record.round))
        .collect();
    assert_eq!(recorded, [("h1", 2), ("h1", 1), ("h0", 1)], "oldest first");
    assert_eq!(store.heal_attempts_for_job("h0").await.unwrap().len(), 1);
    assert!(store.get_fix(fix_id + 1).await.unwrap().is_none());
}

#[tokio::test]
async fn fix_vectors_need_an_existing_fix() {
    let store = MemoryStore::open_in_memory().unwrap();
    let f = record(&store, failure("1", "fp-a", "E", "m")).await;
    let fix_id = store
        .record_fix(new_fix(f.group_id, f.failure_id, true, "x"))
        .await
        .unwrap();

    let chunks = smartworker_memory::chunks_for_fix("email may be missing", "+ if (!user) {}");
    let vectors = embed_chunks(&LexicalEmbedder, chunks).await.unwrap();
    store
        .record_fix_vectors(fix_id, vectors.clone())
        .await
        .unwrap();
    let err = store.record_fix_vectors(fix_id + 7, vectors).await;
    assert!(matches!(err, Err(MemoryError::UnknownFix(_))));

    // Fix chunks are not failures: a search finds the one failure only.
    let query = LexicalEmbedder.embed_text("email may be missing");
    let found = store
        .similar_failures(LEXICAL_MODEL, &query, 9, None)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

#[tokio::test]
async fn reopening_the_file_keeps_the_data() {
    let (_dir, path) = store_file();
    let (group_id, fix_id) = {
        let store = MemoryStore::open(&path).unwrap();
        let f = record(&store, failure("1", "fp-a", "KeyError", "email")).await;
        let fix = new_fix(f.group_id, f.failure_id, true, "email may be missing");
        (f.group_id, store.record_fix(fix).await.unwrap())
    };

    let store = MemoryStore::open(&path).unwrap();
    assert_eq!(store.failure_count().await.unwrap(), 1);
    let again = record(&store, failure("2", "fp-a", "KeyError", "email")).await;
    assert_eq!((again.group_id, again.new_group), (group_id, false));
    let fix = store
        .verified_fix_for_fingerprint("fp-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fix.summary.id, fix_id);

    let query = LexicalEmbedder.embed_text("KeyError: email");
    let found = store
        .similar_failures(LEXICAL_MODEL, &query, 5, None)
        .await
        .unwrap();
    assert_eq!(found[0].group_id, group_id);
}

#[tokio::test]
async fn file_from_a_newer_schema_is_refused() {
    let (_dir, path) = store_file();
    drop(MemoryStore::open(&path).unwrap());

    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute("UPDATE mem_schema SET version = ?1", [SCHEMA_VERSION + 1])
        .unwrap();
    drop(raw);

    let err = MemoryStore::open(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "memory schema version {} is newer than this build supports ({SCHEMA_VERSION})",
            SCHEMA_VERSION + 1
        )
    );
}

#[tokio::test]
async fn store_shares_its_file_with_the_queue_in_wal_mode() {
    let (_dir, path) = store_file();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let queue = rusqlite::Connection::open(&path).unwrap();
    queue
        .execute_batch("CREATE TABLE jobs (id TEXT PRIMARY KEY); INSERT INTO jobs VALUES ('1');")
        .unwrap();

    let store = MemoryStore::open(&path).unwrap();
    record(&store, failure("1", "fp-a", "E", "m")).await;
    queue.execute("INSERT INTO jobs VALUES ('2')", []).unwrap();

    let mode: String = queue
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let jobs: i64 = queue
        .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .unwrap();
    let failures: i64 = queue
        .query_row("SELECT count(*) FROM mem_failures", [], |r| r.get(0))
        .unwrap();
    assert_eq!((jobs, failures), (2, 1));
}

#[tokio::test]
async fn secrets_are_masked_before_storage() {
    let (_dir, path) = store_file();
    let store = MemoryStore::open(&path)
        .unwrap()
        .with_secrets(vec!["sk-live-42".into()]);
    let mut input = failure("1", "fp-a", "AuthError", "key sk-live-42 rejected");
    input.stack = "AuthError at login (password=hunter2)\nBearer abc.def".into();
    input.payload = json!({"api_key": "sk-live-42", "note": "uses sk-live-42", "n": 1});
    let vectors = lexical(&input).await;
    store.record_failure(input, vectors).await.unwrap();

    let raw = rusqlite::Connection::open(&path).unwrap();
    let (message, stack, payload): (String, String, String) = raw
        .query_row(
            "SELECT message, stack, payload FROM mem_failures",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(message, "key *** rejected");
    // An unquoted secret runs to whitespace: a password may itself contain ')'.
    assert_eq!(stack, "AuthError at login (password=***\nBearer ***");
    let payload: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(
        payload,
        json!({"api_key": "***", "note": "uses ***", "n": 1})
    );

    let chunk_texts: Vec<String> = raw
        .prepare("SELECT text FROM mem_chunks")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        chunk_texts.iter().all(|t| !t.contains("sk-live-42")),
        "{chunk_texts:?}"
    );
    assert!(chunk_texts.iter().all(|t| !t.contains("hunter2")));
}

#[tokio::test]
async fn failure_records_the_model_and_dimensions_of_its_vectors() {
    let (_dir, path) = store_file();
    let store = MemoryStore::open(&path).unwrap();
    record(&store, failure("1", "fp-a", "E", "m")).await;

    let raw = rusqlite::Connection::open(&path).unwrap();
    let row: (String, i64) = raw
        .query_row(
            "SELECT embedding_model, embedding_dimensions FROM mem_failures",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(row, (LEXICAL_MODEL.to_string(), 384));
}

#[tokio::test]
async fn fix_detail_serialises_to_the_api_json() {
    let store = MemoryStore::open_in_memory().unwrap();
    let f = record(&store, failure("1", "fp-a", "E", "m")).await;
    let mut a = attempt("h1", 1, "verified");
    a.refusal = Some("path ../etc escapes the project root".into());
    store.record_heal_attempt(a).await.unwrap();
    let mut fix = new_fix(f.group_id, f.failure_id, true, "email may be missing");
    fix.heal_job_id = Some("h1".into());
    let fix_id = store.record_fix(fix).await.unwrap();

    let mut detail = serde_json::to_value(store.get_fix(fix_id).await.unwrap()).unwrap();
    // Times vary between runs.
    detail["created_at"] = json!(0);
    detail["attempts"][0]["created_at"] = json!(0);
    expect![[r#"
        {
          "attempts": [
            {
              "created_at": 0,
              "edits_json": [],
              "fix_id": 1,
              "heal_job_id": "h1",
              "id": 1,
              "job_id": "1",
              "prompt": "fix this",
              "refusal": "path ../etc escapes the project root",
              "reply": "```diff```",
              "round": 1,
              "sandbox_exit": 1,
              "sandbox_stderr": "",
              "sandbox_stdout": "connecting to postgres://app:***@localhost/db",
              "timings": {
                "apply_ms": 3,
                "model_ms": 1200,
                "sandbox_ms": 450,
                "total_ms": 1700
              },
              "verdict": "verified"
            }
          ],
          "created_at": 0,
          "diff": "--- a/src/users.ts\n+++ b/src/users.ts\n",
          "edits_json": [
            {
              "path": "src/users.ts",
              "replace": "b",
              "search": "a"
            }
          ],
          "failure_id": 1,
          "group_id": 1,
          "heal_job_id": "h1",
          "id": 1,
          "job_id": "1",
          "model": "qwen2.5-coder",
          "queue": "signup",
          "root_cause": "email may be missing",
          "rounds": 1,
          "source": "model",
          "verified": true
        }"#]]
    .assert_eq(&serde_json::to_string_pretty(&detail).unwrap());
}

#[tokio::test]
async fn a_version_1_file_gains_full_text_search_for_the_failures_it_holds() {
    let (_dir, path) = store_file();
    let store = MemoryStore::open(&path).unwrap();
    let old = record(
        &store,
        failure("1", "fp", "QuotaError", "mailbox quota exceeded"),
    )
    .await;
    drop(store);

    // Back to what version 1 wrote: no full-text table, no summary index.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "DROP TABLE mem_failures_fts; DROP INDEX mem_chunks_kind;
         DELETE FROM mem_schema; INSERT INTO mem_schema (version) VALUES (1);",
    )
    .unwrap();
    drop(raw);

    let store = MemoryStore::open(&path).unwrap();
    let query = smartworker_memory::SearchQuery {
        text: "quota".into(),
        vector: None,
        k: 3,
    };
    let hits = store.search(query).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].summary.group.id, old.group_id);
}

#[tokio::test]
async fn failures_embedded_by_the_lexical_fallback_group_by_fingerprint_only() {
    let store = MemoryStore::open_in_memory()
        .unwrap()
        .with_group_threshold(0.5);
    // Identical text, so identical lexical vectors: only the fingerprints differ.
    let a = record(&store, failure("1", "fp-a", "KeyError", "'email'")).await;
    let b = record(&store, failure("2", "fp-b", "KeyError", "'email'")).await;
    assert!(a.new_group && b.new_group);
    assert_ne!(a.group_id, b.group_id);
}
