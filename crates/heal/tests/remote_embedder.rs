//! The embeddings server as memory's embedder, against the scripted OpenAI-compatible server on
//! loopback: the vector length learned from the first answer, refused when it changes, the API
//! key sent, batches split, and a timed-out batch tried again.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

use smartworker_heal::RemoteEmbedder;
use smartworker_memory::{EmbedError, Embedder, FallbackEmbedder, LEXICAL_MODEL};
use smartworker_model::testing::{ScriptedModelServer, ScriptedReply, embeddings_body};
use smartworker_model::{EmbedClient, EmbedConfig};
use std::sync::Arc;
use std::time::Duration;

fn client(server: &ScriptedModelServer, config: EmbedConfig) -> EmbedClient {
    EmbedClient::new(EmbedConfig {
        base_url: server.base_url(),
        model: "bge-large-en-v1.5".to_owned(),
        ..config
    })
    .unwrap()
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("KeyError: 'email' in job {i}"))
        .collect()
}

#[tokio::test]
async fn dimension_is_learned_from_the_first_answer() {
    let server = ScriptedModelServer::start_with_dimensions(1024)
        .await
        .unwrap();
    let embedder = RemoteEmbedder::new(client(&server, EmbedConfig::default()));
    assert_eq!(
        embedder.dimensions(),
        0,
        "nothing is known before the first answer"
    );

    let vectors = embedder.embed(&texts(3)).await.unwrap();

    assert_eq!(vectors.len(), 3);
    assert_eq!(embedder.dimensions(), 1024);
}

#[tokio::test]
async fn an_answer_of_another_length_after_learning_is_refused() {
    let server = ScriptedModelServer::start_with_dimensions(1024)
        .await
        .unwrap();
    let embedder = RemoteEmbedder::new(client(&server, EmbedConfig::default()));
    embedder.embed(&texts(1)).await.unwrap();

    // Someone swapped the model behind the same name for a smaller one.
    server.push_embeddings_reply(ScriptedReply::raw(200, embeddings_body(&texts(1), 384)));
    let err = embedder.embed(&texts(1)).await.unwrap_err();

    assert_eq!(
        err.to_string(),
        r#"embedding model "bge-large-en-v1.5" returned a vector of 384 dimensions, not 1024"#
    );
    assert_eq!(embedder.dimensions(), 1024);
}

#[tokio::test]
async fn configured_dimension_refuses_a_server_of_another_size() {
    let server = ScriptedModelServer::start_with_dimensions(768)
        .await
        .unwrap();
    let embedder = RemoteEmbedder::with_dimensions(client(&server, EmbedConfig::default()), 1024);

    let err = embedder.embed(&texts(1)).await.unwrap_err();

    assert!(matches!(
        err,
        EmbedError::WrongDimensions {
            expected: 1024,
            got: 768,
            ..
        }
    ));
}

#[tokio::test]
async fn fallback_uses_the_lexical_model_when_the_server_changes_size() {
    let server = ScriptedModelServer::start_with_dimensions(16)
        .await
        .unwrap();
    let remote = RemoteEmbedder::with_dimensions(client(&server, EmbedConfig::default()), 32);
    let embedder = FallbackEmbedder::new(Arc::new(remote));

    let (model, _) = embedder.embed_with_model(&texts(1)).await.unwrap();

    assert_eq!(model, LEXICAL_MODEL);
}

#[tokio::test]
async fn the_api_key_is_sent_as_a_bearer_token() {
    let server = ScriptedModelServer::start().await.unwrap();
    let config = EmbedConfig {
        api_key: Some("embed-key-1".to_owned()),
        ..EmbedConfig::default()
    };
    let embedder = RemoteEmbedder::new(client(&server, config));

    embedder.embed(&texts(1)).await.unwrap();

    assert_eq!(
        server.embedding_authorizations(),
        [Some("Bearer embed-key-1".to_owned())]
    );
}

#[tokio::test]
async fn texts_are_sent_in_batches_of_the_configured_size() {
    let server = ScriptedModelServer::start().await.unwrap();
    let config = EmbedConfig {
        batch_size: 4,
        ..EmbedConfig::default()
    };
    let embedder = RemoteEmbedder::new(client(&server, config));

    let vectors = embedder.embed(&texts(10)).await.unwrap();

    let sizes: Vec<usize> = server
        .embedding_requests()
        .iter()
        .map(|r| r["input"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!((vectors.len(), sizes), (10, vec![4, 4, 2]));
}

#[tokio::test]
async fn a_batch_that_times_out_is_tried_again() {
    let server = ScriptedModelServer::start().await.unwrap();
    let slow = ScriptedReply::content("").after(Duration::from_secs(3));
    server.push_embeddings_reply(slow);
    let config = EmbedConfig {
        timeout: Duration::from_millis(300),
        ..EmbedConfig::default()
    };
    let embedder = RemoteEmbedder::new(client(&server, config));

    let vectors = embedder.embed(&texts(2)).await.unwrap();

    assert_eq!(vectors.len(), 2);
    assert_eq!(
        server.embedding_requests().len(),
        2,
        "one timed out, one answered"
    );
}
