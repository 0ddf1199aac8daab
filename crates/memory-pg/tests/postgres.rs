//! What only the PostgreSQL store does: migrations, per-model HNSW indexes, filtered searches
//! that still return k groups, and the durable buffer that keeps writes while the server is
//! down. Every test runs against a server it starts itself on a free loopback port.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly at the first unexpected error"
)]

use smartworker_memory::conformance::{failure, new_fix, record, vectors_of};
use smartworker_memory::{MemoryError, MemoryStore};
use smartworker_memory_pg::testing::TestPostgres;
use smartworker_memory_pg::{PG_SCHEMA_VERSION, PgBackend, PgOptions};
use std::sync::Arc;

fn shared() -> (&'static TestPostgres, String) {
    let pg = TestPostgres::shared().unwrap();
    let db = pg.fresh_database().unwrap();
    (pg, db)
}

async fn connect(options: PgOptions) -> (PgBackend, MemoryStore) {
    let backend = PgBackend::connect(options).await.unwrap();
    let store = MemoryStore::from_backend(Arc::new(backend.clone()));
    (backend, store)
}

#[tokio::test]
async fn migrations_run_once_and_a_restart_keeps_the_data() {
    let (pg, db) = shared();
    let (_, store) = connect(pg.options(&db)).await;
    record(&store, failure("1", "fp", "TypeError", "x is undefined")).await;
    drop(store);

    let (_, again) = connect(pg.options(&db)).await;
    assert_eq!(again.failure_count().await.unwrap(), 1);
    let versions = pg
        .psql(
            &db,
            "SELECT string_agg(version::text, ',') FROM mem_schema_migrations",
        )
        .unwrap();
    assert_eq!(versions, PG_SCHEMA_VERSION.to_string());
    let vector = pg
        .psql(
            &db,
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
        )
        .unwrap();
    assert!(vector.as_str() >= "0.8.4", "pgvector {vector}");
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused() {
    let (pg, db) = shared();
    drop(connect(pg.options(&db)).await);
    pg.psql(
        &db,
        "INSERT INTO mem_schema_migrations (version) VALUES (99)",
    )
    .unwrap();

    let err = PgBackend::connect(pg.options(&db)).await.err().unwrap();
    assert!(
        matches!(err, MemoryError::SchemaTooNew { found: 99, supported } if supported == 1),
        "{err}"
    );
    // Nothing was downgraded or dropped.
    let versions = pg
        .psql(
            &db,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM mem_schema_migrations",
        )
        .unwrap();
    assert_eq!(versions, "1,99");
}

#[tokio::test]
async fn each_model_gets_its_own_halfvec_hnsw_index() {
    let (pg, db) = shared();
    let (_, store) = connect(pg.options(&db)).await;
    record(&store, failure("1", "a", "E", "a")).await;
    store
        .record_failure(failure("2", "b", "E", "b"), vectors_of("tiny", 3, &[1.0]))
        .await
        .unwrap();

    let indexes = pg
        .psql(
            &db,
            "SELECT string_agg(indexdef, E'\\n' ORDER BY indexname) FROM pg_indexes
             WHERE indexname LIKE 'mem_chunks_hnsw_%'",
        )
        .unwrap();
    let lines: Vec<&str> = indexes.lines().collect();
    assert_eq!(lines.len(), 2, "{indexes}");
    assert!(
        lines[0].contains("halfvec(384)") && lines[0].contains("hnsw"),
        "{indexes}"
    );
    assert!(lines[0].contains("halfvec_cosine_ops"), "{indexes}");
    assert!(
        lines[1].contains("halfvec(3)") && lines[1].contains("model_id = 2"),
        "{indexes}"
    );
}

/// 1,500 failures of one group sit close to the query; 30 other groups of 100 failures each
/// are farther away. Leaving the near group out must still give 10 groups, through the
/// HNSW index: without iterative scans the index stops after `ef_search` (40) rows, all of
/// them from the group left out.
#[tokio::test]
async fn a_search_that_leaves_out_the_nearest_group_still_returns_k_groups() {
    let (pg, db) = shared();
    let (_, store) = connect(pg.options(&db)).await;
    let crowd = store
        .record_failure(
            failure("0", "crowd", "E", "crowd"),
            vectors_of("m", 3, &[1.0]),
        )
        .await
        .unwrap();
    pg.psql(&db, &fill_sql(crowd.group_id, Crowd::Spread))
        .unwrap();

    let found = store
        .similar_failures("m", &[1.0, 0.0, 0.0], 10, Some(crowd.group_id))
        .await
        .unwrap();
    assert_eq!(found.len(), 10, "{found:?}");
    assert!(found.iter().all(|s| s.group_id != crowd.group_id));
    let scores: Vec<f32> = found.iter().map(|s| s.score).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

    // The plan is the model's HNSW index, and without iterative scans it finds nothing.
    let query = format!(
        "SELECT count(DISTINCT group_id) FROM (SELECT group_id FROM mem_chunks
         WHERE model_id = 1 AND failure_id IS NOT NULL AND indexed AND group_id <> {g}
         ORDER BY embedding::halfvec(3) <=> '[1,0,0]'::halfvec(3) LIMIT 40) t",
        g = crowd.group_id
    );
    let plan = pg.psql(&db, &format!("EXPLAIN {query}")).unwrap();
    assert!(plan.contains("mem_chunks_hnsw_1"), "{plan}");
    let without = pg
        .psql(&db, &format!("SET hnsw.iterative_scan = off; {query}"))
        .unwrap();
    assert!(without.ends_with("\n0"), "{without}");
    let with = pg
        .psql(
            &db,
            &format!("SET hnsw.iterative_scan = relaxed_order; {query}"),
        )
        .unwrap();
    let groups: usize = with.lines().last().unwrap().parse().unwrap();
    assert!(groups >= 10, "{with}");
}

