//! The embeddings client: sends texts in batches, retries transient failures, and accepts only
//! one finite vector per text, all of one dimension.

use crate::error::ModelError;
use crate::http::Endpoint;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How many times a batch is tried again after a transient failure.
const RETRIES: u32 = 2;

/// The wait before the first retry; it doubles for each one after.
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// Where the embeddings model is and how to call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedConfig {
    /// The OpenAI-compatible base URL, including `/v1`.
    pub base_url: String,
    /// The model name sent with every request.
    pub model: String,
    /// Sent as a bearer token when set.
    pub api_key: Option<String>,
    /// The longest one batch request may take.
    pub timeout: Duration,
    /// How many texts go in one request.
    pub batch_size: usize,
    /// Replies with a larger body are refused.
    pub max_reply_bytes: usize,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            base_url: "http://localhost:8110/v1".to_owned(),
            model: "bge-large-en-v1.5".to_owned(),
            api_key: None,
            timeout: Duration::from_secs(60),
            batch_size: 32,
            max_reply_bytes: 32 * 1024 * 1024,
        }
    }
}

/// A client for one OpenAI-compatible embeddings server.
#[derive(Debug, Clone)]
pub struct EmbedClient {
    config: EmbedConfig,
    endpoint: Endpoint,
}

impl EmbedClient {
    /// Checks the configuration and builds the client; nothing is sent yet.
    ///
    /// # Errors
    /// [`ModelError::Config`] for a base URL that is not http(s), an empty model name, or a
    /// zero timeout, batch size or reply limit.
    pub fn new(config: EmbedConfig) -> Result<Self, ModelError> {
        if config.model.trim().is_empty() {
            return Err(ModelError::Config {
                reason: "embedding model name is empty".to_owned(),
            });
        }
        if config.batch_size == 0 {
            return Err(ModelError::Config {
                reason: "batch_size must be at least 1".to_owned(),
            });
        }
        let endpoint = Endpoint::new(
            &config.base_url,
            config.api_key.clone(),
            config.timeout,
            config.max_reply_bytes,
        )?;
        Ok(EmbedClient { config, endpoint })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &EmbedConfig {
        &self.config
    }

    /// Embeds every text, in order: the vector at index `i` belongs to `texts[i]`.
    ///
    /// # Errors
    /// The last [`ModelError`] of a batch that failed after its retries, or
    /// [`ModelError::Malformed`] when the server sends the wrong number of vectors, vectors of
    /// differing dimensions, an empty vector, or a value that is not finite.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.config.batch_size) {
            let batch_vectors = self.embed_batch_with_retries(batch).await?;
            vectors.extend(batch_vectors);
        }
        check_dimensions(&vectors)?;
        Ok(vectors)
    }

    /// Checks that a server answers `GET {base}/models`, waiting at most five seconds.
    ///
    /// # Errors
    /// As [`crate::ModelClient::probe`].
    pub async fn probe(&self) -> Result<(), ModelError> {
        crate::chat::probe(&self.endpoint).await
    }

    async fn embed_batch_with_retries(
        &self,
        batch: &[String],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut delay = RETRY_DELAY;
        let mut retries_left = RETRIES;
        loop {
            let err = match self.embed_batch(batch).await {
                Ok(vectors) => return Ok(vectors),
                Err(err) => err,
            };
            if retries_left == 0 || !err.is_transient() {
                return Err(err);
            }
            tracing::debug!(error = %err, retry_in_ms = delay.as_millis() as u64, "embedding batch failed");
            tokio::time::sleep(delay).await;
            retries_left -= 1;
            delay *= 2;
        }
    }

    async fn embed_batch(&self, batch: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let request = EmbedRequest {
            model: &self.config.model,
            input: batch,
        };
        let body = self.endpoint.post_json("embeddings", &request).await?;
        parse_embeddings(&body, batch.len())
    }
}

#[derive(Serialize)]
struct EmbedRequest<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Deserialize)]
struct EmbedBody {
    data: Vec<EmbedItem>,
}

