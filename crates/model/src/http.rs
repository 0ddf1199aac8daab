//! The HTTP plumbing shared by the chat and embeddings clients: one request, a bounded read of
//! the reply, and the mapping of every transport failure onto a [`ModelError`].

use crate::error::ModelError;
use reqwest::{Client, RequestBuilder, Response};
use serde::Serialize;
use std::time::Duration;

/// How many bytes of a failed reply are read to quote in the error.
const ERROR_BODY_READ: usize = 4096;

/// How many characters of a failed reply the error quotes.
const EXCERPT_CHARS: usize = 300;

/// One OpenAI-compatible server: where it is, how to authenticate, and what we accept from it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    client: Client,
    base_url: String,
    api_key: Option<String>,
    timeout: Duration,
    max_reply_bytes: usize,
}

impl Endpoint {
    /// Checks the settings and builds the HTTP client.
    pub(crate) fn new(
        base_url: &str,
        api_key: Option<String>,
        timeout: Duration,
        max_reply_bytes: usize,
    ) -> Result<Self, ModelError> {
        let base_url = normalise_base_url(base_url)?;
        if timeout.is_zero() {
            return Err(config_error("timeout must be longer than zero"));
        }
        if max_reply_bytes == 0 {
            return Err(config_error("max_reply_bytes must be at least 1"));
        }

        // Redirects could carry the API key to another host; an API server has no need of them.
        let client = Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| config_error(format!("cannot build the HTTP client: {err}")))?;
        Ok(Endpoint {
            client,
            base_url,
            api_key: api_key.filter(|key| !key.is_empty()),
            timeout,
            max_reply_bytes,
        })
    }

    /// POSTs `body` as JSON to `{base}/{path}` and returns the reply body of a 2xx answer.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Vec<u8>, ModelError> {
        let url = self.url(path);
        let request = self.client.post(&url).json(body);
        self.send(request, &url, self.timeout).await
    }

    /// GETs `{base}/{path}` with a timeout of its own and returns the reply body of a 2xx answer.
    pub(crate) async fn get(&self, path: &str, timeout: Duration) -> Result<Vec<u8>, ModelError> {
        let url = self.url(path);
        let timeout = timeout.min(self.timeout);
        let request = self.client.get(&url).timeout(timeout);
        self.send(request, &url, timeout).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url, path)
    }

    async fn send(
        &self,
        request: RequestBuilder,
        url: &str,
        timeout: Duration,
    ) -> Result<Vec<u8>, ModelError> {
        let request = match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|err| self.transport_error(&err, url, timeout))?;

        let status = response.status();
        if !status.is_success() {
            let body = read_prefix(response, ERROR_BODY_READ).await;
            return Err(ModelError::Http {
                status: status.as_u16(),
                body_excerpt: excerpt(&body),
            });
        }
        self.read_limited(response, url, timeout).await
    }

    /// Reads the whole body, refusing it as soon as it grows past the limit.
    async fn read_limited(
        &self,
        mut response: Response,
        url: &str,
        timeout: Duration,
    ) -> Result<Vec<u8>, ModelError> {
        let limit = self.max_reply_bytes;
        let too_large = ModelError::TooLarge { limit };

        // A declared length past the limit is refused before a byte of the body is read.
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(too_large);
        }

        let mut body = Vec::new();
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|err| self.transport_error(&err, url, timeout))?;
            let Some(chunk) = chunk else {
                return Ok(body);
            };
            if body.len() + chunk.len() > limit {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
    }

    fn transport_error(&self, err: &reqwest::Error, url: &str, timeout: Duration) -> ModelError {
        if err.is_timeout() {
            return ModelError::Timeout {
                url: url.to_owned(),
                after: timeout,
            };
        }
        if err.is_connect() {
            return ModelError::Unreachable {
                url: self.base_url.clone(),
            };
        }
        ModelError::Interrupted {
            url: url.to_owned(),
            reason: error_chain(err),
        }
    }
}

/// Trims trailing slashes and insists on an http or https URL.
fn normalise_base_url(base_url: &str) -> Result<String, ModelError> {
    let trimmed = base_url.trim().trim_end_matches('/');
    let Some(rest) = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
    else {
        return Err(config_error(format!(
            "base url \"{base_url}\" must start with http:// or https://"
        )));
    };
    if rest.is_empty() {
        return Err(config_error(format!(
            "base url \"{base_url}\" names no host"
        )));
    }
    Ok(trimmed.to_owned())
}

fn config_error(reason: impl Into<String>) -> ModelError {
    ModelError::Config {
        reason: reason.into(),
    }
}

/// Reads at most `limit` bytes of a reply whose body only serves as a quote; errors end it early.
async fn read_prefix(mut response: Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        let Ok(Some(chunk)) = response.chunk().await else {
            break;
        };
        body.extend_from_slice(&chunk);
    }
    body.truncate(limit);
    body
}

/// The start of a reply body as text, on one line, cut at a character boundary.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// The error with its sources, because reqwest's top-level message alone rarely says why.
fn error_chain(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_loses_trailing_slashes() {
        let url = normalise_base_url("http://127.0.0.1:8100/v1//").expect("valid url");
        assert_eq!(url, "http://127.0.0.1:8100/v1");
    }

    #[test]
    fn base_url_without_scheme_is_refused() {
        let err = normalise_base_url("localhost:8100/v1").expect_err("no scheme");
        assert_eq!(
            err.to_string(),
            "invalid model client configuration: base url \"localhost:8100/v1\" must start \
             with http:// or https://"
        );
    }

    #[test]
    fn excerpt_is_one_line_and_bounded() {
        let body = format!("line one\nline two {}", "x".repeat(1000));
        let quoted = excerpt(body.as_bytes());
        assert!(!quoted.contains('\n'));
        assert_eq!(quoted.chars().count(), EXCERPT_CHARS + 1);
        assert!(quoted.starts_with("line one line two"));
    }
}
