//! The behaviour every memory backend must show, as checks any backend's tests can run
//! (feature `conformance`). Each check takes a fresh, empty store and panics on a mismatch.
//!
//! [`crate::conformance_tests!`] turns them into one `#[tokio::test]` each:
//!
//! ```text
//! async fn store() -> MemoryStore { /* a fresh, empty store */ }
//! smartworker_memory::conformance_tests!(store);
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    reason = "test support: a failed check panics like an assertion"
)]

use crate::{
    AttemptTimings, Chunk, ChunkKind, EmbeddedChunks, FailureInput, FailureRecord, FixSource,
    FrameInput, GroupQuery, HealAttemptRecord, LexicalEmbedder, MAX_GROUP_JOB_IDS, MemoryError,
    MemoryStore, NewFix, QueryVector, SearchQuery, chunks_for_failure, embed_chunks,
};
use serde_json::json;

/// A failure of job `job_id` on queue `signup`.
pub fn failure(job_id: &str, fingerprint: &str, error_type: &str, message: &str) -> FailureInput {
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

/// One chunk whose vector is `values` padded with zeros to `dims`.
pub fn vectors_of(model: &str, dims: usize, values: &[f32]) -> EmbeddedChunks {
    let chunk = Chunk {
        kind: ChunkKind::Error,
        text: "E: m".into(),
    };
    let mut vector = vec![0.0; dims];
    vector[..values.len()].copy_from_slice(values);
    EmbeddedChunks::new(model, dims, vec![chunk], vec![vector]).unwrap()
}

/// Records a failure with lexical vectors of its chunks.
pub async fn record(store: &MemoryStore, input: FailureInput) -> FailureRecord {
    let vectors = embed_chunks(&LexicalEmbedder, chunks_for_failure(&input))
        .await
        .unwrap();
    store.record_failure(input, vectors).await.unwrap()
}

/// A fix of the given group and failure.
pub fn new_fix(group_id: i64, failure_id: i64, verified: bool, root_cause: &str) -> NewFix {
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

/// One heal round of `heal_job_id`.
pub fn attempt(heal_job_id: &str, round: u32, verdict: &str) -> HealAttemptRecord {
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

/// Failures with one fingerprint share a group that counts them, lists their queues sorted
/// and their newest job ids in order.
pub async fn failures_with_one_fingerprint_share_a_group(store: MemoryStore) {
    let first = record(&store, failure("1", "fp-a", "TypeError", "x is undefined")).await;
    let mut second = failure("2", "fp-a", "TypeError", "x is undefined");
    second.queue = "billing".into();
    let second = record(&store, second).await;
    let other = record(&store, failure("3", "fp-b", "RangeError", "too long")).await;

    assert!(first.new_group && !second.new_group && other.new_group);
    assert_eq!(first.group_id, second.group_id);
    assert_ne!(first.group_id, other.group_id);
    let group = store.get_group(first.group_id).await.unwrap().unwrap();
    assert_eq!(group.count, 2);
    assert_eq!(group.fingerprint, "fp-a");
    assert_eq!(group.queues, ["billing", "signup"]);
    assert_eq!(group.last_job_ids, ["1", "2"]);
    assert!(group.first_seen <= group.last_seen);
    assert_eq!(store.failure_count().await.unwrap(), 3);
    assert!(
        store
            .get_group(other.group_id + 1000)
            .await
            .unwrap()
            .is_none()
    );
}

/// A group keeps only its newest job ids, oldest first, without repeats.
pub async fn a_group_keeps_its_newest_job_ids(store: MemoryStore) {
    let total = MAX_GROUP_JOB_IDS + 5;
    let mut group_id = 0;
    for n in 0..total {
        group_id = record(&store, failure(&n.to_string(), "fp", "E", "m"))
            .await
            .group_id;
    }
    record(&store, failure("7", "fp", "E", "m")).await;

    let group = store.get_group(group_id).await.unwrap().unwrap();
    assert_eq!(group.count, u64::try_from(total + 1).unwrap());
    assert_eq!(group.last_job_ids.len(), MAX_GROUP_JOB_IDS);
    assert_eq!(group.last_job_ids.last().unwrap(), "7");
    assert_eq!(group.last_job_ids.first().unwrap(), "5");
}

/// Groups are listed by when they were last seen, newest first, up to the limit.
pub async fn groups_are_listed_newest_first(store: MemoryStore) {
    // Times are milliseconds; the pauses make every record's time differ.
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(5));
    let a = record(&store, failure("1", "fp-a", "E", "a")).await;
    pause().await;
    let b = record(&store, failure("2", "fp-b", "E", "b")).await;
    pause().await;
    let c = record(&store, failure("3", "fp-c", "E", "c")).await;
    pause().await;
    record(&store, failure("4", "fp-a", "E", "a")).await;

    let ids: Vec<i64> = store
        .list_groups(10)
        .await
        .unwrap()
        .iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(ids, [a.group_id, c.group_id, b.group_id]);
    assert_eq!(store.list_groups(2).await.unwrap().len(), 2);
}

/// The nearest groups come first, one failure per group, the query's group left out.
pub async fn similar_failures_rank_by_cosine_one_per_group(store: MemoryStore) {
    let near = vectors_of("m", 3, &[1.0, 0.1, 0.0]);
    let nearer = vectors_of("m", 3, &[1.0, 0.0, 0.0]);
    let far = vectors_of("m", 3, &[0.0, 0.0, 1.0]);
    let own = store
        .record_failure(failure("1", "own", "E", "own"), nearer.clone())
        .await
        .unwrap();
    let a1 = store
        .record_failure(failure("2", "a", "E", "a"), near.clone())
        .await
        .unwrap();
    let a2 = store
        .record_failure(failure("3", "a", "E", "a"), nearer)
        .await
        .unwrap();
    let b = store
        .record_failure(failure("4", "b", "E", "b"), far)
        .await
        .unwrap();

    let found = store
        .similar_failures("m", &[1.0, 0.0, 0.0], 5, Some(own.group_id))
        .await
        .unwrap();
    let ids: Vec<(i64, i64)> = found.iter().map(|s| (s.group_id, s.failure_id)).collect();
    assert_eq!(
        ids,
        [(a1.group_id, a2.failure_id), (b.group_id, b.failure_id)]
    );
    assert!((found[0].score - 1.0).abs() < 1e-3, "{}", found[0].score);
    assert!(found[1].score.abs() < 1e-3, "{}", found[1].score);
    assert_eq!(found[0].error_type, "E");

    let one = store
        .similar_failures("m", &[1.0, 0.0, 0.0], 1, None)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert!(
        store
            .similar_failures("m", &[1.0, 0.0, 0.0], 0, None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Vectors of another model are never compared, and a query of the wrong length is refused.
pub async fn vectors_of_different_models_never_mix(store: MemoryStore) {
    store
        .record_failure(failure("1", "a", "E", "a"), vectors_of("small", 3, &[1.0]))
        .await
        .unwrap();
    store
        .record_failure(failure("2", "b", "E", "b"), vectors_of("large", 5, &[1.0]))
        .await
        .unwrap();

    let small = store
        .similar_failures("small", &[1.0, 0.0, 0.0], 5, None)
        .await
        .unwrap();
    assert_eq!(small.len(), 1);
    assert_eq!(small[0].message, "a");
    let unknown = store
        .similar_failures("other", &[1.0, 0.0, 0.0], 5, None)
        .await
        .unwrap();
    assert!(unknown.is_empty());

    let err = store
        .similar_failures("large", &[1.0, 0.0, 0.0], 5, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            MemoryError::DimensionMismatch {
                expected: 5,
                got: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = store
        .similar_failures("small", &[f32::NAN, 0.0, 0.0], 5, None)
        .await
        .unwrap_err();
    assert!(matches!(err, MemoryError::NotFinite(_)), "{err}");
}

/// A model keeps its first dimensions: a failure with vectors of another length is refused
/// and nothing of it is stored.
pub async fn a_model_keeps_its_first_dimensions(store: MemoryStore) {
    store
        .record_failure(failure("1", "a", "E", "a"), vectors_of("m", 3, &[1.0]))
        .await
        .unwrap();
    let err = store
        .record_failure(failure("2", "b", "E", "b"), vectors_of("m", 4, &[1.0]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            MemoryError::DimensionMismatch {
                expected: 3,
                got: 4,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.failure_count().await.unwrap(), 1);
    assert_eq!(store.list_groups(10).await.unwrap().len(), 1);
}

/// Fixes are stored with their attempts; only verified ones are offered for reuse.
pub async fn fixes_round_trip_and_only_verified_ones_are_reused(store: MemoryStore) {
    let rec = record(&store, failure("1", "fp", "TypeError", "x")).await;
    assert!(
        store
            .verified_fix_for_group(rec.group_id)
            .await
            .unwrap()
            .is_none()
    );

    store
        .record_heal_attempt(attempt("heal-1", 1, "failed"))
        .await
        .unwrap();
    store
        .record_heal_attempt(attempt("heal-1", 2, "passed"))
        .await
        .unwrap();
    let unverified = store
        .record_fix(new_fix(rec.group_id, rec.failure_id, false, "guess"))
        .await
        .unwrap();
    let mut fix = new_fix(rec.group_id, rec.failure_id, true, "email may be missing");
    fix.heal_job_id = Some("heal-1".into());
    let verified = store.record_fix(fix).await.unwrap();
    store
        .record_fix(new_fix(rec.group_id, rec.failure_id, false, "later guess"))
        .await
        .unwrap();

    let reused = store
        .verified_fix_for_group(rec.group_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reused.summary.id, verified);
    assert_eq!(reused.edits_json[0]["path"], "src/users.ts");
    let by_fp = store
        .verified_fix_for_fingerprint("fp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_fp.summary.id, verified);
    assert!(
        store
            .verified_fix_for_fingerprint("nope")
            .await
            .unwrap()
            .is_none()
    );

    let detail = store.get_fix(verified).await.unwrap().unwrap();
    let rounds: Vec<u32> = detail.attempts.iter().map(|a| a.record.round).collect();
    assert_eq!(rounds, [1, 2]);
    assert_eq!(detail.attempts[0].record.timings.model_ms, 1200);
    assert_eq!(detail.fix.summary.source, FixSource::Model);
    let listed: Vec<i64> = store
        .list_fixes(2)
        .await
        .unwrap()
        .iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed[0] > listed[1] && listed.contains(&verified));
    assert!(
        !store
            .get_fix(unverified)
            .await
            .unwrap()
            .unwrap()
            .fix
            .summary
            .verified
    );
    assert_eq!(
        store.heal_attempts_for_fix(verified).await.unwrap().len(),
        2
    );
    assert_eq!(
        store.heal_attempts_for_job("heal-1").await.unwrap().len(),
        2
    );
    assert_eq!(store.heal_attempts_for_job("1").await.unwrap().len(), 2);
    assert!(store.get_fix(verified + 1000).await.unwrap().is_none());
}

/// A fix naming a missing group, a missing failure or another group's failure is refused.
pub async fn a_fix_must_name_its_own_group_and_failure(store: MemoryStore) {
    let a = record(&store, failure("1", "a", "E", "a")).await;
    let b = record(&store, failure("2", "b", "E", "b")).await;

    let err = store
        .record_fix(new_fix(a.group_id + 100, a.failure_id, true, "r"))
        .await;
    assert!(matches!(err, Err(MemoryError::UnknownGroup(_))), "{err:?}");
    let err = store
        .record_fix(new_fix(a.group_id, a.failure_id + 100, true, "r"))
        .await;
    assert!(
        matches!(err, Err(MemoryError::UnknownFailure(_))),
        "{err:?}"
    );
    let err = store
        .record_fix(new_fix(a.group_id, b.failure_id, true, "r"))
        .await;
    assert!(
        matches!(err, Err(MemoryError::FailureNotInGroup { .. })),
        "{err:?}"
    );
    let err = store
        .record_fix_vectors(4242, vectors_of("m", 3, &[1.0]))
        .await;
    assert!(matches!(err, Err(MemoryError::UnknownFix(4242))), "{err:?}");
    assert!(store.list_fixes(10).await.unwrap().is_empty());
}

/// Fix vectors are stored for their model and refused with another length.
pub async fn fix_vectors_follow_the_model_rules(store: MemoryStore) {
    let rec = store
        .record_failure(failure("1", "a", "E", "a"), vectors_of("m", 3, &[1.0]))
        .await
        .unwrap();
    let fix = store
        .record_fix(new_fix(rec.group_id, rec.failure_id, true, "r"))
        .await
        .unwrap();
    store
        .record_fix_vectors(fix, vectors_of("m", 3, &[0.0, 1.0]))
        .await
        .unwrap();
    let err = store
        .record_fix_vectors(fix, vectors_of("m", 2, &[1.0]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, MemoryError::DimensionMismatch { .. }),
        "{err}"
    );
    // Fix vectors are not failures: a search still finds the one failure.
    let found = store
        .similar_failures("m", &[0.0, 1.0, 0.0], 5, None)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].fix.as_ref().unwrap().id, fix);
}

/// Configured secrets never reach the backend: message, stack, payload, chunk texts and
/// sandbox output are masked.
pub async fn secrets_are_masked_before_they_are_stored(store: MemoryStore) {
    let store = store.with_secrets(vec!["hunter22".into()]);
    let mut input = failure("1", "fp", "AuthError", "login failed for hunter22");
    input.payload = json!({"password": "hunter22", "user": "bob"});
    let rec = record(&store, input).await;

    let group = store.get_group(rec.group_id).await.unwrap().unwrap();
    assert!(!group.message.contains("hunter22"), "{}", group.message);
    let found = store
        .similar_failures(
            crate::LEXICAL_MODEL,
            &LexicalEmbedder.embed_text("login failed"),
            1,
            None,
        )
        .await
        .unwrap();
    assert!(
        !found[0].message.contains("hunter22"),
        "{}",
        found[0].message
    );

    let mut a = attempt("heal-1", 1, "failed");
    a.sandbox_stderr = "token hunter22 rejected".into();
    store.record_heal_attempt(a).await.unwrap();
    let stored = store.heal_attempts_for_job("heal-1").await.unwrap();
    assert!(!stored[0].record.sandbox_stderr.contains("hunter22"));
    assert!(!stored[0].record.sandbox_stdout.contains("pa55"));
}

/// A summary chunk and an error chunk, both with the vector `values` padded to `dims`.
pub fn summary_vectors(model: &str, dims: usize, values: &[f32]) -> EmbeddedChunks {
    let mut vector = vec![0.0; dims];
    vector[..values.len()].copy_from_slice(values);
    let chunks = vec![
        Chunk {
            kind: ChunkKind::Summary,
            text: "E: m\nin f (src/users.ts)".into(),
        },
        Chunk {
            kind: ChunkKind::Error,
            text: "E: m".into(),
        },
    ];
    EmbeddedChunks::new(model, dims, chunks, vec![vector.clone(), vector]).unwrap()
}

/// A failure with a new fingerprint joins the group whose representative summary vector is
/// nearest and at least the threshold; a fingerprint match wins over similarity; vectors of
/// another model never join.
pub async fn near_duplicates_join_the_nearest_group(store: MemoryStore) {
    let store = store.with_group_threshold(0.9);
    let a = store
        .record_failure(
            failure("1", "fp-a", "E", "a"),
            summary_vectors("m", 3, &[1.0, 0.0, 0.0]),
        )
        .await
        .unwrap();
    // cosine with a's representative: 0.95 / |(0.95, 0.3)| ≈ 0.954.
    let near = store
        .record_failure(
            failure("2", "fp-b", "E", "b"),
            summary_vectors("m", 3, &[0.95, 0.3, 0.0]),
        )
        .await
        .unwrap();
    // cosine ≈ 0.71: below the threshold.
    let far = store
        .record_failure(
            failure("3", "fp-c", "E", "c"),
            summary_vectors("m", 3, &[0.7, 0.7, 0.0]),
        )
        .await
        .unwrap();
    let by_fingerprint = store
        .record_failure(
            failure("4", "fp-c", "E", "c"),
            summary_vectors("m", 3, &[1.0, 0.0, 0.0]),
        )
        .await
        .unwrap();
    let other_model = store
        .record_failure(
            failure("5", "fp-d", "E", "d"),
            summary_vectors("n", 3, &[1.0, 0.0, 0.0]),
        )
        .await
        .unwrap();

    assert_eq!((near.group_id, near.new_group), (a.group_id, false));
    assert!(far.new_group && far.group_id != a.group_id);
    assert_eq!(by_fingerprint.group_id, far.group_id);
    assert!(other_model.new_group);
    let group = store.get_group(a.group_id).await.unwrap().unwrap();
    assert_eq!((group.count, group.fingerprint.as_str()), (2, "fp-a"));
}

/// Groups page by last seen (newest first, strictly before the cursor) and filter by queue;
/// each carries its fix counts.
pub async fn groups_page_by_last_seen_and_filter_by_queue(store: MemoryStore) {
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(5));
    let mut ids = Vec::new();
    for (n, queue) in ["signup", "billing", "signup"].iter().enumerate() {
        let mut input = failure(&n.to_string(), &format!("fp-{n}"), "E", "m");
        input.queue = (*queue).into();
        ids.push(record(&store, input).await);
        pause().await;
    }
    let fix = new_fix(ids[0].group_id, ids[0].failure_id, true, "r");
    store.record_fix(fix).await.unwrap();

    let page = |before, queue: Option<&str>| GroupQuery {
        limit: 2,
        before,
        queue: queue.map(str::to_owned),
    };
    let first = store.groups(page(None, None)).await.unwrap();
    let cursor = first.last().map(|g| g.group.last_seen);
    let second = store.groups(page(cursor, None)).await.unwrap();
    let signup = store.groups(page(None, Some("signup"))).await.unwrap();

    let order =
        |groups: &[crate::GroupSummary]| groups.iter().map(|g| g.group.id).collect::<Vec<_>>();
    assert_eq!(order(&first), [ids[2].group_id, ids[1].group_id]);
    assert_eq!(order(&second), [ids[0].group_id]);
    assert_eq!(order(&signup), [ids[2].group_id, ids[0].group_id]);
    assert_eq!((second[0].fixes, second[0].verified_fixes), (1, 1));
    assert_eq!((first[0].fixes, first[0].verified_fixes), (0, 0));
}

/// A group's detail lists its distinct job ids and failures newest first, and its fixes.
pub async fn group_detail_lists_jobs_failures_and_fixes(store: MemoryStore) {
    let one = record(&store, failure("job-1", "fp", "E", "m")).await;
    let two = record(&store, failure("job-2", "fp", "E", "m")).await;
    let again = record(&store, failure("job-1", "fp", "E", "m")).await;
    let fix = new_fix(one.group_id, two.failure_id, false, "not yet");
    let fix_id = store.record_fix(fix).await.unwrap();

    let detail = store.group_detail(one.group_id).await.unwrap().unwrap();
    assert_eq!(detail.job_ids, ["job-1", "job-2"]);
    let failures: Vec<i64> = detail.failures.iter().map(|f| f.id).collect();
    assert_eq!(failures, [again.failure_id, two.failure_id, one.failure_id]);
    assert_eq!(detail.failures[0].embedding_model, crate::LEXICAL_MODEL);
    assert_eq!(detail.fix_list.len(), 1);
    assert_eq!(detail.fix_list[0].id, fix_id);
    assert_eq!((detail.summary.group.count, detail.summary.fixes), (3, 1));
    assert!(
        store
            .group_detail(one.group_id + 100)
            .await
            .unwrap()
            .is_none()
    );
}

/// Similar groups are the other groups ranked by their representatives' cosine, of the same
/// model only; an unknown group is an error.
pub async fn similar_groups_rank_other_groups_of_one_model(store: MemoryStore) {
    let vectors = [
        ("fp-q", "m", [1.0, 0.0, 0.0]),
        ("fp-near", "m", [0.9, 0.1, 0.0]),
        ("fp-far", "m", [0.0, 1.0, 0.0]),
        ("fp-other", "n", [1.0, 0.0, 0.0]),
    ];
    let mut groups = Vec::new();
    for (n, (fp, model, values)) in vectors.iter().enumerate() {
        let input = failure(&n.to_string(), fp, "E", "m");
        let vectors = summary_vectors(model, 3, values);
        groups.push(store.record_failure(input, vectors).await.unwrap().group_id);
    }

    let similar = store.similar_groups(groups[0], 5).await.unwrap();
    let ids: Vec<i64> = similar.iter().map(|s| s.summary.group.id).collect();
    assert_eq!(ids, [groups[1], groups[2]]);
    assert!(similar[0].score > 0.99 && similar[1].score.abs() < 1e-6);
    assert_eq!(store.similar_groups(groups[0], 1).await.unwrap().len(), 1);
    let err = store.similar_groups(groups[3] + 100, 5).await.unwrap_err();
    assert!(matches!(err, MemoryError::UnknownGroup(_)), "{err}");
}

/// Search ranks by full text alone without a vector, fuses both rankings with one, answers a
/// model without vectors by text only, and refuses a vector of the wrong length.
pub async fn search_fuses_full_text_and_vector_rankings(store: MemoryStore) {
    let cases = [
        (
            "fp-mail",
            "SmtpError",
            "mail relay refused the message",
            [1.0, 0.0, 0.0],
        ),
        (
            "fp-email",
            "KeyError",
            "email missing from payload",
            [0.0, 1.0, 0.0],
        ),
        (
            "fp-disk",
            "IOError",
            "disk full while writing invoice",
            [0.0, 0.0, 1.0],
        ),
    ];
    let mut groups = Vec::new();
    for (n, (fp, error_type, message, values)) in cases.iter().enumerate() {
        let input = failure(&n.to_string(), fp, error_type, message);
        let vectors = summary_vectors("m", 3, values);
        groups.push(store.record_failure(input, vectors).await.unwrap().group_id);
    }
    let query = |text: &str, vector: Option<(&str, Vec<f32>)>| SearchQuery {
        text: text.into(),
        vector: vector.map(|(model, vector)| QueryVector {
            model: model.into(),
            vector,
        }),
        k: 5,
    };
    let ids =
        |hits: &[crate::SearchHit]| hits.iter().map(|h| h.summary.group.id).collect::<Vec<_>>();

    let text_only = store.search(query("invoice disk", None)).await.unwrap();
    assert_eq!(ids(&text_only), [groups[2]]);
    assert_eq!(
        (text_only[0].text_rank, text_only[0].vector_rank),
        (Some(1), None)
    );

    let hybrid = store
        .search(query("email", Some(("m", vec![0.1, 1.0, 0.0]))))
        .await
        .unwrap();
    assert_eq!(
        hybrid[0].summary.group.id, groups[1],
        "found by both rankings"
    );
    assert_eq!(
        (hybrid[0].text_rank, hybrid[0].vector_rank),
        (Some(1), Some(1))
    );
    assert_eq!(
        hybrid.len(),
        3,
        "the vector ranking reaches every group of the model"
    );

    // With a floor, a group only the vectors found must be that close; a word match stays.
    let floored = store.clone().with_search_floor(0.5);
    let hybrid = floored
        .search(query("email", Some(("m", vec![0.1, 1.0, 0.0]))))
        .await
        .unwrap();
    assert_eq!(
        ids(&hybrid),
        [groups[1]],
        "the others are at most 0.1 alike"
    );
    let words_and_unlike = floored
        .search(query("disk", Some(("m", vec![1.0, 0.0, 0.0]))))
        .await
        .unwrap();
    let mut found = ids(&words_and_unlike);
    found.sort_unstable();
    assert_eq!(found, [groups[0], groups[2]], "the disk group by its word");
    let nothing_like = floored
        .search(query("banana", Some(("m", vec![-1.0, -1.0, -1.0]))))
        .await
        .unwrap();
    assert!(nothing_like.is_empty(), "{nothing_like:?}");

    let unknown_model = store
        .search(query("relay", Some(("other-model", vec![1.0; 7]))))
        .await
        .unwrap();
    assert_eq!(ids(&unknown_model), [groups[0]]);

    let err = store
        .search(query("relay", Some(("m", vec![1.0; 4]))))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            MemoryError::DimensionMismatch {
                expected: 3,
                got: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(store.search(query("", None)).await.unwrap().is_empty());
}

/// Runs the checks of failure groups and search ([`near_duplicates_join_the_nearest_group`]
/// and the ones after it) as `#[tokio::test]`s, like [`crate::conformance_tests!`].
#[macro_export]
macro_rules! group_conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@each $make;
            near_duplicates_join_the_nearest_group,
            groups_page_by_last_seen_and_filter_by_queue,
            group_detail_lists_jobs_failures_and_fixes,
            similar_groups_rank_other_groups_of_one_model,
            search_fuses_full_text_and_vector_rankings,
        );
    };
}

/// Runs every conformance check as its own `#[tokio::test]` against stores made by the given
/// `async fn() -> MemoryStore`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@each $make;
            failures_with_one_fingerprint_share_a_group,
            a_group_keeps_its_newest_job_ids,
            groups_are_listed_newest_first,
            similar_failures_rank_by_cosine_one_per_group,
            vectors_of_different_models_never_mix,
            a_model_keeps_its_first_dimensions,
            fixes_round_trip_and_only_verified_ones_are_reused,
            a_fix_must_name_its_own_group_and_failure,
            fix_vectors_follow_the_model_rules,
            secrets_are_masked_before_they_are_stored,
        );
    };
    (@each $make:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                $crate::conformance::$check($make().await).await;
            }
        )*
    };
}
