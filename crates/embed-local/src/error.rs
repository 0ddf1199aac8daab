//! Why a local model could not be loaded or run.

use std::path::PathBuf;

/// Why the local embedder could not load its model or embed a text.
#[derive(Debug, thiserror::Error)]
pub enum LocalEmbedError {
    /// A model file is missing or unreadable.
    #[error("cannot read model file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The weights match no pinned model.
    #[error(
        "model weights {path} have sha-256 {found}, which matches no known model ({known}); \
         refusing to load them"
    )]
    UnknownWeights {
        /// The weights file.
        path: PathBuf,
        /// Its hash.
        found: String,
        /// The known models and their weights' hashes, as `name: hash`.
        known: String,
    },
    /// A file beside known weights differs from the one pinned for that model.
    #[error(
        "model file {path} has sha-256 {found}, not the {expected} pinned for {model}; \
         refusing to load it"
    )]
    WrongFile {
        /// The file.
        path: PathBuf,
        /// Its hash.
        found: String,
        /// The model the weights belong to.
        model: &'static str,
        /// The pinned hash.
        expected: &'static str,
    },
    /// `config.json` or `tokenizer.json` cannot be parsed.
    #[error("model file {path} is not valid: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// Tokenizing a text failed.
    #[error("cannot tokenize text for {model}: {reason}")]
    Tokenize {
        /// The model.
        model: &'static str,
        /// What the tokenizer said.
        reason: String,
    },
    /// The tensor library failed while loading weights or running the encoder.
    #[error("{model} failed: {reason}")]
    Tensor {
        /// The model.
        model: &'static str,
        /// What candle said.
        reason: String,
    },
}
