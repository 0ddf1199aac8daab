//! The HTTP API: JSON in and out, every error turned into a response in one place
//! ([`ApiError`]) with a stable machine-readable code and no internals.
//!
//! The routes of the TypeScript predecessor keep their meaning: `GET /` enqueues the demo job
//! and `POST /job` adds a job and waits for its outcome.

use crate::app::App;
use crate::config::{Secret, ServerConfig};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use smartworker_core::{BackendError, HEAL_QUEUE, Job, JobId, JobState, validate_queue_name};
use smartworker_memory::{GroupQuery, MemoryError};
use std::sync::Arc;
use std::time::Duration;
use tower_http::trace::TraceLayer;

/// The queue `GET /` enqueues on, as in the predecessor's sign-up demo.
pub const DEMO_QUEUE: &str = "signup";

/// How long `POST /job` waits for the outcome unless `?timeout_ms=` says otherwise.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// The longest wait a caller may ask for.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// Every way a request can fail, each with its status and stable code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The body is JSON of the wrong shape, or names a value that is refused.
    #[error("{0}")]
    InvalidBody(String),
    /// The body is over the configured limit.
    #[error("request body is larger than the limit of {0} bytes")]
    TooLarge(u64),
    /// The body is not declared as JSON.
    #[error("request body must be sent with content-type: application/json")]
    NotJson,
    /// The query string does not fit the route's parameters.
    #[error("query string is invalid: {0}")]
    InvalidQuery(String),
    /// A path segment cannot be read (it is not UTF-8 once decoded).
    #[error("path is invalid: {0}")]
    InvalidPath(String),
    /// No route has the path.
    #[error("no route for {0}")]
    NoRoute(String),
    /// The route exists but not with this method.
    #[error("method {0} is not allowed on {1}")]
    MethodNotAllowed(Method, String),
    /// No handler serves the queue.
    #[error("queue {0:?} has no handler; configure it under [queues.{0}]")]
    UnknownQueue(String),
    /// No job has the id.
    #[error("job {0} not found")]
    JobNotFound(String),
    /// The job was added but removed before its outcome could be read, usually by its own
    /// `removeOnComplete` or `removeOnFail` option.
    #[error(
        "job {0} was removed before its outcome could be read \
         (removeOnComplete and removeOnFail remove finished jobs)"
    )]
    JobRemoved(String),
    /// No fix has the id.
    #[error("fix {0} not found")]
    FixNotFound(String),
    /// No failure group has the id.
    #[error("failure group {0} not found")]
    GroupNotFound(String),
    /// A query vector cannot be compared with the stored vectors of its model.
    #[error("{0}")]
    EmbeddingMismatch(String),
    /// The memory store does not offer the operation.
    #[error("{0}")]
    NotSupported(String),
    /// The job is not in a state that allows the operation.
    #[error("{0}")]
    Conflict(String),
    /// The request lacks the configured bearer token, or carries another one.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The queue storage (the SQLite file, Redis) failed or cannot be reached; details go to
    /// the log. Usually passing (a restart of Redis), so clients may try again.
    #[error("the queue storage is unavailable; see the server log")]
    StorageUnavailable,
    /// The memory database cannot be reached right now (PostgreSQL down); writes wait in the
    /// local buffer, reads cannot be answered.
    #[error("the memory store is unreachable; try again later")]
    MemoryUnavailable,
    /// Something else failed; details go to the log, not the response.
    #[error("internal error; see the server log")]
    Internal,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::InvalidBody(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::NotJson => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_json"),
            ApiError::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            ApiError::InvalidPath(_) => (StatusCode::BAD_REQUEST, "invalid_path"),
            ApiError::NoRoute(_) => (StatusCode::NOT_FOUND, "no_route"),
            ApiError::MethodNotAllowed(..) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            ApiError::UnknownQueue(_) => (StatusCode::NOT_FOUND, "unknown_queue"),
            ApiError::JobNotFound(_) => (StatusCode::NOT_FOUND, "job_not_found"),
            ApiError::JobRemoved(_) => (StatusCode::GONE, "job_removed"),
            ApiError::FixNotFound(_) => (StatusCode::NOT_FOUND, "fix_not_found"),
            ApiError::GroupNotFound(_) => (StatusCode::NOT_FOUND, "group_not_found"),
            ApiError::EmbeddingMismatch(_) => (StatusCode::CONFLICT, "embedding_mismatch"),
            ApiError::NotSupported(_) => (StatusCode::NOT_IMPLEMENTED, "not_supported"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "wrong_state"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::StorageUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
            ApiError::MemoryUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "memory_unavailable"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = json!({ "error": { "code": code, "message": self.to_string() } });
        if matches!(self, ApiError::Unauthorized(_)) {
            return (status, [(header::WWW_AUTHENTICATE, "Bearer")], Json(body)).into_response();
        }
        (status, Json(body)).into_response()
    }
}

