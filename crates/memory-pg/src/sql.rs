//! The SQL behind [`crate::PgBackend`]: async functions over one connection or transaction.
//!
//! Every function that writes more than one row is given a transaction, so a failure, its
//! group update and its vectors land together or not at all.

use crate::error::pg_error;
use crate::groups;
use crate::schema::{MAX_INDEXED_DIMENSIONS, model_index_sql};
use pgvector::Vector;
use smartworker_memory::{
    AttemptTimings, EmbeddedChunks, FailureInput, FailureRecord, Fix, FixSource, FixSummary, Group,
    Grouping, HealAttempt, HealAttemptRecord, MAX_GROUP_JOB_IDS, MemoryError, NewFix,
    SimilarFailure,
};
use std::collections::HashMap;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{GenericClient, Row, Transaction};

/// The most queues a group remembers, as in the embedded store.
const MAX_GROUP_QUEUES: usize = 64;

/// The most chunk rows one similarity query reads before it settles for fewer groups.
const MAX_CANDIDATES: i64 = 20_000;

/// Stores a failure (already masked), joins or creates its group, and stores its vectors.
pub(crate) async fn insert_failure(
    tx: &Transaction<'_>,
    input: &FailureInput,
    vectors: &EmbeddedChunks,
    grouping: Grouping,
    now: i64,
) -> Result<FailureRecord, MemoryError> {
    let model_id = register_model(tx, vectors).await?;
    let summary = model_id.zip(groups::summary_vector(vectors));
    let near = match (summary, grouping.threshold) {
        (Some((model_id, vector)), Some(threshold)) => {
            groups::nearest_group(tx, model_id, vector, threshold).await?
        }
        _ => None,
    };
    let (group_id, new_group) = join_group(tx, input, near, now).await?;

    let row = tx
        .query_one(
            "INSERT INTO mem_failures (group_id, job_id, queue, job_name, fingerprint,
                 error_type, message, stack, frames, payload, embedding_model,
                 embedding_dimensions, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             RETURNING id",
            &[
                &group_id,
                &input.job_id,
                &input.queue,
                &input.job_name,
                &input.fingerprint,
                &input.error_type,
                &input.message,
                &input.stack,
                &Json(&input.frames),
                &Json(&input.payload),
                &vectors.model(),
                &to_i32(vectors.dimensions()),
                &now,
            ],
        )
        .await
        .map_err(pg_error)?;
    let failure_id: i64 = row.get(0);

    if let Some(model_id) = model_id {
        let owner = Owner::Failure {
            failure_id,
            group_id,
        };
        insert_chunks(tx, owner, model_id, vectors).await?;
    }
    if let Some((model_id, vector)) = summary {
        groups::keep_representative(tx, group_id, model_id, failure_id, vector).await?;
    }
    Ok(FailureRecord {
        failure_id,
        group_id,
        new_group,
    })
}

/// Whose vectors a chunk row holds.
#[derive(Clone, Copy)]
pub(crate) enum Owner {
    Failure { failure_id: i64, group_id: i64 },
    Fix(i64),
}