#[derive(Deserialize)]
struct EmbedItem {
    embedding: Vec<f64>,
    #[serde(default)]
    index: Option<usize>,
}

/// Checks one batch's reply and puts its vectors in the order of the input.
fn parse_embeddings(body: &[u8], expected: usize) -> Result<Vec<Vec<f32>>, ModelError> {
    let parsed: EmbedBody = serde_json::from_slice(body)
        .map_err(|err| ModelError::malformed(format!("embeddings reply is not valid: {err}")))?;
    if parsed.data.len() != expected {
        return Err(ModelError::malformed(format!(
            "sent {expected} texts but got {} vectors",
            parsed.data.len()
        )));
    }

    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (position, item) in parsed.data.into_iter().enumerate() {
        // Servers may answer out of order; `index` says where each vector belongs.
        let index = item.index.unwrap_or(position);
        let vector = to_finite_f32(&item.embedding, index)?;
        let Some(slot) = slots.get_mut(index) else {
            return Err(ModelError::malformed(format!(
                "vector index {index} is outside the batch of {expected}"
            )));
        };
        if slot.replace(vector).is_some() {
            return Err(ModelError::malformed(format!(
                "vector index {index} appears twice"
            )));
        }
    }
    // With the count checked and no index twice, every slot is filled.
    Ok(slots.into_iter().flatten().collect())
}

fn to_finite_f32(values: &[f64], index: usize) -> Result<Vec<f32>, ModelError> {
    if values.is_empty() {
        return Err(ModelError::malformed(format!("vector {index} is empty")));
    }
    let mut vector = Vec::with_capacity(values.len());
    for &value in values {
        // A value past f32's range becomes infinite here, and is refused like one.
        let narrowed = value as f32;
        if !narrowed.is_finite() {
            return Err(ModelError::malformed(format!(
                "vector {index} holds a value that is not a finite f32: {value:e}"
            )));
        }
        vector.push(narrowed);
    }
    Ok(vector)
}

fn check_dimensions(vectors: &[Vec<f32>]) -> Result<(), ModelError> {
    let Some(first) = vectors.first() else {
        return Ok(());
    };
    let dimension = first.len();
    match vectors.iter().position(|v| v.len() != dimension) {
        None => Ok(()),
        Some(index) => Err(ModelError::malformed(format!(
            "vector {index} has {} dimensions where vector 0 has {dimension}",
            vectors[index].len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_put_back_in_input_order() {
        let body = r#"{"data":[{"index":1,"embedding":[2.0]},{"index":0,"embedding":[1.0]}]}"#;
        let vectors = parse_embeddings(body.as_bytes(), 2).expect("valid reply");
        assert_eq!(vectors, vec![vec![1.0], vec![2.0]]);
    }

    #[test]
    fn bad_embedding_replies_are_refused_with_a_reason() {
        let cases = [
            (r#"{"data":[]}"#, 1, "sent 1 texts but got 0 vectors"),
            (r#"{"data":[{"embedding":[]}]}"#, 1, "vector 0 is empty"),
            (
                r#"{"data":[{"embedding":[1e300]}]}"#,
                1,
                "vector 0 holds a value that is not a finite f32: 1e300",
            ),
            (
                r#"{"data":[{"index":3,"embedding":[1]}]}"#,
                1,
                "vector index 3 is outside the batch of 1",
            ),
            (
                r#"{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[1]}]}"#,
                2,
                "vector index 0 appears twice",
            ),
        ];
        for (body, expected, reason) in cases {
            let err = parse_embeddings(body.as_bytes(), expected).expect_err(body);
            assert_eq!(
                err.to_string(),
                format!("model server sent a malformed reply: {reason}")
            );
        }
    }

    #[test]
    fn vectors_of_differing_dimensions_are_refused() {
        let err = check_dimensions(&[vec![1.0, 2.0], vec![1.0]]).expect_err("mixed");
        assert_eq!(
            err.to_string(),
            "model server sent a malformed reply: vector 1 has 1 dimensions where vector 0 has 2"
        );
    }
}
