//! The SQL behind [`crate::MemoryStore`]: plain synchronous functions over one connection.
//!
//! Every function that writes more than one row takes a transaction, so a failure, its group
//! update and its vectors land together or not at all.

use crate::chunk::FailureInput;
use crate::embed::EmbeddedChunks;
use crate::error::MemoryError;
use crate::group::Grouping;
use crate::record::{
    AttemptTimings, FailureRecord, Fix, FixSource, FixSummary, Group, HealAttempt,
    HealAttemptRecord, NewFix, SimilarFailure,
};
use crate::vector::{cosine, from_blob, to_blob};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, Type, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, Transaction, params};
use serde::de::DeserializeOwned;
use std::collections::HashMap;

/// The most job ids a group remembers.
pub const MAX_GROUP_JOB_IDS: usize = 20;

/// The most queues a group remembers; a fingerprint seen on more queues is rare.
const MAX_GROUP_QUEUES: usize = 64;

impl ToSql for FixSource {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for FixSource {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let name = value.as_str()?;
        FixSource::parse(name)
            .ok_or_else(|| FromSqlError::Other(format!("unknown fix source {name:?}").into()))
    }
}

/// Stores a failure (already masked), joins or creates its group, and stores its vectors and
/// its full-text row.
pub(crate) fn insert_failure(
    tx: &Transaction<'_>,
    input: &FailureInput,
    vectors: &EmbeddedChunks,
    grouping: Grouping,
    now: i64,
) -> Result<FailureRecord, MemoryError> {
    if !vectors.chunks().is_empty() {
        check_model(tx, vectors.model(), vectors.dimensions())?;
    }
    let (group_id, new_group) = join_group(tx, input, vectors, grouping, now)?;

    let frames = encode("frames", &input.frames)?;
    let payload = encode("payload", &input.payload)?;
    tx.execute(
        "INSERT INTO mem_failures (group_id, job_id, queue, job_name, fingerprint, error_type,
             message, stack, frames, payload, embedding_model, embedding_dimensions, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            group_id,
            input.job_id,
            input.queue,
            input.job_name,
            input.fingerprint,
            input.error_type,
            input.message,
            input.stack,
            frames,
            payload,
            vectors.model(),
            to_int(vectors.dimensions() as u64),
            now
        ],
    )?;
    let failure_id = tx.last_insert_rowid();

    crate::sqlite_groups::index_text(tx, failure_id, input)?;
    insert_chunks(tx, Owner::Failure(failure_id), vectors)?;
    Ok(FailureRecord {
        failure_id,
        group_id,
        new_group,
    })
}

/// Whose vectors a chunk row holds.
#[derive(Clone, Copy)]
pub(crate) enum Owner {
    Failure(i64),
    Fix(i64),
}

pub(crate) fn insert_chunks(
    tx: &Transaction<'_>,
    owner: Owner,
    vectors: &EmbeddedChunks,
) -> Result<(), MemoryError> {
    let (failure_id, fix_id) = match owner {
        Owner::Failure(id) => (Some(id), None),
        Owner::Fix(id) => (None, Some(id)),
    };
    let mut insert = tx.prepare(
        "INSERT INTO mem_chunks (failure_id, fix_id, ordinal, kind, text, model, dimensions, vector)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for (ordinal, (chunk, vector)) in vectors.chunks().iter().enumerate() {
        insert.execute(params![
            failure_id,
            fix_id,
            to_int(ordinal as u64),
            chunk.kind.as_str(),
            chunk.text,
            vectors.model(),
            to_int(vectors.dimensions() as u64),
            to_blob(vector),
        ])?;
    }
    Ok(())
}

/// Registers a model's dimensions on first use, and refuses another length afterwards.
pub(crate) fn check_model(
    tx: &Transaction<'_>,
    model: &str,
    dimensions: usize,
) -> Result<(), MemoryError> {
    match model_dimensions(tx, model)? {
        Some(expected) if expected != dimensions => Err(MemoryError::DimensionMismatch {
            model: model.to_owned(),
            expected,
            got: dimensions,
        }),
        Some(_) => Ok(()),
        None => {
            tx.execute(
                "INSERT INTO mem_embedding_models (model, dimensions) VALUES (?1, ?2)",
                params![model, to_int(dimensions as u64)],
            )?;
            Ok(())
        }
    }
}

pub(crate) fn model_dimensions(
    conn: &Connection,
    model: &str,
) -> Result<Option<usize>, MemoryError> {
    let dims: Option<i64> = conn
        .query_row(
            "SELECT dimensions FROM mem_embedding_models WHERE model = ?1",
            [model],
            |r| r.get(0),
        )
        .optional()?;
    Ok(dims.map(|d| usize::try_from(d).unwrap_or(0)))
}

