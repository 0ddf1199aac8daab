//! The HTTP API, driven through the router against a real app: a SQLite file in a temporary
//! directory, workers running Python handlers from `tests/fixtures/api`, and the memory store.
//!
//! Every error body must be exactly `{"error":{"code","message"}}`, and no bad request may store
//! a job or stop the server from answering the next one.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use expect_test::{Expect, expect};
use serde_json::{Value, json};
use smartworker::app::{App, Running};
use smartworker::config::{Config, LoadOptions};
use smartworker::server;
use smartworker_memory::{
    EmbeddedChunks, FailureInput, FixSource, LEXICAL_DIMENSIONS, LEXICAL_MODEL, NewFix,
};
use std::sync::Arc;
use tempfile::TempDir;
use tower::ServiceExt;

const BASE_TOML: &str = include_str!("fixtures/api/smartworker.toml");

const HANDLERS: [(&str, &str); 3] = [
    ("echo.py", include_str!("fixtures/api/handlers/echo.py")),
    ("charge.py", include_str!("fixtures/api/handlers/charge.py")),
    ("slow.py", include_str!("fixtures/api/handlers/slow.py")),
];

/// Keys whose values change from run to run; [`Api::check`] masks them. Job and fix ids stay:
/// every test opens a fresh file, which numbers them from 1.
const VOLATILE: [&str; 5] = [
    "created_at",
    "started_at",
    "finished_at",
    "run_at",
    "worker",
];

/// An app opened on a temporary project, and its router.
struct Api {
    tmp: TempDir,
    app: Arc<App>,
    router: Router,
}

impl Api {
    /// Opens the fixture configuration with `extra_toml` appended.
    fn open(extra_toml: &str) -> Api {
        let tmp = TempDir::new().unwrap();
        std::fs::create_dir(tmp.path().join("handlers")).unwrap();
        for (name, text) in HANDLERS {
            std::fs::write(tmp.path().join("handlers").join(name), text).unwrap();
        }
        let config_path = tmp.path().join("smartworker.toml");
        std::fs::write(&config_path, format!("{BASE_TOML}\n{extra_toml}")).unwrap();
        let cfg = Config::load(&LoadOptions {
            config_path: Some(config_path),
            cwd: tmp.path().to_owned(),
            env: vec![],
        })
        .unwrap();
        let app = Arc::new(App::open(cfg).unwrap());
        let router = server::router(Arc::clone(&app));
        Api { tmp, app, router }
    }

    /// Starts the workers, for tests that need jobs to run.
    fn start(&self) -> Running {
        self.app.start()
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, body }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send(request(Method::GET, uri, None, Body::empty()))
            .await
    }

    async fn delete(&self, uri: &str) -> Reply {
        self.send(request(Method::DELETE, uri, None, Body::empty()))
            .await
    }

    async fn post(&self, uri: &str, body: &Value) -> Reply {
        let body = Body::from(body.to_string());
        self.send(request(Method::POST, uri, Some("application/json"), body))
            .await
    }

    /// Total jobs stored in every queue, by summing `GET /queues`.
    async fn stored_jobs(&self) -> u64 {
        let reply = self.get("/queues").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let queues = reply.body["queues"].as_array().unwrap();
        queues
            .iter()
            .flat_map(|q| q["counts"].as_object().unwrap().values())
            .map(|n| n.as_u64().unwrap())
            .sum()
    }

    /// Renders a reply with volatile fields masked and the temporary root replaced.
    fn render(&self, reply: &Reply) -> String {
        let body = serde_json::to_string_pretty(&mask(reply.body.clone())).unwrap();
        let root = self.tmp.path().display().to_string();
        format!("{}\n{}\n", reply.status, body.replace(&root, "[root]"))
    }

    fn check(&self, reply: &Reply, expect: Expect) {
        expect.assert_eq(&self.render(reply));
    }
}

/// A response: its status and its body as JSON (a string when the body is not JSON).
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Value,
}

impl Reply {
    /// Asserts the body is exactly `{"error":{"code","message"}}` and returns `status code`.
    fn error(&self) -> String {
        let Some(error) = self.body.as_object().and_then(|b| b.get("error")) else {
            panic!("not an error body: {} {}", self.status, self.body);
        };
        assert_eq!(self.body.as_object().unwrap().len(), 1, "{}", self.body);
        let fields = error.as_object().unwrap();
        let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(keys, ["code", "message"], "{}", self.body);
        let message = fields["message"].as_str().unwrap();
        format!(
            "{} {}: {message}",
            self.status.as_u16(),
            fields["code"].as_str().unwrap()
        )
    }

