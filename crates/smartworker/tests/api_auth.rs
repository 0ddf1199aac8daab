//! The API token: open on loopback, a bearer token required everywhere but `/healthz` once
//! the server is configured off loopback, and `serve` refusing an off-loopback host without one.
//! Driven through the router; nothing binds to a non-loopback address.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use smartworker::app::App;
use smartworker::config::{Config, LoadOptions};
use smartworker::server;
use std::sync::Arc;
use tempfile::TempDir;
use tower::ServiceExt;

const TOKEN: &str = "s3cret-token-for-tests";

/// Loads a configuration with `server` as the `[server]` section, on a temporary project.
fn load(server: &str, env: &[(&str, &str)]) -> (TempDir, Config) {
    let tmp = TempDir::new().unwrap();
    std::fs::write(tmp.path().join("echo.py"), "print('{}')\n").unwrap();
    let toml = format!(
        "[server]\n{server}\n\n[llm]\nurl = \"http://127.0.0.1:9/v1\"\n\n\
         [embed]\nurl = \"http://127.0.0.1:9/v1\"\n\n\
         [queues.echo]\ncommand = [\"python3\", \"echo.py\"]\n"
    );
    let config_path = tmp.path().join("smartworker.toml");
    std::fs::write(&config_path, toml).unwrap();
    let cfg = Config::load(&LoadOptions {
        config_path: Some(config_path),
        cwd: tmp.path().to_owned(),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    })
    .unwrap();
    (tmp, cfg)
}

/// Sends `GET uri` with an optional `Authorization` header value to an app on `cfg`.
async fn get(cfg: Config, uri: &str, authorization: Option<&str>) -> (StatusCode, Value) {
    let app = Arc::new(App::open(cfg).unwrap());
    let mut request = Request::get(uri);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response = server::router(app)
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn off_loopback() -> (TempDir, Config) {
    load(&format!("host = \"0.0.0.0\"\napi_token = \"{TOKEN}\""), &[])
}

#[tokio::test]
async fn loopback_server_needs_no_token() {
    let (_tmp, cfg) = load("host = \"127.0.0.1\"", &[]);
    assert_eq!(cfg.server.required_token().unwrap(), None);
    let (status, body) = get(cfg, "/queues", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn off_loopback_request_without_a_token_is_unauthorized() {
    let (_tmp, cfg) = off_loopback();
    let (status, body) = get(cfg, "/queues", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"error": {"code": "unauthorized",
                         "message": "missing bearer token; send Authorization: Bearer <APP_API_TOKEN>"}})
    );
}

#[tokio::test]
async fn off_loopback_request_with_a_wrong_token_is_unauthorized() {
    for wrong in [
        "Bearer not-the-token",
        "Bearer s3cret-token-for-test",
        "Basic czNjcmV0",
    ] {
        let (_tmp, cfg) = off_loopback();
        let (status, body) = get(cfg, "/queues", Some(wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{wrong}");
    }
}

#[tokio::test]
async fn unknown_routes_are_guarded_too() {
    let (_tmp, cfg) = off_loopback();
    let (status, _) = get(cfg, "/no-such-route", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn off_loopback_request_with_the_right_token_is_served() {
    let (_tmp, cfg) = off_loopback();
    let (status, body) = get(cfg, "/queues", Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["queues"].is_array(), "{body}");
}

#[tokio::test]
async fn healthz_stays_open_off_loopback() {
    let (_tmp, cfg) = off_loopback();
    let (status, body) = get(cfg, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[test]
fn serve_check_refuses_an_off_loopback_host_without_a_token() {
    let (_tmp, cfg) = load("host = \"0.0.0.0\"", &[]);
    let err = cfg.server.required_token().unwrap_err();
    assert_eq!(
        err.to_string(),
        "refusing to listen on 0.0.0.0, which is not a loopback address, without an API token; \
         set APP_API_TOKEN (or [server] api_token), or bind to 127.0.0.1"
    );
    let (_tmp, cfg) = load("host = \"0.0.0.0\"", &[("APP_API_TOKEN", TOKEN)]);
    assert!(cfg.server.required_token().unwrap().is_some());
    for host in ["localhost", "127.0.0.2", "::1"] {
        let (_tmp, cfg) = load(&format!("host = \"{host}\""), &[]);
        assert!(cfg.server.is_loopback(), "{host}");
    }
}

#[test]
fn api_token_is_a_secret() {
    let (_tmp, cfg) = load("host = \"0.0.0.0\"", &[("APP_API_TOKEN", TOKEN)]);
    assert!(cfg.secrets().contains(&TOKEN.to_owned()));
    assert!(!format!("{cfg:?}").contains(TOKEN));
}