/// Stores the chunks and vectors of one owner.
///
/// A failure chunk whose vector its group already holds (the same bug failing again, word for
/// word) is stored but left out of the HNSW index (`indexed = false`): it would add nothing to
/// a search but ties, and hundreds of identical points break the graph's links around them.
pub(crate) async fn insert_chunks(
    tx: &Transaction<'_>,
    owner: Owner,
    model_id: i32,
    vectors: &EmbeddedChunks,
) -> Result<(), MemoryError> {
    let (failure_id, group_id, fix_id) = match owner {
        Owner::Failure {
            failure_id,
            group_id,
        } => (Some(failure_id), Some(group_id), None),
        Owner::Fix(id) => (None, None, Some(id)),
    };
    let insert = tx
        .prepare(
            "INSERT INTO mem_chunks (failure_id, fix_id, group_id, ordinal, kind, text, model_id,
                 embedding, vector_hash, indexed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .await
        .map_err(pg_error)?;
    for (ordinal, (chunk, vector)) in vectors.chunks().iter().enumerate() {
        let embedding = Vector::from(vector.clone());
        let hash = vector_hash(vector);
        let indexed = match group_id {
            Some(group) => !group_has_vector(tx, group, model_id, hash, &embedding).await?,
            None => true,
        };
        tx.execute(
            &insert,
            &[
                &failure_id,
                &fix_id,
                &group_id,
                &to_i32(ordinal),
                &chunk.kind.as_str(),
                &chunk.text,
                &model_id,
                &embedding,
                &hash,
                &indexed,
            ],
        )
        .await
        .map_err(pg_error)?;
    }
    Ok(())
}

/// Whether the group already has an indexed failure chunk with exactly this vector.
async fn group_has_vector(
    tx: &Transaction<'_>,
    group_id: i64,
    model_id: i32,
    hash: i64,
    embedding: &Vector,
) -> Result<bool, MemoryError> {
    let row = tx
        .query_opt(
            "SELECT 1 FROM mem_chunks
             WHERE group_id = $1 AND model_id = $2 AND vector_hash = $3 AND indexed
               AND failure_id IS NOT NULL AND embedding = $4
             LIMIT 1",
            &[&group_id, &model_id, &hash, embedding],
        )
        .await
        .map_err(pg_error)?;
    Ok(row.is_some())
}

/// FNV-1a over the vector's bits: equal vectors, equal hash.
fn vector_hash(vector: &[f32]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for x in vector {
        for b in x.to_bits().to_le_bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// The id of the vectors' model, registering it (and its index) on first use; `None` when
/// there are no vectors. Another length than the registered one is refused.
pub(crate) async fn register_model(
    tx: &Transaction<'_>,
    vectors: &EmbeddedChunks,
) -> Result<Option<i32>, MemoryError> {
    if vectors.chunks().is_empty() {
        return Ok(None);
    }
    let (model, dimensions) = (vectors.model(), vectors.dimensions());
    let inserted = tx
        .query_opt(
            "INSERT INTO mem_embedding_models (model, dimensions) VALUES ($1, $2)
             ON CONFLICT (model) DO NOTHING RETURNING id",
            &[&model, &to_i32(dimensions)],
        )
        .await
        .map_err(pg_error)?;
    if let Some(row) = inserted {
        let model_id: i32 = row.get(0);
        if dimensions <= MAX_INDEXED_DIMENSIONS {
            let sql = model_index_sql(model_id, dimensions);
            tx.batch_execute(&sql).await.map_err(pg_error)?;
        }
        return Ok(Some(model_id));
    }

    let Some((model_id, expected)) = model_info(tx, model).await? else {
        return Err(MemoryError::Corrupt(format!("model {model:?} vanished")));
    };
    if expected != dimensions {
        return Err(MemoryError::DimensionMismatch {
            model: model.to_owned(),
            expected,
            got: dimensions,
        });
    }
    Ok(Some(model_id))
}

/// The id and dimensions of a registered model.
pub(crate) async fn model_info<C: GenericClient>(
    client: &C,
    model: &str,
) -> Result<Option<(i32, usize)>, MemoryError> {
    let row = client
        .query_opt(
            "SELECT id, dimensions FROM mem_embedding_models WHERE model = $1",
            &[&model],
        )
        .await
        .map_err(pg_error)?;
    Ok(row.map(|r| (r.get(0), from_i32(r.get(1)))))
}

/// The group of the failure's fingerprint, else the near-duplicate group `near`, updated for
/// this failure; or a new group.
async fn join_group(
    tx: &Transaction<'_>,
    input: &FailureInput,
    near: Option<i64>,
    now: i64,
) -> Result<(i64, bool), MemoryError> {
    let same = tx
        .query_opt(
            "SELECT id FROM mem_groups WHERE fingerprint = $1",
            &[&input.fingerprint],
        )
        .await
        .map_err(pg_error)?;
    if let Some(id) = same.map(|r| r.get::<_, i64>(0)).or(near) {
        return update_group(tx, id, input, now).await.map(|id| (id, false));
    }

    // ON CONFLICT waits for a concurrent insert of the same fingerprint, so two writers never
    // create two groups for it.
    let created = tx
        .query_opt(
            "INSERT INTO mem_groups (fingerprint, error_type, message, count, first_seen,
                 last_seen, queues, last_job_ids)
             VALUES ($1, $2, $3, 1, $4, $4, ARRAY[$5], ARRAY[$6])
             ON CONFLICT (fingerprint) DO NOTHING RETURNING id",
            &[
                &input.fingerprint,
                &input.error_type,
                &input.message,
                &now,
                &input.queue,
                &input.job_id,
            ],
        )
        .await
        .map_err(pg_error)?;
    if let Some(row) = created {
        return Ok((row.get(0), true));
    }
    let row = tx
        .query_one(
            "SELECT id FROM mem_groups WHERE fingerprint = $1",
            &[&input.fingerprint],
        )
        .await
        .map_err(pg_error)?;
    update_group(tx, row.get(0), input, now)
        .await
        .map(|id| (id, false))
}

/// Counts the failure in group `id` (locked for the update) and returns the id.
async fn update_group(
    tx: &Transaction<'_>,
    id: i64,
    input: &FailureInput,
    now: i64,
) -> Result<i64, MemoryError> {
    let row = tx
        .query_one(
            "SELECT queues, last_job_ids FROM mem_groups WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(pg_error)?;
    let mut queues: Vec<String> = row.get(0);
    let mut job_ids: Vec<String> = row.get(1);
    add_to_group(&mut queues, &mut job_ids, input);

    tx.execute(
        "UPDATE mem_groups SET count = count + 1, last_seen = greatest(last_seen, $2),
             queues = $3, last_job_ids = $4
         WHERE id = $1",
        &[&id, &now, &queues, &job_ids],
    )
    .await
    .map_err(pg_error)?;
    Ok(id)
}

fn add_to_group(queues: &mut Vec<String>, job_ids: &mut Vec<String>, input: &FailureInput) {
    if !queues.contains(&input.queue) && queues.len() < MAX_GROUP_QUEUES {
        queues.push(input.queue.clone());
        queues.sort();
    }
    job_ids.retain(|id| id != &input.job_id);
    job_ids.push(input.job_id.clone());
    let excess = job_ids.len().saturating_sub(MAX_GROUP_JOB_IDS);
    job_ids.drain(..excess);
}

/// What a similarity search asks for.
pub(crate) struct SimilarQuery<'a> {
    pub model: &'a str,
    pub vector: &'a [f32],
    pub k: usize,
    pub exclude_group: Option<i64>,
}

/// Approximate cosine search over one model's failure chunks (its HNSW index), best failure
/// per group, `k` groups when that many exist.
///
/// Iterative index scans keep reading the index while the filter (the model, the excluded
/// group) drops rows, and the candidate list grows until it holds `k` distinct groups, so a
/// group with many chunks near the query cannot crowd the others out.
pub(crate) async fn similar_failures(
    tx: &Transaction<'_>,
    q: &SimilarQuery<'_>,
) -> Result<Vec<SimilarFailure>, MemoryError> {
    let Some((model_id, expected)) = model_info(tx, q.model).await? else {
        return Ok(Vec::new());
    };
    if expected != q.vector.len() {
        return Err(MemoryError::DimensionMismatch {
            model: q.model.to_owned(),
            expected,
            got: q.vector.len(),
        });
    }
    if q.vector.iter().any(|x| !x.is_finite()) {
        return Err(MemoryError::NotFinite(q.model.to_owned()));
    }
    if q.k == 0 {
        return Ok(Vec::new());
    }

    let best = best_per_group(tx, q, model_id, expected).await?;
    let mut ranked: Vec<(i64, i64, f32)> = best
        .into_iter()
        .map(|(group, (failure, score))| (failure, group, score))
        .collect();
    // Highest score first; the newer failure wins a tie, as in the embedded store.
    ranked.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.0.cmp(&a.0)));
    ranked.truncate(q.k);

    details(tx, &ranked).await
}

