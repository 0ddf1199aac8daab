//! What the group and search methods of the store take and return: pages of groups, one group
//! in detail, groups like another, and search hits.
//!
//! Like `record.rs`, plain data that serialises to the JSON the HTTP API returns; times are
//! milliseconds since the Unix epoch.

use std::collections::HashMap;

use crate::record::{FixSummary, Group};
use serde::{Deserialize, Serialize};

/// The most job ids [`GroupDetail`] lists.
pub const DETAIL_JOB_IDS: usize = 50;

/// The most failures [`GroupDetail`] lists.
pub const DETAIL_FAILURES: usize = 20;

/// The cosine similarity of summary vectors from which a failure with a new fingerprint joins
/// a group, chosen for all-MiniLM-L6-v2 over a labelled set of failure pairs (two runs of one
/// bug against two bugs in one file); `bench/GROUPING.md` shows the measurement. Other models
/// spread their similarities differently and need their own value.
pub const DEFAULT_GROUP_THRESHOLD: f32 = 0.82;

/// The cosine similarity below which a group that only the vector half of a search found is
/// left out of the results, chosen for all-MiniLM-L6-v2: on a set of eight Python failures,
/// queries about them scored 0.43–0.69 against their own group, and queries about nothing
/// stored at most 0.26 (`bench/GROUPING.md`, "Search floor").
pub const DEFAULT_SEARCH_FLOOR: f32 = 0.3;

/// How a failure whose fingerprint is new may still join an existing group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Grouping {
    /// The cosine similarity from which the failure's summary vector joins the group whose
    /// representative summary vector (of the same model) is nearest; `None` groups by
    /// fingerprint only.
    pub threshold: Option<f32>,
}

/// Which groups [`crate::MemoryStore::groups`] lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupQuery {
    /// The most groups to return.
    pub limit: usize,
    /// Only groups last seen strictly before this time; pass the `last_seen` of the last group
    /// of a page to get the next one.
    // FIXME: a group last seen in the same millisecond as the last one of a page is skipped by
    // the next page; a `(last_seen, id)` cursor fixes it if bursts of new groups make it matter.
    pub before: Option<i64>,
    /// Only groups that touched this queue.
    pub queue: Option<String>,
}

/// A group with the number of its fixes, as lists show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// The group.
    #[serde(flatten)]
    pub group: Group,
    /// How many fixes were recorded for it.
    pub fixes: u64,
    /// How many of them were verified.
    pub verified_fixes: u64,
}

/// One stored failure, without its stack and payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureSummary {
    /// The id.
    pub id: i64,
    /// The failed job.
    pub job_id: String,
    /// Its queue.
    pub queue: String,
    /// Its name.
    pub job_name: String,
    /// The fingerprint it had (a near-duplicate's differs from its group's).
    pub fingerprint: String,
    /// The error type.
    pub error_type: String,
    /// The (masked) message.
    pub message: String,
    /// The model its vectors came from.
    pub embedding_model: String,
    /// When it was recorded.
    pub created_at: i64,
}

/// A group with what it touched and what was done about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupDetail {
    /// The group and its fix counts.
    #[serde(flatten)]
    pub summary: GroupSummary,
    /// The newest distinct job ids of its failures, newest first, at most [`DETAIL_JOB_IDS`].
    pub job_ids: Vec<String>,
    /// Its newest failures, newest first, at most [`DETAIL_FAILURES`].
    pub failures: Vec<FailureSummary>,
    /// Its fixes, newest first.
    pub fix_list: Vec<FixSummary>,
}

/// A group close to another one or to a query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimilarGroup {
    /// The group and its fix counts.
    #[serde(flatten)]
    pub summary: GroupSummary,
    /// Cosine similarity of the representative failures' summary vectors, from -1 to 1.
    pub score: f32,
}

/// A query vector and the model that made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryVector {
    /// The embedding model; only its stored vectors are compared.
    pub model: String,
    /// The vector.
    pub vector: Vec<f32>,
}

/// What [`crate::MemoryStore::search`] looks for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// Words to find in error types, messages, files and functions.
    pub text: String,
    /// The text's vector; without one the search is full-text only.
    pub vector: Option<QueryVector>,
    /// The most groups to return.
    pub k: usize,
}

/// A group found by a search, with how each ranking placed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The group and its fix counts.
    #[serde(flatten)]
    pub summary: GroupSummary,
    /// The fused score: the sum of `1 / (60 + rank)` over the rankings that found the group.
    pub score: f64,
    /// Its place in the full-text ranking (1 is best), when the words matched.
    pub text_rank: Option<usize>,
    /// Its place in the vector ranking (1 is best), when a vector was given.
    pub vector_rank: Option<usize>,
    /// Cosine similarity of its best matching chunk to the query vector.
    pub similarity: Option<f32>,
}

