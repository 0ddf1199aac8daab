//! Versioned migrations, run at start-up under an advisory lock.
//!
//! Each migration runs in its own transaction and records its version in
//! `mem_schema_migrations`. A database whose newest version is above what this build knows
//! was written by a newer SmartWorker and is refused, never downgraded.
//!
//! Vectors of every model share `mem_chunks.embedding`, a `vector` column without fixed
//! dimensions; each model gets its own partial HNSW index over a `halfvec(dims)` cast of the
//! column when it is first seen (see [`model_index_sql`]).

use crate::error::{db_error, pg_error};
use smartworker_memory::MemoryError;
use tokio_postgres::Client;

/// The newest schema version this build writes and reads.
pub const PG_SCHEMA_VERSION: i32 = 1;

/// Any number, the same in every process: it serialises concurrent migrations.
const MIGRATION_LOCK: i64 = 0x5357_4d45_4d50_4731;

/// The migrations, oldest first; a new one is appended, never edited.
const MIGRATIONS: &[(i32, &str)] = &[(1, V1)];

const V1: &str = "
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE mem_groups (
    id bigserial PRIMARY KEY,
    fingerprint text NOT NULL UNIQUE,
    error_type text NOT NULL,
    message text NOT NULL,
    count bigint NOT NULL,
    first_seen bigint NOT NULL,
    last_seen bigint NOT NULL,
    queues text[] NOT NULL,
    last_job_ids text[] NOT NULL
);
CREATE INDEX mem_groups_last_seen ON mem_groups (last_seen DESC, id DESC);

CREATE TABLE mem_embedding_models (
    id serial PRIMARY KEY,
    model text NOT NULL UNIQUE,
    dimensions integer NOT NULL CHECK (dimensions > 0)
);

CREATE TABLE mem_failures (
    id bigserial PRIMARY KEY,
    group_id bigint NOT NULL REFERENCES mem_groups (id),
    job_id text NOT NULL,
    queue text NOT NULL,
    job_name text NOT NULL,
    fingerprint text NOT NULL,
    error_type text NOT NULL,
    message text NOT NULL,
    stack text NOT NULL,
    frames jsonb NOT NULL,
    payload jsonb NOT NULL,
    embedding_model text NOT NULL,
    embedding_dimensions integer NOT NULL,
    created_at bigint NOT NULL,
    -- Punctuation splits words, so `users.py` and `create_user` are found by their parts.
    search tsvector GENERATED ALWAYS AS (to_tsvector('simple', regexp_replace(
        error_type || ' ' || message || ' ' || stack, '[^[:alnum:]]+', ' ', 'g'))) STORED
);
CREATE INDEX mem_failures_group ON mem_failures (group_id);
CREATE INDEX mem_failures_search ON mem_failures USING gin (search);

CREATE TABLE mem_fixes (
    id bigserial PRIMARY KEY,
    group_id bigint NOT NULL REFERENCES mem_groups (id),
    failure_id bigint NOT NULL REFERENCES mem_failures (id),
    job_id text NOT NULL,
    queue text NOT NULL,
    verified boolean NOT NULL,
    root_cause text NOT NULL,
    diff text NOT NULL,
    edits_json jsonb NOT NULL,
    source text NOT NULL,
    model text NOT NULL,
    rounds integer NOT NULL,
    heal_job_id text,
    created_at bigint NOT NULL
);
CREATE INDEX mem_fixes_group ON mem_fixes (group_id, verified, id);

-- group_id repeats the failure's group so a filtered vector search needs no join. A failure
-- chunk whose exact vector its group already has is kept but not indexed (indexed = false).
CREATE TABLE mem_chunks (
    id bigserial PRIMARY KEY,
    failure_id bigint REFERENCES mem_failures (id),
    fix_id bigint REFERENCES mem_fixes (id),
    group_id bigint REFERENCES mem_groups (id),
    ordinal integer NOT NULL,
    kind text NOT NULL,
    text text NOT NULL,
    model_id integer NOT NULL REFERENCES mem_embedding_models (id),
    embedding vector NOT NULL,
    vector_hash bigint NOT NULL,
    indexed boolean NOT NULL,
    CHECK ((failure_id IS NULL) <> (fix_id IS NULL))
);
CREATE INDEX mem_chunks_failure ON mem_chunks (failure_id);
CREATE INDEX mem_chunks_group_vector ON mem_chunks (group_id, model_id, vector_hash)
    WHERE failure_id IS NOT NULL;
