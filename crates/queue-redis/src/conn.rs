//! The connection to Redis: one multiplexed connection that reconnects by itself (or, for
//! Redis Cluster, a cluster client that follows the slots), plus a few dedicated connections
//! for blocking waits, and the log lines that say when Redis went away and came back (once
//! each, not once per job).

use crate::options::{ConnectError, RedisOptions};
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    AsyncConnectionConfig, Client, Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Script,
    Value,
};
use smartworker_core::BackendError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;
use tracing::{info, warn};

/// The most idle blocking connections kept for reuse.
const BLOCKING_POOL: usize = 16;

/// A shared handle on Redis. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Conn {
    link: Link,
    shared: Arc<Shared>,
}

/// A single server (or a primary behind a proxy), or a Redis Cluster.
#[derive(Clone)]
enum Link {
    Single {
        manager: ConnectionManager,
        client: Arc<Client>,
    },
    Cluster {
        client: Arc<ClusterClient>,
        conn: Arc<OnceCell<ClusterConnection>>,
    },
}

/// Either connection, so scripts and commands run the same way on both.
enum AnyConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for AnyConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            AnyConn::Single(c) => c.req_packed_command(cmd),
            AnyConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            AnyConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            AnyConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            AnyConn::Single(c) => c.get_db(),
            AnyConn::Cluster(c) => c.get_db(),
        }
    }
}

struct Shared {
    /// True while Redis is unreachable, so the loss and the return are each logged once.
    down: AtomicBool,
    /// The URL with its password hidden.
    url: String,
    /// Idle connections for blocking commands, which would stall the multiplexed one.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    connect_timeout: Duration,
}

