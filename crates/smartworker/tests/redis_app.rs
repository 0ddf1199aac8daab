//! The whole app on the Redis backend (`queue.backend = "redis"`): the HTTP API enqueues,
//! workers run the fixture's Python handlers, and a failed job reaches its dead-letter
//! queue and comes back from it. Each test runs a private redis-server.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on a broken fixture")]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use smartworker::app::App;
use smartworker::config::{Config, LoadOptions};
use smartworker::server;
use smartworker_queue_redis::testing::{RedisServer, ServerOptions};
use std::sync::Arc;
use tempfile::TempDir;
use tower::ServiceExt;

const BASE_TOML: &str = include_str!("fixtures/api/smartworker.toml");

const HANDLERS: [(&str, &str); 2] = [
    ("echo.py", include_str!("fixtures/api/handlers/echo.py")),
    ("charge.py", include_str!("fixtures/api/handlers/charge.py")),
];

fn open(tmp: &TempDir, redis: &RedisServer) -> Arc<App> {
    std::fs::create_dir(tmp.path().join("handlers")).unwrap();
    for (name, text) in HANDLERS {
        std::fs::write(tmp.path().join("handlers").join(name), text).unwrap();
    }
    let config_path = tmp.path().join("smartworker.toml");
    let extra = "[queue]\nbackend = \"redis\"\n";
    let toml = format!("{BASE_TOML}\n{extra}");
    std::fs::write(&config_path, toml).unwrap();
    let cfg = Config::load(&LoadOptions {
        config_path: Some(config_path),
        cwd: tmp.path().to_owned(),
        env: vec![("APP_REDIS_URL".into(), redis.url())],
    })
    .unwrap();
    Arc::new(App::open(cfg).unwrap())
}

async fn send(
    router: &axum::Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(body) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let response = router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_workers_run_jobs_on_redis_and_dead_letter_to_a_queue_of_its_own() {
    let redis = RedisServer::start().unwrap();
    let tmp = TempDir::new().unwrap();
    let app = open(&tmp, &redis);
    let running = app.start();
    let router = server::router(Arc::clone(&app));

    let job = json!({"name": "echo", "data": {"n": 5}});
    let (status, body) = send(&router, Method::POST, "/job", Some(job)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], json!({"echo": {"n": 5}}), "{body}");

    let job = json!({"name": "charge", "data": {"card": "4242"}});
    let (status, body) = send(&router, Method::POST, "/job", Some(job)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let text = body.to_string();
    assert!(text.contains("card 4242 was declined"), "{text}");

    let (_, dead) = send(&router, Method::GET, "/dead", None).await;
    let dead = dead.to_string();
    assert!(dead.contains("\"charge:1\""), "{dead}");
    let (_, queues) = send(&router, Method::GET, "/queues", None).await;
    let queues = queues.to_string();
    assert!(
        queues.contains("charge-dlq"),
        "no dead-letter queue in {queues}"
    );

    let (status, body) = send(&router, Method::POST, "/dead/charge:1/retry", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let again = app
        .backend
        .wait_finished(&"charge:1".into(), std::time::Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        again.attempts.len(),
        4,
        "two attempts before and two after the retry"
    );
    running.shutdown().await;
}

/// Reported: with Redis down every route, `/healthz` included, answered 500 `internal`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_is_a_503_that_names_the_storage_and_clears_when_it_is_back() {
    let mut redis = RedisServer::start().unwrap();
    let tmp = TempDir::new().unwrap();
    let app = open(&tmp, &redis);
    let router = server::router(Arc::clone(&app));
    let (status, _) = send(&router, Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);

    redis.kill().unwrap();
    let (status, body) = send(&router, Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "storage_unavailable");
    let (status, _) = send(&router, Method::GET, "/queues", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    redis.restart().unwrap();
    let mut healthy = false;
    for _ in 0..100 {
        if send(&router, Method::GET, "/healthz", None).await.0 == StatusCode::OK {
            healthy = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(healthy, "/healthz never recovered after redis came back");
}

/// Reported: with a wrong password in `APP_REDIS_URL`, `serve` started and retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_redis_credentials_stop_start_up_with_the_reason() {
    let redis = RedisServer::start_with(ServerOptions {
        password: Some("right-pw".into()),
        ..ServerOptions::default()
    })
    .unwrap();
    let tmp = TempDir::new().unwrap();
    let config_path = tmp.path().join("smartworker.toml");
    std::fs::write(
        &config_path,
        format!("{BASE_TOML}\n[queue]\nbackend = \"redis\"\n"),
    )
    .unwrap();
    let load = |url: String| {
        Config::load(&LoadOptions {
            config_path: Some(config_path.clone()),
            cwd: tmp.path().to_owned(),
            env: vec![("APP_REDIS_URL".into(), url)],
        })
        .unwrap()
    };
    let wrong = format!("redis://:wrong-pw@127.0.0.1:{}", redis.port());
    let Err(err) = App::connect(load(wrong)).await else {
        panic!("started with a password redis refuses");
    };
    let err = format!("{err:#}");
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(err.contains("APP_REDIS_URL"), "{err}");
    assert!(!err.contains("wrong-pw"), "the password leaked: {err}");

    let right = format!("redis://:right-pw@127.0.0.1:{}", redis.port());
    assert!(App::connect(load(right)).await.is_ok());
}
