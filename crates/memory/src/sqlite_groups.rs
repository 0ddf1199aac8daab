//! The SQL of failure groups and search in the embedded store: joining near-duplicates, pages
//! of groups, one group in detail, groups like a group, and hybrid search (FTS5 full text fused
//! with exact cosine ranking).
//!
//! A group's representative is its oldest failure with a summary vector of the model asked
//! about; near-duplicate joining and similar groups compare representatives only, so a group
//! does not drift as it grows.

use crate::chunk::{ChunkKind, FailureInput};
use crate::db::{
    FIX_COLUMNS, GROUP_COLUMNS, best_per_group, fix_summary_from_row, group_from_row,
    model_dimensions, to_int,
};
use crate::embed::EmbeddedChunks;
use crate::error::MemoryError;
use crate::group::{
    DETAIL_FAILURES, DETAIL_JOB_IDS, FailureSummary, GroupDetail, GroupQuery, GroupSummary,
    SearchHit, SearchQuery, SimilarGroup, fuse,
};
use crate::record::Group;
use crate::vector::{cosine, from_blob};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use std::collections::{HashMap, HashSet};

/// How many groups each ranking of a search contributes before fusion.
const SEARCH_CANDIDATES: usize = 100;

/// Adds the failure's error type, message and frame names to the full-text index.
pub(crate) fn index_text(
    tx: &Transaction<'_>,
    failure_id: i64,
    input: &FailureInput,
) -> Result<(), MemoryError> {
    let frames: Vec<String> = input
        .frames
        .iter()
        .map(|f| format!("{} {}", f.file, f.function.as_deref().unwrap_or_default()))
        .collect();
    tx.execute(
        "INSERT INTO mem_failures_fts (rowid, error_type, message, frames) VALUES (?1, ?2, ?3, ?4)",
        params![
            failure_id,
            input.error_type,
            input.message,
            frames.join(" ")
        ],
    )?;
    Ok(())
}

/// The group whose representative summary vector is nearest to the failure's, when it is at
/// least `threshold` similar.
pub(crate) fn nearest_group(
    tx: &Transaction<'_>,
    vectors: &EmbeddedChunks,
    threshold: f32,
) -> Result<Option<Group>, MemoryError> {
    let summary = vectors
        .chunks()
        .iter()
        .find(|(chunk, _)| chunk.kind == ChunkKind::Summary);
    let Some((_, vector)) = summary else {
        return Ok(None);
    };

    let best = representatives(tx, vectors.model())?
        .into_iter()
        .map(|(group, stored)| (group, cosine(vector, &stored)))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
    let Some((group_id, score)) = best.filter(|(_, score)| *score >= threshold) else {
        return Ok(None);
    };
    tracing::debug!(
        group_id,
        score,
        threshold,
        "failure joins a near-duplicate group"
    );
    let sql = format!("SELECT {GROUP_COLUMNS} FROM mem_groups WHERE id = ?1");
    Ok(tx.query_row(&sql, [group_id], group_from_row).optional()?)
}

/// Each group's representative summary vector of `model`, by group id order of first failure.
fn representatives(conn: &Connection, model: &str) -> Result<Vec<(i64, Vec<f32>)>, MemoryError> {
    let mut stmt = conn.prepare(
        "SELECT f.group_id, c.failure_id, c.vector FROM mem_chunks c
         JOIN mem_failures f ON f.id = c.failure_id
         WHERE c.kind = 'summary' AND c.model = ?1
         ORDER BY c.failure_id",
    )?;
    let mut rows = stmt.query([model])?;
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        let (group_id, failure_id): (i64, i64) = (row.get(0)?, row.get(1)?);
        if !seen.insert(group_id) {
            continue;
        }
        let blob: Vec<u8> = row.get(2)?;
        let vector = from_blob(&blob)
            .ok_or_else(|| MemoryError::Corrupt(format!("vector of failure {failure_id}")))?;
        found.push((group_id, vector));
    }
    Ok(found)
}

