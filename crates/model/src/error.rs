//! The one error type of the model client, with a variant for each way a server can let us down.

use std::time::Duration;

/// Why a call to a model or embeddings server failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The configuration cannot work, whatever the server does.
    #[error("invalid model client configuration: {reason}")]
    Config {
        /// What is wrong with it.
        reason: String,
    },

    /// Nothing answers at the address: connection refused, unknown host, no route.
    #[error(
        "no model server answers at {url}; start an OpenAI-compatible server there \
         (llama.cpp: llama-server --port {port} -m <model.gguf>) or set APP_LLM_URL \
         (APP_EMBED_URL for embeddings)",
        port = port_of(url)
    )]
    Unreachable {
        /// The base URL that was tried.
        url: String,
    },

    /// The server took longer than the configured timeout.
    #[error("model server at {url} did not answer within {after:?}")]
    Timeout {
        /// The endpoint that was called.
        url: String,
        /// The timeout that expired.
        after: Duration,
    },

    /// The connection broke after it was made, before the whole reply arrived.
    #[error("connection to model server at {url} broke: {reason}")]
    Interrupted {
        /// The endpoint that was called.
        url: String,
        /// What the HTTP client said.
        reason: String,
    },

    /// The server answered with a status other than 2xx.
    #[error("model server answered {status}: {body_excerpt}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The start of the reply body, for the log.
        body_excerpt: String,
    },

    /// The reply is not what the OpenAI API promises: bad JSON, no choices, empty content,
    /// vectors of the wrong count or shape.
    #[error("model server sent a malformed reply: {reason}")]
    Malformed {
        /// What is wrong with the reply.
        reason: String,
    },

    /// The reply body is larger than the configured limit.
    #[error("model server reply is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
}

impl ModelError {
    /// Whether trying the same call again a little later could succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ModelError::Unreachable { .. }
            | ModelError::Timeout { .. }
            | ModelError::Interrupted { .. } => true,
            ModelError::Http { status, .. } => *status == 429 || *status >= 500,
            ModelError::Config { .. }
            | ModelError::Malformed { .. }
            | ModelError::TooLarge { .. } => false,
        }
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        ModelError::Malformed {
            reason: reason.into(),
        }
    }
}

/// The port a base URL points at, spelled out or implied by its scheme.
fn port_of(url: &str) -> u16 {
    let (default, rest) = match url.strip_prefix("https://") {
        Some(rest) => (443, rest),
        None => (80, url.strip_prefix("http://").unwrap_or(url)),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let Some((host, port)) = authority.rsplit_once(':') else {
        return default;
    };
    // "[::1]" has colons of its own; only digits after the last one make a port.
    if host.is_empty() || port.is_empty() {
        return default;
    }
    port.parse().unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_message_says_how_to_start_a_server_on_that_port() {
        let err = ModelError::Unreachable {
            url: "http://localhost:8100/v1".to_owned(),
        };
        assert_eq!(
            err.to_string(),
            "no model server answers at http://localhost:8100/v1; start an OpenAI-compatible \
             server there (llama.cpp: llama-server --port 8100 -m <model.gguf>) or set APP_LLM_URL (APP_EMBED_URL for embeddings)"
        );
    }

    #[test]
    fn port_comes_from_the_scheme_when_not_spelled_out() {
        assert_eq!(port_of("https://models.internal/v1"), 443);
        assert_eq!(port_of("http://[::1]/v1"), 80);
        assert_eq!(port_of("http://[::1]:9000/v1"), 9000);
    }
}