/// group id → (failure id, score) of the group's best chunk among the nearest candidates.
pub(crate) async fn best_per_group(
    tx: &Transaction<'_>,
    q: &SimilarQuery<'_>,
    model_id: i32,
    dims: usize,
) -> Result<HashMap<i64, (i64, f32)>, MemoryError> {
    tx.batch_execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        .await
        .map_err(pg_error)?;
    // The score is computed on the full-precision vector; only the order comes from the index.
    let sql = format!(
        "SELECT failure_id, group_id, (1 - (embedding <=> $1))::real FROM mem_chunks
         WHERE model_id = {model_id} AND failure_id IS NOT NULL AND indexed
           AND ($2::bigint IS NULL OR group_id <> $2)
         ORDER BY embedding::halfvec({dims}) <=> $1::halfvec({dims})
         LIMIT $3"
    );
    let query = Vector::from(q.vector.to_vec());
    let mut limit = i64::try_from(q.k.saturating_mul(4))
        .unwrap_or(MAX_CANDIDATES)
        .max(40);
    loop {
        limit = limit.min(MAX_CANDIDATES);
        let rows = tx
            .query(&sql, &[&query, &q.exclude_group, &limit])
            .await
            .map_err(pg_error)?;
        let exhausted = i64::try_from(rows.len()).unwrap_or(i64::MAX) < limit;
        let best = best_of(&rows);
        if best.len() >= q.k {
            return Ok(best);
        }
        if exhausted || limit >= MAX_CANDIDATES {
            return exact_best_per_group(tx, q, model_id).await;
        }
        limit = limit.saturating_mul(4);
    }
}