/// The group of the failure's fingerprint or, failing that, of its nearest near-duplicate,
/// updated for this failure; or a new group.
fn join_group(
    tx: &Transaction<'_>,
    input: &FailureInput,
    vectors: &EmbeddedChunks,
    grouping: Grouping,
    now: i64,
) -> Result<(i64, bool), MemoryError> {
    let mut existing = tx
        .query_row(
            &format!("SELECT {GROUP_COLUMNS} FROM mem_groups WHERE fingerprint = ?1"),
            [&input.fingerprint],
            group_from_row,
        )
        .optional()?;
    if let (None, Some(threshold)) = (&existing, grouping.threshold) {
        existing = crate::sqlite_groups::nearest_group(tx, vectors, threshold)?;
    }

    let Some(mut group) = existing else {
        let queues = encode("queues", &[&input.queue])?;
        let job_ids = encode("job ids", &[&input.job_id])?;
        tx.execute(
            "INSERT INTO mem_groups (fingerprint, error_type, message, count, first_seen,
                 last_seen, queues, last_job_ids)
             VALUES (?1, ?2, ?3, 1, ?4, ?4, ?5, ?6)",
            params![
                input.fingerprint,
                input.error_type,
                input.message,
                now,
                queues,
                job_ids
            ],
        )?;
        return Ok((tx.last_insert_rowid(), true));
    };

    add_to_group(&mut group, input);
    tx.execute(
        "UPDATE mem_groups SET count = count + 1, last_seen = max(last_seen, ?2), queues = ?3,
             last_job_ids = ?4
         WHERE id = ?1",
        params![
            group.id,
            now,
            encode("queues", &group.queues)?,
            encode("job ids", &group.last_job_ids)?
        ],
    )?;
    Ok((group.id, false))
}

fn add_to_group(group: &mut Group, input: &FailureInput) {
    let known = group.queues.contains(&input.queue);
    if !known && group.queues.len() < MAX_GROUP_QUEUES {
        group.queues.push(input.queue.clone());
        group.queues.sort();
    }

    group.last_job_ids.retain(|id| id != &input.job_id);
    group.last_job_ids.push(input.job_id.clone());
    let excess = group.last_job_ids.len().saturating_sub(MAX_GROUP_JOB_IDS);
    group.last_job_ids.drain(..excess);
}

/// Exact cosine search over the failure chunks of one model, best failure per group.
pub(crate) fn similar_failures(
    conn: &Connection,
    model: &str,
    vector: &[f32],
    k: usize,
    exclude_group: Option<i64>,
) -> Result<Vec<SimilarFailure>, MemoryError> {
    let Some(expected) = model_dimensions(conn, model)? else {
        return Ok(Vec::new());
    };
    if expected != vector.len() {
        return Err(MemoryError::DimensionMismatch {
            model: model.to_owned(),
            expected,
            got: vector.len(),
        });
    }
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(MemoryError::NotFinite(model.to_owned()));
    }
    if k == 0 {
        return Ok(Vec::new());
    }

    let best = best_per_group(conn, model, vector, exclude_group)?;
    let mut ranked: Vec<(i64, i64, f32)> = best
        .into_iter()
        .map(|(group, (failure, score))| (failure, group, score))
        .collect();
    // Highest score first; the newer failure wins a tie, so results are deterministic.
    ranked.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.0.cmp(&a.0)));
    ranked.truncate(k);

    ranked
        .into_iter()
        .map(|(failure_id, group_id, score)| similar(conn, failure_id, group_id, score))
        .collect()
}

/// group id → (failure id, score) of the group's best matching failure chunk.
pub(crate) fn best_per_group(
    conn: &Connection,
    model: &str,
    vector: &[f32],
    exclude_group: Option<i64>,
) -> Result<HashMap<i64, (i64, f32)>, MemoryError> {
    let mut stmt = conn.prepare(
        "SELECT c.failure_id, f.group_id, c.vector FROM mem_chunks c
         JOIN mem_failures f ON f.id = c.failure_id
         WHERE c.model = ?1 AND c.failure_id IS NOT NULL
           AND (?2 IS NULL OR f.group_id <> ?2)",
    )?;
    let mut rows = stmt.query(params![model, exclude_group])?;

    let mut best: HashMap<i64, (i64, f32)> = HashMap::new();
    while let Some(row) = rows.next()? {
        let (failure_id, group_id): (i64, i64) = (row.get(0)?, row.get(1)?);
        let blob: Vec<u8> = row.get(2)?;
        let stored = from_blob(&blob)
            .filter(|v| v.len() == vector.len())
            .ok_or_else(|| MemoryError::Corrupt(format!("vector of failure {failure_id}")))?;

        let score = cosine(vector, &stored);
        let entry = best.entry(group_id).or_insert((failure_id, score));
        if score > entry.1 || (score == entry.1 && failure_id > entry.0) {
            *entry = (failure_id, score);
        }
    }
    Ok(best)
}

