//! The chat and embeddings clients against real HTTP servers on loopback: the scripted
//! OpenAI-compatible server, a raw TCP server for replies no framework would send, and a port
//! where nothing listens.

use smartworker_model::testing::{ScriptedModelServer, ScriptedReply, deterministic_embedding};
use smartworker_model::{
    ChatMessage, EmbedClient, EmbedConfig, ModelClient, ModelConfig, ModelError, Usage,
};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What qwen2.5-coder typically answers: a sentence, then a fenced block.
const FIX_REPLY: &str = "The payload carries `email` at the top level, not under `user`.\n\n\
```python\ndef normalise(data):\n    return data[\"email\"].strip().lower()\n```\n";

fn chat_client(base_url: &str) -> ModelClient {
    ModelClient::new(ModelConfig {
        base_url: base_url.to_owned(),
        timeout: Duration::from_secs(5),
        ..ModelConfig::default()
    })
    .expect("valid config")
}

fn embed_client(base_url: &str, batch_size: usize) -> EmbedClient {
    EmbedClient::new(EmbedConfig {
        base_url: base_url.to_owned(),
        batch_size,
        timeout: Duration::from_secs(5),
        ..EmbedConfig::default()
    })
    .expect("valid config")
}

fn ask() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("You fix bugs."),
        ChatMessage::user("KeyError: 'user'"),
    ]
}

/// A port that was free a moment ago: bound, then released.
async fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

#[tokio::test]
async fn chat_returns_content_with_prose_and_fenced_code() {
    let server = ScriptedModelServer::start().await.expect("server");
    server.push_content(FIX_REPLY);
    let client = chat_client(&server.base_url());

    let reply = client.chat(&ask()).await.expect("reply");

    assert_eq!(reply.content, FIX_REPLY);
    assert_eq!(reply.model, "qwen2.5-coder-3b-instruct");
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
    let completion_tokens = FIX_REPLY.split_whitespace().count() as u32;
    let expected_usage = Usage {
        prompt_tokens: 100,
        completion_tokens,
        total_tokens: 100 + completion_tokens,
    };
    assert_eq!(reply.usage, Some(expected_usage));
    assert!(reply.elapsed > Duration::ZERO);
}

#[tokio::test]
async fn chat_sends_messages_model_and_limits() {
    let server = ScriptedModelServer::start().await.expect("server");
    server.push_content("ok");
    let client = chat_client(&server.base_url());

    client.chat(&ask()).await.expect("reply");

    let requests = server.chat_requests();
    assert_eq!(server.chat_calls(), 1);
    assert_eq!(
        requests[0],
        serde_json::json!({
            "model": "qwen2.5-coder-3b-instruct",
            "messages": [
                {"role": "system", "content": "You fix bugs."},
                {"role": "user", "content": "KeyError: 'user'"},
            ],
            "max_tokens": 2048,
            "temperature": 0.2,
            "stream": false,
        })
    );
}

#[tokio::test]
async fn chat_sends_the_api_key_as_bearer_token() {
    // A raw server, so the test sees the request head as it was sent.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base_url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let head = read_head(&mut socket).await;
        let body = r#"{"choices":[{"message":{"content":"ok"}}]}"#;
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(reply.as_bytes()).await.expect("write");
        head
    });
    let client = ModelClient::new(ModelConfig {
        base_url,
        api_key: Some("sk-local-test".to_owned()),
        ..ModelConfig::default()
    })
    .expect("valid config");

    client.chat(&ask()).await.expect("reply");

    let head = server.await.expect("server task").to_lowercase();
    assert!(
        head.contains("authorization: bearer sk-local-test"),
        "{head}"
    );
}

