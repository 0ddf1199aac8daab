//! Clients for OpenAI-compatible model servers: chat completions for fixes, embeddings for
//! memory. Every reply is untrusted: it is size-limited, parsed and checked, and any way a
//! server can misbehave becomes a [`ModelError`], never a panic.

mod chat;
mod embed;
mod error;
mod http;
#[cfg(feature = "testing")]
pub mod testing;

pub use chat::{ChatMessage, ChatReply, ModelClient, ModelConfig, Role, Usage};
pub use embed::{EmbedClient, EmbedConfig};
pub use error::ModelError;