/// The exact answer, reading every chunk of the model: used when the index ran out before it
/// found `k` groups. That happens when fewer than `k` groups exist (a small store, so cheap),
/// or when hundreds of near-identical failures of one group fill the graph around the query
/// and its links lead nowhere else.
// FIXME: a large store with fewer than k groups pays a full scan per search; counting the
// model's groups first would skip the index pass there.
async fn exact_best_per_group(
    tx: &Transaction<'_>,
    q: &SimilarQuery<'_>,
    model_id: i32,
) -> Result<HashMap<i64, (i64, f32)>, MemoryError> {
    let sql = format!(
        "SELECT DISTINCT ON (group_id) failure_id, group_id, (1 - (embedding <=> $1))::real
         FROM mem_chunks
         WHERE model_id = {model_id} AND failure_id IS NOT NULL AND indexed
           AND ($2::bigint IS NULL OR group_id <> $2)
         ORDER BY group_id, embedding <=> $1, failure_id DESC"
    );
    let query = Vector::from(q.vector.to_vec());
    let rows = tx
        .query(&sql, &[&query, &q.exclude_group])
        .await
        .map_err(pg_error)?;
    Ok(best_of(&rows))
}

fn best_of(rows: &[Row]) -> HashMap<i64, (i64, f32)> {
    let mut best: HashMap<i64, (i64, f32)> = HashMap::new();
    for row in rows {
        let (failure_id, group_id, score): (i64, i64, f32) = (row.get(0), row.get(1), row.get(2));
        let entry = best.entry(group_id).or_insert((failure_id, score));
        if score > entry.1 || (score == entry.1 && failure_id > entry.0) {
            *entry = (failure_id, score);
        }
    }
    best
}