/// `GROUP_COLUMNS` of `mem_groups g`, then its fix count and verified fix count.
fn summary_select() -> String {
    format!(
        "SELECT {GROUP_COLUMNS},
             (SELECT count(*) FROM mem_fixes x WHERE x.group_id = g.id),
             (SELECT count(*) FROM mem_fixes x WHERE x.group_id = g.id AND x.verified = 1)
         FROM mem_groups g"
    )
}

fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<GroupSummary> {
    Ok(GroupSummary {
        group: group_from_row(row)?,
        fixes: row.get(9)?,
        verified_fixes: row.get(10)?,
    })
}

fn group_summary(conn: &Connection, id: i64) -> Result<Option<GroupSummary>, MemoryError> {
    let sql = format!("{} WHERE g.id = ?1", summary_select());
    Ok(conn.query_row(&sql, [id], summary_from_row).optional()?)
}

/// A page of groups, newest last seen first.
pub(crate) fn groups(
    conn: &Connection,
    query: &GroupQuery,
) -> Result<Vec<GroupSummary>, MemoryError> {
    let sql = format!(
        "{} WHERE (?1 IS NULL OR g.last_seen < ?1)
             AND (?2 IS NULL OR EXISTS (SELECT 1 FROM json_each(g.queues) WHERE value = ?2))
         ORDER BY g.last_seen DESC, g.id DESC LIMIT ?3",
        summary_select()
    );
    let mut stmt = conn.prepare(&sql)?;
    let limit = to_int(query.limit as u64);
    let rows = stmt.query_map(params![query.before, query.queue, limit], summary_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A group with its newest job ids, failures and fixes.
pub(crate) fn group_detail(conn: &Connection, id: i64) -> Result<Option<GroupDetail>, MemoryError> {
    let Some(summary) = group_summary(conn, id)? else {
        return Ok(None);
    };

    let mut stmt = conn.prepare(
        "SELECT job_id FROM mem_failures WHERE group_id = ?1
         GROUP BY job_id ORDER BY max(id) DESC LIMIT ?2",
    )?;
    let job_ids = stmt
        .query_map(params![id, to_int(DETAIL_JOB_IDS as u64)], |r| r.get(0))?
        .collect::<Result<_, _>>()?;

    let mut stmt = conn.prepare(
        "SELECT id, job_id, queue, job_name, fingerprint, error_type, message, embedding_model,
             created_at
         FROM mem_failures WHERE group_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let failures = stmt
        .query_map(
            params![id, to_int(DETAIL_FAILURES as u64)],
            failure_from_row,
        )?
        .collect::<Result<_, _>>()?;

    let sql = format!("SELECT {FIX_COLUMNS} FROM mem_fixes WHERE group_id = ?1 ORDER BY id DESC");
    let mut stmt = conn.prepare(&sql)?;
    let fix_list = stmt
        .query_map([id], fix_summary_from_row)?
        .collect::<Result<_, _>>()?;

    Ok(Some(GroupDetail {
        summary,
        job_ids,
        failures,
        fix_list,
    }))
}

fn failure_from_row(row: &Row<'_>) -> rusqlite::Result<FailureSummary> {
    Ok(FailureSummary {
        id: row.get(0)?,
        job_id: row.get(1)?,
        queue: row.get(2)?,
        job_name: row.get(3)?,
        fingerprint: row.get(4)?,
        error_type: row.get(5)?,
        message: row.get(6)?,
        embedding_model: row.get(7)?,
        created_at: row.get(8)?,
    })
}

/// The `k` groups whose representatives are nearest to group `id`'s, of its model.
pub(crate) fn similar_groups(
    conn: &Connection,
    id: i64,
    k: usize,
) -> Result<Vec<SimilarGroup>, MemoryError> {
    if group_summary(conn, id)?.is_none() {
        return Err(MemoryError::UnknownGroup(id));
    }
    let own: Option<(String, Vec<u8>)> = conn
        .query_row(
            "SELECT c.model, c.vector FROM mem_chunks c JOIN mem_failures f ON f.id = c.failure_id
             WHERE f.group_id = ?1 AND c.kind = 'summary' ORDER BY c.failure_id LIMIT 1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((model, blob)) = own else {
        return Ok(Vec::new());
    };
    let vector = from_blob(&blob)
        .ok_or_else(|| MemoryError::Corrupt(format!("summary vector of group {id}")))?;

    let mut scored: Vec<(i64, f32)> = representatives(conn, &model)?
        .into_iter()
        .filter(|(group, _)| *group != id)
        .map(|(group, stored)| (group, cosine(&vector, &stored)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(k);

    let mut similar = Vec::with_capacity(scored.len());
    for (group, score) in scored {
        if let Some(summary) = group_summary(conn, group)? {
            similar.push(SimilarGroup { summary, score });
        }
    }
    Ok(similar)
}

/// Full-text and vector rankings of groups, fused by reciprocal rank.
pub(crate) fn search(
    conn: &Connection,
    query: &SearchQuery,
) -> Result<Vec<SearchHit>, MemoryError> {
    if query.k == 0 {
        return Ok(Vec::new());
    }
    let text = text_ranking(conn, &query.text)?;
    let (vector, similarity) = match &query.vector {
        Some(v) => vector_ranking(conn, &v.model, &v.vector)?,
        None => (Vec::new(), HashMap::new()),
    };

    let mut hits = Vec::new();
    for (group, score, text_rank, vector_rank) in fuse(&text, &vector).into_iter().take(query.k) {
        let Some(summary) = group_summary(conn, group)? else {
            continue;
        };
        hits.push(SearchHit {
            summary,
            score,
            text_rank,
            vector_rank,
            similarity: similarity.get(&group).copied(),
        });
    }
    Ok(hits)
}

/// Group ids by their best BM25 match of any of the text's words, best first.
fn text_ranking(conn: &Connection, text: &str) -> Result<Vec<i64>, MemoryError> {
    let Some(expression) = match_expression(text) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare(
        "SELECT f.group_id FROM (
             SELECT rowid AS id, bm25(mem_failures_fts) AS rank FROM mem_failures_fts
             WHERE mem_failures_fts MATCH ?1 ORDER BY rank LIMIT 2000
         ) t JOIN mem_failures f ON f.id = t.id
         ORDER BY t.rank, f.id",
    )?;
    let rows = stmt.query_map([expression], |r| r.get::<_, i64>(0))?;

    let mut seen = HashSet::new();
    let mut ranked = Vec::new();
    for group in rows {
        let group = group?;
        if seen.insert(group) {
            ranked.push(group);
        }
        if ranked.len() == SEARCH_CANDIDATES {
            break;
        }
    }
    Ok(ranked)
}

/// The words of `text` as an FTS5 query that matches any of them. Each word is quoted, so
/// nothing a user types is read as FTS5 syntax.
fn match_expression(text: &str) -> Option<String> {
    let words = crate::group::search_words(text);
    if words.is_empty() {
        return None;
    }
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    Some(quoted.join(" OR "))
}

/// Group ids by the best cosine of any of their failure chunks of `model`, best first, with
/// those cosines.
fn vector_ranking(
    conn: &Connection,
    model: &str,
    vector: &[f32],
) -> Result<(Vec<i64>, HashMap<i64, f32>), MemoryError> {
    let Some(expected) = model_dimensions(conn, model)? else {
        return Ok((Vec::new(), HashMap::new()));
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

    let best = best_per_group(conn, model, vector, None)?;
    Ok(crate::group::rank_by_best_score(best, SEARCH_CANDIDATES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_are_quoted_so_no_syntax_gets_through() {
        assert_eq!(
            match_expression(r#"KeyError: "email" NEAR(x) OR *"#).as_deref(),
            Some(r#""keyerror" OR "email" OR "near" OR "x""#)
        );
        assert_eq!(match_expression(" :: ** "), None);
    }
}