/// 1,500 more failures in the crowd group, near [1,0,0], and 30 groups of 100 failures each
/// at 29 to 86 degrees from it.
fn fill_sql(crowd: i64, spread: Crowd) -> String {
    let near = match spread {
        Crowd::Spread => "random() * 0.3",
        Crowd::Identical => "random() / 1000",
    };
    format!(
        "INSERT INTO mem_failures (group_id, job_id, queue, job_name, fingerprint, error_type,
             message, stack, frames, payload, embedding_model, embedding_dimensions, created_at)
         SELECT {crowd}, n::text, 'signup', 'welcome', 'crowd', 'E', 'crowd', '', '[]', '{{}}',
             'm', 3, 0 FROM generate_series(1, 1500) n;
         INSERT INTO mem_groups (fingerprint, error_type, message, count, first_seen, last_seen,
             queues, last_job_ids)
         SELECT 'other-' || g, 'E', 'other', 100, 0, 0, '{{signup}}', '{{}}'
         FROM generate_series(1, 30) g;
         INSERT INTO mem_failures (group_id, job_id, queue, job_name, fingerprint, error_type,
             message, stack, frames, payload, embedding_model, embedding_dimensions, created_at)
         SELECT gr.id, n::text, 'signup', 'welcome', gr.fingerprint, 'E', 'other', '', '[]',
             '{{}}', 'm', 3, 0
         FROM mem_groups gr, generate_series(1, 100) n WHERE gr.fingerprint LIKE 'other-%';
         INSERT INTO mem_chunks (failure_id, group_id, ordinal, kind, text, model_id, embedding,
             vector_hash, indexed)
         SELECT id, group_id, 0, 'error', 'E: m', 1,
             ('[' || cos(a)::text || ',' || sin(a)::text || ',' || (random() / 10)::text
              || ']')::vector, id, true
         FROM (SELECT id, group_id,
                      CASE WHEN fingerprint = 'crowd' THEN {near}
                           ELSE 0.5 + random() END AS a
               FROM mem_failures WHERE id > (SELECT min(id) FROM mem_failures)) f;
         ANALYZE;"
    )
}

