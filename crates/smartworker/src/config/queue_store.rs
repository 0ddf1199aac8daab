//! Where queues live: `queue.backend` (`APP_QUEUE_BACKEND`, `sqlite` or `redis`, default
//! `sqlite`) and how to reach Redis (`APP_REDIS_URL`, or `APP_REDIS_HOST`/`APP_REDIS_PORT`),
//! with BullMQ's key prefix (`APP_REDIS_PREFIX`, default `bull`) and `APP_REDIS_CLUSTER`.

use super::value::Raw;
use super::{Config, ConfigError, Layers, Secret, url_host};

/// BullMQ's default key prefix.
const DEFAULT_PREFIX: &str = "bull";

/// BullMQ's default `maxStalledCount`.
const DEFAULT_MAX_STALLED: u32 = 1;

/// Which queue backend holds the jobs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueBackendKind {
    /// The embedded SQLite file under the state directory (the default).
    #[default]
    Sqlite,
    /// Redis, in BullMQ's layout, shared by every machine that points at it.
    Redis,
}

/// `queue.backend` and the Redis settings beyond host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStoreConfig {
    /// `queue.backend` / `APP_QUEUE_BACKEND`.
    pub backend: QueueBackendKind,
    /// `redis.url` / `APP_REDIS_URL`: `redis://[:password@]host[:port][/db]` or `rediss://`;
    /// wins over host and port.
    pub redis_url: Option<Secret>,
    /// `redis.prefix` / `APP_REDIS_PREFIX`: BullMQ's key prefix, default `bull`; a hash-tagged
    /// one such as `{sw}` for Redis Cluster.
    pub redis_prefix: String,
    /// `redis.max_stalled` / `APP_REDIS_MAX_STALLED`: how many times a job whose worker died
    /// is run again before it is dead-lettered instead (BullMQ's `maxStalledCount`, default 1).
    pub redis_max_stalled: u32,
    /// `redis.cluster` / `APP_REDIS_CLUSTER`: talk to a Redis Cluster, the URL naming a seed
    /// node; needs a hash-tagged prefix.
    pub redis_cluster: bool,
}

impl Default for QueueStoreConfig {
    fn default() -> Self {
        QueueStoreConfig {
            backend: QueueBackendKind::Sqlite,
            redis_url: None,
            redis_prefix: DEFAULT_PREFIX.to_owned(),
            redis_max_stalled: DEFAULT_MAX_STALLED,
            redis_cluster: false,
        }
    }
}

/// Reads the settings; `redis` without any way to reach Redis is an error on `queue.backend`.
pub(super) fn read(layers: &Layers) -> Result<QueueStoreConfig, ConfigError> {
    let backend = match layers.read("queue.backend", |r| r.choice(&["sqlite", "redis"]))? {
        Some("redis") => QueueBackendKind::Redis,
        _ => QueueBackendKind::Sqlite,
    };
    let redis_url = layers.read("redis.url", redis_url)?;
    let redis_prefix = layers
        .read("redis.prefix", prefix)?
        .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
    let redis_max_stalled = layers
        .read("redis.max_stalled", Raw::positive_u32)?
        .unwrap_or(DEFAULT_MAX_STALLED);
    if backend == QueueBackendKind::Redis
        && redis_url.is_none()
        && layers.get("redis.host").is_none()
        && let Some(raw) = layers.get("queue.backend")
    {
        let message = "\"redis\" needs redis.url (APP_REDIS_URL) or redis.host (APP_REDIS_HOST)";
        return Err(raw.invalid(message.to_owned()));
    }
    let redis_cluster = layers.read("redis.cluster", Raw::boolean)?.unwrap_or(false);
    if redis_cluster
        && !smartworker_queue_redis::has_hash_tag(&redis_prefix)
        && let Some(raw) = layers.get("redis.cluster")
    {
        let message = format!(
            "a cluster needs a hash-tagged redis.prefix (APP_REDIS_PREFIX) such as \"{{sw}}\"; \
             {redis_prefix:?} has none"
        );
        return Err(raw.invalid(message));
    }
    Ok(QueueStoreConfig {
        backend,
        redis_url,
        redis_prefix,
        redis_max_stalled,
        redis_cluster,
    })
}

/// A `redis://` or `rediss://` URL; the message never repeats it, since it may hold a password.
fn redis_url(raw: &Raw) -> Result<Secret, ConfigError> {
    let url = raw.secret()?;
    let rest = url
        .expose()
        .strip_prefix("redis://")
        .or_else(|| url.expose().strip_prefix("rediss://"));
    if !rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace)) {
        let message = "expected a redis:// or rediss:// URL (value hidden: it may hold a password)";
        return Err(raw.invalid(message.to_owned()));
    }
    Ok(url)
}

fn prefix(raw: &Raw) -> Result<String, ConfigError> {
    let prefix = raw.text()?;
    if prefix.is_empty() || prefix.contains(char::is_whitespace) {
        return Err(raw.invalid(format!("{prefix:?} is not a key prefix: no spaces allowed")));
    }
    Ok(prefix)
}

impl Config {
    /// The URL the Redis backend connects to: `APP_REDIS_URL`, else `redis://host:port` from
    /// `APP_REDIS_HOST`/`APP_REDIS_PORT`; none when neither is set.
    pub fn redis_connection_url(&self) -> Option<Secret> {
        if let Some(url) = &self.queue_store.redis_url {
            return Some(url.clone());
        }
        let host = self.redis.host.as_deref()?;
        Some(Secret::new(format!(
            "redis://{}:{}",
            url_host(host),
            self.redis.port
        )))
    }

    /// The password in `APP_REDIS_URL`, for masking.
    pub(super) fn redis_password(&self) -> Option<String> {
        let url = self.queue_store.redis_url.as_ref()?;
        let rest = url.expose().split_once("://")?.1;
        let userinfo = rest.split_once('@')?.0;
        let password = userinfo.split_once(':')?.1;
        (!password.is_empty()).then(|| password.to_owned())
    }
}
