//! Embedders: the interface to embedding models, a model-free lexical embedder, and a fallback
//! that says which model actually produced each batch of vectors.
//!
//! The lexical embedder is deterministic across runs and machines: it hashes with FNV-1a, never
//! with std's randomly seeded hasher, so vectors stored yesterday compare with vectors made today.

use crate::chunk::Chunk;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Why an embedding request failed or returned something unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbedError {
    /// The model (or the server in front of it) could not embed.
    #[error("embedding model {model:?} failed: {reason}")]
    Failed {
        /// The model asked.
        model: String,
        /// What went wrong, as the model client reported it.
        reason: String,
    },
    /// The model returned a different number of vectors than texts it was given.
    #[error("embedding model {model:?} returned {got} vectors for {expected} texts")]
    WrongCount {
        /// The model asked.
        model: String,
        /// How many texts were sent.
        expected: usize,
        /// How many vectors came back.
        got: usize,
    },
    /// A vector's length differs from the model's stated dimensions.
    #[error("embedding model {model:?} returned a vector of {got} dimensions, not {expected}")]
    WrongDimensions {
        /// The model asked.
        model: String,
        /// The dimensions the model claims.
        expected: usize,
        /// The length of the vector that came back.
        got: usize,
    },
    /// A vector holds NaN or infinity, which no similarity can rank.
    #[error("embedding model {model:?} returned a vector with a non-finite value")]
    NotFinite {
        /// The model asked.
        model: String,
    },
}

/// Something that turns texts into vectors of a fixed length.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// The model's name, stored with every vector it produces.
    fn model(&self) -> &str;

    /// The length of every vector the model produces.
    fn dimensions(&self) -> usize;

    /// One vector per text, in the order of `texts`.
    ///
    /// # Errors
    /// [`EmbedError::Failed`] when the model cannot embed; callers should also check the shape
    /// of what comes back with [`check_vectors`], since a remote model is not trusted.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Checks that `vectors` holds one vector of `dimensions` finite floats per text.
///
/// # Errors
/// [`EmbedError::WrongCount`], [`EmbedError::WrongDimensions`] or [`EmbedError::NotFinite`].
pub fn check_vectors(
    model: &str,
    dimensions: usize,
    texts: usize,
    vectors: &[Vec<f32>],
) -> Result<(), EmbedError> {
    if vectors.len() != texts {
        return Err(EmbedError::WrongCount {
            model: model.to_owned(),
            expected: texts,
            got: vectors.len(),
        });
    }
    let wrong = vectors.iter().find(|v| v.len() != dimensions);
    if let Some(v) = wrong {
        return Err(EmbedError::WrongDimensions {
            model: model.to_owned(),
            expected: dimensions,
            got: v.len(),
        });
    }
    if vectors.iter().flatten().any(|x| !x.is_finite()) {
        return Err(EmbedError::NotFinite {
            model: model.to_owned(),
        });
    }
    Ok(())
}

/// The lexical embedder's model name, stored with its vectors.
pub const LEXICAL_MODEL: &str = "lexical-hash-v1";

/// The lexical embedder's vector length.
pub const LEXICAL_DIMENSIONS: usize = 384;

/// How much a bigram weighs against a unigram: word order matters, but less than the words.
const BIGRAM_WEIGHT: f32 = 0.5;

/// A model-free embedder: identifier-aware tokens, feature-hashed unigrams and bigrams, with
/// signed hashing so collisions tend to cancel rather than add up. Same text, same vector.
#[derive(Clone, Copy, Debug, Default)]
pub struct LexicalEmbedder;

impl LexicalEmbedder {
    /// Embeds one text without going through the async trait.
    pub fn embed_text(&self, text: &str) -> Vec<f32> {
        let tokens = tokenize(text);
        let mut vector = vec![0.0f32; LEXICAL_DIMENSIONS];

        for token in &tokens {
            add_feature(&mut vector, &["u:", token], 1.0);
        }
        for pair in tokens.windows(2) {
            add_feature(&mut vector, &["b:", &pair[0], " ", &pair[1]], BIGRAM_WEIGHT);
        }

        normalize(&mut vector);
        vector
    }
}

#[async_trait]
impl Embedder for LexicalEmbedder {
    fn model(&self) -> &str {
        LEXICAL_MODEL
    }

    fn dimensions(&self) -> usize {
        LEXICAL_DIMENSIONS
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| self.embed_text(t)).collect())
    }
}

