//! Where the Redis backend connects and how it names its keys and dead-letter queues.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// BullMQ's default key prefix.
pub const DEFAULT_PREFIX: &str = "bull";

/// The suffix of a queue's default dead-letter queue: `signup` → `signup-dlq`.
pub const DEFAULT_DLQ_SUFFIX: &str = "-dlq";

/// How to reach Redis and lay out the keys.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://[:password@]host[:port][/db]` or `rediss://...` for TLS.
    pub url: String,
    /// The key prefix, BullMQ's `prefix` option (`bull` by default). For Redis Cluster use a
    /// hash-tagged prefix such as `{sw}` so every queue's keys land in one slot.
    pub prefix: String,
    /// Dead-letter queue names by queue; queues not named here use `<queue>-dlq`.
    pub dead_letter_queues: BTreeMap<String, String>,
    /// How many times a job may be recovered from a dead worker before it is dead-lettered
    /// (BullMQ's `maxStalledCount`, default 1).
    pub max_stalled: u32,
    /// Connect as a Redis Cluster client (following the slots) with `url` as the seed node.
    /// Needs a hash-tagged `prefix`.
    pub cluster: bool,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// How long one command may take before it counts as failed.
    pub response_timeout: Duration,
}

impl RedisOptions {
    /// Options for `url` with BullMQ's defaults.
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            dead_letter_queues: BTreeMap::new(),
            max_stalled: 1,
            cluster: false,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(10),
        }
    }

    /// The dead-letter queue of `queue`.
    pub fn dead_letter_queue(&self, queue: &str) -> String {
        self.dead_letter_queues
            .get(queue)
            .cloned()
            .unwrap_or_else(|| format!("{queue}{DEFAULT_DLQ_SUFFIX}"))
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("dead_letter_queues", &self.dead_letter_queues)
            .field("max_stalled", &self.max_stalled)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// `url` without the password of its user-info part.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    format!("{scheme}://{user}:***@{host}")
}

/// True when `prefix` holds a Redis Cluster hash tag (`{...}` with something inside), so
/// that every key built from it maps to the same slot.
pub fn has_hash_tag(prefix: &str) -> bool {
    let Some(open) = prefix.find('{') else {
        return false;
    };
    prefix[open + 1..].find('}').is_some_and(|close| close > 0)
}

/// Why the backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL did not parse.
    #[error("redis url {url:?} is invalid: {reason}")]
    BadUrl {
        /// The URL, password hidden.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// The key prefix is empty or holds whitespace.
    #[error("redis key prefix {0:?} is invalid: use a non-empty prefix without spaces")]
    BadPrefix(String),
    /// A cluster needs every key in one slot, which only a hash-tagged prefix gives.
    #[error("redis key prefix {0:?} has no hash tag; a cluster needs one such as \"{{sw}}\"")]
    PrefixWithoutHashTag(String),
    /// A dead-letter queue name is not a valid queue name.
    #[error("dead-letter queue {name:?} of queue {queue:?} is invalid: {reason}")]
    BadDeadLetterQueue {
        /// The queue.
        queue: String,
        /// The name given for its dead-letter queue.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// The backend was opened outside a Tokio runtime, which its connection needs.
    #[error("the redis backend must be opened inside a tokio runtime")]
    NoRuntime,
    /// Redis answered but refused the credentials (a wrong password or user, or none where
    /// one is required); retrying would not help.
    #[error(
        "redis at {url} refused the credentials: {reason}; check the user and password in \
         APP_REDIS_URL"
    )]
    Refused {
        /// The URL, password hidden.
        url: String,
        /// What Redis said.
        reason: String,
    },
    /// Redis did not answer.
    #[error("cannot reach redis at {url}: {reason}")]
    Unreachable {
        /// The URL, password hidden.
        url: String,
        /// The connection error.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_in_the_url_of_a_log_line() {
        assert_eq!(redact("redis://:s3cret@h:6379/2"), "redis://:***@h:6379/2");
        assert_eq!(redact("rediss://app:s3cret@h/0"), "rediss://app:***@h/0");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
        let debug = format!("{:?}", RedisOptions::new("redis://:pw@h"));
        assert!(!debug.contains("pw@"), "{debug}");
    }

    #[test]
    fn only_a_non_empty_brace_pair_is_a_hash_tag() {
        assert!(has_hash_tag("{sw}"));
        assert!(has_hash_tag("app:{bull}"));
        assert!(!has_hash_tag("bull"));
        assert!(!has_hash_tag("{}bull"));
        assert!(!has_hash_tag("{bull"));
    }

    #[test]
    fn dead_letter_queue_defaults_to_a_suffix_and_can_be_named() {
        let mut opts = RedisOptions::new("redis://h");
        opts.dead_letter_queues
            .insert("login".into(), "loginDLQ".into());
        assert_eq!(opts.dead_letter_queue("login"), "loginDLQ");
        assert_eq!(opts.dead_letter_queue("signup"), "signup-dlq");
    }
}