/// The most words of a search text that reach the full-text half of a search.
pub const MAX_SEARCH_WORDS: usize = 32;

/// English words too common to say what a search is about: "timeout in the payment job"
/// would otherwise match every failure whose message holds "in" or "the".
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for", "from",
    "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "my", "of", "on", "or",
    "our", "so", "than", "that", "the", "their", "then", "there", "these", "this", "to", "was",
    "we", "were", "what", "when", "where", "which", "while", "who", "why", "with", "you",
];

/// The distinct words of a search text, lowercased, at most [`MAX_SEARCH_WORDS`]: runs of
/// letters and digits only, so nothing a user types is read as query syntax by either store.
/// Common English words are left out, unless the text holds nothing else.
pub fn search_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let split = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty());
    // Room for the common words that are dropped below, still bounded for a huge text.
    let room = MAX_SEARCH_WORDS * 4;
    for word in split.map(str::to_lowercase) {
        if !words.contains(&word) && words.len() < room {
            words.push(word);
        }
    }
    if words.iter().any(|w| !STOP_WORDS.contains(&w.as_str())) {
        words.retain(|w| !STOP_WORDS.contains(&w.as_str()));
    }
    words.truncate(MAX_SEARCH_WORDS);
    words
}

/// Each group's best vector score (`group -> (failure, score)`) as a ranking: group ids best
/// first (ties by id), at most `limit`, with their scores. Both stores rank the vector half
/// of a search this way.
pub fn rank_by_best_score(
    best: HashMap<i64, (i64, f32)>,
    limit: usize,
) -> (Vec<i64>, HashMap<i64, f32>) {
    let mut scored: Vec<(i64, f32)> = best.into_iter().map(|(g, (_, s))| (g, s)).collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(limit);
    let ids = scored.iter().map(|(g, _)| *g).collect();
    (ids, scored.into_iter().collect())
}

/// The constant of reciprocal rank fusion: large enough that one ranking's top place does not
/// drown the other ranking (the value of Cormack et al., used by most hybrid search engines).
pub const RRF_K: f64 = 60.0;

/// Fuses two rankings of group ids (best first) by reciprocal rank; ties keep the text order.
///
/// Returns `(group id, score, text rank, vector rank)`, best first.
pub fn fuse(text: &[i64], vector: &[i64]) -> Vec<(i64, f64, Option<usize>, Option<usize>)> {
    let mut fused: Vec<(i64, f64, Option<usize>, Option<usize>)> = Vec::new();
    for (rank, id) in text.iter().enumerate() {
        fused.push((*id, 1.0 / (RRF_K + rank as f64 + 1.0), Some(rank + 1), None));
    }
    for (rank, id) in vector.iter().enumerate() {
        let score = 1.0 / (RRF_K + rank as f64 + 1.0);
        match fused.iter_mut().find(|f| f.0 == *id) {
            Some(entry) => {
                entry.1 += score;
                entry.3 = Some(rank + 1);
            }
            None => fused.push((*id, score, None, Some(rank + 1))),
        }
    }
    // A stable sort keeps the text order among equal scores.
    fused.sort_by(|a, b| b.1.total_cmp(&a.1));
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_found_by_both_rankings_beats_one_found_by_either() {
        let fused = fuse(&[1, 2, 3], &[3, 4]);
        let order: Vec<i64> = fused.iter().map(|f| f.0).collect();
        assert_eq!(order, [3, 1, 2, 4]);
        assert_eq!((fused[0].2, fused[0].3), (Some(3), Some(1)));
    }

    /// Reported: "memory leak in renderer" listed a UnicodeDecodeError first, whose message
    /// holds "in position 0".
    #[test]
    fn common_words_do_not_reach_the_search_unless_nothing_else_is_there() {
        assert_eq!(
            search_words("Memory leak in the renderer, in PDF export"),
            ["memory", "leak", "renderer", "pdf", "export"]
        );
        assert_eq!(search_words("what is this"), ["what", "is", "this"]);
        let many: String = (0..500).map(|n| format!("w{n} the ")).collect();
        assert_eq!(search_words(&many).len(), MAX_SEARCH_WORDS);
    }

    #[test]
    fn text_only_keeps_the_text_order() {
        let order: Vec<i64> = fuse(&[5, 6, 7], &[]).iter().map(|f| f.0).collect();
        assert_eq!(order, [5, 6, 7]);
    }
}