impl From<BackendError> for ApiError {
    fn from(err: BackendError) -> Self {
        match err {
            BackendError::NotFound(id) => ApiError::JobNotFound(id.0),
            BackendError::WrongState { .. } => ApiError::Conflict(err.to_string()),
            BackendError::Invalid(invalid) => ApiError::InvalidBody(invalid.to_string()),
            BackendError::Storage(reason) => {
                tracing::error!(error = %reason, "queue storage failed");
                ApiError::StorageUnavailable
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(err: QueryRejection) -> Self {
        ApiError::InvalidQuery(cause(&err))
    }
}

impl From<PathRejection> for ApiError {
    fn from(err: PathRejection) -> Self {
        ApiError::InvalidPath(cause(&err))
    }
}

/// What serde said about a rejected request, without axum's capitalised preamble.
fn cause(err: &(dyn std::error::Error + 'static)) -> String {
    err.source()
        .map_or_else(|| err.to_string(), ToString::to_string)
}

impl From<MemoryError> for ApiError {
    fn from(err: MemoryError) -> Self {
        match err {
            MemoryError::UnknownGroup(id) => ApiError::GroupNotFound(id.to_string()),
            MemoryError::DimensionMismatch { .. } | MemoryError::NotFinite(_) => {
                ApiError::EmbeddingMismatch(err.to_string())
            }
            MemoryError::Unsupported { .. } => ApiError::NotSupported(err.to_string()),
            MemoryError::Unavailable { .. } | MemoryError::Buffered { .. } => {
                tracing::warn!(error = %err, "memory store unreachable");
                ApiError::MemoryUnavailable
            }
            other => {
                tracing::error!(error = %other, "memory store failed");
                ApiError::Internal
            }
        }
    }
}

/// The shared state of the routes.
#[derive(Clone)]
struct Api {
    app: Arc<App>,
    limit: u64,
}

impl Api {
    /// Turns a JSON extraction failure into the matching error.
    fn body<T>(&self, body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
        match body {
            Ok(Json(value)) => Ok(value),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::MalformedJson(cause(&e))),
            Err(JsonRejection::JsonDataError(e)) => Err(wrong_shape(cause(&e))),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::NotJson),
            Err(other) if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::TooLarge(self.limit))
            }
            Err(other) => Err(ApiError::MalformedJson(cause(&other))),
        }
    }
}

/// The router of the whole API.
///
/// When the configured host is off loopback, every route but `/healthz` (unknown ones
/// included) answers 401 unless the request carries `Authorization: Bearer <api_token>`;
/// without a configured token there, nothing but `/healthz` is served at all.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.cfg.server.max_body_bytes;
    let gate = Arc::new(Gate::for_server(&app.cfg.server));
    let api = Api { app, limit };
    Router::new()
        .route("/", get(enqueue_demo))
        .route("/job", post(add_and_wait))
        .route("/jobs/{id}", get(get_job))
        .route("/queues", get(list_queues))
        .route("/dead", get(list_dead))
        .route("/dead/{id}/retry", post(retry_dead))
        .route("/dead/{id}", axum::routing::delete(remove_dead))
        .route("/fixes", get(list_fixes))
        .route("/fixes/{id}", get(get_fix))
        .route("/failures", get(list_failures))
        .route("/failures/{id}", get(get_failure_group))
        .route("/failures/{id}/similar", get(similar_failure_groups))
        .route("/memory/search", get(search_memory))
        .route("/healthz", get(healthz))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(gate, require_token))
        .layer(DefaultBodyLimit::max(
            usize::try_from(limit).unwrap_or(usize::MAX),
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(api)
}

/// Who may use the API: anyone (loopback), holders of the token, or nobody (off loopback
/// without a token, which `serve` refuses before it gets here).
enum Gate {
    Open,
    Token(Secret),
    Closed,
}

impl Gate {
    fn for_server(server: &ServerConfig) -> Gate {
        match server.required_token() {
            Ok(None) => Gate::Open,
            Ok(Some(token)) => Gate::Token(token.clone()),
            Err(_) => Gate::Closed,
        }
    }
}

/// The health route always open, so a load balancer can probe without the token.
const OPEN_PATH: &str = "/healthz";

async fn require_token(
    State(gate): State<Arc<Gate>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if request.uri().path() == OPEN_PATH {
        return Ok(next.run(request).await);
    }
    let expected = match gate.as_ref() {
        Gate::Open => return Ok(next.run(request).await),
        Gate::Token(token) => token,
        Gate::Closed => return Err(ApiError::Unauthorized("the API has no token configured")),
    };
    let Some(given) = bearer(request.headers()) else {
        return Err(ApiError::Unauthorized(
            "missing bearer token; send Authorization: Bearer <APP_API_TOKEN>",
        ));
    };
    if !same_secret(given.as_bytes(), expected.expose().as_bytes()) {
        return Err(ApiError::Unauthorized("wrong bearer token"));
    }
    Ok(next.run(request).await)
}

/// The token of an `Authorization: Bearer <token>` header (scheme matched in any case).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Compares in time that depends only on the lengths, never on where the bytes differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let diff = given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    diff == 0 && given.len() == expected.len()
}