CREATE INDEX mem_chunks_fix ON mem_chunks (fix_id);

-- Per group and model, the first failure with a summary vector: what near-duplicate joining
-- and similar groups compare.
CREATE TABLE mem_group_representatives (
    group_id bigint NOT NULL REFERENCES mem_groups (id),
    model_id integer NOT NULL REFERENCES mem_embedding_models (id),
    failure_id bigint NOT NULL REFERENCES mem_failures (id),
    embedding vector NOT NULL,
    PRIMARY KEY (group_id, model_id)
);

CREATE TABLE mem_heal_attempts (
    id bigserial PRIMARY KEY,
    fix_id bigint REFERENCES mem_fixes (id),
    heal_job_id text NOT NULL,
    job_id text NOT NULL,
    round integer NOT NULL,
    prompt text NOT NULL,
    reply text NOT NULL,
    edits_json jsonb NOT NULL,
    sandbox_stdout text NOT NULL,
    sandbox_stderr text NOT NULL,
    sandbox_exit integer,
    verdict text NOT NULL,
    refusal text,
    model_ms bigint NOT NULL,
    apply_ms bigint NOT NULL,
    sandbox_ms bigint NOT NULL,
    total_ms bigint NOT NULL,
    created_at bigint NOT NULL
);
CREATE INDEX mem_heal_attempts_heal_job ON mem_heal_attempts (heal_job_id);
CREATE INDEX mem_heal_attempts_job ON mem_heal_attempts (job_id);
CREATE INDEX mem_heal_attempts_fix ON mem_heal_attempts (fix_id);

-- Every write carries an id; a write replayed from the local buffer after an unclear
-- failure (the connection dropped during COMMIT) is skipped when its id is here, and answers
-- the result stored with it.
CREATE TABLE mem_applied_writes (
    write_id text PRIMARY KEY,
    applied_at bigint NOT NULL,
    result jsonb NOT NULL
);
";

/// The largest dimensions pgvector's HNSW index takes for `halfvec`; larger vectors are
/// searched exactly.
pub const MAX_INDEXED_DIMENSIONS: usize = 4000;

/// Brings the database to [`PG_SCHEMA_VERSION`].
///
/// # Errors
/// [`MemoryError::SchemaTooNew`] for a database written by a newer build; database errors.
pub(crate) async fn migrate(client: &mut Client) -> Result<(), MemoryError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS mem_schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg_error)?;
    let row = tx
        .query_one("SELECT max(version) FROM mem_schema_migrations", &[])
        .await
        .map_err(pg_error)?;
    let found: i32 = row.get::<_, Option<i32>>(0).unwrap_or(0);
    if found > PG_SCHEMA_VERSION {
        return Err(MemoryError::SchemaTooNew {
            found: i64::from(found),
            supported: i64::from(PG_SCHEMA_VERSION),
        });
    }

    // The lock is held by this transaction, so every pending migration runs inside it; a
    // failed migration rolls back with everything after it.
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql).await.map_err(db_error)?;
        tx.execute(
            "INSERT INTO mem_schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)?;
    check_pgvector(client).await
}

/// Refuses a pgvector too old for iterative index scans (0.8.0).
async fn check_pgvector(client: &Client) -> Result<(), MemoryError> {
    let row = client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
            &[],
        )
        .await
        .map_err(pg_error)?;
    let version: String = row.get(0);
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (0, 8) {
        return Err(MemoryError::Database {
            backend: "postgres",
            message: format!("pgvector {version} is too old; 0.8.4 or later is needed"),
        });
    }
    Ok(())
}

/// The partial HNSW index of one model's distinct failure chunks: cosine distance over a
/// `halfvec` cast, which halves the index next to `vector` at the same recall
/// (bench/MEMORY.md).
pub(crate) fn model_index_sql(model_id: i32, dimensions: usize) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS mem_chunks_hnsw_{model_id} ON mem_chunks
         USING hnsw ((embedding::halfvec({dimensions})) halfvec_cosine_ops)
         WHERE model_id = {model_id} AND failure_id IS NOT NULL AND indexed;
         CREATE INDEX IF NOT EXISTS mem_group_representatives_hnsw_{model_id}
         ON mem_group_representatives
         USING hnsw ((embedding::halfvec({dimensions})) halfvec_cosine_ops)
         WHERE model_id = {model_id}"
    )
}
