//! The chat completions client: sends a conversation, and accepts a reply only when it carries
//! non-empty assistant text within the size limit.

use crate::error::ModelError;
use crate::http::Endpoint;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long [`ModelClient::probe`] waits at most, whatever the chat timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the chat model is and how to call it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The OpenAI-compatible base URL, including `/v1`.
    pub base_url: String,
    /// The model name sent with every request.
    pub model: String,
    /// Sent as a bearer token when set.
    pub api_key: Option<String>,
    /// The longest a whole request may take, reply included.
    pub timeout: Duration,
    /// The most tokens the model may generate for one reply.
    pub max_tokens: u32,
    /// Sampling temperature; low, because fixes should be boring.
    pub temperature: f32,
    /// Replies with a larger body are refused.
    pub max_reply_bytes: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            base_url: "http://localhost:8100/v1".to_owned(),
            model: "qwen2.5-coder-3b-instruct".to_owned(),
            api_key: None,
            timeout: Duration::from_secs(120),
            max_tokens: 2048,
            temperature: 0.2,
            max_reply_bytes: 256 * 1024,
        }
    }
}

/// Who says a message in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// What we ask.
    User,
    /// What the model answered earlier.
    Assistant,
}

/// One message of a conversation, as the chat completions API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who says it.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message, for replaying an earlier answer.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// Token counts as the server reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens the model generated.
    pub completion_tokens: u32,
    /// Both together.
    pub total_tokens: u32,
}

/// A checked reply of the chat model.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    /// The assistant's text, never empty. Untrusted: parse it, never run it.
    pub content: String,
    /// The model the server says answered, or the configured one when it says nothing.
    pub model: String,
    /// Token counts, when the server sent readable ones.
    pub usage: Option<Usage>,
    /// How long the call took, from sending to a checked reply.
    pub elapsed: Duration,
    /// Why generation stopped (`stop`, `length`, ...), when the server said; `length` means the
    /// content was cut at `max_tokens`.
    pub finish_reason: Option<String>,
}

/// A client for one OpenAI-compatible chat completions server.
#[derive(Debug, Clone)]
pub struct ModelClient {
    config: ModelConfig,
    endpoint: Endpoint,
}

impl ModelClient {
    /// Checks the configuration and builds the client; nothing is sent yet.
    ///
    /// # Errors
    /// [`ModelError::Config`] for a base URL that is not http(s), an empty model name, a zero
    /// timeout or reply limit, or a temperature outside 0..=2.
    pub fn new(config: ModelConfig) -> Result<Self, ModelError> {
        if config.model.trim().is_empty() {
            return Err(ModelError::Config {
                reason: "model name is empty".to_owned(),
            });
        }
        if !(0.0..=2.0).contains(&config.temperature) {
            return Err(ModelError::Config {
                reason: format!("temperature {} is outside 0..=2", config.temperature),
            });
        }
        let endpoint = Endpoint::new(
            &config.base_url,
            config.api_key.clone(),
            config.timeout,
            config.max_reply_bytes,
        )?;
        Ok(ModelClient { config, endpoint })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Asks the model to continue the conversation.
    ///
    /// # Errors
    /// Every failure is a [`ModelError`] naming what went wrong; no server reply panics.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the request; nothing is left half-done on our side.
    pub async fn chat(&self, messages: &[ChatMessage]) -> Result<ChatReply, ModelError> {
        let started = Instant::now();
        let request = ChatRequest {
            model: &self.config.model,
            messages,
            max_tokens: self.config.max_tokens,
            temperature: self.config.temperature,
            stream: false,
        };
        tracing::debug!(
            model = %self.config.model,
            messages = messages.len(),
            "sending chat completion request"
        );

        let body = self
            .endpoint
            .post_json("chat/completions", &request)
            .await?;
        let mut reply = parse_chat_reply(&body, &self.config.model)?;
        reply.elapsed = started.elapsed();
        tracing::debug!(
            model = %reply.model,
            elapsed_ms = reply.elapsed.as_millis() as u64,
            completion_tokens = reply.usage.map(|u| u.completion_tokens),
            "chat completion received"
        );
        Ok(reply)
    }

    /// Checks that a server answers `GET {base}/models`, waiting at most five seconds.
    ///
    /// # Errors
    /// [`ModelError::Unreachable`] when nothing listens, with a message saying how to start
    /// a server; any other [`ModelError`] when something answers but not like an API server.
    pub async fn probe(&self) -> Result<(), ModelError> {
        probe(&self.endpoint).await
    }
}

/// `GET {base}/models` must answer 2xx with a JSON object.
pub(crate) async fn probe(endpoint: &Endpoint) -> Result<(), ModelError> {
    let body = endpoint.get("models", PROBE_TIMEOUT).await?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(_)) => Ok(()),
        Ok(_) => Err(ModelError::malformed("model list is not a JSON object")),
        Err(err) => Err(ModelError::malformed(format!(
            "model list is not JSON: {err}"
        ))),
    }
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    max_tokens: u32,
    temperature: f32,
    stream: bool,
}

