//! The SQL of failure groups and search in PostgreSQL: joining near-duplicates, pages of
//! groups, one group in detail, groups like a group, and hybrid search (a `tsvector` full-text
//! ranking fused with an HNSW vector ranking by reciprocal rank, as the embedded store does).
//!
//! A group's representative, per model, is its first failure with a summary vector of that
//! model (`mem_group_representatives`, kept when the failure is stored); near-duplicate joining
//! and similar groups compare representatives only, so a group does not drift as it grows.

use crate::error::pg_error;
use crate::sql::{
    FIX_COLUMNS, GROUP_COLUMNS, SimilarQuery, best_per_group, fix_summary_from_row, group_from_row,
    model_info,
};
use pgvector::Vector;
use smartworker_memory::{
    ChunkKind, DETAIL_FAILURES, DETAIL_JOB_IDS, EmbeddedChunks, FailureSummary, GroupDetail,
    GroupQuery, GroupSummary, MemoryError, SearchHit, SearchQuery, SimilarGroup, fuse,
};
use std::collections::HashMap;
use tokio_postgres::{GenericClient, Row, Transaction};

/// How many groups each ranking of a search contributes before fusion.
const SEARCH_CANDIDATES: usize = 100;

/// The vector of the failure's summary chunk, if it has one.
pub(crate) fn summary_vector(vectors: &EmbeddedChunks) -> Option<&[f32]> {
    vectors
        .chunks()
        .iter()
        .find(|(chunk, _)| chunk.kind == ChunkKind::Summary)
        .map(|(_, v)| v.as_slice())
}

/// The group whose representative summary vector of the model is nearest to `vector`, when it
/// is at least `threshold` similar.
pub(crate) async fn nearest_group(
    tx: &Transaction<'_>,
    model_id: i32,
    vector: &[f32],
    threshold: f32,
) -> Result<Option<i64>, MemoryError> {
    let nearest = nearest_representatives(tx, model_id, vector, None, 1).await?;
    let Some(&(group_id, score)) = nearest.first() else {
        return Ok(None);
    };
    if score < threshold {
        return Ok(None);
    }
    tracing::debug!(
        group_id,
        score,
        threshold,
        "failure joins a near-duplicate group"
    );
    Ok(Some(group_id))
}