/// The ranked (failure, group, score) triples with each failure's error and its group's best
/// fix, in two queries.
async fn details<C: GenericClient>(
    client: &C,
    ranked: &[(i64, i64, f32)],
) -> Result<Vec<SimilarFailure>, MemoryError> {
    let failure_ids: Vec<i64> = ranked.iter().map(|r| r.0).collect();
    let group_ids: Vec<i64> = ranked.iter().map(|r| r.1).collect();
    let errors: HashMap<i64, (String, String)> = client
        .query(
            "SELECT id, error_type, message FROM mem_failures WHERE id = ANY($1)",
            &[&failure_ids],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let fixes = client
        .query(
            &format!(
                "SELECT DISTINCT ON (group_id) {FIX_COLUMNS} FROM mem_fixes
                 WHERE group_id = ANY($1) ORDER BY group_id, verified DESC, id DESC"
            ),
            &[&group_ids],
        )
        .await
        .map_err(pg_error)?;
    let mut fixes: HashMap<i64, FixSummary> = fixes
        .iter()
        .map(fix_summary_from_row)
        .map(|f| f.map(|f| (f.group_id, f)))
        .collect::<Result<_, _>>()?;

    let mut out = Vec::with_capacity(ranked.len());
    for &(failure_id, group_id, score) in ranked {
        let Some((error_type, message)) = errors.get(&failure_id).cloned() else {
            return Err(MemoryError::Corrupt(format!(
                "failure {failure_id} vanished"
            )));
        };
        out.push(SimilarFailure {
            failure_id,
            group_id,
            score,
            error_type,
            message,
            fix: fixes.remove(&group_id),
        });
    }
    Ok(out)
}

/// Stores a fix after checking its group and failure, and links its heal job's attempts.
pub(crate) async fn insert_fix(
    tx: &Transaction<'_>,
    fix: &NewFix,
    now: i64,
) -> Result<i64, MemoryError> {
    check_fix_target(tx, fix.group_id, fix.failure_id).await?;

    let row = tx
        .query_one(
            "INSERT INTO mem_fixes (group_id, failure_id, job_id, queue, verified, root_cause,
                 diff, edits_json, source, model, rounds, heal_job_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             RETURNING id",
            &[
                &fix.group_id,
                &fix.failure_id,
                &fix.job_id,
                &fix.queue,
                &fix.verified,
                &fix.root_cause,
                &fix.diff,
                &Json(&fix.edits_json),
                &fix.source.as_str(),
                &fix.model,
                &u32_to_i32(fix.rounds),
                &fix.heal_job_id,
                &now,
            ],
        )
        .await
        .map_err(pg_error)?;
    let fix_id: i64 = row.get(0);

    if let Some(heal_job_id) = &fix.heal_job_id {
        tx.execute(
            "UPDATE mem_heal_attempts SET fix_id = $1 WHERE heal_job_id = $2 AND fix_id IS NULL",
            &[&fix_id, heal_job_id],
        )
        .await
        .map_err(pg_error)?;
    }
    Ok(fix_id)
}

async fn check_fix_target(
    tx: &Transaction<'_>,
    group_id: i64,
    failure_id: i64,
) -> Result<(), MemoryError> {
    let group = tx
        .query_opt("SELECT 1 FROM mem_groups WHERE id = $1", &[&group_id])
        .await
        .map_err(pg_error)?;
    if group.is_none() {
        return Err(MemoryError::UnknownGroup(group_id));
    }
    let actual = tx
        .query_opt(
            "SELECT group_id FROM mem_failures WHERE id = $1",
            &[&failure_id],
        )
        .await
        .map_err(pg_error)?
        .map(|r| r.get::<_, i64>(0));
    match actual {
        None => Err(MemoryError::UnknownFailure(failure_id)),
        Some(actual) if actual != group_id => Err(MemoryError::FailureNotInGroup {
            failure_id,
            group_id,
            actual,
        }),
        Some(_) => Ok(()),
    }
}

/// Stores the vectors of a fix's chunks.
pub(crate) async fn insert_fix_vectors(
    tx: &Transaction<'_>,
    fix_id: i64,
    vectors: &EmbeddedChunks,
) -> Result<(), MemoryError> {
    let found = tx
        .query_opt("SELECT 1 FROM mem_fixes WHERE id = $1", &[&fix_id])
        .await
        .map_err(pg_error)?;
    if found.is_none() {
        return Err(MemoryError::UnknownFix(fix_id));
    }
    let Some(model_id) = register_model(tx, vectors).await? else {
        return Ok(());
    };
    insert_chunks(tx, Owner::Fix(fix_id), model_id, vectors).await
}

/// The newest verified fix matching `filter` (a condition on `$1`).
pub(crate) async fn verified_fix<C: GenericClient>(
    client: &C,
    filter: &str,
    value: &(dyn ToSql + Sync),
) -> Result<Option<Fix>, MemoryError> {
    let sql = format!(
        "SELECT {FIX_COLUMNS}, diff, edits_json FROM mem_fixes
         WHERE verified AND {filter} ORDER BY id DESC LIMIT 1"
    );
    let row = client.query_opt(&sql, &[value]).await.map_err(pg_error)?;
    row.map(|r| fix_from_row(&r)).transpose()
}

pub(crate) async fn get_fix<C: GenericClient>(
    client: &C,
    id: i64,
) -> Result<Option<Fix>, MemoryError> {
    let sql = format!("SELECT {FIX_COLUMNS}, diff, edits_json FROM mem_fixes WHERE id = $1");
    let row = client.query_opt(&sql, &[&id]).await.map_err(pg_error)?;
    row.map(|r| fix_from_row(&r)).transpose()
}

pub(crate) async fn list_fixes<C: GenericClient>(
    client: &C,
    limit: usize,
) -> Result<Vec<FixSummary>, MemoryError> {
    let sql = format!("SELECT {FIX_COLUMNS} FROM mem_fixes ORDER BY id DESC LIMIT $1");
    let rows = client
        .query(&sql, &[&to_i64(limit)])
        .await
        .map_err(pg_error)?;
    rows.iter().map(fix_summary_from_row).collect()
}

pub(crate) async fn list_groups<C: GenericClient>(
    client: &C,
    limit: usize,
) -> Result<Vec<Group>, MemoryError> {
    let sql =
        format!("SELECT {GROUP_COLUMNS} FROM mem_groups ORDER BY last_seen DESC, id DESC LIMIT $1");
    let rows = client
        .query(&sql, &[&to_i64(limit)])
        .await
        .map_err(pg_error)?;
    Ok(rows.iter().map(group_from_row).collect())
}

pub(crate) async fn get_group<C: GenericClient>(
    client: &C,
    id: i64,
) -> Result<Option<Group>, MemoryError> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM mem_groups WHERE id = $1");
    let row = client.query_opt(&sql, &[&id]).await.map_err(pg_error)?;
    Ok(row.map(|r| group_from_row(&r)))
}

