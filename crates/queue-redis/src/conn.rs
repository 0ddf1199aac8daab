//! The connection to Redis: one multiplexed connection that reconnects by itself, plus a few
//! dedicated connections for blocking waits, and the log lines that say when Redis went away
//! and came back (once each, not once per job).

use crate::options::{ConnectError, RedisOptions};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, FromRedisValue, RedisError, Script};
use smartworker_core::BackendError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// The most idle blocking connections kept for reuse.
const BLOCKING_POOL: usize = 16;

/// A shared handle on Redis. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Conn {
    manager: ConnectionManager,
    client: Client,
    shared: Arc<Shared>,
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
        let client = Client::open(opts.url.as_str()).map_err(|e| ConnectError::BadUrl {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConnectError::NoRuntime);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_response_timeout(Some(opts.response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let manager =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(|e| {
                ConnectError::BadUrl {
                    url: url.clone(),
                    reason: e.to_string(),
                }
            })?;
        let shared = Shared {
            down: AtomicBool::new(false),
            url,
            blocking: Mutex::new(Vec::new()),
            connect_timeout: opts.connect_timeout,
        };
        Ok(Conn {
            manager,
            client,
            shared: Arc::new(shared),
        })
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
        let mut conn = self.manager.clone();
        let result = invocation.invoke_async(&mut conn).await;
        self.observe(result)
    }

    /// Runs one command on the shared connection.
    pub(crate) async fn cmd<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, BackendError> {
        let mut conn = self.manager.clone();
        let result = cmd.query_async(&mut conn).await;
        self.observe(result)
    }

    /// Runs a blocking command on a dedicated connection that may wait up to `wait`.
    pub(crate) async fn blocking<T: FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        wait: Duration,
    ) -> Result<T, BackendError> {
        let pooled = self.take_blocking();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.shared.connect_timeout))
                    .set_response_timeout(None);
                let opened = self
                    .client
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

fn is_connection_error(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || err.is_timeout()
        || err.is_unrecoverable_error()
}