/// The demo payload: a sign-up whose handler has a genuine bug, with healing asked for.
pub fn demo_payload() -> Value {
    json!({
        "email": "  Ada.Lovelace@Example.COM ",
        "name": "Ada Lovelace",
        "password": "analytical-engine",
        "reasoning_fix": true
    })
}

async fn enqueue_demo(State(api): State<Api>) -> Result<impl IntoResponse, ApiError> {
    if !api.app.knows_queue(DEMO_QUEUE) {
        return Err(ApiError::UnknownQueue(DEMO_QUEUE.to_owned()));
    }
    let job = api
        .app
        .new_job(DEMO_QUEUE, DEMO_QUEUE, demo_payload(), None);
    let id = api
        .app
        .backend
        .add(job.map_err(ApiError::InvalidBody)?)
        .await?;
    let body = json!({ "id": id, "queue": DEMO_QUEUE, "state": "waiting",
        "watch": format!("/jobs/{id}") });
    Ok((StatusCode::ACCEPTED, Json(body)))
}

/// The body of `POST /job`.
#[derive(Debug)]
struct AddJob {
    /// The job's name; also its queue when `queue` is not given.
    name: String,
    /// The queue, when it differs from the name.
    queue: Option<String>,
    /// The payload; null when not given.
    data: Value,
    /// Job options, overlaid on the queue's defaults.
    opts: Option<Value>,
}

/// The fields `POST /job` accepts.
const ADD_JOB_FIELDS: [&str; 4] = ["name", "queue", "data", "opts"];

impl AddJob {
    /// Reads the body by hand rather than by derive, so that an array is refused instead of
    /// read as a tuple, and no message names a Rust type.
    fn from_json(body: Value) -> Result<AddJob, ApiError> {
        let Value::Object(mut fields) = body else {
            return Err(wrong_shape(format!(
                "expected an object with \"name\", got {}",
                json_kind(&body)
            )));
        };
        if let Some(unknown) = fields
            .keys()
            .find(|k| !ADD_JOB_FIELDS.contains(&k.as_str()))
        {
            return Err(wrong_shape(format!(
                "unknown field {unknown:?}; expected one of \"{}\"",
                ADD_JOB_FIELDS.join("\", \"")
            )));
        }
        let name = match fields.remove("name") {
            Some(Value::String(name)) => name,
            None => return Err(wrong_shape("missing field \"name\"".to_owned())),
            Some(other) => return Err(not_a_string("name", &other)),
        };
        let queue = match fields.remove("queue") {
            None | Some(Value::Null) => None,
            Some(Value::String(queue)) => Some(queue),
            Some(other) => return Err(not_a_string("queue", &other)),
        };
        Ok(AddJob {
            name,
            queue,
            data: fields.remove("data").unwrap_or(Value::Null),
            opts: fields.remove("opts").filter(|opts| !opts.is_null()),
        })
    }
}

fn wrong_shape(message: String) -> ApiError {
    ApiError::InvalidBody(format!("request body has the wrong shape: {message}"))
}

fn not_a_string(field: &str, value: &Value) -> ApiError {
    wrong_shape(format!(
        "{field:?} must be a string, not {}",
        json_kind(value)
    ))
}

/// How messages name a JSON value's type.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    timeout_ms: Option<u64>,
}

async fn add_and_wait(
    State(api): State<Api>,
    wait: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Query(wait) = wait?;
    let req = AddJob::from_json(api.body(body)?)?;
    let queue = producer_queue(&api.app, &req)?;
    let job = api.app.new_job(&queue, &req.name, req.data, req.opts);
    let id = api
        .app
        .backend
        .add(job.map_err(ApiError::InvalidBody)?)
        .await?;
    let timeout = wait
        .timeout_ms
        .map_or(DEFAULT_WAIT, Duration::from_millis)
        .min(MAX_WAIT);
    let job = match api.app.backend.wait_finished(&id, timeout).await {
        Ok(job) => job,
        // The job this request added is gone: its retention removed it once it finished.
        Err(BackendError::NotFound(id)) => return Err(ApiError::JobRemoved(id.0)),
        Err(err) => return Err(err.into()),
    };
    Ok(outcome_response(&job))
}