#[tokio::test]
async fn chat_reports_malformed_json_without_panicking() {
    let server = ScriptedModelServer::start().await.expect("server");
    server.push_reply(ScriptedReply::raw(200, "{\"choices\": [{\"message\": "));
    server.push_reply(ScriptedReply::raw(200, "<html>gateway</html>"));
    server.push_reply(ScriptedReply::raw(200, r#"{"choices":[]}"#));
    server.push_reply(ScriptedReply::raw(
        200,
        r#"{"choices":[{"message":{"content":""}}]}"#,
    ));
    let client = chat_client(&server.base_url());

    for _ in 0..4 {
        let err = client.chat(&ask()).await.expect_err("malformed");
        assert!(matches!(err, ModelError::Malformed { .. }), "{err:?}");
    }
    assert_eq!(server.chat_calls(), 4);
}

#[tokio::test]
async fn chat_reports_server_errors_with_status_and_excerpt() {
    let server = ScriptedModelServer::start().await.expect("server");
    let body = format!("{{\"error\":\"model crashed\"}}{}", " ".repeat(10_000));
    server.push_reply(ScriptedReply::raw(500, body));
    let client = chat_client(&server.base_url());

    let err = client.chat(&ask()).await.expect_err("500");

    let ModelError::Http {
        status,
        body_excerpt,
    } = &err
    else {
        panic!("expected an http error, got {err:?}");
    };
    assert_eq!(*status, 500);
    assert_eq!(body_excerpt, r#"{"error":"model crashed"}"#);
    assert!(err.is_transient());
}

#[tokio::test]
async fn chat_times_out_on_a_slow_server() {
    let server = ScriptedModelServer::start().await.expect("server");
    server.push_reply(ScriptedReply::content("late").after(Duration::from_secs(10)));
    let client = ModelClient::new(ModelConfig {
        base_url: server.base_url(),
        timeout: Duration::from_millis(300),
        ..ModelConfig::default()
    })
    .expect("valid config");

    let started = std::time::Instant::now();
    let err = client.chat(&ask()).await.expect_err("timeout");

    assert!(
        matches!(err, ModelError::Timeout { after, .. } if after == Duration::from_millis(300))
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn chat_refuses_a_reply_larger_than_the_limit() {
    let server = ScriptedModelServer::start().await.expect("server");
    let huge = "x".repeat(300 * 1024);
    server.push_content(huge);
    let client = chat_client(&server.base_url());

    let err = client.chat(&ask()).await.expect_err("too large");

    assert!(
        matches!(err, ModelError::TooLarge { limit: 262_144 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn reply_without_declared_length_is_cut_at_the_limit() {
    // No content-length: the body runs until the server closes, so only the read loop can stop
    // it. The server sends far more than the limit.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base_url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        read_head(&mut socket).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
        if socket.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..64 {
            if socket.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let client = ModelClient::new(ModelConfig {
        base_url,
        max_reply_bytes: 100_000,
        ..ModelConfig::default()
    })
    .expect("valid config");

    let err = client.chat(&ask()).await.expect_err("too large");

    assert!(
        matches!(err, ModelError::TooLarge { limit: 100_000 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn refused_port_is_unreachable_with_a_helpful_message() {
    let port = refused_port().await;
    let client = chat_client(&format!("http://127.0.0.1:{port}/v1/"));

    let err = client.chat(&ask()).await.expect_err("refused");

    assert_eq!(
        err.to_string(),
        format!(
            "no model server answers at http://127.0.0.1:{port}/v1; start an OpenAI-compatible \
             server there (llama.cpp: llama-server --port {port} -m <model.gguf>) or set \
             APP_LLM_URL (APP_EMBED_URL for embeddings)"
        )
    );
    let probe = client.probe().await.expect_err("refused");
    assert!(matches!(probe, ModelError::Unreachable { .. }), "{probe:?}");
}

#[tokio::test]
async fn probe_succeeds_against_an_api_server() {
    let server = ScriptedModelServer::start().await.expect("server");
    let client = chat_client(&server.base_url());

    client.probe().await.expect("server answers");

    assert_eq!(server.chat_calls(), 0);
}

#[tokio::test]
async fn probe_refuses_a_server_that_is_not_an_api() {
    let server = ScriptedModelServer::start().await.expect("server");
    // The scripted server has no /v1/v1/models, so this base URL answers 404.
    let client = chat_client(&format!("{}/v1", server.base_url()));

    let err = client.probe().await.expect_err("404");

    assert!(
        matches!(err, ModelError::Http { status: 404, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn embed_returns_one_vector_per_text_across_batches() {
    let server = ScriptedModelServer::start_with_dimensions(8)
        .await
        .expect("server");
    let client = embed_client(&server.base_url(), 2);
    let texts: Vec<String> = ["KeyError user", "ZeroDivisionError", "TypeError undefined"]
        .map(String::from)
        .into();

    let vectors = client.embed(&texts).await.expect("vectors");

    let expected: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| deterministic_embedding(t, 8))
        .collect();
    assert_eq!(vectors, expected);
    let requests = server.embedding_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0]["input"],
        serde_json::json!(["KeyError user", "ZeroDivisionError"])
    );
    assert_eq!(requests[0]["model"], "bge-large-en-v1.5");
}

#[tokio::test]
async fn embed_of_nothing_sends_nothing() {
    let server = ScriptedModelServer::start().await.expect("server");
    let client = embed_client(&server.base_url(), 4);

    let vectors = client.embed(&[]).await.expect("vectors");

    assert!(vectors.is_empty());
    assert!(server.embedding_requests().is_empty());
}

#[tokio::test]
async fn embed_retries_transient_errors_twice() {
    let server = ScriptedModelServer::start().await.expect("server");
    server.push_embeddings_reply(ScriptedReply::raw(503, "loading model"));
    server.push_embeddings_reply(ScriptedReply::raw(429, "busy"));
    let client = embed_client(&server.base_url(), 4);

    let vectors = client
        .embed(&["a".to_owned()])
        .await
        .expect("third try works");

    assert_eq!(vectors.len(), 1);
    assert_eq!(server.embedding_requests().len(), 3);
}

#[tokio::test]
async fn embed_gives_up_after_three_tries() {
    let server = ScriptedModelServer::start().await.expect("server");
    for _ in 0..3 {
        server.push_embeddings_reply(ScriptedReply::raw(503, "loading model"));
    }
    let client = embed_client(&server.base_url(), 4);

    let err = client
        .embed(&["a".to_owned()])
        .await
        .expect_err("still down");

    assert!(
        matches!(err, ModelError::Http { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(server.embedding_requests().len(), 3);
}

#[tokio::test]
async fn embed_does_not_retry_a_malformed_reply() {
    let server = ScriptedModelServer::start().await.expect("server");
    server.push_embeddings_reply(ScriptedReply::raw(200, r#"{"data":[]}"#));
    let client = embed_client(&server.base_url(), 4);

    let err = client
        .embed(&["a".to_owned()])
        .await
        .expect_err("wrong count");

    assert_eq!(
        err.to_string(),
        "model server sent a malformed reply: sent 1 texts but got 0 vectors"
    );
    assert_eq!(server.embedding_requests().len(), 1);
}

#[tokio::test]
async fn embed_refuses_batches_of_differing_dimensions() {
    let server = ScriptedModelServer::start().await.expect("server");
    server.push_embeddings_reply(ScriptedReply::raw(
        200,
        r#"{"data":[{"embedding":[1,0,0]}]}"#,
    ));
    let client = embed_client(&server.base_url(), 1);
    let texts = vec!["first".to_owned(), "second".to_owned()];

    let err = client.embed(&texts).await.expect_err("mixed dimensions");

    assert_eq!(
        err.to_string(),
        "model server sent a malformed reply: vector 1 has 16 dimensions where vector 0 has 3"
    );
}

#[tokio::test]
async fn embed_refuses_values_that_are_not_finite() {
    let server = ScriptedModelServer::start().await.expect("server");
    server.push_embeddings_reply(ScriptedReply::raw(
        200,
        r#"{"data":[{"embedding":[0.5,1e39]}]}"#,
    ));
    let client = embed_client(&server.base_url(), 4);

    let err = client.embed(&["a".to_owned()]).await.expect_err("infinite");

    assert!(matches!(err, ModelError::Malformed { .. }), "{err:?}");
}

#[tokio::test]
async fn embed_against_a_refused_port_is_unreachable_after_retries() {
    let port = refused_port().await;
    let client = embed_client(&format!("http://127.0.0.1:{port}/v1"), 4);

    let err = client.embed(&["a".to_owned()]).await.expect_err("refused");

    assert!(matches!(err, ModelError::Unreachable { .. }), "{err:?}");
}

/// Reads a request head and as much of the body as is already there; enough for these tests.
async fn read_head(socket: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    loop {
        let n = socket.read(&mut buf[got..]).await.expect("read");
        got += n;
        let text = String::from_utf8_lossy(&buf[..got]).into_owned();
        if n == 0 || text.contains("\r\n\r\n") {
            return text;
        }
    }
}
