//! SmartWorker's memory in PostgreSQL with pgvector: the same store as the embedded SQLite one
//! ([`smartworker_memory::MemoryBackend`]), for deployments that share one memory between
//! machines or keep a lot of it.
//!
//! - Versioned migrations run at start-up and refuse a newer schema (`schema.rs`).
//! - Vectors of every model share one column; each model has a partial HNSW index (cosine,
//!   over a `halfvec` cast) and searches use pgvector 0.8's iterative index scans, so filters
//!   still return `k` results (`sql.rs`).
//! - Writes that cannot reach the database wait in a durable local buffer and are replayed in
//!   order when it is back (`buffer.rs`); reads while it is down fail at once with
//!   [`MemoryError::Unavailable`].

mod buffer;
mod error;
mod groups;
mod schema;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

use crate::buffer::{Buffer, Pending, Write};
use crate::error::{BACKEND, pg_error, pool_error, timed_out};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use sha2::Digest;
use smartworker_memory::{
    EmbeddedChunks, FailureInput, FailureRecord, Fix, FixDetail, FixSummary, Group, GroupDetail,
    GroupQuery, GroupSummary, Grouping, HealAttempt, HealAttemptRecord, MemoryBackend, MemoryError,
    NewFix, SearchHit, SearchQuery, SimilarFailure, SimilarGroup,
};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_postgres::NoTls;
use tracing::{debug, error, info, warn};

pub use schema::PG_SCHEMA_VERSION;

/// How to reach PostgreSQL and where to keep writes while it is down.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Host, port, user, password and database.
    pub config: tokio_postgres::Config,
    /// The local buffer file (SQLite), usually `<state>/memory-pg-buffer.db`.
    pub buffer_path: PathBuf,
    /// How long one operation may take, connecting included, before the database counts as
    /// unreachable; a write is then buffered, a read fails. Keeps the healer from hanging on a
    /// dead database.
    pub timeout: Duration,
    /// How many connections the pool keeps at most.
    pub pool_size: usize,
    /// How often buffered writes are retried while some wait.
    pub replay_every: Duration,
}

impl PgOptions {
    /// Options with the defaults: 5 s per operation, 8 connections, a replay try every second.
    pub fn new(config: tokio_postgres::Config, buffer_path: PathBuf) -> PgOptions {
        PgOptions {
            config,
            buffer_path,
            timeout: Duration::from_secs(5),
            pool_size: 8,
            replay_every: Duration::from_secs(1),
        }
    }

    /// Options from a `postgres://user:password@host:port/db` URL.
    ///
    /// # Errors
    /// [`MemoryError::Database`] naming what is wrong with the URL (the password is not shown).
    pub fn from_url(url: &str, buffer_path: PathBuf) -> Result<PgOptions, MemoryError> {
        let config = url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| MemoryError::Database {
                backend: BACKEND,
                message: format!("invalid postgres url: {e}"),
            })?;
        Ok(PgOptions::new(config, buffer_path))
    }
}

/// The PostgreSQL memory backend. Cloning is cheap and shares the pool and the buffer.
///
/// # Cancel safety
/// Dropping a write's future may leave the write applied or not, but never half; a write that
/// was already buffered stays buffered and is replayed.
#[derive(Clone)]
pub struct PgBackend {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    buffer: Buffer,
    /// Writes waiting in the buffer (not counting those set aside), kept here so a write does
    /// not read the buffer file when nothing waits.
    waiting: AtomicU64,
    timeout: Duration,
    /// One replay at a time keeps buffered writes in order.
    replay: tokio::sync::Mutex<()>,
}

/// What an applied write produced; kept with its write id, so a write applied twice (a replay
/// after an unclear failure, a retried heal job) answers the same the second time.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Applied {
    Failure { record: FailureRecord },
    Id { id: i64 },
    Nothing,
}

/// How long a failure replayed from the buffer stands in for the same failure recorded again
/// (a heal job retried once the database is back): longer than the heal job's retry delay.
const SAME_FAILURE_WINDOW_MS: i64 = 3600 * 1000;

impl PgBackend {
    /// Connects, runs the migrations, replays any writes left in the buffer, and starts the
    /// task that replays buffered writes while the backend lives.
    ///
    /// # Errors
    /// [`MemoryError::Unavailable`] when PostgreSQL cannot be reached at start-up (migrations
    /// must run first); [`MemoryError::SchemaTooNew`]; database and buffer file errors.
    pub async fn connect(options: PgOptions) -> Result<PgBackend, MemoryError> {
        let mut config = options.config.clone();
        config.connect_timeout(options.timeout);
        config.application_name("smartworker-memory");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .recycle_timeout(Some(options.timeout))
            .build()
            .map_err(|e| MemoryError::Database {
                backend: BACKEND,
                message: format!("cannot build the connection pool: {e}"),
            })?;

        let mut client = pool.get().await.map_err(pool_error)?;
        schema::migrate(&mut client).await?;
        drop(client);

        let buffer = Buffer::open(&options.buffer_path)?;
        let waiting = buffer.waiting().await?;
        let inner = Arc::new(Inner {
            pool,
            buffer,
            waiting: AtomicU64::new(waiting),
            timeout: options.timeout,
            replay: tokio::sync::Mutex::new(()),
        });
        if waiting > 0 {
            info!(
                waiting,
                "replaying memory writes buffered while postgres was down"
            );
            inner.replay().await?;
        }
        spawn_replayer(Arc::downgrade(&inner), options.replay_every);
        Ok(PgBackend { inner })
    }

