//! The embeddings server as a memory [`Embedder`], so memory never calls the network itself.

use async_trait::async_trait;
use smartworker_memory::{EmbedError, Embedder};
use smartworker_model::EmbedClient;

/// Dimensions of the embedding models SmartWorker is commonly pointed at.
const KNOWN_DIMENSIONS: &[(&str, usize)] = &[
    ("bge-large-en-v1.5", 1024),
    ("bge-base-en-v1.5", 768),
    ("bge-small-en-v1.5", 384),
    ("all-MiniLM-L6-v2", 384),
    ("nomic-embed-text", 768),
    ("text-embedding-3-small", 1536),
    ("text-embedding-3-large", 3072),
];

/// An OpenAI-compatible embeddings server.
pub struct RemoteEmbedder {
    client: EmbedClient,
    dimensions: usize,
}

impl RemoteEmbedder {
    /// Wraps a client; the dimension comes from the model's name (1024 when unknown).
    // FIXME: read the dimension from configuration or the first reply; an unknown model of
    // another size is refused as wrong-shaped and the lexical fallback is used instead.
    pub fn new(client: EmbedClient) -> RemoteEmbedder {
        let model = client.config().model.clone();
        let dimensions = KNOWN_DIMENSIONS
            .iter()
            .find(|(name, _)| model.ends_with(name))
            .map_or(1024, |(_, d)| *d);
        RemoteEmbedder { client, dimensions }
    }
}

#[async_trait]
impl Embedder for RemoteEmbedder {
    fn model(&self) -> &str {
        &self.client.config().model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.client
            .embed(texts)
            .await
            .map_err(|e| EmbedError::Failed {
                model: self.model().to_owned(),
                reason: e.to_string(),
            })
    }
}