fn similar(
    conn: &Connection,
    failure_id: i64,
    group_id: i64,
    score: f32,
) -> Result<SimilarFailure, MemoryError> {
    let (error_type, message): (String, String) = conn.query_row(
        "SELECT error_type, message FROM mem_failures WHERE id = ?1",
        [failure_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let fix = conn
        .query_row(
            &format!(
                "SELECT {FIX_COLUMNS} FROM mem_fixes WHERE group_id = ?1
                 ORDER BY verified DESC, id DESC LIMIT 1"
            ),
            [group_id],
            fix_summary_from_row,
        )
        .optional()?;
    Ok(SimilarFailure {
        failure_id,
        group_id,
        score,
        error_type,
        message,
        fix,
    })
}

/// Stores a fix after checking its group and failure, and links its heal job's attempts.
pub(crate) fn insert_fix(tx: &Transaction<'_>, fix: &NewFix, now: i64) -> Result<i64, MemoryError> {
    check_fix_target(tx, fix.group_id, fix.failure_id)?;

    tx.execute(
        "INSERT INTO mem_fixes (group_id, failure_id, job_id, queue, verified, root_cause, diff,
             edits_json, source, model, rounds, heal_job_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            fix.group_id,
            fix.failure_id,
            fix.job_id,
            fix.queue,
            fix.verified,
            fix.root_cause,
            fix.diff,
            encode("edits", &fix.edits_json)?,
            fix.source,
            fix.model,
            fix.rounds,
            fix.heal_job_id,
            now
        ],
    )?;
    let fix_id = tx.last_insert_rowid();

    if let Some(heal_job_id) = &fix.heal_job_id {
        tx.execute(
            "UPDATE mem_heal_attempts SET fix_id = ?1 WHERE heal_job_id = ?2 AND fix_id IS NULL",
            params![fix_id, heal_job_id],
        )?;
    }
    Ok(fix_id)
}

fn check_fix_target(conn: &Connection, group_id: i64, failure_id: i64) -> Result<(), MemoryError> {
    let group_exists = conn
        .query_row("SELECT 1 FROM mem_groups WHERE id = ?1", [group_id], |_| {
            Ok(())
        })
        .optional()?
        .is_some();
    if !group_exists {
        return Err(MemoryError::UnknownGroup(group_id));
    }

    let actual: Option<i64> = conn
        .query_row(
            "SELECT group_id FROM mem_failures WHERE id = ?1",
            [failure_id],
            |r| r.get(0),
        )
        .optional()?;
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

pub(crate) fn fix_exists(conn: &Connection, fix_id: i64) -> Result<bool, MemoryError> {
    let found = conn
        .query_row(
            "SELECT 1 FROM mem_fixes WHERE id = ?1",
            [fix_id],
            |_| Ok(()),
        )
        .optional()?;
    Ok(found.is_some())
}

pub(crate) fn verified_fix(
    conn: &Connection,
    filter: &str,
    value: &dyn ToSql,
) -> Result<Option<Fix>, MemoryError> {
    let sql = format!(
        "SELECT {FIX_COLUMNS}, diff, edits_json FROM mem_fixes
         WHERE verified = 1 AND {filter} ORDER BY id DESC LIMIT 1"
    );
    Ok(conn.query_row(&sql, [value], fix_from_row).optional()?)
}

pub(crate) fn get_fix(conn: &Connection, id: i64) -> Result<Option<Fix>, MemoryError> {
    let sql = format!("SELECT {FIX_COLUMNS}, diff, edits_json FROM mem_fixes WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], fix_from_row).optional()?)
}

pub(crate) fn list_fixes(conn: &Connection, limit: usize) -> Result<Vec<FixSummary>, MemoryError> {
    let sql = format!("SELECT {FIX_COLUMNS} FROM mem_fixes ORDER BY id DESC LIMIT ?1");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([to_int(limit as u64)], fix_summary_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn list_groups(conn: &Connection, limit: usize) -> Result<Vec<Group>, MemoryError> {
    let sql =
        format!("SELECT {GROUP_COLUMNS} FROM mem_groups ORDER BY last_seen DESC, id DESC LIMIT ?1");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([to_int(limit as u64)], group_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn get_group(conn: &Connection, id: i64) -> Result<Option<Group>, MemoryError> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM mem_groups WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], group_from_row).optional()?)
}

pub(crate) fn failure_count(conn: &Connection) -> Result<u64, MemoryError> {
    let n: i64 = conn.query_row("SELECT count(*) FROM mem_failures", [], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(crate) fn insert_heal_attempt(
    conn: &Connection,
    a: &HealAttemptRecord,
    now: i64,
) -> Result<i64, MemoryError> {
    let t = &a.timings;
    conn.execute(
        "INSERT INTO mem_heal_attempts (heal_job_id, job_id, round, prompt, reply, edits_json,
             sandbox_stdout, sandbox_stderr, sandbox_exit, verdict, refusal, model_ms, apply_ms,
             sandbox_ms, total_ms, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            a.heal_job_id,
            a.job_id,
            a.round,
            a.prompt,
            a.reply,
            encode("edits", &a.edits_json)?,
            a.sandbox_stdout,
            a.sandbox_stderr,
            a.sandbox_exit,
            a.verdict,
            a.refusal,
            to_int(t.model_ms),
            to_int(t.apply_ms),
            to_int(t.sandbox_ms),
            to_int(t.total_ms),
            now
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Heal attempts matching `filter` (a condition on `?1`), sorted by `order`.
pub(crate) fn heal_attempts(
    conn: &Connection,
    filter: &str,
    order: &str,
    value: &dyn ToSql,
) -> Result<Vec<HealAttempt>, MemoryError> {
    let sql = format!(
        "SELECT id, fix_id, created_at, heal_job_id, job_id, round, prompt, reply, edits_json,
             sandbox_stdout, sandbox_stderr, sandbox_exit, verdict, refusal, model_ms, apply_ms,
             sandbox_ms, total_ms
         FROM mem_heal_attempts WHERE {filter} ORDER BY {order}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([value], heal_attempt_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) const GROUP_COLUMNS: &str =
    "id, fingerprint, error_type, message, count, first_seen, last_seen, queues, last_job_ids";

pub(crate) fn group_from_row(row: &Row<'_>) -> rusqlite::Result<Group> {
    Ok(Group {
        id: row.get(0)?,
        fingerprint: row.get(1)?,
        error_type: row.get(2)?,
        message: row.get(3)?,
        count: row.get(4)?,
        first_seen: row.get(5)?,
        last_seen: row.get(6)?,
        queues: json_column(row, 7)?,
        last_job_ids: json_column(row, 8)?,
    })
}

pub(crate) const FIX_COLUMNS: &str = "id, group_id, failure_id, job_id, queue, verified, source, model, \
                           rounds, root_cause, heal_job_id, created_at";

pub(crate) fn fix_summary_from_row(row: &Row<'_>) -> rusqlite::Result<FixSummary> {
    Ok(FixSummary {
        id: row.get(0)?,
        group_id: row.get(1)?,
        failure_id: row.get(2)?,
        job_id: row.get(3)?,
        queue: row.get(4)?,
        verified: row.get(5)?,
        source: row.get(6)?,
        model: row.get(7)?,
        rounds: row.get(8)?,
        root_cause: row.get(9)?,
        heal_job_id: row.get(10)?,
        created_at: row.get(11)?,
    })
}

/// A fix from [`FIX_COLUMNS`] followed by `diff, edits_json`.
fn fix_from_row(row: &Row<'_>) -> rusqlite::Result<Fix> {
    Ok(Fix {
        summary: fix_summary_from_row(row)?,
        diff: row.get(12)?,
        edits_json: json_column(row, 13)?,
    })
}

fn heal_attempt_from_row(row: &Row<'_>) -> rusqlite::Result<HealAttempt> {
    let record = HealAttemptRecord {
        heal_job_id: row.get(3)?,
        job_id: row.get(4)?,
        round: row.get(5)?,
        prompt: row.get(6)?,
        reply: row.get(7)?,
        edits_json: json_column(row, 8)?,
        sandbox_stdout: row.get(9)?,
        sandbox_stderr: row.get(10)?,
        sandbox_exit: row.get(11)?,
        verdict: row.get(12)?,
        refusal: row.get(13)?,
        timings: AttemptTimings {
            model_ms: row.get(14)?,
            apply_ms: row.get(15)?,
            sandbox_ms: row.get(16)?,
            total_ms: row.get(17)?,
        },
    };
    Ok(HealAttempt {
        id: row.get(0)?,
        fix_id: row.get(1)?,
        created_at: row.get(2)?,
        record,
    })
}

fn json_column<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

pub(crate) fn encode<T: serde::Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<String, MemoryError> {
    serde_json::to_string(value).map_err(|source| MemoryError::Encode { what, source })
}

/// SQLite integers are signed; values past `i64::MAX` (never reached in practice) saturate.
pub(crate) fn to_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
