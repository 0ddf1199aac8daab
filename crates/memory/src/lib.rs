//! SmartWorker's memory: every final failure and every fix, with embeddings, so a repeat
//! failure is recognised and a verified fix reused.
//!
//! This crate holds the store façade ([`MemoryStore`]) over the [`MemoryBackend`] trait, the
//! embedded backend (the queue's SQLite file, `mem_` tables, exact cosine search), the embedders
//! that feed it, and the chunking of failures and fixes. It records whether a fix was verified
//! as it is told and never judges a fix itself.

mod backend;
mod chunk;
#[cfg(feature = "conformance")]
pub mod conformance;
mod db;
mod embed;
mod error;
mod group;
mod record;
mod schema;
mod secrets;
mod sqlite;
mod sqlite_groups;
mod store;
mod vector;

pub use backend::MemoryBackend;
pub use chunk::{
    Chunk, ChunkKind, FailureInput, FrameInput, chunks_for_failure, chunks_for_fix, mask_volatile,
    payload_shape, summary_text,
};
pub use db::MAX_GROUP_JOB_IDS;
pub use embed::{
    EmbedError, EmbeddedChunks, Embedder, FallbackEmbedder, LEXICAL_DIMENSIONS, LEXICAL_MODEL,
    LexicalEmbedder, check_vectors, embed_chunks, tokenize,
};
pub use error::MemoryError;
pub use group::{
    DEFAULT_GROUP_THRESHOLD, DEFAULT_SEARCH_FLOOR, DETAIL_FAILURES, DETAIL_JOB_IDS, FailureSummary,
    GroupDetail, GroupQuery, GroupSummary, Grouping, MAX_SEARCH_WORDS, QueryVector, RRF_K,
    SearchHit, SearchQuery, SimilarGroup, fuse, rank_by_best_score, search_words,
};
pub use record::{
    AttemptTimings, FailureRecord, Fix, FixDetail, FixSource, FixSummary, Group, HealAttempt,
    HealAttemptRecord, NewFix, SimilarFailure,
};
pub use schema::SCHEMA_VERSION;
pub use secrets::{MASK, mask_payload, mask_secrets};
pub use sqlite::SqliteBackend;
pub use store::MemoryStore;
pub use vector::cosine;