/// Representatives of the model nearest to `vector` through its HNSW index: (group, cosine),
/// best first, ties to the older group.
async fn nearest_representatives(
    tx: &Transaction<'_>,
    model_id: i32,
    vector: &[f32],
    exclude_group: Option<i64>,
    k: usize,
) -> Result<Vec<(i64, f32)>, MemoryError> {
    let dims = vector.len();
    tx.batch_execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        .await
        .map_err(pg_error)?;
    let sql = format!(
        "SELECT group_id, (1 - (embedding <=> $1))::real FROM mem_group_representatives
         WHERE model_id = {model_id} AND ($2::bigint IS NULL OR group_id <> $2)
         ORDER BY embedding::halfvec({dims}) <=> $1::halfvec({dims})
         LIMIT $3"
    );
    let query = Vector::from(vector.to_vec());
    let limit = i64::try_from(k).unwrap_or(i64::MAX);
    let rows = tx
        .query(&sql, &[&query, &exclude_group, &limit])
        .await
        .map_err(pg_error)?;
    let mut found: Vec<(i64, f32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    found.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(found)
}

/// Makes the failure its group's representative for the model when the group has none.
pub(crate) async fn keep_representative(
    tx: &Transaction<'_>,
    group_id: i64,
    model_id: i32,
    failure_id: i64,
    vector: &[f32],
) -> Result<(), MemoryError> {
    tx.execute(
        "INSERT INTO mem_group_representatives (group_id, model_id, failure_id, embedding)
         VALUES ($1, $2, $3, $4) ON CONFLICT (group_id, model_id) DO NOTHING",
        &[
            &group_id,
            &model_id,
            &failure_id,
            &Vector::from(vector.to_vec()),
        ],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// `GROUP_COLUMNS` of `mem_groups g`, then its fix count and verified fix count.
fn summary_select() -> String {
    format!(
        "SELECT {GROUP_COLUMNS},
             (SELECT count(*) FROM mem_fixes x WHERE x.group_id = g.id),
             (SELECT count(*) FROM mem_fixes x WHERE x.group_id = g.id AND x.verified)
         FROM mem_groups g"
    )
}

fn summary_from_row(row: &Row) -> GroupSummary {
    let count = |idx| u64::try_from(row.get::<_, i64>(idx)).unwrap_or(0);
    GroupSummary {
        group: group_from_row(row),
        fixes: count(9),
        verified_fixes: count(10),
    }
}

/// The summaries of the given groups, in the order given; unknown ids are left out.
async fn summaries<C: GenericClient>(
    client: &C,
    ids: &[i64],
) -> Result<Vec<GroupSummary>, MemoryError> {
    let sql = format!("{} WHERE g.id = ANY($1)", summary_select());
    let rows = client.query(&sql, &[&ids]).await.map_err(pg_error)?;
    let mut by_id: HashMap<i64, GroupSummary> = rows
        .iter()
        .map(summary_from_row)
        .map(|s| (s.group.id, s))
        .collect();
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// A page of groups, newest last seen first.
pub(crate) async fn groups<C: GenericClient>(
    client: &C,
    query: &GroupQuery,
) -> Result<Vec<GroupSummary>, MemoryError> {
    let sql = format!(
        "{} WHERE ($1::bigint IS NULL OR g.last_seen < $1)
             AND ($2::text IS NULL OR g.queues @> ARRAY[$2::text])
         ORDER BY g.last_seen DESC, g.id DESC LIMIT $3",
        summary_select()
    );
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let rows = client
        .query(&sql, &[&query.before, &query.queue, &limit])
        .await
        .map_err(pg_error)?;
    Ok(rows.iter().map(summary_from_row).collect())
}

/// A group with its newest job ids, failures and fixes.
pub(crate) async fn group_detail<C: GenericClient>(
    client: &C,
    id: i64,
) -> Result<Option<GroupDetail>, MemoryError> {
    let Some(summary) = summaries(client, &[id]).await?.pop() else {
        return Ok(None);
    };
    let job_ids = client
        .query(
            "SELECT job_id FROM mem_failures WHERE group_id = $1
             GROUP BY job_id ORDER BY max(id) DESC LIMIT $2",
            &[&id, &(DETAIL_JOB_IDS as i64)],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let failures = client
        .query(
            "SELECT id, job_id, queue, job_name, fingerprint, error_type, message,
                 embedding_model, created_at
             FROM mem_failures WHERE group_id = $1 ORDER BY id DESC LIMIT $2",
            &[&id, &(DETAIL_FAILURES as i64)],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(failure_from_row)
        .collect();
    let sql = format!("SELECT {FIX_COLUMNS} FROM mem_fixes WHERE group_id = $1 ORDER BY id DESC");
    let fix_list = client
        .query(&sql, &[&id])
        .await
        .map_err(pg_error)?
        .iter()
        .map(fix_summary_from_row)
        .collect::<Result<_, _>>()?;
    Ok(Some(GroupDetail {
        summary,
        job_ids,
        failures,
        fix_list,
    }))
}

fn failure_from_row(row: &Row) -> FailureSummary {
    FailureSummary {
        id: row.get(0),
        job_id: row.get(1),
        queue: row.get(2),
        job_name: row.get(3),
        fingerprint: row.get(4),
        error_type: row.get(5),
        message: row.get(6),
        embedding_model: row.get(7),
        created_at: row.get(8),
    }
}

/// The `k` groups whose representatives are nearest to group `id`'s, of its model.
pub(crate) async fn similar_groups(
    tx: &Transaction<'_>,
    id: i64,
    k: usize,
) -> Result<Vec<SimilarGroup>, MemoryError> {
    if summaries(tx, &[id]).await?.is_empty() {
        return Err(MemoryError::UnknownGroup(id));
    }
    let own = tx
        .query_opt(
            "SELECT model_id, embedding FROM mem_group_representatives WHERE group_id = $1
             ORDER BY failure_id LIMIT 1",
            &[&id],
        )
        .await
        .map_err(pg_error)?;
    let Some(own) = own else {
        return Ok(Vec::new());
    };
    let (model_id, vector): (i32, Vector) = (own.get(0), own.get(1));
    let nearest = nearest_representatives(tx, model_id, vector.as_slice(), Some(id), k).await?;

    let ids: Vec<i64> = nearest.iter().map(|(g, _)| *g).collect();
    let scores: HashMap<i64, f32> = nearest.into_iter().collect();
    let found = summaries(tx, &ids).await?;
    Ok(found
        .into_iter()
        .map(|summary| {
            let score = scores.get(&summary.group.id).copied().unwrap_or_default();
            SimilarGroup { summary, score }
        })
        .collect())
}

/// Full-text and vector rankings of groups, fused by reciprocal rank.
pub(crate) async fn search(
    tx: &Transaction<'_>,
    query: &SearchQuery,
) -> Result<Vec<SearchHit>, MemoryError> {
    if query.k == 0 {
        return Ok(Vec::new());
    }
    let text = text_ranking(tx, &query.text).await?;
    let (vector, similarity) = match &query.vector {
        Some(v) => vector_ranking(tx, &v.model, &v.vector).await?,
        None => (Vec::new(), HashMap::new()),
    };

    let fused: Vec<_> = fuse(&text, &vector).into_iter().take(query.k).collect();
    let ids: Vec<i64> = fused.iter().map(|f| f.0).collect();
    let mut found: HashMap<i64, GroupSummary> = summaries(tx, &ids)
        .await?
        .into_iter()
        .map(|s| (s.group.id, s))
        .collect();
    let mut hits = Vec::with_capacity(fused.len());
    for (group, score, text_rank, vector_rank) in fused {
        let Some(summary) = found.remove(&group) else {
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

/// Group ids by their best `ts_rank_cd` match of any of the text's words, best first.
async fn text_ranking(tx: &Transaction<'_>, text: &str) -> Result<Vec<i64>, MemoryError> {
    let Some(expression) = tsquery(text) else {
        return Ok(Vec::new());
    };
    let rows = tx
        .query(
            "SELECT group_id FROM mem_failures, to_tsquery('simple', $1) q
             WHERE search @@ q ORDER BY ts_rank_cd(search, q) DESC, id LIMIT 2000",
            &[&expression],
        )
        .await
        .map_err(pg_error)?;
    let mut ranked: Vec<i64> = Vec::new();
    for row in rows {
        let group: i64 = row.get(0);
        if !ranked.contains(&group) {
            ranked.push(group);
        }
        if ranked.len() == SEARCH_CANDIDATES {
            break;
        }
    }
    Ok(ranked)
}

/// The words of `text` as a `tsquery` that matches any of them. Words are runs of letters and
/// digits only, so nothing a user types is read as `tsquery` syntax.
fn tsquery(text: &str) -> Option<String> {
    let words = smartworker_memory::search_words(text);
    if words.is_empty() {
        return None;
    }
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    Some(quoted.join(" | "))
}

/// Group ids by the best cosine of any of their failure chunks of `model`, best first, with
/// those cosines.
async fn vector_ranking(
    tx: &Transaction<'_>,
    model: &str,
    vector: &[f32],
) -> Result<(Vec<i64>, HashMap<i64, f32>), MemoryError> {
    let Some((model_id, expected)) = model_info(tx, model).await? else {
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
    let q = SimilarQuery {
        model,
        vector,
        k: SEARCH_CANDIDATES,
        exclude_group: None,
    };
    let best = best_per_group(tx, &q, model_id, expected).await?;
    Ok(smartworker_memory::rank_by_best_score(
        best,
        SEARCH_CANDIDATES,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_are_quoted_so_no_syntax_gets_through() {
        assert_eq!(
            tsquery(r"KeyError: 'email' & !x | y:* OR").as_deref(),
            Some("'keyerror' | 'email' | 'x' | 'y'")
        );
        assert_eq!(tsquery(" :: ** "), None);
    }
}