    /// How many writes wait in the local buffer for the database.
    pub fn buffered_writes(&self) -> u64 {
        self.inner.waiting.load(Ordering::SeqCst)
    }

    /// Replays buffered writes now, oldest first, and returns how many still wait.
    ///
    /// # Errors
    /// [`MemoryError::Unavailable`] when the database is still down; buffer file errors.
    pub async fn replay(&self) -> Result<u64, MemoryError> {
        self.inner.replay().await?;
        Ok(self.buffered_writes())
    }

    /// Applies a write, or buffers it when the database cannot be reached.
    async fn write(&self, write: Write) -> Result<Applied, MemoryError> {
        let pending = Pending {
            id: uuid::Uuid::new_v4().to_string(),
            key: content_key(&write)?,
            at: now_ms(),
            write,
        };
        // Writes stay in order: older writes still in the buffer go first, and when they
        // cannot, this one waits behind them.
        if self.buffered_writes() > 0 {
            let _ = self.inner.replay().await;
            if self.buffered_writes() > 0 {
                return self.inner.keep(&pending).await;
            }
        }
        match self.inner.apply(&pending, false).await {
            Err(MemoryError::Unavailable { message, .. }) => {
                warn!(error = %message, "postgres is unreachable; buffering a memory write");
                self.inner.keep(&pending).await
            }
            other => other,
        }
    }

    /// Runs a read with a pooled connection, within the time limit.
    async fn read<T, F, Fut>(&self, f: F) -> Result<T, MemoryError>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut,
        Fut: Future<Output = Result<T, MemoryError>>,
    {
        let inner = &self.inner;
        let run = async {
            let client = inner.pool.get().await.map_err(pool_error)?;
            f(client).await
        };
        tokio::time::timeout(inner.timeout, run)
            .await
            .map_err(|_| timed_out("a memory read", inner.timeout))?
    }
}

