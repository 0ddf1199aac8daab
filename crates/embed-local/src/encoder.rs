//! The sentence encoder: a BERT model run with candle on the CPU, mean pooling over the real
//! tokens (padding excluded) and L2 normalisation, as sentence-transformers configures
//! all-MiniLM-L6-v2.

use crate::error::LocalEmbedError;
use crate::files::{KnownModel, ModelFiles};
use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use smartworker_memory::{EmbedError, Embedder};
use std::path::Path;
use std::sync::Arc;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// How many texts go through the encoder at once. Texts of one batch are padded to the
/// longest, so small batches waste little on a short text next to a long one.
const BATCH_SIZE: usize = 16;

/// A sentence-embedding model loaded from a local directory, run on the CPU.
///
/// Cloning is cheap and shares the loaded model.
#[derive(Clone)]
pub struct LocalEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    model: KnownModel,
    bert: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl LocalEmbedder {
    /// Loads the model in `dir` after checking its files' hashes.
    ///
    /// # Errors
    /// A missing or unpinned file, an unparsable config or tokenizer, or weights that do not
    /// fit the config.
    pub fn load(dir: &Path) -> Result<LocalEmbedder, LocalEmbedError> {
        let files = ModelFiles::read(dir)?;
        let model = files.model;
        let config: Config =
            serde_json::from_slice(&files.config).map_err(|e| LocalEmbedError::Invalid {
                path: dir.join("config.json"),
                reason: e.to_string(),
            })?;
        let tokenizer = load_tokenizer(dir, &files.tokenizer, model.max_tokens)?;

        let device = Device::Cpu;
        let tensor_error = |e: candle_core::Error| tensor(model.name, &e);
        let vb = VarBuilder::from_buffered_safetensors(files.weights, DType::F32, &device)
            .map_err(tensor_error)?;
        let bert = BertModel::load(vb, &config).map_err(tensor_error)?;
        tracing::info!(model = model.name, dir = %dir.display(), "local embedding model loaded");

        let inner = Inner {
            model,
            bert,
            tokenizer,
            device,
        };
        Ok(LocalEmbedder {
            inner: Arc::new(inner),
        })
    }

    /// The pinned model the directory holds.
    pub fn known_model(&self) -> KnownModel {
        self.inner.model
    }

    /// The token ids the model sees for `text`, `[CLS]` and `[SEP]` included.
    ///
    /// # Errors
    /// [`LocalEmbedError::Tokenize`].
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, LocalEmbedError> {
        let encoding = self
            .inner
            .tokenizer
            .encode(text, true)
            .map_err(|e| self.inner.tokenize_error(&*e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// One unit vector per text, on the calling thread (it is CPU-bound; the async
    /// [`Embedder::embed`] runs it on the blocking pool).
    ///
    /// # Errors
    /// [`LocalEmbedError::Tokenize`] or [`LocalEmbedError::Tensor`].
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, LocalEmbedError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH_SIZE) {
            vectors.extend(self.inner.embed_batch(batch)?);
        }
        Ok(vectors)
    }
}

impl Inner {
    fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, LocalEmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| self.tokenize_error(&*e))?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let masks: Vec<&[u32]> = encodings.iter().map(|e| e.get_attention_mask()).collect();
        self.encode(&ids, &masks)
            .map_err(|e| tensor(self.model.name, &e))
    }

    /// Runs the encoder on a padded batch and pools each row into a unit vector.
    fn encode(&self, ids: &[&[u32]], masks: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let ids = matrix(ids, &self.device)?;
        let mask = matrix(masks, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.bert.forward(&ids, &token_types, Some(&mask))?;

        // Mean over the real tokens only: padding must not pull a short text's vector.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;

        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        mean.broadcast_div(&norm)?.to_vec2::<f32>()
    }

    fn tokenize_error(&self, err: &(dyn std::error::Error + Send + Sync)) -> LocalEmbedError {
        LocalEmbedError::Tokenize {
            model: self.model.name,
            reason: err.to_string(),
        }
    }
}

/// A `rows × columns` tensor from rows of equal length (the tokenizer padded them).
fn matrix(rows: &[&[u32]], device: &Device) -> candle_core::Result<Tensor> {
    let columns = rows.first().map_or(0, |r| r.len());
    let data: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(data, (rows.len(), columns), device)
}

/// The tokenizer, padding each batch to its longest text and cutting texts at `max_tokens`.
fn load_tokenizer(
    dir: &Path,
    bytes: &[u8],
    max_tokens: usize,
) -> Result<Tokenizer, LocalEmbedError> {
    let invalid = |reason: String| LocalEmbedError::Invalid {
        path: dir.join("tokenizer.json"),
        reason,
    };
    let mut tokenizer = Tokenizer::from_bytes(bytes).map_err(|e| invalid(e.to_string()))?;

    // The shipped tokenizer pads every text to a fixed length; batch-longest pads less and the
    // attention mask keeps padding out of the result either way.
    let padding = PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..PaddingParams::default()
    };
    tokenizer.with_padding(Some(padding));
    let truncation = TruncationParams {
        max_length: max_tokens,
        ..TruncationParams::default()
    };
    tokenizer
        .with_truncation(Some(truncation))
        .map_err(|e| invalid(e.to_string()))?;
    Ok(tokenizer)
}

fn tensor(model: &'static str, err: &candle_core::Error) -> LocalEmbedError {
    LocalEmbedError::Tensor {
        model,
        reason: err.to_string(),
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        self.inner.model.name
    }

    fn dimensions(&self) -> usize {
        self.inner.model.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let this = self.clone();
        let texts = texts.to_vec();
        let model = self.inner.model.name;
        let failed = |reason: String| EmbedError::Failed {
            model: model.to_owned(),
            reason,
        };
        tokio::task::spawn_blocking(move || this.embed_blocking(&texts))
            .await
            .map_err(|e| failed(format!("embedding task failed: {e}")))?
            .map_err(|e| failed(e.to_string()))
    }
}
