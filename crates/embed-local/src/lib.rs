//! An embedding model run in-process from a local directory in the Hugging Face layout
//! (`config.json`, `tokenizer.json`, `model.safetensors`), so memory gets real sentence vectors
//! without an embeddings server.
//!
//! Only models whose files match pinned SHA-256 hashes are loaded ([`KNOWN_MODELS`]): a
//! truncated download or a swapped file is refused with a message naming the file, instead of
//! producing vectors that silently compare wrong with the ones already stored.
//!
//! The heavy parts (candle, tokenizers) live in this crate alone, so crates that only need the
//! [`smartworker_memory::Embedder`] trait do not build them.

mod encoder;
mod error;
mod files;

pub use encoder::LocalEmbedder;
pub use error::LocalEmbedError;
pub use files::{KNOWN_MODELS, KnownModel, ModelFiles};