/// The parts of a chat completion we read. Everything else, and the type of anything that is
/// only informative, is left loose so an odd server does not fail a good answer.
#[derive(Deserialize)]
struct CompletionBody {
    #[serde(default)]
    model: Value,
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Value,
    #[serde(default)]
    error: Value,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    finish_reason: Value,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Value,
}

/// Checks a chat completion body and takes the first choice's text out of it.
fn parse_chat_reply(body: &[u8], configured_model: &str) -> Result<ChatReply, ModelError> {
    let parsed: CompletionBody = serde_json::from_slice(body).map_err(|err| {
        ModelError::malformed(format!("chat completion is not valid JSON: {err}"))
    })?;

    // Some servers answer 200 with an error object instead of a completion.
    if !parsed.error.is_null() {
        let message = parsed.error.get("message").and_then(Value::as_str);
        let message = message.map_or_else(|| parsed.error.to_string(), str::to_owned);
        return Err(ModelError::malformed(format!(
            "reply carries an error: {message}"
        )));
    }

    let Some(choices) = parsed.choices else {
        return Err(ModelError::malformed("chat completion has no choices"));
    };
    let Some(first) = choices.into_iter().next() else {
        return Err(ModelError::malformed(
            "chat completion has an empty choices list",
        ));
    };
    let Some(message) = first.message else {
        return Err(ModelError::malformed("first choice has no message"));
    };
    let Value::String(content) = message.content else {
        return Err(ModelError::malformed(
            "first choice's message has no text content",
        ));
    };
    if content.trim().is_empty() {
        return Err(ModelError::malformed(
            "first choice's message content is empty",
        ));
    }

    Ok(ChatReply {
        content,
        model: parsed
            .model
            .as_str()
            .map_or_else(|| configured_model.to_owned(), str::to_owned),
        usage: serde_json::from_value(parsed.usage).ok(),
        elapsed: Duration::ZERO,
        finish_reason: first.finish_reason.as_str().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(body: &str) -> String {
        match parse_chat_reply(body.as_bytes(), "m") {
            Ok(reply) => panic!("expected an error, got {reply:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn reply_without_model_or_usage_falls_back_to_configured_model() {
        let body = r#"{"choices":[{"message":{"content":"hi"}}]}"#;
        let reply = parse_chat_reply(body.as_bytes(), "qwen").expect("valid reply");
        assert_eq!(reply.content, "hi");
        assert_eq!(reply.model, "qwen");
        assert_eq!(reply.usage, None);
        assert_eq!(reply.finish_reason, None);
    }

    #[test]
    fn odd_usage_is_ignored_rather_than_failing_the_reply() {
        let body = r#"{"model":7,"usage":{"prompt_tokens":"many"},
                       "choices":[{"message":{"content":"ok"},"finish_reason":"length"}]}"#;
        let reply = parse_chat_reply(body.as_bytes(), "m").expect("valid reply");
        assert_eq!(reply.usage, None);
        assert_eq!(reply.model, "m");
        assert_eq!(reply.finish_reason.as_deref(), Some("length"));
    }

    #[test]
    fn malformed_replies_name_what_is_missing() {
        let cases = [
            (
                "nope",
                "model server sent a malformed reply: chat completion is not valid JSON: expected ident at line 1 column 2",
            ),
            (
                "[]",
                "model server sent a malformed reply: chat completion has no choices",
            ),
            (
                "{}",
                "model server sent a malformed reply: chat completion has no choices",
            ),
            (
                r#"{"choices":[]}"#,
                "model server sent a malformed reply: chat completion has an empty choices list",
            ),
            (
                r#"{"choices":[{}]}"#,
                "model server sent a malformed reply: first choice has no message",
            ),
            (
                r#"{"choices":[{"message":{"content":null}}]}"#,
                "model server sent a malformed reply: first choice's message has no text content",
            ),
            (
                r#"{"choices":[{"message":{"content":"  \n"}}]}"#,
                "model server sent a malformed reply: first choice's message content is empty",
            ),
            (
                r#"{"error":{"message":"model not loaded"}}"#,
                "model server sent a malformed reply: reply carries an error: model not loaded",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse_err(body), expected, "body {body}");
        }
    }

    #[test]
    fn temperature_out_of_range_is_refused() {
        let config = ModelConfig {
            temperature: f32::NAN,
            ..ModelConfig::default()
        };
        let err = ModelClient::new(config).expect_err("nan temperature");
        assert_eq!(
            err.to_string(),
            "invalid model client configuration: temperature NaN is outside 0..=2"
        );
    }
}