/// Adds `weight` (signed by the hash) at the bucket the feature hashes to.
fn add_feature(vector: &mut [f32], parts: &[&str], weight: f32) {
    let hash = parts.iter().fold(FNV_OFFSET, |h, p| fnv1a(h, p.as_bytes()));

    // The low bits pick the bucket and the top bit the sign, so the two are independent.
    let bucket = (hash % vector.len() as u64) as usize;
    let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
    vector[bucket] += sign * weight;
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

fn normalize(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return;
    }
    vector.iter_mut().for_each(|x| *x /= norm);
}

/// Splits text into lowercase word tokens: identifiers are split on `snake_case`, `kebab-case`
/// and `camelCase`; numbers, hex strings and UUIDs are dropped because they differ between two
/// occurrences of the same failure.
pub fn tokenize(text: &str) -> Vec<String> {
    let words = text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'));
    words
        .filter(|w| !w.is_empty() && !is_volatile(w))
        .flat_map(split_identifier)
        .filter(|t| t.chars().count() >= 2 && !t.chars().all(|c| c.is_ascii_digit()))
        .collect()
}

/// True for a word that is an id rather than a word: a UUID, `0x…`, or a long hex string.
pub(crate) fn is_volatile(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        return !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    if is_uuid(&lower) {
        return true;
    }
    let hexish = lower.chars().all(|c| c.is_ascii_hexdigit());
    hexish && lower.len() >= 8 && lower.chars().any(|c| c.is_ascii_digit())
}

fn is_uuid(word: &str) -> bool {
    let groups: Vec<&str> = word.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    groups.len() == lengths.len()
        && groups
            .iter()
            .zip(lengths)
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `getUserByID_v2` → `get`, `user`, `by`, `id`, `v`, `2`.
fn split_identifier(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut tokens = Vec::new();
    let mut current = String::new();

    for (i, &c) in chars.iter().enumerate() {
        if c == '_' || c == '-' {
            flush(&mut tokens, &mut current);
            continue;
        }
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1).copied();
        if starts_new_token(prev, c, next) {
            flush(&mut tokens, &mut current);
        }
        current.extend(c.to_lowercase());
    }
    flush(&mut tokens, &mut current);
    tokens
}

/// A token starts at a lower→upper step (`userName`), at the last capital of an acronym
/// followed by lowercase (`HTTPServer`), and between letters and digits.
fn starts_new_token(prev: Option<char>, c: char, next: Option<char>) -> bool {
    let Some(prev) = prev else {
        return false;
    };
    let lower_to_upper = prev.is_lowercase() && c.is_uppercase();
    let acronym_end =
        prev.is_uppercase() && c.is_uppercase() && next.is_some_and(|n| n.is_lowercase());
    let digit_step = prev.is_ascii_digit() != c.is_ascii_digit();
    lower_to_upper || acronym_end || digit_step
}

fn flush(tokens: &mut Vec<String>, current: &mut String) {
    if !current.is_empty() {
        tokens.push(std::mem::take(current));
    }
}

/// Vectors for a list of chunks, all from one model.
///
/// Built only through [`EmbeddedChunks::new`] (or the embedding helpers), which checks that
/// every vector has the model's dimensions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedChunks {
    model: String,
    dimensions: usize,
    chunks: Vec<(Chunk, Vec<f32>)>,
}

impl EmbeddedChunks {
    /// Pairs chunks with their vectors.
    ///
    /// # Errors
    /// As [`check_vectors`]: the vectors must fit the chunks and the dimensions, and be finite.
    pub fn new(
        model: impl Into<String>,
        dimensions: usize,
        chunks: Vec<Chunk>,
        vectors: Vec<Vec<f32>>,
    ) -> Result<Self, EmbedError> {
        let model = model.into();
        check_vectors(&model, dimensions, chunks.len(), &vectors)?;
        Ok(EmbeddedChunks {
            model,
            dimensions,
            chunks: chunks.into_iter().zip(vectors).collect(),
        })
    }

    /// The model that produced the vectors.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The length of every vector.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// The chunks with their vectors, in order.
    pub fn chunks(&self) -> &[(Chunk, Vec<f32>)] {
        &self.chunks
    }

    /// The same vectors with every chunk text passed through `f`, to mask secrets in them.
    pub fn map_texts(mut self, f: impl Fn(&str) -> String) -> Self {
        for (chunk, _) in &mut self.chunks {
            chunk.text = f(&chunk.text);
        }
        self
    }
}