    fn id(&self) -> String {
        self.body["id"].as_str().unwrap().to_owned()
    }
}

fn request(method: Method, uri: &str, content_type: Option<&str>, body: Body) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(content_type) = content_type {
        req = req.header(header::CONTENT_TYPE, content_type);
    }
    req.body(body).unwrap()
}

fn mask(value: Value) -> Value {
    match value {
        Value::Object(fields) => fields
            .into_iter()
            .map(|(k, v)| {
                let masked = match &v {
                    Value::Null => v,
                    _ if VOLATILE.contains(&k.as_str()) => json!(format!("[{k}]")),
                    _ => mask(v),
                };
                (k, masked)
            })
            .collect(),
        Value::Array(items) => items.into_iter().map(mask).collect(),
        other => other,
    }
}

#[tokio::test]
async fn post_job_returns_the_result_of_a_job_that_succeeds() {
    let api = Api::open("");
    let running = api.start();

    let reply = api
        .post("/job", &json!({"name": "echo", "data": {"user": "ada"}}))
        .await;

    api.check(
        &reply,
        expect![[r#"
            200 OK
            {
              "attempts": [
                {
                  "error": null,
                  "finished_at": "[finished_at]",
                  "number": 1,
                  "stack": null,
                  "started_at": "[started_at]",
                  "worker": "[worker]"
                }
              ],
              "id": "1",
              "result": {
                "echo": {
                  "user": "ada"
                }
              },
              "state": "completed"
            }
        "#]],
    );
    running.shutdown().await;
}

#[tokio::test]
async fn post_job_that_fails_every_attempt_answers_422_with_each_attempt_and_its_stack() {
    let api = Api::open("");
    let running = api.start();

    let reply = api
        .post("/job", &json!({"name": "charge", "data": {"card": "4242"}}))
        .await;

    api.check(&reply, expect![[r#"
        422 Unprocessable Entity
        {
          "attempts": [
            {
              "error": "ValueError: card 4242 was declined",
              "finished_at": "[finished_at]",
              "number": 1,
              "stack": "Traceback (most recent call last):\n  File \"[root]/handlers/charge.py\", line 11, in <module>\n    charge(job[\"data\"])\n  File \"[root]/handlers/charge.py\", line 7, in charge\n    raise ValueError(f\"card {data['card']} was declined\")\nValueError: card 4242 was declined\n",
              "started_at": "[started_at]",
              "worker": "[worker]"
            },
            {
              "error": "ValueError: card 4242 was declined",
              "finished_at": "[finished_at]",
              "number": 2,
              "stack": "Traceback (most recent call last):\n  File \"[root]/handlers/charge.py\", line 11, in <module>\n    charge(job[\"data\"])\n  File \"[root]/handlers/charge.py\", line 7, in charge\n    raise ValueError(f\"card {data['card']} was declined\")\nValueError: card 4242 was declined\n",
              "started_at": "[started_at]",
              "worker": "[worker]"
            }
          ],
          "error": {
            "code": "job_failed",
            "message": "ValueError: card 4242 was declined"
          },
          "healing": false,
          "id": "1",
          "state": "dead"
        }
    "#]]);
    running.shutdown().await;
}

#[tokio::test]
async fn post_job_says_a_job_its_own_retention_removed_is_gone() {
    let api = Api::open("");
    let running = api.start();
    let body = json!({"name": "echo", "data": 1, "opts": {"removeOnComplete": {"count": 0}}});

    let reply = api.post("/job", &body).await;

    api.check(&reply, expect![[r#"
        410 Gone
        {
          "error": {
            "code": "job_removed",
            "message": "job 1 was removed before its outcome could be read (removeOnComplete and removeOnFail remove finished jobs)"
          }
        }
    "#]]);
    running.shutdown().await;
}

#[tokio::test]
async fn post_job_answers_202_when_the_job_outlasts_the_wait_and_get_job_follows_it() {
    let api = Api::open("");
    let running = api.start();

    let reply = api
        .post(
            "/job?timeout_ms=50",
            &json!({"name": "slow", "data": {"seconds": 1}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.id();
    assert_eq!(reply.body["watch"], format!("/jobs/{id}"));
    assert!(
        matches!(reply.body["state"].as_str(), Some("waiting" | "active")),
        "{}",
        reply.body
    );

    let early = api.get(&format!("/jobs/{id}")).await;
    assert_eq!(early.status, StatusCode::OK, "{}", early.body);
    assert_eq!(
        (early.id(), &early.body["queue"]),
        (id.clone(), &json!("slow"))
    );
    assert!(early.body["result"].is_null(), "{}", early.body);

    let job = api
        .app
        .backend
        .wait_finished(&id.as_str().into(), std::time::Duration::from_secs(20))
        .await
        .unwrap();
    assert!(job.is_finished(), "{job:?}");
    api.check(
        &api.get(&format!("/jobs/{id}")).await,
        expect![[r#"
        200 OK
        {
          "attempts": [
            {
              "error": null,
              "finished_at": "[finished_at]",
              "number": 1,
              "stack": null,
              "started_at": "[started_at]",
              "worker": "[worker]"
            }
          ],
          "attempts_made": 1,
          "created_at": "[created_at]",
          "data": {
            "seconds": 1
          },
          "failed_reason": null,
          "finished_at": "[finished_at]",
          "id": "1",
          "name": "slow",
          "opts": {
            "attempts": 1,
            "autofix": false,
            "backoff": null,
            "delay": 0,
            "jobId": null,
            "priority": 0,
            "removeOnComplete": {
              "age_secs": null,
              "count": null
            },
            "removeOnFail": {
              "age_secs": null,
              "count": null
            },
            "timeout": null
          },
          "queue": "slow",
          "result": {
            "slept": 1
          },
          "run_at": "[run_at]",
          "state": "completed"
        }
    "#]],
    );
    running.shutdown().await;
}

#[tokio::test]
async fn bad_job_requests_are_refused_clearly_and_store_nothing() {
    let api = Api::open("");
    let big = json!({"name": "echo", "data": "x".repeat(2000)}).to_string();
    let cases: Vec<(&str, Request<Body>)> = vec![
        ("malformed json", json_request(r#"{"name": "echo","#)),
        ("empty body", json_request("")),
        (
            "text content type",
            request(
                Method::POST,
                "/job",
                Some("text/plain"),
                Body::from(r#"{"name":"echo"}"#),
            ),
        ),
        (
            "no content type",
            request(Method::POST, "/job", None, Body::from(r#"{"name":"echo"}"#)),
        ),
        ("body over the limit", json_request(&big)),
        ("missing name", json_request(r#"{"data": {}}"#)),
        ("name not a string", json_request(r#"{"name": 7}"#)),
        ("not an object", json_request(r#"["echo"]"#)),
        (
            "unknown field",
            json_request(r#"{"name": "echo", "payload": {}}"#),
        ),
        ("unknown queue", json_request(r#"{"name": "nope"}"#)),
        (
            "unknown queue field",
            json_request(r#"{"name": "x", "queue": "nope"}"#),
        ),
        (
            "invalid queue name",
            json_request(r#"{"name": "x", "queue": "a b"}"#),
        ),
        (
            "invalid name as queue",
            json_request(r#"{"name": "send mail"}"#),
        ),
        ("empty name", json_request(r#"{"name": ""}"#)),
        (
            "internal heal queue",
            json_request(r#"{"name": "heal", "queue": "smartworker-heal", "data": {}}"#),
        ),
        (
            "zero attempts",
            json_request(r#"{"name": "echo", "opts": {"attempts": 0}}"#),
        ),
        (
            "misspelt option",
            json_request(r#"{"name": "echo", "opts": {"atempts": 3}}"#),
        ),
        (
            "zero timeout",
            json_request(r#"{"name": "echo", "opts": {"timeout": 0}}"#),
        ),
        (
            "opts not an object",
            json_request(r#"{"name": "echo", "opts": [3]}"#),
        ),
        (
            "option of the wrong type",
            json_request(r#"{"name": "echo", "opts": {"attempts": "3"}}"#),
        ),
        (
            "integer job id",
            json_request(r#"{"name": "echo", "opts": {"jobId": "42"}}"#),
        ),
        (
            "bad wait",
            request(
                Method::POST,
                "/job?timeout_ms=soon",
                Some("application/json"),
                Body::from(r#"{"name":"echo"}"#),
            ),
        ),
    ];

    let mut seen = String::new();
    for (label, req) in cases {
        let reply = api.send(req).await;
        seen.push_str(&format!("{label}: {}\n", reply.error()));
        let health = api.get("/healthz").await;
        assert_eq!(
            health.status,
            StatusCode::OK,
            "after {label}: {}",
            health.body
        );
    }

    expect![[r#"
        malformed json: 400 malformed_json: request body is not valid JSON: EOF while parsing a value at line 1 column 16
        empty body: 400 malformed_json: request body is not valid JSON: EOF while parsing a value at line 1 column 0
        text content type: 415 not_json: request body must be sent with content-type: application/json
        no content type: 415 not_json: request body must be sent with content-type: application/json
        body over the limit: 413 body_too_large: request body is larger than the limit of 1024 bytes
        missing name: 422 invalid_body: request body has the wrong shape: missing field "name"
        name not a string: 422 invalid_body: request body has the wrong shape: "name" must be a string, not a number
        not an object: 422 invalid_body: request body has the wrong shape: expected an object with "name", got an array
        unknown field: 422 invalid_body: request body has the wrong shape: unknown field "payload"; expected one of "name", "queue", "data", "opts"
        unknown queue: 404 unknown_queue: queue "nope" has no handler; configure it under [queues.nope]
        unknown queue field: 404 unknown_queue: queue "nope" has no handler; configure it under [queues.nope]
        invalid queue name: 422 invalid_body: queue name "a b" is invalid: use at most 128 letters, digits, '-', '_' or '.'
        invalid name as queue: 422 invalid_body: queue name "send mail" is invalid: use at most 128 letters, digits, '-', '_' or '.' ("name" is the queue when "queue" is not given)
        empty name: 422 invalid_body: queue name is empty ("name" is the queue when "queue" is not given)
        internal heal queue: 422 invalid_body: queue "smartworker-heal" is internal: healing jobs are added when a job fails for good
        zero attempts: 422 invalid_body: attempts must be at least 1
        misspelt option: 422 invalid_body: invalid job option "atempts": unknown field `atempts`, expected one of `attempts`, `backoff`, `delay`, `priority`, `timeout`, `removeOnComplete`, `removeOnFail`, `autofix`, `jobId`
        zero timeout: 422 invalid_body: timeout must be at least 1 ms; leave it out for no timeout
        opts not an object: 422 invalid_body: "opts" must be an object
        option of the wrong type: 422 invalid_body: invalid job option "attempts": invalid type: string "3", expected u32
        integer job id: 422 invalid_body: custom job id "42" is an integer; custom ids must not be integers
        bad wait: 400 invalid_query: query string is invalid: timeout_ms: invalid digit found in string
    "#]].assert_eq(&seen);
    assert_eq!(api.stored_jobs().await, 0);
}

fn json_request(body: &str) -> Request<Body> {
    request(
        Method::POST,
        "/job",
        Some("application/json"),
        Body::from(body.to_owned()),
    )
}

#[tokio::test]
async fn get_root_enqueues_the_demo_job_on_signup() {
    let api = Api::open("[queues.signup]\ncommand = [\"python3\", \"handlers/echo.py\"]\n");

    let reply = api.get("/").await;

    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.id();
    assert_eq!(reply.body["watch"], format!("/jobs/{id}"));
    api.check(
        &api.get(&format!("/jobs/{id}")).await,
        expect![[r#"
        200 OK
        {
          "attempts": [],
          "attempts_made": 0,
          "created_at": "[created_at]",
          "data": {
            "email": "  Ada.Lovelace@Example.COM ",
            "name": "Ada Lovelace",
            "password": "analytical-engine",
            "reasoning_fix": true
          },
          "failed_reason": null,
          "finished_at": null,
          "id": "1",
          "name": "signup",
          "opts": {
            "attempts": 1,
            "autofix": false,
            "backoff": null,
            "delay": 0,
            "jobId": null,
            "priority": 0,
            "removeOnComplete": {
              "age_secs": null,
              "count": null
            },
            "removeOnFail": {
              "age_secs": null,
              "count": null
            },
            "timeout": null
          },
          "queue": "signup",
          "result": null,
          "run_at": "[run_at]",
          "state": "waiting"
        }
    "#]],
    );
}

#[tokio::test]
async fn get_root_without_a_signup_queue_is_an_unknown_queue() {
    let api = Api::open("");

    let reply = api.get("/").await;

    expect![[
        r#"404 unknown_queue: queue "signup" has no handler; configure it under [queues.signup]"#
    ]]
    .assert_eq(&reply.error());
    assert_eq!(api.stored_jobs().await, 0);
}

#[tokio::test]
async fn queues_count_jobs_by_state() {
    let api = Api::open("");
    let running = api.start();
    assert_eq!(
        api.post("/job", &json!({"name": "echo"})).await.status,
        StatusCode::OK
    );
    let failed = api
        .post("/job", &json!({"name": "charge", "data": {"card": "1"}}))
        .await;
    assert_eq!(failed.status, StatusCode::UNPROCESSABLE_ENTITY);
    let later = json!({"name": "echo", "opts": {"delay": 600_000}});
    let reply = api.post("/job?timeout_ms=0", &later).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    running.shutdown().await;

    api.check(
        &api.get("/queues").await,
        expect![[r#"
        200 OK
        {
          "queues": [
            {
              "counts": {
                "active": 0,
                "completed": 0,
                "dead": 1,
                "delayed": 0,
                "waiting": 0
              },
              "has_handler": true,
              "name": "charge"
            },
            {
              "counts": {
                "active": 0,
                "completed": 1,
                "dead": 0,
                "delayed": 1,
                "waiting": 0
              },
              "has_handler": true,
              "name": "echo"
            },
            {
              "counts": {
                "active": 0,
                "completed": 0,
                "dead": 0,
                "delayed": 0,
                "waiting": 0
              },
              "has_handler": true,
              "name": "slow"
            },
            {
              "counts": {
                "active": 0,
                "completed": 0,
                "dead": 0,
                "delayed": 0,
                "waiting": 0
              },
              "has_handler": true,
              "name": "smartworker-heal"
            }
          ]
        }
    "#]],
    );
}

#[tokio::test]
async fn dead_jobs_are_listed_retried_and_removed() {
    let api = Api::open("");
    let running = api.start();
    let first = api
        .post("/job", &json!({"name": "charge", "data": {"card": "1"}}))
        .await;
    let second = api
        .post("/job", &json!({"name": "charge", "data": {"card": "2"}}))
        .await;
    assert_eq!(
        api.post("/job", &json!({"name": "echo"})).await.status,
        StatusCode::OK
    );
    running.shutdown().await;
    let (first, second) = (first.id(), second.id());

    let dead = api.get("/dead").await;
    let listed: Vec<&Value> = dead.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["id"])
        .collect();
    assert_eq!(listed, [&json!(second), &json!(first)], "newest first");
    let only_echo = api.get("/dead?queue=echo").await;
    assert_eq!(only_echo.body, json!({"jobs": []}));

    let retried = api.post(&format!("/dead/{first}/retry"), &json!({})).await;
    assert_eq!(retried.body, json!({"id": first, "state": "waiting"}));
    let job = api.get(&format!("/jobs/{first}")).await;
    assert_eq!(
        (&job.body["state"], &job.body["attempts_made"]),
        (&json!("waiting"), &json!(0))
    );
    assert_eq!(
        job.body["attempts"].as_array().unwrap().len(),
        2,
        "history is kept"
    );

    let removed = api.delete(&format!("/dead/{second}")).await;
    assert_eq!(removed.body, json!({"id": second, "removed": true}));

    let mut seen = String::new();
    for (label, reply) in [
        (
            "retry a waiting job",
            api.post(&format!("/dead/{first}/retry"), &json!({})).await,
        ),
        (
            "remove a waiting job",
            api.delete(&format!("/dead/{first}")).await,
        ),
        (
            "retry an unknown job",
            api.post("/dead/999/retry", &json!({})).await,
        ),
        (
            "remove a removed job",
            api.delete(&format!("/dead/{second}")).await,
        ),
        (
            "get a removed job",
            api.get(&format!("/jobs/{second}")).await,
        ),
    ] {
        seen.push_str(&format!("{label}: {}\n", reply.error()));
    }
    expect![[r#"
        retry a waiting job: 409 wrong_state: job 1 is waiting, not dead
        remove a waiting job: 409 wrong_state: job 1 is waiting, not dead
        retry an unknown job: 404 job_not_found: job 999 not found
        remove a removed job: 404 job_not_found: job 2 not found
        get a removed job: 404 job_not_found: job 2 not found
    "#]]
    .assert_eq(&seen);
    assert_eq!(
        api.stored_jobs().await,
        2,
        "the waiting job and the completed one"
    );
}

#[tokio::test]
async fn fixes_are_listed_once_recorded_and_shown_with_their_diff() {
    let api = Api::open("");
    let empty = api.get("/fixes").await;
    assert_eq!(
        (empty.status, &empty.body),
        (StatusCode::OK, &json!({"fixes": []}))
    );

    let id = record_fix(&api.app).await;

    api.check(
        &api.get("/fixes").await,
        expect![[r#"
        200 OK
        {
          "fixes": [
            {
              "created_at": "[created_at]",
              "failure_id": 1,
              "group_id": 1,
              "heal_job_id": null,
              "id": 1,
              "job_id": "7",
              "model": "test-model",
              "queue": "charge",
              "root_cause": "the handler refuses every card",
              "rounds": 1,
              "source": "model",
              "verified": true
            }
          ]
        }
    "#]],
    );
    api.check(&api.get(&format!("/fixes/{id}")).await, expect![[r#"
        200 OK
        {
          "attempts": [],
          "created_at": "[created_at]",
          "diff": "--- a/handlers/charge.py\n+++ b/handlers/charge.py\n@@ -5,2 +5,2 @@\n def charge(data):\n-    raise ValueError(f\"card {data['card']} was declined\")\n+    return {\"charged\": data[\"card\"]}\n",
          "edits_json": [
            {
              "path": "handlers/charge.py"
            }
          ],
          "failure_id": 1,
          "group_id": 1,
          "heal_job_id": null,
          "id": 1,
          "job_id": "7",
          "model": "test-model",
          "queue": "charge",
          "root_cause": "the handler refuses every card",
          "rounds": 1,
          "source": "model",
          "verified": true
        }
    "#]]);
    let mut seen = String::new();
    for uri in ["/fixes/abc", "/fixes/999", "/fixes/-1"] {
        seen.push_str(&format!("{uri}: {}\n", api.get(uri).await.error()));
    }
    expect![[r#"
        /fixes/abc: 404 fix_not_found: fix abc not found
        /fixes/999: 404 fix_not_found: fix 999 not found
        /fixes/-1: 404 fix_not_found: fix -1 not found
    "#]]
    .assert_eq(&seen);
}

/// Records a failure of the charge handler and a verified fix for it.
async fn record_fix(app: &App) -> i64 {
    let failure = FailureInput {
        job_id: "7".into(),
        queue: "charge".into(),
        job_name: "charge".into(),
        fingerprint: "python:ValueError:charge.py:charge".into(),
        error_type: "ValueError".into(),
        message: "card 4242 was declined".into(),
        stack: "Traceback (most recent call last):\nValueError: card 4242 was declined".into(),
        frames: vec![],
        payload: json!({"card": "4242"}),
    };
    let vectors = EmbeddedChunks::new(LEXICAL_MODEL, LEXICAL_DIMENSIONS, vec![], vec![]).unwrap();
    let stored = app.memory.record_failure(failure, vectors).await.unwrap();
    let diff = "--- a/handlers/charge.py\n+++ b/handlers/charge.py\n@@ -5,2 +5,2 @@\n \
                def charge(data):\n-    raise ValueError(f\"card {data['card']} was declined\")\n\
                +    return {\"charged\": data[\"card\"]}\n";
    let fix = NewFix {
        group_id: stored.group_id,
        failure_id: stored.failure_id,
        job_id: "7".into(),
        queue: "charge".into(),
        verified: true,
        root_cause: "the handler refuses every card".into(),
        diff: diff.into(),
        edits_json: json!([{"path": "handlers/charge.py"}]),
        source: FixSource::Model,
        model: "test-model".into(),
        rounds: 1,
        heal_job_id: None,
    };
    app.memory.record_fix(fix).await.unwrap()
}

#[tokio::test]
async fn healthz_answers_ok() {
    let api = Api::open("");

    let reply = api.get("/healthz").await;

    assert_eq!(
        (reply.status, reply.body),
        (
            StatusCode::OK,
            json!({"status": "ok", "queue": "ok", "memory": "ok"})
        )
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_with_an_error_body() {
    let api = Api::open("");
    let mut seen = String::new();
    let cases = [
        (
            "unknown route",
            request(Method::GET, "/nope", None, Body::empty()),
        ),
        (
            "wrong method",
            request(Method::GET, "/job", None, Body::empty()),
        ),
        (
            "bad query",
            request(Method::GET, "/dead?limit=many", None, Body::empty()),
        ),
        (
            "id not utf-8",
            request(Method::GET, "/jobs/%FF", None, Body::empty()),
        ),
    ];
    for (label, req) in cases {
        seen.push_str(&format!("{label}: {}\n", api.send(req).await.error()));
    }
    expect![[r#"
        unknown route: 404 no_route: no route for GET /nope
        wrong method: 405 method_not_allowed: method GET is not allowed on /job
        bad query: 400 invalid_query: query string is invalid: limit: invalid digit found in string
        id not utf-8: 400 invalid_path: path is invalid: Invalid UTF-8 in `id`
    "#]]
    .assert_eq(&seen);
}
