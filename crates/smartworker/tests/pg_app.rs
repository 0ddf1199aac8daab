//! The app with its memory in PostgreSQL (`memory.backend = "postgres"`): `/healthz` tells
//! when memory is away while the queue goes on. The test runs a private PostgreSQL.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use smartworker::app::App;
use smartworker::config::{Config, LoadOptions};
use smartworker::server;
use smartworker_memory_pg::testing::TestPostgres;
use std::sync::Arc;
use tempfile::TempDir;
use tower::ServiceExt;

const BASE_TOML: &str = include_str!("fixtures/api/smartworker.toml");

async fn healthz(router: &axum::Router) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(Method::GET)
        .uri("/healthz")
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// Reported: with PostgreSQL down, `/healthz` still said "ok".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_says_when_memory_in_postgres_is_away() {
    let mut pg = TestPostgres::start().unwrap();
    pg.create_database("app").unwrap();
    let tmp = TempDir::new().unwrap();
    let config_path = tmp.path().join("smartworker.toml");
    std::fs::write(&config_path, BASE_TOML).unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/app", pg.port());
    let cfg = Config::load(&LoadOptions {
        config_path: Some(config_path),
        cwd: tmp.path().to_owned(),
        env: vec![
            ("APP_MEMORY_BACKEND".into(), "postgres".into()),
            ("APP_DB_URL".into(), url),
        ],
    })
    .unwrap();
    let app = Arc::new(App::connect(cfg).await.unwrap());
    let router = server::router(Arc::clone(&app));

    let (status, body) = healthz(&router).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"status": "ok", "queue": "ok", "memory": "ok"})
        )
    );

    pg.kill();
    let (status, body) = healthz(&router).await;
    assert_eq!(status, StatusCode::OK, "jobs still run: {body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["queue"], "ok", "{body}");
    let memory = body["memory"].as_str().unwrap();
    assert!(memory.starts_with("unavailable: "), "{memory}");

    pg.restart().unwrap();
    let mut back = false;
    for _ in 0..100 {
        if healthz(&router).await.1["memory"] == "ok" {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(back, "memory never reported back after PostgreSQL returned");
}