/// The queue a `POST /job` body names: `queue`, or else `name`.
///
/// The name must be valid before it is looked up, so a typo is not reported as a missing
/// `[queues.…]` table that could never be written; the internal heal queue takes jobs only
/// from the backend, when a job that asked for healing fails for good.
fn producer_queue(app: &App, req: &AddJob) -> Result<String, ApiError> {
    let (queue, from_name) = match &req.queue {
        Some(queue) => (queue.clone(), false),
        None => (req.name.clone(), true),
    };
    if let Err(invalid) = validate_queue_name(&queue) {
        let hint = if from_name {
            " (\"name\" is the queue when \"queue\" is not given)"
        } else {
            ""
        };
        return Err(ApiError::InvalidBody(format!("{invalid}{hint}")));
    }
    if queue == HEAL_QUEUE {
        return Err(ApiError::InvalidBody(format!(
            "queue {queue:?} is internal: healing jobs are added when a job fails for good"
        )));
    }
    if !app.knows_queue(&queue) {
        return Err(ApiError::UnknownQueue(queue));
    }
    Ok(queue)
}

/// `POST /job`'s answer: the result, the error with every attempt, or "still running".
fn outcome_response(job: &Job) -> Response {
    let attempts = serde_json::to_value(&job.attempts).unwrap_or(Value::Null);
    match job.state {
        JobState::Completed => {
            let body = json!({ "id": job.id, "state": job.state, "result": job.result,
                "attempts": attempts });
            (StatusCode::OK, Json(body)).into_response()
        }
        JobState::Dead => {
            let body = json!({
                "id": job.id, "state": job.state,
                "error": { "code": "job_failed", "message": job.failed_reason },
                "attempts": attempts,
                "healing": job_heals(job),
            });
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
        _ => {
            let body = json!({ "id": job.id, "state": job.state,
                "watch": format!("/jobs/{}", job.id) });
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
    }
}

fn job_heals(job: &Job) -> bool {
    smartworker_core::autofix_requested(&job.opts, &job.data)
}

async fn get_job(State(api): State<Api>, id: PathId) -> Result<Json<Job>, ApiError> {
    let Path(id) = id?;
    let job = api.app.backend.get(&JobId(id.clone())).await?;
    job.map(Json).ok_or(ApiError::JobNotFound(id))
}

async fn list_queues(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    let mut names: Vec<String> = api.app.handlers.keys().cloned().collect();
    for queue in api.app.backend.queues().await? {
        if !names.contains(&queue) {
            names.push(queue);
        }
    }
    names.sort();
    let mut queues = Vec::with_capacity(names.len());
    for name in names {
        let counts = api.app.backend.counts(&name).await?;
        let handled = api.app.knows_queue(&name);
        queues.push(json!({ "name": name, "counts": counts, "has_handler": handled }));
    }
    Ok(Json(json!({ "queues": queues })))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    queue: Option<String>,
    limit: Option<usize>,
}

/// A list route's query, its rejection kept for [`ApiError`].
type ListParams = Result<Query<ListQuery>, QueryRejection>;

async fn list_dead(State(api): State<Api>, q: ListParams) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(100).min(1000);
    let queues = match q.queue {
        Some(queue) => vec![queue],
        None => api.app.backend.queues().await?,
    };
    let mut jobs = Vec::new();
    for queue in queues {
        jobs.extend(api.app.backend.list(&queue, JobState::Dead, limit).await?);
    }
    jobs.sort_by_key(|j| std::cmp::Reverse(j.finished_at));
    jobs.truncate(limit);
    Ok(Json(json!({ "jobs": jobs })))
}

async fn retry_dead(State(api): State<Api>, id: PathId) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    api.app.backend.retry_dead(&JobId(id.clone())).await?;
    Ok(Json(json!({ "id": id, "state": "waiting" })))
}

async fn remove_dead(State(api): State<Api>, id: PathId) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let job_id = JobId(id.clone());
    let job = api
        .app
        .backend
        .get(&job_id)
        .await?
        .ok_or(ApiError::JobNotFound(id.clone()))?;
    if job.state != JobState::Dead {
        return Err(ApiError::Conflict(format!(
            "job {id} is {}, not dead",
            job.state
        )));
    }
    api.app.backend.remove(&job_id).await?;
    Ok(Json(json!({ "id": id, "removed": true })))
}