/// Embeds `chunks` with one embedder.
///
/// # Errors
/// The embedder's error, or a shape error when its output does not fit the chunks.
pub async fn embed_chunks(
    embedder: &dyn Embedder,
    chunks: Vec<Chunk>,
) -> Result<EmbeddedChunks, EmbedError> {
    let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
    let vectors = embedder.embed(&texts).await?;
    EmbeddedChunks::new(embedder.model(), embedder.dimensions(), chunks, vectors)
}

/// Tries a primary embedder and falls back to the lexical one when it fails or returns
/// vectors of the wrong shape.
///
/// It does not implement [`Embedder`] on purpose: its model changes from call to call, and
/// every caller must learn which model produced the vectors, since vectors of different models
/// are never compared.
#[derive(Clone)]
pub struct FallbackEmbedder {
    primary: Arc<dyn Embedder>,
    fallback: LexicalEmbedder,
    /// Whether the last call fell back, so the log speaks when that changes, not every call.
    falling_back: Arc<std::sync::atomic::AtomicBool>,
}

impl FallbackEmbedder {
    /// A fallback chain from `primary` to the lexical embedder.
    pub fn new(primary: Arc<dyn Embedder>) -> Self {
        FallbackEmbedder {
            primary,
            fallback: LexicalEmbedder,
            falling_back: Arc::default(),
        }
    }

    /// The primary embedder's model name.
    pub fn primary_model(&self) -> &str {
        self.primary.model()
    }

    /// Embeds `texts` and names the model that produced the vectors.
    ///
    /// # Errors
    /// Only if the lexical fallback fails, which it does not today; the signature keeps room
    /// for a fallback that can.
    pub async fn embed_with_model(
        &self,
        texts: &[String],
    ) -> Result<(String, Vec<Vec<f32>>), EmbedError> {
        match self.try_primary(texts).await {
            Ok(vectors) => {
                self.note_primary();
                Ok((self.primary.model().to_owned(), vectors))
            }
            Err(err) => {
                self.note_fallback(&err);
                let vectors = self.fallback.embed(texts).await?;
                Ok((LEXICAL_MODEL.to_owned(), vectors))
            }
        }
    }

    /// Embeds `chunks`, falling back as [`FallbackEmbedder::embed_with_model`] does.
    ///
    /// # Errors
    /// As [`FallbackEmbedder::embed_with_model`].
    pub async fn embed_chunks(&self, chunks: Vec<Chunk>) -> Result<EmbeddedChunks, EmbedError> {
        match embed_chunks(self.primary.as_ref(), chunks.clone()).await {
            Ok(embedded) => {
                self.note_primary();
                Ok(embedded)
            }
            Err(err) => {
                self.note_fallback(&err);
                embed_chunks(&self.fallback, chunks).await
            }
        }
    }

    /// Warns once when the primary starts failing; later fallbacks are DEBUG.
    fn note_fallback(&self, err: &EmbedError) {
        use std::sync::atomic::Ordering;
        if self.falling_back.swap(true, Ordering::Relaxed) {
            tracing::debug!(error = %err, fallback = LEXICAL_MODEL, "embedding fell back");
        } else {
            tracing::warn!(
                error = %err, fallback = LEXICAL_MODEL,
                "embedding fell back; further fallbacks are logged at debug level"
            );
        }
    }

    /// Says once when the primary answers again after failing.
    fn note_primary(&self) {
        use std::sync::atomic::Ordering;
        if self.falling_back.swap(false, Ordering::Relaxed) {
            tracing::info!(
                model = self.primary.model(),
                "embedding model answers again"
            );
        }
    }

