//! The in-process all-MiniLM-L6-v2 against reference vectors computed independently (a numpy
//! BERT in `fixtures/make_reference.py`, itself checked against the similarities published for
//! the model), and the hash check that guards what gets loaded.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod support;

use serde::Deserialize;
use smartworker_embed_local::{LocalEmbedError, LocalEmbedder};
use smartworker_memory::{Embedder, cosine};

#[derive(Deserialize)]
struct Reference {
    model: String,
    dimensions: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    vector: Vec<f32>,
}

fn reference() -> Reference {
    let text = include_str!("fixtures/reference.json");
    serde_json::from_str(text).unwrap()
}

#[test]
fn tokens_match_the_reference_tokenizer() {
    let embedder = support::embedder();
    for case in reference().cases {
        assert_eq!(
            embedder.token_ids(&case.text).unwrap(),
            case.ids,
            "{}",
            case.text
        );
    }
}

#[tokio::test]
async fn vectors_match_the_reference_to_a_cosine_of_at_least_0_99() {
    let embedder = support::embedder();
    let reference = reference();
    assert_eq!(
        (embedder.model(), embedder.dimensions()),
        (reference.model.as_str(), reference.dimensions)
    );

    // All texts in one call, so they share a padded batch: padding must not change a vector.
    let texts: Vec<String> = reference.cases.iter().map(|c| c.text.clone()).collect();
    let vectors = embedder.embed(&texts).await.unwrap();

    for (case, vector) in reference.cases.iter().zip(&vectors) {
        let similarity = cosine(vector, &case.vector);
        assert!(similarity >= 0.99, "{:?}: cosine {similarity}", case.text);
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{:?}: norm {norm}", case.text);
    }
}

#[tokio::test]
async fn published_similarities_are_reproduced() {
    // The model card's example: "That is a happy person" against three sentences.
    let texts = [
        "That is a happy person",
        "That is a happy dog",
        "That is a very happy person",
        "Today is a sunny day",
    ]
    .map(str::to_owned);
    let vectors = support::embedder().embed(&texts).await.unwrap();
    let scores: Vec<String> = vectors[1..]
        .iter()
        .map(|v| format!("{:.3}", cosine(&vectors[0], v)))
        .collect();
    assert_eq!(scores, ["0.695", "0.943", "0.257"]);
}

/// A copy of the model directory with one file changed by `edit`.
fn tampered(file: &str, mut edit: impl FnMut(&mut Vec<u8>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        let mut bytes = std::fs::read(support::model_dir().join(name)).unwrap();
        if name == file {
            edit(&mut bytes);
        }
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

#[test]
fn a_changed_tokenizer_is_refused_before_loading() {
    let dir = tampered("tokenizer.json", |bytes| bytes.extend_from_slice(b" "));
    let err = LocalEmbedder::load(dir.path()).err().unwrap();
    assert!(matches!(
        err,
        LocalEmbedError::WrongFile {
            model: "all-MiniLM-L6-v2",
            ..
        }
    ));
    let message = err.to_string();
    assert!(message.contains("tokenizer.json has sha-256"), "{message}");
    assert!(message.contains("pinned for all-MiniLM-L6-v2"), "{message}");
}

#[test]
fn changed_weights_are_refused_before_loading() {
    // One flipped bit in the last weight: the file still parses, the vectors would be wrong.
    let dir = tampered("model.safetensors", |bytes| {
        if let Some(last) = bytes.last_mut() {
            *last ^= 1;
        }
    });
    let err = LocalEmbedder::load(dir.path()).err().unwrap();
    assert!(
        matches!(err, LocalEmbedError::UnknownWeights { .. }),
        "{err}"
    );
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = LocalEmbedder::load(dir.path()).err().unwrap().to_string();
    assert!(err.starts_with("cannot read model file "), "{err}");
    assert!(err.contains("model.safetensors"), "{err}");
}
