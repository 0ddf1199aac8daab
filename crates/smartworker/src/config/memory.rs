//! The embedder and memory settings: `[embed]` (the embeddings server) and `[memory]` (the
//! in-process model and how close two failures must be to share a group).

use std::path::{Path, PathBuf};

use super::value::{Raw, Scalar};
use super::{ConfigError, Layers, Secret};

const DEFAULT_EMBED_URL: &str = "http://localhost:8110/v1";
const DEFAULT_EMBED_MODEL: &str = "bge-large-en-v1.5";
const DEFAULT_EMBED_TIMEOUT_SECS: u64 = 10;
const DEFAULT_EMBED_BATCH_SIZE: u64 = 32;

pub use smartworker_memory::{DEFAULT_GROUP_THRESHOLD, DEFAULT_SEARCH_FLOOR};

/// The OpenAI-compatible embeddings server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbedConfig {
    /// `APP_EMBED_URL`, the API base without a trailing slash (default `http://localhost:8110/v1`).
    pub url: String,
    /// `APP_EMBED_MODEL`, default `bge-large-en-v1.5`.
    pub model: String,
    /// `APP_EMBED_API_KEY`, sent as a bearer token; `APP_LLM_API_KEY` is used when unset.
    pub api_key: Option<Secret>,
    /// `APP_EMBED_TIMEOUT_SECS`: how long one batch request may take (default 10).
    pub timeout_secs: u64,
    /// `APP_EMBED_BATCH_SIZE`: texts per request (default 32).
    pub batch_size: usize,
    /// `APP_EMBED_DIMENSIONS`: the model's vector length; unset learns it from the first reply.
    pub dimensions: Option<usize>,
}

/// Memory: the in-process embedding model and near-duplicate grouping.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryConfig {
    /// `APP_EMBED_MODEL_DIR` / `[memory] model_dir`: a Hugging Face model directory run
    /// in-process instead of the embeddings server (all-MiniLM-L6-v2; its hashes are checked).
    pub model_dir: Option<PathBuf>,
    /// `APP_MEMORY_GROUP_THRESHOLD` / `[memory] group_threshold`: the cosine similarity, above 0
    /// and at most 1, from which a failure with a new fingerprint joins the nearest group.
    pub group_threshold: f32,
    /// `APP_MEMORY_SEARCH_MIN_SIMILARITY` / `[memory] search_min_similarity`: the cosine
    /// similarity, 0 to 1, below which a search leaves out a group that no search word matched
    /// (default 0.3, for all-MiniLM-L6-v2; 0 keeps every group).
    pub search_min_similarity: f32,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            model_dir: None,
            group_threshold: DEFAULT_GROUP_THRESHOLD,
            search_min_similarity: DEFAULT_SEARCH_FLOOR,
        }
    }
}

/// Reads `[embed]`; the LLM key stands in for the embeddings key when that is unset.
pub(super) fn embed(layers: &Layers) -> Result<EmbedConfig, ConfigError> {
    let api_key = match layers.read("embed.api_key", Raw::secret)? {
        Some(key) => Some(key),
        None => layers.read("llm.api_key", Raw::secret)?,
    };
    let batch_size = layers
        .read("embed.batch_size", Raw::positive)?
        .unwrap_or(DEFAULT_EMBED_BATCH_SIZE);
    let dimensions = layers.read("embed.dimensions", Raw::positive)?;
    Ok(EmbedConfig {
        url: layers
            .read("embed.url", Raw::http_url)?
            .unwrap_or_else(|| DEFAULT_EMBED_URL.to_owned()),
        model: layers
            .read("embed.model", Raw::text)?
            .unwrap_or_else(|| DEFAULT_EMBED_MODEL.to_owned()),
        api_key,
        timeout_secs: layers
            .read("embed.timeout_secs", Raw::positive)?
            .unwrap_or(DEFAULT_EMBED_TIMEOUT_SECS),
        batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
        dimensions: dimensions.map(|d| usize::try_from(d).unwrap_or(usize::MAX)),
    })
}

/// Reads `[memory]`.
pub(super) fn memory(layers: &Layers, cwd: &Path) -> Result<MemoryConfig, ConfigError> {
    let model_dir = match layers.get("memory.model_dir") {
        Some(raw) => Some(raw.path(cwd)?),
        None => None,
    };
    let group_threshold = layers
        .read("memory.group_threshold", threshold)?
        .unwrap_or(DEFAULT_GROUP_THRESHOLD);
    let search_min_similarity = layers
        .read("memory.search_min_similarity", floor)?
        .unwrap_or(DEFAULT_SEARCH_FLOOR);
    Ok(MemoryConfig {
        model_dir,
        group_threshold,
        search_min_similarity,
    })
}

/// A similarity from 0 ("no floor") to 1.
fn floor(raw: &Raw) -> Result<f32, ConfigError> {
    similarity(raw, "from 0 to 1", |t| (0.0..=1.0).contains(&t))
}

/// A similarity above 0 and at most 1.
fn threshold(raw: &Raw) -> Result<f32, ConfigError> {
    similarity(raw, "above 0 and at most 1", |t| t > 0.0 && t <= 1.0)
}

/// A number that `fits` its `range`; toml may write it as a float or an integer.
fn similarity(raw: &Raw, range: &str, fits: impl Fn(f32) -> bool) -> Result<f32, ConfigError> {
    let text = match &raw.value {
        Scalar::Text(s) | Scalar::Other(s) => s.trim().to_owned(),
        Scalar::Int(n) => n.to_string(),
        _ => return Err(raw.wrong_type(&format!("a number {range}"))),
    };
    match text.parse::<f32>() {
        Ok(t) if fits(t) => Ok(t),
        _ => Err(raw.invalid(format!("{text:?} is not a similarity {range}"))),
    }
}
