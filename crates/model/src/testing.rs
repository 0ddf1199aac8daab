//! A scripted OpenAI-compatible server on 127.0.0.1, for tests that need a model without
//! running one: chat replies come from a queue, embeddings are deterministic, and every request
//! body is recorded so a test can check what the model was sent.
//!
//! Built only with the `testing` feature.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The dimension of the vectors [`ScriptedModelServer::start`] answers embeddings with.
pub const DEFAULT_DIMENSIONS: usize = 16;

/// One scripted answer of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptedReply {
    /// A well-formed chat completion whose assistant message is this text. On the embeddings
    /// route it stands for the usual deterministic vectors.
    Content(String),
    /// This status and raw body, sent as they are (for 500s, malformed JSON, huge bodies).
    Raw {
        /// The HTTP status code.
        status: u16,
        /// The body, sent as `application/json` whatever it holds.
        body: String,
    },
    /// Waits, then sends the inner reply (for timeouts).
    Slow {
        /// How long to wait before answering.
        delay: Duration,
        /// What to answer after the wait.
        reply: Box<ScriptedReply>,
    },
}

impl ScriptedReply {
    /// A chat completion carrying `content`.
    pub fn content(content: impl Into<String>) -> Self {
        ScriptedReply::Content(content.into())
    }

    /// A raw reply with this status and body.
    pub fn raw(status: u16, body: impl Into<String>) -> Self {
        ScriptedReply::Raw {
            status,
            body: body.into(),
        }
    }

    /// The same reply, sent only after `delay`.
    pub fn after(self, delay: Duration) -> Self {
        ScriptedReply::Slow {
            delay,
            reply: Box::new(self),
        }
    }
}

#[derive(Default)]
struct Script {
    chat_replies: VecDeque<ScriptedReply>,
    embedding_replies: VecDeque<ScriptedReply>,
    chat_requests: Vec<Value>,
    embedding_requests: Vec<Value>,
    embedding_authorizations: Vec<Option<String>>,
    dimensions: usize,
}

type Shared = Arc<Mutex<Script>>;

/// An OpenAI-compatible server bound to 127.0.0.1 on a free port; it stops when dropped.
///
/// Routes: `GET /v1/models`, `POST /v1/chat/completions` (answers from the queue of scripted
/// replies, or 500 when the queue is empty), `POST /v1/embeddings` (scripted replies first,
/// then deterministic vectors from [`deterministic_embedding`]).
pub struct ScriptedModelServer {
    addr: SocketAddr,
    script: Shared,
    task: JoinHandle<()>,
}