impl Conn {
    /// A handle that connects on first use; it needs a Tokio runtime but no Redis yet.
    pub(crate) fn open_lazy(opts: &RedisOptions) -> Result<Conn, ConnectError> {
        let url = opts.redacted_url();
        let bad_url = |e: RedisError| ConnectError::BadUrl {
            url: url.clone(),
            reason: e.to_string(),
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConnectError::NoRuntime);
        }
        let link = if opts.cluster {
            let client = ClusterClient::builder(vec![opts.url.as_str()])
                .connection_timeout(opts.connect_timeout)
                .response_timeout(opts.response_timeout)
                .build()
                .map_err(bad_url)?;
            Link::Cluster {
                client: Arc::new(client),
                conn: Arc::new(OnceCell::new()),
            }
        } else {
            Link::single(opts).map_err(bad_url)?
        };
        let shared = Shared {
            down: AtomicBool::new(false),
            url,
            blocking: Mutex::new(Vec::new()),
            connect_timeout: opts.connect_timeout,
        };
        Ok(Conn {
            link,
            shared: Arc::new(shared),
        })
    }

    /// True on a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster { .. })
    }

    async fn any(&self) -> Result<AnyConn, RedisError> {
        match &self.link {
            Link::Single { manager, .. } => Ok(AnyConn::Single(manager.clone())),
            Link::Cluster { client, conn } => {
                let conn = conn
                    .get_or_try_init(|| client.get_async_connection())
                    .await?;
                Ok(AnyConn::Cluster(conn.clone()))
            }
        }
    }

    /// Runs a script with `route` as its one declared key (it routes the call in a cluster;
    /// the scripts build their other keys from the same hash-tagged prefix).
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        script: &Script,
        route: &str,
        args: &[&str],
    ) -> Result<T, BackendError> {
        let mut invocation = script.key(route);
        for arg in args {
            invocation.arg(*arg);
        }
        let result = match self.any().await {
            Ok(mut conn) => invocation.invoke_async(&mut conn).await,
            Err(err) => Err(err),
        };
        self.observe(result)
    }

    /// Sends `PING` and returns Redis's own error, without the outage bookkeeping.
    pub(crate) async fn ping_raw(&self) -> Result<(), RedisError> {
        let mut conn = self.any().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }

    /// Runs one command on the shared connection.
    pub(crate) async fn cmd<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, BackendError> {
        let result = match self.any().await {
            Ok(mut conn) => cmd.query_async(&mut conn).await,
            Err(err) => Err(err),
        };
        self.observe(result)
    }

    /// Runs one command on the cluster node that owns `key`'s slot (SCAN, which has no key
    /// of its own to route by); on a single server, like [`Conn::cmd`].
    pub(crate) async fn cmd_at<T: FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        key: &str,
    ) -> Result<T, BackendError> {
        if !self.is_cluster() {
            return self.cmd(cmd).await;
        }
        let route = Route::new(key_slot(key.as_bytes()), SlotAddr::Master);
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        let result = match self.any().await {
            Ok(AnyConn::Cluster(mut conn)) => conn.route_command(cmd.clone(), routing).await,
            Ok(mut other) => cmd.query_async(&mut other).await,
            Err(err) => Err(err),
        };
        let value = self.observe(result)?;
        redis::from_redis_value(value).map_err(|e| BackendError::Storage(format!("redis: {e}")))
    }

    /// Runs a blocking command on a dedicated connection that may wait up to `wait`.
    pub(crate) async fn blocking<T: FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        wait: Duration,
    ) -> Result<T, BackendError> {
        let Link::Single { client, .. } = &self.link else {
            // FIXME: a cluster wait polls instead of blocking; a blocking command would stall
            // the one multiplexed connection to the node that holds every queue's slot.
            tokio::time::sleep(wait.min(Duration::from_millis(100))).await;
            return redis::from_redis_value(Value::Nil)
                .map_err(|e| BackendError::Storage(format!("redis: {e}")));
        };
        let pooled = self.take_blocking();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.shared.connect_timeout))
                    .set_response_timeout(None);
                let opened = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await;
                self.observe(opened)?
            }
        };
        // The command itself waits; the extra second covers the round trip.
        let limit = wait + Duration::from_secs(1);
        let result = match tokio::time::timeout(limit, cmd.query_async(&mut conn)).await {
            Ok(result) => result,
            Err(_) => {
                return Err(BackendError::Storage(
                    "redis blocking wait timed out".into(),
                ));
            }
        };
        let value = self.observe(result)?;
        self.give_back_blocking(conn);
        Ok(value)
    }

    fn take_blocking(&self) -> Option<MultiplexedConnection> {
        let mut pool = self
            .shared
            .blocking
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        pool.pop()
    }

    fn give_back_blocking(&self, conn: MultiplexedConnection) {
        let mut pool = self
            .shared
            .blocking
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if pool.len() < BLOCKING_POOL {
            pool.push(conn);
        }
    }

    /// Turns a result into the backend's, logging a lost or regained connection once.
    fn observe<T>(&self, result: Result<T, RedisError>) -> Result<T, BackendError> {
        match result {
            Ok(value) => {
                if self.shared.down.swap(false, Ordering::Relaxed) {
                    info!(url = %self.shared.url, "redis is reachable again; queues resumed");
                }
                Ok(value)
            }
            Err(err) => {
                if is_connection_error(&err) {
                    // Idle blocking connections died with the server; reusing one after it is
                    // back would report a second outage that never happened.
                    self.shared
                        .blocking
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clear();
                }
                if is_connection_error(&err) && !self.shared.down.swap(true, Ordering::Relaxed) {
                    warn!(
                        url = %self.shared.url, error = %err,
                        "lost the connection to redis; retrying until it is back"
                    );
                }
                Err(BackendError::Storage(format!("redis: {err}")))
            }
        }
    }
}

impl Link {
    fn single(opts: &RedisOptions) -> Result<Link, RedisError> {
        let client = Client::open(opts.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_response_timeout(Some(opts.response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Link::Single {
            manager,
            client: Arc::new(client),
        })
    }
}

/// The cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key when it has
/// none, modulo 16384, as Redis Cluster computes it.
fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % 16384
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in bytes {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Whether Redis refused this connection's credentials: a wrong password or user, or none
/// given where one is required.
pub(crate) fn is_refused_credentials(err: &RedisError) -> bool {
    if err.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("NOAUTH" | "WRONGPASS"))
    {
        return true;
    }
    // A refusal met while connecting (the `SELECT` of a database number in the URL) reaches
    // us wrapped, with Redis's code gone and only its words left.
    let text = err.to_string();
    ["NOAUTH", "WRONGPASS", "Authentication required"]
        .iter()
        .any(|words| text.contains(words))
}

fn is_connection_error(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || err.is_timeout()
        || err.is_unrecoverable_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_match_redis_cluster() {
        // Values from the Redis Cluster specification and CLUSTER KEYSLOT.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(
            key_slot(b"{sw}:signup:1"),
            key_slot(b"{sw}:smartworker-heal:id")
        );
        assert_eq!(key_slot(b"{}x"), key_slot(b"{}x"));
        assert_ne!(key_slot(b"{}a:1"), key_slot(b"{}b:1"));
    }
}
