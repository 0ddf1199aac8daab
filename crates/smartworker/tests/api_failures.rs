//! The failure-group routes (`/failures`, `/failures/{id}`, `/failures/{id}/similar`,
//! `/memory/search`) through the router against a real app on a temporary SQLite file. The
//! embeddings server points at a closed port, so queries and failures use the lexical fallback
//! embedder, as a machine without an embeddings server would.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use expect_test::{Expect, expect};
use serde_json::{Value, json};
use smartworker::app::App;
use smartworker::config::{Config, LoadOptions};
use smartworker::server;
use smartworker_memory::{
    FailureInput, FixSource, FrameInput, LexicalEmbedder, NewFix, chunks_for_failure, embed_chunks,
};
use std::sync::Arc;
use tempfile::TempDir;
use tower::ServiceExt;

const TOML: &str =
    "[llm]\nurl = \"http://127.0.0.1:9/v1\"\n\n[embed]\nurl = \"http://127.0.0.1:9/v1\"\n";

/// Values that change from run to run.
const VOLATILE: [&str; 4] = ["created_at", "first_seen", "last_seen", "next_before"];

struct Api {
    _tmp: TempDir,
    app: Arc<App>,
    router: Router,
}

impl Api {
    fn open() -> Api {
        let tmp = TempDir::new().unwrap();
        let config_path = tmp.path().join("smartworker.toml");
        std::fs::write(&config_path, TOML).unwrap();
        let cfg = Config::load(&LoadOptions {
            config_path: Some(config_path),
            cwd: tmp.path().to_owned(),
            env: vec![],
        })
        .unwrap();
        let app = Arc::new(App::open(cfg).unwrap());
        let router = server::router(Arc::clone(&app));
        Api {
            _tmp: tmp,
            app,
            router,
        }
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn check(&self, uri: &str, expect: Expect) {
        let (status, body) = self.get(uri).await;
        let body = serde_json::to_string_pretty(&mask(body)).unwrap();
        expect.assert_eq(&format!("{status}\n{body}\n"));
    }

    /// Records a failure of `queue` with lexical vectors, as healing does without a server.
    async fn fail(&self, job_id: &str, queue: &str, fingerprint: &str, error: (&str, &str)) -> i64 {
        let input = FailureInput {
            job_id: job_id.into(),
            queue: queue.into(),
            job_name: queue.into(),
            fingerprint: fingerprint.into(),
            error_type: error.0.into(),
            message: error.1.into(),
            stack: format!("{}: {}", error.0, error.1),
            frames: vec![FrameInput {
                file: format!("handlers/{queue}.py"),
                line: Some(9),
                function: Some(queue.into()),
                code: None,
            }],
            payload: json!({"card": "4242"}),
        };
        let vectors = embed_chunks(&LexicalEmbedder, chunks_for_failure(&input))
            .await
            .unwrap();
        let stored = self
            .app
            .memory
            .record_failure(input, vectors)
            .await
            .unwrap();
        // Times are milliseconds; a pause keeps every group's last_seen distinct.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        stored.failure_id
    }

    /// Three groups: two declined-card failures (one group), a mail error, a disk error, and a
    /// verified fix for the card group.
    async fn seed(&self) {
        let declined = ("ValueError", "card was declined by the bank");
        let first = self.fail("7", "charge", "fp-card", declined).await;
        self.fail("8", "charge", "fp-card", declined).await;
        self.fail(
            "9",
            "mail",
            "fp-mail",
            ("SMTPError", "relay refused the message"),
        )
        .await;
        self.fail(
            "10",
            "export",
            "fp-disk",
            ("OSError", "disk full writing the invoice"),
        )
        .await;
        let fix = NewFix {
            group_id: 1,
            failure_id: first,
            job_id: "7".into(),
            queue: "charge".into(),
            verified: true,
            root_cause: "the handler refuses every card".into(),
            diff: "--- a/handlers/charge.py\n+++ b/handlers/charge.py\n".into(),
            edits_json: json!([]),
            source: FixSource::Model,
            model: "test-model".into(),
            rounds: 1,
            heal_job_id: None,
        };
        self.app.memory.record_fix(fix).await.unwrap();
    }
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
async fn failures_list_groups_newest_first_with_their_counts() {
    let api = Api::open();
    api.seed().await;
    api.check(
        "/failures",
        expect![[r#"
        200 OK
        {
          "groups": [
            {
              "count": 1,
              "error_type": "OSError",
              "fingerprint": "fp-disk",
              "first_seen": "[first_seen]",
              "fixes": 0,
              "id": 3,
              "last_job_ids": [
                "10"
              ],
              "last_seen": "[last_seen]",
              "message": "disk full writing the invoice",
              "queues": [
                "export"
              ],
              "verified_fixes": 0
            },
            {
              "count": 1,
              "error_type": "SMTPError",
              "fingerprint": "fp-mail",
              "first_seen": "[first_seen]",
              "fixes": 0,
              "id": 2,
              "last_job_ids": [
                "9"
              ],
              "last_seen": "[last_seen]",
              "message": "relay refused the message",
              "queues": [
                "mail"
              ],
              "verified_fixes": 0
            },
            {
              "count": 2,
              "error_type": "ValueError",
              "fingerprint": "fp-card",
              "first_seen": "[first_seen]",
              "fixes": 1,
              "id": 1,
              "last_job_ids": [
                "7",
                "8"
              ],
              "last_seen": "[last_seen]",
              "message": "card was declined by the bank",
              "queues": [
                "charge"
              ],
              "verified_fixes": 1
            }
          ],
          "next_before": null
        }
    "#]],
    )
    .await;
}

#[tokio::test]
async fn failures_page_with_before_and_filter_by_queue() {
    let api = Api::open();
    api.seed().await;

    let (_, first) = api.get("/failures?limit=2").await;
    let ids = |body: &Value| -> Vec<i64> {
        let groups = body["groups"].as_array().unwrap();
        groups.iter().map(|g| g["id"].as_i64().unwrap()).collect()
    };
    assert_eq!(ids(&first), [3, 2]);
    let next = first["next_before"].as_i64().unwrap();

    let (_, second) = api.get(&format!("/failures?limit=2&before={next}")).await;
    assert_eq!(ids(&second), [1]);
    assert_eq!(
        second["next_before"],
        Value::Null,
        "a short page is the last"
    );

    let (_, mail) = api.get("/failures?queue=mail").await;
    assert_eq!(ids(&mail), [2]);

    // Reported: a page that happened to hold exactly the last groups still offered a next one.
    let (_, all) = api.get("/failures?limit=3").await;
    assert_eq!(ids(&all), [3, 2, 1]);
    assert_eq!(all["next_before"], Value::Null, "nothing follows the third");
}

#[tokio::test]
async fn a_failure_group_shows_its_jobs_failures_and_fixes() {
    let api = Api::open();
    api.seed().await;
    api.check(
        "/failures/1",
        expect![[r#"
        200 OK
        {
          "count": 2,
          "error_type": "ValueError",
          "failures": [
            {
              "created_at": "[created_at]",
              "embedding_model": "lexical-hash-v1",
              "error_type": "ValueError",
              "fingerprint": "fp-card",
              "id": 2,
              "job_id": "8",
              "job_name": "charge",
              "message": "card was declined by the bank",
              "queue": "charge"
            },
            {
              "created_at": "[created_at]",
              "embedding_model": "lexical-hash-v1",
              "error_type": "ValueError",
              "fingerprint": "fp-card",
              "id": 1,
              "job_id": "7",
              "job_name": "charge",
              "message": "card was declined by the bank",
              "queue": "charge"
            }
          ],
          "fingerprint": "fp-card",
          "first_seen": "[first_seen]",
          "fix_list": [
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
          ],
          "fixes": 1,
          "id": 1,
          "job_ids": [
            "8",
            "7"
          ],
          "last_job_ids": [
            "7",
            "8"
          ],
          "last_seen": "[last_seen]",
          "message": "card was declined by the bank",
          "queues": [
            "charge"
          ],
          "verified_fixes": 1
        }
    "#]],
    )
    .await;
}

#[tokio::test]
async fn similar_groups_and_search_answer_with_ranked_groups() {
    let api = Api::open();
    api.seed().await;
    api.check(
        "/failures/2/similar?k=2",
        expect![[r#"
        200 OK
        {
          "group_id": 2,
          "similar": [
            {
              "count": 1,
              "error_type": "OSError",
              "fingerprint": "fp-disk",
              "first_seen": "[first_seen]",
              "fixes": 0,
              "id": 3,
              "last_job_ids": [
                "10"
              ],
              "last_seen": "[last_seen]",
              "message": "disk full writing the invoice",
              "queues": [
                "export"
              ],
              "score": 0.2712985575199127,
              "verified_fixes": 0
            },
            {
              "count": 2,
              "error_type": "ValueError",
              "fingerprint": "fp-card",
              "first_seen": "[first_seen]",
              "fixes": 1,
              "id": 1,
              "last_job_ids": [
                "7",
                "8"
              ],
              "last_seen": "[last_seen]",
              "message": "card was declined by the bank",
              "queues": [
                "charge"
              ],
              "score": 0.27076518535614014,
              "verified_fixes": 1
            }
          ]
        }
    "#]],
    )
    .await;
    api.check(
        "/memory/search?q=card%20declined&k=2",
        expect![[r#"
        200 OK
        {
          "embedding_model": "lexical-hash-v1",
          "hits": [
            {
              "count": 2,
              "error_type": "ValueError",
              "fingerprint": "fp-card",
              "first_seen": "[first_seen]",
              "fixes": 1,
              "id": 1,
              "last_job_ids": [
                "7",
                "8"
              ],
              "last_seen": "[last_seen]",
              "message": "card was declined by the bank",
              "queues": [
                "charge"
              ],
              "score": 0.03278688524590164,
              "similarity": 0.5834599733352661,
              "text_rank": 1,
              "vector_rank": 1,
              "verified_fixes": 1
            },
            {
              "count": 1,
              "error_type": "SMTPError",
              "fingerprint": "fp-mail",
              "first_seen": "[first_seen]",
              "fixes": 0,
              "id": 2,
              "last_job_ids": [
                "9"
              ],
              "last_seen": "[last_seen]",
              "message": "relay refused the message",
              "queues": [
                "mail"
              ],
              "score": 0.016129032258064516,
              "similarity": 0.4444444477558136,
              "text_rank": null,
              "vector_rank": 2,
              "verified_fixes": 0
            }
          ],
          "query": "card declined"
        }
    "#]],
    )
    .await;
}

#[tokio::test]
async fn bad_failure_requests_get_an_error_body() {
    let api = Api::open();
    api.seed().await;
    let mut lines = Vec::new();
    for uri in [
        "/failures/99",
        "/failures/abc",
        "/failures/99/similar",
        "/failures?limit=many",
        "/memory/search",
        "/memory/search?q=%20",
    ] {
        let (status, body) = api.get(uri).await;
        let error = &body["error"];
        lines.push(format!(
            "{uri} -> {} {}: {}",
            status.as_u16(),
            error["code"],
            error["message"]
        ));
    }
    expect![[r#"
        /failures/99 -> 404 "group_not_found": "failure group 99 not found"
        /failures/abc -> 404 "group_not_found": "failure group abc not found"
        /failures/99/similar -> 404 "group_not_found": "failure group 99 not found"
        /failures?limit=many -> 400 "invalid_query": "query string is invalid: limit: invalid digit found in string"
        /memory/search -> 400 "invalid_query": "query string is invalid: q is missing or empty; pass the words to search for, e.g. ?q=KeyError+email"
        /memory/search?q=%20 -> 400 "invalid_query": "query string is invalid: q is missing or empty; pass the words to search for, e.g. ?q=KeyError+email""#]].assert_eq(&lines.join("\n"));
}
