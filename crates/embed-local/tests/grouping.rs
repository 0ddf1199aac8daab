//! Failure groups with real embeddings (all-MiniLM-L6-v2 run in-process): two runs of one bug
//! whose ids, timestamps, line numbers and caller differ (so their fingerprints differ) share a
//! group; two bugs in one file do not; a search for the error's words finds its group; and the
//! default threshold separates the labelled pairs it was chosen on.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod support;

use serde::Deserialize;
use smartworker_memory::{
    DEFAULT_GROUP_THRESHOLD, DEFAULT_SEARCH_FLOOR, Embedder, FailureInput, FailureRecord,
    FrameInput, MemoryStore, QueryVector, SearchHit, SearchQuery, chunks_for_failure, cosine,
    embed_chunks, summary_text,
};
use smartworker_triage::ParseOptions;

const ROOT: &str = "/srv/app";

/// A failure as the healer builds it: parsed by triage, fingerprinted, project frames only.
fn failure(job_id: &str, trace: &str) -> FailureInput {
    let opts = ParseOptions {
        root: Some(ROOT.into()),
    };
    let parsed = smartworker_triage::parse(trace, &opts);
    let frames = parsed
        .app_frames()
        .map(|f| FrameInput {
            file: f
                .file
                .trim_start_matches(ROOT)
                .trim_start_matches('/')
                .to_owned(),
            line: f.line,
            function: f.function.clone(),
            code: None,
        })
        .collect();
    FailureInput {
        job_id: job_id.into(),
        queue: "users".into(),
        job_name: "users".into(),
        fingerprint: smartworker_triage::fingerprint(&parsed),
        error_type: parsed.error_type.clone(),
        message: parsed.message.clone(),
        stack: trace.into(),
        frames,
        payload: serde_json::json!({"user_id": 4821}),
    }
}

fn user_missing(user: u32, request: &str, line: u32, caller: &str) -> String {
    format!(
        "Traceback (most recent call last):\n  \
         File \"/srv/app/app/jobs.py\", line {}, in {caller}\n    \
         user = load_user(payload[\"user_id\"])\n  \
         File \"/srv/app/app/users.py\", line {line}, in load_user\n    \
         raise LookupError(f\"user {{user_id}} not found (request {{request_id}})\")\n\
         LookupError: user {user} not found (request {request})\n",
        line + 30
    )
}

fn age_type_error(line: u32) -> String {
    format!(
        "Traceback (most recent call last):\n  \
         File \"/srv/app/app/jobs.py\", line 77, in nightly_report\n    \
         ages = [compute_age(u) for u in users]\n  \
         File \"/srv/app/app/users.py\", line {line}, in compute_age\n    \
         return today.year - user[\"birth_year\"]\n\
         TypeError: unsupported operand type(s) for -: 'int' and 'str'\n"
    )
}

async fn record(store: &MemoryStore, input: FailureInput) -> FailureRecord {
    let embedder = support::embedder();
    let vectors = embed_chunks(&embedder, chunks_for_failure(&input))
        .await
        .unwrap();
    store.record_failure(input, vectors).await.unwrap()
}

/// The five groups most like `text`, searched as the app does: its words and its vector.
async fn search(store: &MemoryStore, text: &str) -> Vec<SearchHit> {
    let embedder = support::embedder();
    let vector = embedder.embed(&[text.to_owned()]).await.unwrap().remove(0);
    let query = SearchQuery {
        text: text.into(),
        vector: Some(QueryVector {
            model: embedder.model().into(),
            vector,
        }),
        k: 5,
    };
    store.search(query).await.unwrap()
}

fn store() -> MemoryStore {
    MemoryStore::open_in_memory()
        .unwrap()
        .with_group_threshold(DEFAULT_GROUP_THRESHOLD)
}