async fn list_fixes(State(api): State<Api>, q: ListParams) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let fixes = api
        .app
        .memory
        .list_fixes(q.limit.unwrap_or(100).min(1000))
        .await?;
    Ok(Json(json!({ "fixes": fixes })))
}

async fn get_fix(State(api): State<Api>, id: PathId) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let Ok(number) = id.parse::<i64>() else {
        return Err(ApiError::FixNotFound(id));
    };
    let fix = api
        .app
        .memory
        .get_fix(number)
        .await?
        .ok_or(ApiError::FixNotFound(id))?;
    Ok(Json(
        serde_json::to_value(fix).map_err(|_| ApiError::Internal)?,
    ))
}

/// The most groups one page, one similar list or one search returns.
const MAX_GROUPS: usize = 200;

#[derive(Debug, Deserialize)]
struct FailuresQuery {
    limit: Option<usize>,
    before: Option<i64>,
    queue: Option<String>,
}

/// `GET /failures`: failure groups by last seen, newest first; `next_before` continues.
async fn list_failures(
    State(api): State<Api>,
    q: Result<Query<FailuresQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(50).min(MAX_GROUPS);
    // One more than the page, to know whether another page follows.
    let query = GroupQuery {
        limit: limit + 1,
        before: q.before,
        queue: q.queue,
    };
    let mut groups = api.app.memory.groups(query).await?;
    let more = groups.len() > limit;
    groups.truncate(limit);
    let next = groups.last().filter(|_| more).map(|g| g.group.last_seen);
    Ok(Json(json!({ "groups": groups, "next_before": next })))
}

/// A group id from the path; anything but an integer names no group.
fn group_id(id: PathId) -> Result<i64, ApiError> {
    let Path(id) = id?;
    id.parse::<i64>().map_err(|_| ApiError::GroupNotFound(id))
}

async fn get_failure_group(State(api): State<Api>, id: PathId) -> Result<Json<Value>, ApiError> {
    let id = group_id(id)?;
    let detail = api.app.memory.group_detail(id).await?;
    let detail = detail.ok_or_else(|| ApiError::GroupNotFound(id.to_string()))?;
    Ok(Json(
        serde_json::to_value(detail).map_err(|_| ApiError::Internal)?,
    ))
}

#[derive(Debug, Deserialize)]
struct SimilarQuery {
    k: Option<usize>,
}

async fn similar_failure_groups(
    State(api): State<Api>,
    id: PathId,
    q: Result<Query<SimilarQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = group_id(id)?;
    let Query(q) = q?;
    let k = q.k.unwrap_or(5).min(MAX_GROUPS);
    let similar = api.app.memory.similar_groups(id, k).await?;
    Ok(Json(json!({ "group_id": id, "similar": similar })))
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    q: Option<String>,
    k: Option<usize>,
}

/// `GET /memory/search?q=`: text in, failure groups out, full-text and vector rankings fused.
async fn search_memory(
    State(api): State<Api>,
    q: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = q?;
    let text = params.q.unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ApiError::InvalidQuery(
            "q is missing or empty; pass the words to search for, e.g. ?q=KeyError+email".into(),
        ));
    }
    let k = params.k.unwrap_or(10).min(MAX_GROUPS);
    let (model, hits) = api.app.search_failures(&text, k).await?;
    Ok(Json(
        json!({ "query": text, "embedding_model": model, "hits": hits }),
    ))
}

/// The id segment of a route, its rejection kept for [`ApiError`].
type PathId = Result<Path<String>, PathRejection>;

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute(format!("{method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(method, uri.path().to_owned())
}

async fn healthz(State(api): State<Api>) -> Result<Json<Value>, ApiError> {
    api.app.backend.queues().await?;
    // Jobs run on without memory (PostgreSQL's writes are buffered), so its absence degrades
    // the service rather than stopping it: 200, with the reason.
    let probe = tokio::time::timeout(HEALTH_PROBE, api.app.memory.ping()).await;
    let memory = match probe {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(err)) => format!("unavailable: {err}"),
        Err(_) => format!("unavailable: no answer within {} s", HEALTH_PROBE.as_secs()),
    };
    let status = if memory == "ok" { "ok" } else { "degraded" };
    Ok(Json(
        json!({ "status": status, "queue": "ok", "memory": memory }),
    ))
}

/// How long `/healthz` waits for the memory store.
const HEALTH_PROBE: std::time::Duration = std::time::Duration::from_secs(2);