pub(crate) async fn failure_count<C: GenericClient>(client: &C) -> Result<u64, MemoryError> {
    let row = client
        .query_one("SELECT count(*) FROM mem_failures", &[])
        .await
        .map_err(pg_error)?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

pub(crate) async fn insert_heal_attempt(
    tx: &Transaction<'_>,
    a: &HealAttemptRecord,
    now: i64,
) -> Result<i64, MemoryError> {
    let t = &a.timings;
    let row = tx
        .query_one(
            "INSERT INTO mem_heal_attempts (heal_job_id, job_id, round, prompt, reply,
                 edits_json, sandbox_stdout, sandbox_stderr, sandbox_exit, verdict, refusal,
                 model_ms, apply_ms, sandbox_ms, total_ms, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             RETURNING id",
            &[
                &a.heal_job_id,
                &a.job_id,
                &u32_to_i32(a.round),
                &a.prompt,
                &a.reply,
                &Json(&a.edits_json),
                &a.sandbox_stdout,
                &a.sandbox_stderr,
                &a.sandbox_exit,
                &a.verdict,
                &a.refusal,
                &u64_to_i64(t.model_ms),
                &u64_to_i64(t.apply_ms),
                &u64_to_i64(t.sandbox_ms),
                &u64_to_i64(t.total_ms),
                &now,
            ],
        )
        .await
        .map_err(pg_error)?;
    Ok(row.get(0))
}

/// Heal attempts matching `filter` (a condition on `$1`), sorted by `order`.
pub(crate) async fn heal_attempts<C: GenericClient>(
    client: &C,
    filter: &str,
    order: &str,
    value: &(dyn ToSql + Sync),
) -> Result<Vec<HealAttempt>, MemoryError> {
    let sql = format!(
        "SELECT id, fix_id, created_at, heal_job_id, job_id, round, prompt, reply, edits_json,
             sandbox_stdout, sandbox_stderr, sandbox_exit, verdict, refusal, model_ms, apply_ms,
             sandbox_ms, total_ms
         FROM mem_heal_attempts WHERE {filter} ORDER BY {order}"
    );
    let rows = client.query(&sql, &[value]).await.map_err(pg_error)?;
    Ok(rows.iter().map(heal_attempt_from_row).collect())
}

pub(crate) const GROUP_COLUMNS: &str =
    "id, fingerprint, error_type, message, count, first_seen, last_seen, queues, last_job_ids";

pub(crate) fn group_from_row(row: &Row) -> Group {
    Group {
        id: row.get(0),
        fingerprint: row.get(1),
        error_type: row.get(2),
        message: row.get(3),
        count: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
        first_seen: row.get(5),
        last_seen: row.get(6),
        queues: row.get(7),
        last_job_ids: row.get(8),
    }
}

pub(crate) const FIX_COLUMNS: &str = "id, group_id, failure_id, job_id, queue, verified, source, model, \
                           rounds, root_cause, heal_job_id, created_at";

pub(crate) fn fix_summary_from_row(row: &Row) -> Result<FixSummary, MemoryError> {
    let source: String = row.get(6);
    let source = FixSource::parse(&source)
        .ok_or_else(|| MemoryError::Corrupt(format!("unknown fix source {source:?}")))?;
    Ok(FixSummary {
        id: row.get(0),
        group_id: row.get(1),
        failure_id: row.get(2),
        job_id: row.get(3),
        queue: row.get(4),
        verified: row.get(5),
        source,
        model: row.get(7),
        rounds: u32::try_from(row.get::<_, i32>(8)).unwrap_or(0),
        root_cause: row.get(9),
        heal_job_id: row.get(10),
        created_at: row.get(11),
    })
}

/// A fix from [`FIX_COLUMNS`] followed by `diff, edits_json`.
fn fix_from_row(row: &Row) -> Result<Fix, MemoryError> {
    let Json(edits_json) = row.get::<_, Json<serde_json::Value>>(13);
    Ok(Fix {
        summary: fix_summary_from_row(row)?,
        diff: row.get(12),
        edits_json,
    })
}

fn heal_attempt_from_row(row: &Row) -> HealAttempt {
    let Json(edits_json) = row.get::<_, Json<serde_json::Value>>(8);
    let ms = |idx: usize| u64::try_from(row.get::<_, i64>(idx)).unwrap_or(0);
    let record = HealAttemptRecord {
        heal_job_id: row.get(3),
        job_id: row.get(4),
        round: u32::try_from(row.get::<_, i32>(5)).unwrap_or(0),
        prompt: row.get(6),
        reply: row.get(7),
        edits_json,
        sandbox_stdout: row.get(9),
        sandbox_stderr: row.get(10),
        sandbox_exit: row.get(11),
        verdict: row.get(12),
        refusal: row.get(13),
        timings: AttemptTimings {
            model_ms: ms(14),
            apply_ms: ms(15),
            sandbox_ms: ms(16),
            total_ms: ms(17),
        },
    };
    HealAttempt {
        id: row.get(0),
        fix_id: row.get(1),
        created_at: row.get(2),
        record,
    }
}

/// Dimensions and ordinals fit an `integer` in practice; larger values saturate.
fn to_i32(value: usize) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn from_i32(value: i32) -> usize {
    usize::try_from(value).unwrap_or(0)
}

fn u32_to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn to_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn u64_to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