impl ScriptedModelServer {
    /// Starts a server whose embeddings have [`DEFAULT_DIMENSIONS`] dimensions.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with_dimensions(DEFAULT_DIMENSIONS).await
    }

    /// Starts a server whose embeddings have `dimensions` dimensions.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start_with_dimensions(dimensions: usize) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let script: Shared = Arc::new(Mutex::new(Script {
            dimensions: dimensions.max(1),
            ..Script::default()
        }));
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .with_state(script.clone());
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::warn!(error = %err, "scripted model server stopped");
            }
        });
        Ok(ScriptedModelServer { addr, script, task })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give a client, `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues a chat completion whose assistant message is `content`.
    pub fn push_content(&self, content: impl Into<String>) {
        self.push_reply(ScriptedReply::content(content));
    }

    /// Queues the next answer of the chat route.
    pub fn push_reply(&self, reply: ScriptedReply) {
        lock(&self.script).chat_replies.push_back(reply);
    }

    /// Queues the next answer of the embeddings route, before the deterministic ones.
    pub fn push_embeddings_reply(&self, reply: ScriptedReply) {
        lock(&self.script).embedding_replies.push_back(reply);
    }

    /// Every chat request body received, in order; bodies that were not JSON are kept as
    /// JSON strings.
    pub fn chat_requests(&self) -> Vec<Value> {
        lock(&self.script).chat_requests.clone()
    }

    /// How many chat requests arrived.
    pub fn chat_calls(&self) -> usize {
        lock(&self.script).chat_requests.len()
    }

    /// Every embeddings request body received, in order.
    pub fn embedding_requests(&self) -> Vec<Value> {
        lock(&self.script).embedding_requests.clone()
    }

    /// The `Authorization` header of every embeddings request, in order (`None` when absent).
    pub fn embedding_authorizations(&self) -> Vec<Option<String>> {
        lock(&self.script).embedding_authorizations.clone()
    }

    /// How many scripted chat replies are still queued.
    pub fn pending_replies(&self) -> usize {
        lock(&self.script).chat_replies.len()
    }
}

impl Drop for ScriptedModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A unit vector from the words of `text`: the same text always gives the same vector, and texts
/// sharing words point in similar directions, so similarity search behaves plausibly.
pub fn deterministic_embedding(text: &str, dimensions: usize) -> Vec<f32> {
    let dimensions = dimensions.max(1);
    let mut vector = vec![0.0f32; dimensions];
    let words = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty());
    for word in words {
        let hash = fnv1a(&word.to_lowercase());
        let slot = (hash % dimensions as u64) as usize;
        let sign = if hash & (1 << 63) == 0 { 1.0 } else { -1.0 };
        vector[slot] += sign;
    }

    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm == 0.0 {
        vector[0] = 1.0;
        return vector;
    }
    vector.iter_mut().for_each(|v| *v /= norm);
    vector
}

/// The body a real server sends for `texts` with vectors of `dimensions`, for scripting an
/// answer of another size than the server's own (`ScriptedReply::raw(200, body)`).
pub fn embeddings_body(texts: &[String], dimensions: usize) -> String {
    let request = json!({ "model": "scripted", "input": texts });
    embedding_list(&request, dimensions).to_string()
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A poisoned lock only means another test thread panicked; the script is still usable.
fn lock(script: &Shared) -> MutexGuard<'_, Script> {
    script
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn models() -> Response {
    let body = json!({
        "object": "list",
        "data": [{"id": "qwen2.5-coder-3b-instruct", "object": "model", "owned_by": "scripted"}],
    });
    json_response(200, body.to_string())
}

async fn chat(State(script): State<Shared>, body: String) -> Response {
    let request = parse_body(&body);
    let model = request["model"].as_str().unwrap_or("scripted").to_owned();
    let reply = {
        let mut script = lock(&script);
        script.chat_requests.push(request);
        script.chat_replies.pop_front()
    };
    let Some(reply) = reply else {
        return json_response(
            500,
            r#"{"error":{"message":"no scripted reply left"}}"#.into(),
        );
    };
    let call = lock(&script).chat_requests.len();
    answer(reply, |content| completion(&model, call, content)).await
}

async fn embeddings(State(script): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let request = parse_body(&body);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (reply, dimensions) = {
        let mut script = lock(&script);
        script.embedding_requests.push(request.clone());
        script.embedding_authorizations.push(authorization);
        (script.embedding_replies.pop_front(), script.dimensions)
    };
    let reply = reply.unwrap_or_else(|| ScriptedReply::content(""));
    answer(reply, |_| embedding_list(&request, dimensions)).await
}

/// Sends a scripted reply, turning `Content` into a body with `render`.
async fn answer(mut reply: ScriptedReply, render: impl Fn(&str) -> Value) -> Response {
    loop {
        match reply {
            ScriptedReply::Content(content) => {
                return json_response(200, render(&content).to_string());
            }
            ScriptedReply::Raw { status, body } => return json_response(status, body),
            ScriptedReply::Slow {
                delay,
                reply: inner,
            } => {
                tokio::time::sleep(delay).await;
                reply = *inner;
            }
        }
    }
}

fn parse_body(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()))
}

/// A chat completion shaped like the ones llama.cpp and vLLM send.
fn completion(model: &str, call: usize, content: &str) -> Value {
    let completion_tokens = content.split_whitespace().count();
    json!({
        "id": format!("chatcmpl-scripted-{call}"),
        "object": "chat.completion",
        "created": 1_700_000_000u64 + call as u64,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": completion_tokens,
            "total_tokens": 100 + completion_tokens,
        },
    })
}

fn embedding_list(request: &Value, dimensions: usize) -> Value {
    let inputs: Vec<String> = match &request["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => Vec::new(),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            json!({
                "object": "embedding",
                "index": index,
                "embedding": deterministic_embedding(text, dimensions),
            })
        })
        .collect();
    json!({
        "object": "list",
        "model": request["model"].as_str().unwrap_or("scripted"),
        "data": data,
        "usage": {"prompt_tokens": inputs.len(), "total_tokens": inputs.len()},
    })
}

fn json_response(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", "application/json")], body).into_response()
}