impl Inner {
    /// Applies one write in one transaction, with its id, unless that id was applied before;
    /// then it answers what the first time produced. A direct write of a failure that was
    /// replayed from the buffer within the last hour answers that failure's record too.
    async fn apply(&self, pending: &Pending, replayed: bool) -> Result<Applied, MemoryError> {
        let run = async {
            let mut client = self.pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(pg_error)?;
            if let Some(applied) = earlier(&tx, pending, replayed).await? {
                return Ok(applied);
            }
            let applied = apply_write(&tx, &pending.write, pending.at).await?;
            remember_applied(&tx, &pending.id, &applied).await?;
            if let (true, Some(key)) = (replayed, &pending.key) {
                remember_applied(&tx, key, &applied).await?;
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(applied)
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| timed_out("a memory write", self.timeout))?
    }

    /// Puts a write in the buffer and says so.
    async fn keep(&self, pending: &Pending) -> Result<Applied, MemoryError> {
        if self.buffer.push(pending).await? {
            self.waiting.fetch_add(1, Ordering::SeqCst);
        }
        Err(MemoryError::Buffered {
            backend: BACKEND,
            path: self.buffer.path().to_owned(),
        })
    }

    /// Applies buffered writes oldest first until none is left or the database is down again.
    /// A write the database refuses is set aside (logged as an error) so it cannot block the
    /// ones behind it.
    async fn replay(&self) -> Result<(), MemoryError> {
        let _one_at_a_time = self.replay.lock().await;
        while let Some(queued) = self.buffer.oldest().await? {
            match self.apply(&queued.pending, true).await {
                Ok(_) => self.buffer.remove(queued.seq).await?,
                Err(err @ MemoryError::Unavailable { .. }) => return Err(err),
                Err(err) => {
                    error!(
                        seq = queued.seq,
                        buffer = %self.buffer.path().display(),
                        error = %err,
                        "postgres refused a buffered memory write; it is set aside in the buffer"
                    );
                    self.buffer.set_aside(queued.seq, err.to_string()).await?;
                }
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        prune_applied(&self.pool).await;
        Ok(())
    }
}

/// How often write ids older than a day are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Forgets write ids older than a day: by then any write that could be replayed twice was.
async fn prune_applied(pool: &Pool) {
    let Ok(client) = pool.get().await else {
        return;
    };
    let cutoff = now_ms() - 24 * 3600 * 1000;
    if let Err(e) = client
        .execute(
            "DELETE FROM mem_applied_writes WHERE applied_at < $1",
            &[&cutoff],
        )
        .await
    {
        debug!(error = %e, "could not prune applied memory write ids");
    }
}

/// What an earlier application of this write produced, if there was one.
async fn earlier(
    tx: &tokio_postgres::Transaction<'_>,
    pending: &Pending,
    replayed: bool,
) -> Result<Option<Applied>, MemoryError> {
    let (id, since) = match (&pending.key, replayed) {
        (Some(key), false) => (key.as_str(), now_ms() - SAME_FAILURE_WINDOW_MS),
        _ => (pending.id.as_str(), 0),
    };
    let row = tx
        .query_opt(
            "SELECT result FROM mem_applied_writes WHERE write_id = $1 AND applied_at >= $2",
            &[&id, &since],
        )
        .await
        .map_err(pg_error)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let tokio_postgres::types::Json(applied) =
        row.get::<_, tokio_postgres::types::Json<Applied>>(0);
    Ok(Some(applied))
}

async fn remember_applied(
    tx: &tokio_postgres::Transaction<'_>,
    id: &str,
    applied: &Applied,
) -> Result<(), MemoryError> {
    tx.execute(
        "INSERT INTO mem_applied_writes (write_id, applied_at, result) VALUES ($1, $2, $3)
         ON CONFLICT (write_id) DO UPDATE SET applied_at = excluded.applied_at,
             result = excluded.result",
        &[&id, &now_ms(), &tokio_postgres::types::Json(applied)],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// A failure's content key: the same failure of the same job (a retried heal job recording it
/// again) has the same key. Other writes have none.
fn content_key(write: &Write) -> Result<Option<String>, MemoryError> {
    let Write::Failure { input, .. } = write else {
        return Ok(None);
    };
    let bytes = serde_json::to_vec(input).map_err(|source| MemoryError::Encode {
        what: "failure",
        source,
    })?;
    let digest = sha2::Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Some(format!("failure:{hex}")))
}

async fn apply_write(
    tx: &tokio_postgres::Transaction<'_>,
    write: &Write,
    at: i64,
) -> Result<Applied, MemoryError> {
    Ok(match write {
        Write::Failure {
            input,
            vectors,
            grouping,
        } => {
            let record = sql::insert_failure(tx, input, vectors, *grouping, at).await?;
            Applied::Failure { record }
        }
        Write::Fix { fix } => Applied::Id {
            id: sql::insert_fix(tx, fix, at).await?,
        },
        Write::FixVectors { fix_id, vectors } => {
            sql::insert_fix_vectors(tx, *fix_id, vectors).await?;
            Applied::Nothing
        }
        Write::HealAttempt { attempt } => {
            let id = sql::insert_heal_attempt(tx, attempt, at).await?;
            Applied::Id { id }
        }
    })
}

/// Replays buffered writes every `every` while some wait and the backend lives.
/// Also forgets old write ids about once an hour, so `mem_applied_writes` does not grow
/// without end when nothing is ever buffered.
fn spawn_replayer(inner: Weak<Inner>, every: Duration) {
    tokio::spawn(async move {
        let mut last_prune = std::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            if last_prune.elapsed() >= PRUNE_EVERY {
                prune_applied(&inner.pool).await;
                last_prune = std::time::Instant::now();
            }
            if inner.waiting.load(Ordering::SeqCst) == 0 {
                continue;
            }
            match inner.replay().await {
                Ok(()) => info!("buffered memory writes replayed into postgres"),
                Err(e) => debug!(error = %e, "postgres still unreachable; writes stay buffered"),
            }
        }
    });
}

/// An answer of another kind than the write's: the stored result does not fit its write id.
fn mismatched(what: &str) -> MemoryError {
    MemoryError::Corrupt(format!("the stored result of {what} is of another kind"))
}

#[async_trait::async_trait]
impl MemoryBackend for PgBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn record_failure(
        &self,
        input: FailureInput,
        vectors: EmbeddedChunks,
    ) -> Result<FailureRecord, MemoryError> {
        self.record_failure_grouped(input, vectors, Grouping::default())
            .await
    }

    async fn record_failure_grouped(
        &self,
        input: FailureInput,
        vectors: EmbeddedChunks,
        grouping: Grouping,
    ) -> Result<FailureRecord, MemoryError> {
        let write = Write::Failure {
            input,
            vectors,
            grouping,
        };
        match self.write(write).await? {
            Applied::Failure { record } => Ok(record),
            _ => Err(mismatched("a failure")),
        }
    }

    async fn groups(&self, query: GroupQuery) -> Result<Vec<GroupSummary>, MemoryError> {
        self.read(|client| async move { groups::groups(&**client, &query).await })
            .await
    }

    async fn group_detail(&self, id: i64) -> Result<Option<GroupDetail>, MemoryError> {
        self.read(|client| async move { groups::group_detail(&**client, id).await })
            .await
    }

    async fn similar_groups(&self, id: i64, k: usize) -> Result<Vec<SimilarGroup>, MemoryError> {
        self.read(|mut client| async move {
            let tx = client.transaction().await.map_err(pg_error)?;
            let found = groups::similar_groups(&tx, id, k).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(found)
        })
        .await
    }

    async fn search(&self, query: SearchQuery) -> Result<Vec<SearchHit>, MemoryError> {
        self.read(|mut client| async move {
            let tx = client.transaction().await.map_err(pg_error)?;
            let hits = groups::search(&tx, &query).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(hits)
        })
        .await
    }

    async fn similar_failures(
        &self,
        model: &str,
        vector: &[f32],
        k: usize,
        exclude_group: Option<i64>,
    ) -> Result<Vec<SimilarFailure>, MemoryError> {
        let query = sql::SimilarQuery {
            model,
            vector,
            k,
            exclude_group,
        };
        self.read(|mut client| async move {
            let tx = client.transaction().await.map_err(pg_error)?;
            let found = sql::similar_failures(&tx, &query).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(found)
        })
        .await
    }

    async fn record_fix(&self, fix: NewFix) -> Result<i64, MemoryError> {
        match self.write(Write::Fix { fix }).await? {
            Applied::Id { id } => Ok(id),
            _ => Err(mismatched("a fix")),
        }
    }

    async fn record_fix_vectors(
        &self,
        fix_id: i64,
        vectors: EmbeddedChunks,
    ) -> Result<(), MemoryError> {
        self.write(Write::FixVectors { fix_id, vectors }).await?;
        Ok(())
    }

    async fn verified_fix_for_group(&self, group_id: i64) -> Result<Option<Fix>, MemoryError> {
        self.read(
            |client| async move { sql::verified_fix(&**client, "group_id = $1", &group_id).await },
        )
        .await
    }

    async fn verified_fix_for_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<Fix>, MemoryError> {
        let filter = "group_id = (SELECT id FROM mem_groups WHERE fingerprint = $1)";
        self.read(|client| async move { sql::verified_fix(&**client, filter, &fingerprint).await })
            .await
    }

    async fn record_heal_attempt(&self, attempt: HealAttemptRecord) -> Result<i64, MemoryError> {
        match self.write(Write::HealAttempt { attempt }).await? {
            Applied::Id { id } => Ok(id),
            _ => Err(mismatched("a heal attempt")),
        }
    }

    async fn heal_attempts_for_fix(&self, fix_id: i64) -> Result<Vec<HealAttempt>, MemoryError> {
        self.read(|client| async move {
            sql::heal_attempts(&**client, "fix_id = $1", "round, id", &fix_id).await
        })
        .await
    }

    async fn heal_attempts_for_job(&self, job_id: &str) -> Result<Vec<HealAttempt>, MemoryError> {
        let filter = "job_id = $1 OR heal_job_id = $1";
        self.read(
            |client| async move { sql::heal_attempts(&**client, filter, "id", &job_id).await },
        )
        .await
    }

    async fn list_fixes(&self, limit: usize) -> Result<Vec<FixSummary>, MemoryError> {
        self.read(|client| async move { sql::list_fixes(&**client, limit).await })
            .await
    }

    async fn get_fix(&self, id: i64) -> Result<Option<FixDetail>, MemoryError> {
        self.read(|client| async move {
            let Some(fix) = sql::get_fix(&**client, id).await? else {
                return Ok(None);
            };
            let attempts = sql::heal_attempts(&**client, "fix_id = $1", "round, id", &id).await?;
            Ok(Some(FixDetail { fix, attempts }))
        })
        .await
    }

    async fn list_groups(&self, limit: usize) -> Result<Vec<Group>, MemoryError> {
        self.read(|client| async move { sql::list_groups(&**client, limit).await })
            .await
    }

    async fn get_group(&self, id: i64) -> Result<Option<Group>, MemoryError> {
        self.read(|client| async move { sql::get_group(&**client, id).await })
            .await
    }

    async fn failure_count(&self) -> Result<u64, MemoryError> {
        self.read(|client| async move { sql::failure_count(&**client).await })
            .await
    }

    /// `SELECT 1`: a count of a large table would make every health check a scan.
    async fn ping(&self) -> Result<(), MemoryError> {
        self.read(|client| async move {
            client.simple_query("SELECT 1").await.map_err(pg_error)?;
            Ok(())
        })
        .await
    }
}

/// Milliseconds since the Unix epoch; 0 on a clock set before 1970.
fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