/// How the crowd's failures lie around the query.
#[derive(Clone, Copy)]
enum Crowd {
    /// Within 17 degrees.
    Spread,
    /// All but identical, as 1,500 repeats of one bug are.
    Identical,
}

/// Near-identical vectors (one bug failing over and over) fill the HNSW graph around the
/// query so that its links lead nowhere else: the index scan ends with no other group, and the
/// search must fall back to an exact one rather than answer with nothing.
#[tokio::test]
async fn a_crowd_of_identical_failures_does_not_hide_the_other_groups() {
    let (pg, db) = shared();
    let (_, store) = connect(pg.options(&db)).await;
    let crowd = store
        .record_failure(
            failure("0", "crowd", "E", "crowd"),
            vectors_of("m", 3, &[1.0]),
        )
        .await
        .unwrap();
    pg.psql(&db, &fill_sql(crowd.group_id, Crowd::Identical))
        .unwrap();

    for exclude in [Some(crowd.group_id), None] {
        let found = store
            .similar_failures("m", &[1.0, 0.0, 0.0], 10, exclude)
            .await
            .unwrap();
        assert_eq!(found.len(), 10, "{found:?}");
        let scores: Vec<f32> = found.iter().map(|s| s.score).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    }
}

#[tokio::test]
async fn postgres_killed_mid_run_loses_no_failure_and_keeps_their_order() {
    let mut pg = TestPostgres::start().unwrap();
    pg.create_database("memory").unwrap();
    let (backend, store) = connect(pg.options("memory")).await;

    for n in 0..10 {
        record(
            &store,
            failure(&format!("job-{n}"), "fp-a", "TypeError", "x"),
        )
        .await;
    }
    pg.kill();
    for n in 10..20 {
        let input = failure(&format!("job-{n}"), "fp-a", "TypeError", "x");
        let vectors = vectors_of("lexical-hash-v1", 384, &[1.0]);
        let err = store.record_failure(input, vectors).await.unwrap_err();
        assert!(matches!(err, MemoryError::Buffered { .. }), "{err}");
    }
    assert_eq!(backend.buffered_writes(), 10);
    // Reads cannot be buffered: they fail at once, saying why.
    let err = store.failure_count().await.unwrap_err();
    assert!(matches!(err, MemoryError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("postgres is unreachable"), "{err}");

    pg.restart().unwrap();
    // The next write replays the buffer first, so it lands after the buffered ones.
    for n in 20..30 {
        record(
            &store,
            failure(&format!("job-{n}"), "fp-a", "TypeError", "x"),
        )
        .await;
    }
    assert_eq!(backend.buffered_writes(), 0);
    assert_eq!(store.failure_count().await.unwrap(), 30);
    let order = pg
        .psql(
            "memory",
            "SELECT string_agg(job_id, ',' ORDER BY id) FROM mem_failures",
        )
        .unwrap();
    let expected: Vec<String> = (0..30).map(|n| format!("job-{n}")).collect();
    assert_eq!(order, expected.join(","));
    let group = &store.list_groups(1).await.unwrap()[0];
    assert_eq!(group.count, 30);
}

#[tokio::test]
async fn buffered_writes_are_replayed_on_their_own_once_postgres_is_back() {
    let mut pg = TestPostgres::start().unwrap();
    pg.create_database("memory").unwrap();
    let (backend, store) = connect(pg.options("memory")).await;
    let rec = record(&store, failure("1", "fp", "E", "m")).await;

    pg.kill();
    // A fix naming a group that does not exist is refused on replay; it must not hold up the
    // failure buffered after it.
    let err = store
        .record_fix(new_fix(rec.group_id + 50, rec.failure_id, true, "r"))
        .await
        .unwrap_err();
    assert!(matches!(err, MemoryError::Buffered { .. }), "{err}");
    let err = store
        .record_failure(
            failure("2", "fp", "E", "m"),
            vectors_of("lexical-hash-v1", 384, &[1.0]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, MemoryError::Buffered { .. }), "{err}");
    drop(store);

    pg.restart().unwrap();
    // No new write arrives: the background task replays (every 200 ms in tests).
    for _ in 0..300 {
        if backend.buffered_writes() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(backend.buffered_writes(), 0);
    let store = MemoryStore::from_backend(Arc::new(backend));
    assert_eq!(store.failure_count().await.unwrap(), 2);
    assert!(store.list_fixes(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_buffer_survives_a_restart_of_smartworker() {
    let mut pg = TestPostgres::start().unwrap();
    pg.create_database("memory").unwrap();
    let options = pg.options("memory");
    let (_, store) = connect(options.clone()).await;
    pg.kill();
    let err = store
        .record_failure(failure("1", "fp", "E", "m"), vectors_of("m", 3, &[1.0]))
        .await
        .unwrap_err();
    assert!(matches!(err, MemoryError::Buffered { .. }), "{err}");
    drop(store);

    // A new process (a new backend on the same buffer file) replays it at start-up.
    pg.restart().unwrap();
    let (backend, store) = connect(options).await;
    assert_eq!(backend.buffered_writes(), 0);
    assert_eq!(store.failure_count().await.unwrap(), 1);
}

#[tokio::test]
async fn no_server_at_start_up_is_a_clear_error() {
    let pg = TestPostgres::start().unwrap();
    let mut options = pg.options("postgres");
    drop(pg);
    options.timeout = std::time::Duration::from_millis(500);

    let err = PgBackend::connect(options).await.err().unwrap();
    assert!(matches!(err, MemoryError::Unavailable { .. }), "{err}");
}

#[tokio::test]
async fn a_malformed_url_is_refused_without_showing_the_password() {
    let err = PgOptions::from_url("postgres://app:s3cret@host:notaport/db", "b.db".into())
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(text.contains("invalid postgres url"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

/// A heal job that fails because memory is down is retried; recording the same failure again
/// must not count it twice, whether the database is still down or back by then.
#[tokio::test]
async fn a_failure_recorded_again_by_a_retried_heal_job_counts_once() {
    let mut pg = TestPostgres::start().unwrap();
    pg.create_database("memory").unwrap();
    let (backend, store) = connect(pg.options("memory")).await;
    pg.kill();

    let same = || failure("job-1", "fp", "KeyError", "'user'");
    let vectors = || vectors_of("m", 3, &[1.0]);
    for _ in 0..2 {
        let err = store.record_failure(same(), vectors()).await.unwrap_err();
        assert!(matches!(err, MemoryError::Buffered { .. }), "{err}");
    }
    assert_eq!(backend.buffered_writes(), 1);

    pg.restart().unwrap();
    let again = store.record_failure(same(), vectors()).await.unwrap();
    assert_eq!(store.failure_count().await.unwrap(), 1);
    let group = store.get_group(again.group_id).await.unwrap().unwrap();
    assert_eq!(group.count, 1);

    // Another failure of the same job (other message) is a failure of its own.
    let other = failure("job-1", "fp", "KeyError", "'email'");
    store.record_failure(other, vectors()).await.unwrap();
    assert_eq!(store.failure_count().await.unwrap(), 2);
}

#[tokio::test]
async fn a_repeat_of_the_same_vector_is_stored_but_indexed_once_per_group() {
    let (pg, db) = shared();
    let (_, store) = connect(pg.options(&db)).await;
    for n in 0..5 {
        let input = failure(&n.to_string(), "same", "E", "m");
        store
            .record_failure(input, vectors_of("m", 3, &[1.0]))
            .await
            .unwrap();
    }
    let input = failure("5", "other", "E", "m");
    store
        .record_failure(input, vectors_of("m", 3, &[1.0]))
        .await
        .unwrap();

    let counts = pg
        .psql(
            &db,
            "SELECT count(*) FILTER (WHERE indexed) || '/' || count(*) FROM mem_chunks",
        )
        .unwrap();
    assert_eq!(
        counts, "2/6",
        "one indexed vector per group, every chunk stored"
    );
    let found = store
        .similar_failures("m", &[1.0, 0.0, 0.0], 5, None)
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
}