    async fn try_primary(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let vectors = self.primary.embed(texts).await?;
        let (model, dims) = (self.primary.model(), self.primary.dimensions());
        check_vectors(model, dims, texts.len(), &vectors)?;
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkKind;
    use crate::vector::cosine;

    #[test]
    fn identifiers_split_and_volatile_tokens_are_dropped() {
        let text = "getUserByID failed: HTTPServer user_name-x 42 0xdeadBEEF \
                    5f0c2a9e-1b7d-4c3e-9a8f-0123456789ab abcdef0123 v2";
        let expected = [
            "get", "user", "by", "id", "failed", "http", "server", "user", "name",
        ];
        assert_eq!(tokenize(text), expected);
    }

    #[test]
    fn same_text_gives_the_same_normalised_vector() {
        let a = LexicalEmbedder.embed_text("TypeError: cannot read property 'email' of undefined");
        let b = LexicalEmbedder.embed_text("TypeError: cannot read property 'email' of undefined");
        assert_eq!(a, b);
        assert_eq!(a.len(), LEXICAL_DIMENSIONS);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }

    #[test]
    fn lexical_vectors_are_stable_across_runs() {
        // Pinned values: a change here means stored vectors no longer compare with new ones,
        // which needs a new model name, not a silent update.
        let v = LexicalEmbedder.embed_text("userNotFound");
        let nonzero: Vec<(usize, String)> = v
            .iter()
            .enumerate()
            .filter(|(_, x)| **x != 0.0)
            .map(|(i, x)| (i, format!("{x:.4}")))
            .collect();
        expect_test::expect![[r#"
            [
                (
                    18,
                    "-0.2673",
                ),
                (
                    187,
                    "-0.5345",
                ),
                (
                    235,
                    "-0.2673",
                ),
                (
                    337,
                    "0.5345",
                ),
                (
                    346,
                    "0.5345",
                ),
            ]
        "#]]
        .assert_debug_eq(&nonzero);
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn ids_in_messages_do_not_change_the_vector() {
        let a = LexicalEmbedder.embed_text("user 1234 not found (req 9f8e7d6c5b4a)");
        let b = LexicalEmbedder.embed_text("user 98 not found (req 0a1b2c3d4e5f)");
        assert_eq!(a, b);
    }

    #[test]
    fn related_texts_score_higher_than_unrelated_ones() {
        let query = LexicalEmbedder.embed_text("KeyError: 'email' in create_user payload");
        let near = LexicalEmbedder.embed_text("KeyError: 'email' missing in createUser");
        let far = LexicalEmbedder.embed_text("ConnectionRefused: smtp relay timed out");
        assert!(cosine(&query, &near) > cosine(&query, &far) + 0.2);
    }

    struct Broken;

    #[async_trait]
    impl Embedder for Broken {
        fn model(&self) -> &str {
            "broken-v1"
        }
        fn dimensions(&self) -> usize {
            8
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            // Answers with the wrong shape, as a misconfigured server might.
            Ok(texts.iter().map(|_| vec![0.0; 3]).collect())
        }
    }

    #[tokio::test]
    async fn fallback_names_the_lexical_model_when_the_primary_misbehaves() {
        let embedder = FallbackEmbedder::new(Arc::new(Broken));
        let (model, vectors) = embedder.embed_with_model(&["a b".into()]).await.unwrap();
        assert_eq!(model, LEXICAL_MODEL);
        assert_eq!(vectors[0].len(), LEXICAL_DIMENSIONS);

        let chunk = Chunk {
            kind: ChunkKind::Error,
            text: "x y".into(),
        };
        let embedded = embedder.embed_chunks(vec![chunk]).await.unwrap();
        assert_eq!(embedded.model(), LEXICAL_MODEL);
    }

    struct Constant;

    #[async_trait]
    impl Embedder for Constant {
        fn model(&self) -> &str {
            "constant-v1"
        }
        fn dimensions(&self) -> usize {
            2
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            Ok(texts.iter().map(|_| vec![1.0, 0.0]).collect())
        }
    }

    #[tokio::test]
    async fn fallback_keeps_the_primary_model_when_it_works() {
        let embedder = FallbackEmbedder::new(Arc::new(Constant));
        let (model, vectors) = embedder.embed_with_model(&["a".into()]).await.unwrap();
        assert_eq!(
            (model.as_str(), vectors),
            ("constant-v1", vec![vec![1.0, 0.0]])
        );
    }

    #[test]
    fn vectors_with_nan_are_refused() {
        let err = check_vectors("m", 2, 1, &[vec![0.5, f32::NAN]]).unwrap_err();
        assert_eq!(err, EmbedError::NotFinite { model: "m".into() });
    }

    #[test]
    fn embedded_chunks_refuse_vectors_of_the_wrong_length() {
        let chunk = Chunk {
            kind: ChunkKind::Error,
            text: "x".into(),
        };
        let err = EmbeddedChunks::new("m", 4, vec![chunk], vec![vec![1.0; 3]]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"embedding model "m" returned a vector of 3 dimensions, not 4"#
        );
    }
}
