//! The embeddings server as a memory [`Embedder`], so memory never calls the network itself.
//!
//! The vector length is configured, or learned from the server's first answer and held from
//! then on: a server that later answers with another length (another model behind the same
//! name) is refused, so its vectors never mix with the stored ones.

use async_trait::async_trait;
use smartworker_memory::{EmbedError, Embedder};
use smartworker_model::EmbedClient;
use std::sync::OnceLock;

/// An OpenAI-compatible embeddings server.
pub struct RemoteEmbedder {
    client: EmbedClient,
    configured: Option<usize>,
    learned: OnceLock<usize>,
}

impl RemoteEmbedder {
    /// Wraps a client whose vector length is learned from its first answer; until then
    /// [`Embedder::dimensions`] is 0.
    pub fn new(client: EmbedClient) -> RemoteEmbedder {
        RemoteEmbedder {
            client,
            configured: None,
            learned: OnceLock::new(),
        }
    }

    /// Wraps a client whose vectors must have `dimensions` components; others are refused.
    pub fn with_dimensions(client: EmbedClient, dimensions: usize) -> RemoteEmbedder {
        RemoteEmbedder {
            configured: Some(dimensions),
            ..RemoteEmbedder::new(client)
        }
    }

    /// Checks the answer's length against the configured or learned one, learning it first.
    fn check_length(&self, vectors: &[Vec<f32>]) -> Result<(), EmbedError> {
        let Some(first) = vectors.first() else {
            return Ok(());
        };
        let expected = match self.configured {
            Some(d) => d,
            None => *self.learned.get_or_init(|| {
                tracing::info!(
                    model = self.model(),
                    dimensions = first.len(),
                    "embedding size learned"
                );
                first.len()
            }),
        };
        if first.len() != expected {
            return Err(EmbedError::WrongDimensions {
                model: self.model().to_owned(),
                expected,
                got: first.len(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Embedder for RemoteEmbedder {
    fn model(&self) -> &str {
        &self.client.config().model
    }

    fn dimensions(&self) -> usize {
        self.configured
            .or_else(|| self.learned.get().copied())
            .unwrap_or(0)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let vectors = self
            .client
            .embed(texts)
            .await
            .map_err(|e| EmbedError::Failed {
                model: self.model().to_owned(),
                reason: e.to_string(),
            })?;
        // The client already refused answers of mixed lengths, so the first vector speaks for all.
        self.check_length(&vectors)?;
        Ok(vectors)
    }
}