#[tokio::test]
async fn two_runs_of_one_bug_with_other_ids_times_lines_and_callers_share_a_group() {
    let store = store();
    let first = failure(
        "101",
        &user_missing(
            4821,
            "5f0c2a9e-1b7d-4c3e-9a8f-0123456789ab",
            12,
            "handle_login",
        ),
    );
    let second = failure(
        "957",
        &user_missing(
            77,
            "0d2b7c9e-4a10-4f0e-9a51-6f1c2a9e1b7c",
            19,
            "send_digest",
        ),
    );
    // The caller is among the fingerprint's frames, so only similarity can join the two.
    assert_ne!(first.fingerprint, second.fingerprint);

    let a = record(&store, first).await;
    let b = record(&store, second).await;

    assert!(a.new_group);
    assert_eq!((b.group_id, b.new_group), (a.group_id, false));
    let detail = store.group_detail(a.group_id).await.unwrap().unwrap();
    assert_eq!(detail.summary.group.count, 2);
    assert_eq!(detail.job_ids, ["957", "101"]);
}

#[tokio::test]
async fn two_bugs_in_one_file_get_groups_of_their_own() {
    let store = store();
    let missing = record(
        &store,
        failure("1", &user_missing(5, "r-1", 12, "handle_login")),
    )
    .await;
    let age = record(&store, failure("2", &age_type_error(71))).await;

    assert!(missing.new_group && age.new_group);
    assert_ne!(missing.group_id, age.group_id);
}

#[tokio::test]
async fn a_search_for_the_errors_words_finds_its_group() {
    let store = store();
    let missing = record(
        &store,
        failure("1", &user_missing(5, "r-1", 12, "handle_login")),
    )
    .await;
    let age = record(&store, failure("2", &age_type_error(71))).await;

    for (text, expected) in [
        ("user not found", missing.group_id),
        ("unsupported operand in compute_age", age.group_id),
    ] {
        let hits = search(&store, text).await;
        assert_eq!(hits[0].summary.group.id, expected, "{text}");
        assert_eq!(hits[0].vector_rank, Some(1), "{text}");
    }
}

/// Reported: a search for something never seen listed every group, the least unlike first.
#[tokio::test]
async fn a_search_for_something_never_seen_finds_nothing() {
    let store = store().with_search_floor(DEFAULT_SEARCH_FLOOR);
    let missing = record(
        &store,
        failure("1", &user_missing(5, "r-1", 12, "handle_login")),
    )
    .await;
    record(&store, failure("2", &age_type_error(71))).await;

    // "in" and "the" are in both traces ("in handle_login"), but say nothing.
    for text in [
        "quantum banana pancake",
        "weather tomorrow in Paris",
        "the shopping list",
    ] {
        let hits = search(&store, text).await;
        assert!(hits.is_empty(), "{text}: {hits:?}");
    }
    let hits = search(&store, "login user does not exist").await;
    assert_eq!(hits[0].summary.group.id, missing.group_id, "{hits:?}");
}

#[derive(Deserialize)]
struct Pairs {
    pairs: Vec<Pair>,
}

#[derive(Deserialize)]
struct Pair {
    label: String,
    bug: String,
    a: Labelled,
    b: Labelled,
}

#[derive(Deserialize)]
struct Labelled {
    error_type: String,
    message: String,
    frames: Vec<FrameInput>,
}

impl Labelled {
    fn summary(&self) -> String {
        let mut input = failure("1", "");
        input.error_type = self.error_type.clone();
        input.message = self.message.clone();
        input.frames = self.frames.clone();
        summary_text(&input)
    }
}

#[test]
fn the_default_threshold_separates_the_labelled_pairs() {
    let pairs: Pairs = serde_json::from_str(include_str!("fixtures/failure_pairs.json")).unwrap();
    let embedder = support::embedder();
    let mut wrong = Vec::new();
    for pair in &pairs.pairs {
        let texts = [pair.a.summary(), pair.b.summary()];
        let vectors = embedder.embed_blocking(&texts).unwrap();
        let score = cosine(&vectors[0], &vectors[1]);
        let joined = score >= DEFAULT_GROUP_THRESHOLD;
        if joined != (pair.label == "same") {
            wrong.push(format!("{} ({}): {score:.3}", pair.bug, pair.label));
        }
    }
    assert!(
        wrong.is_empty(),
        "misgrouped at {DEFAULT_GROUP_THRESHOLD}: {wrong:?}"
    );
}
