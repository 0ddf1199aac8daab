//! Wiring: opens the queue backend, memory, model client, notifier and healer that the
//! configuration names, and starts one worker per queue plus the heal queue's worker.
//!
//! Nothing here decides anything about jobs; it only connects the parts.

use crate::config::{
    Config, ExecutionContext, MemoryBackendKind, QueueBackendKind, QueueConfig, SandboxKind,
};
use anyhow::Context;
use serde_json::Value;
use smartworker_core::{HEAL_QUEUE, Handler, JobOptions, NewJob, QueueBackend};
use smartworker_embed_local::LocalEmbedder;
use smartworker_handler::{
    CommandHandler, CommandMode, CommandSpec, PersistentCommandHandler, PersistentOptions,
};
use smartworker_heal::{HealEvent, HealHandler, HealSettings, Healer, HealerParts, RemoteEmbedder};
use smartworker_memory::{
    Embedder, FallbackEmbedder, MemoryError, MemoryStore, QueryVector, SearchHit, SearchQuery,
};
use smartworker_memory_pg::{PgBackend, PgOptions};
use smartworker_model::{EmbedClient, EmbedConfig, ModelClient, ModelConfig};
use smartworker_notify::{Notifier, TlsMode, Transport};
use smartworker_queue::{SqliteBackend, SqliteOptions};
use smartworker_queue_redis::{RedisBackend, RedisOptions, redact};
use smartworker_sandbox::{
    BackendChoice, BackendKind, SandboxHandler, SandboxOptions, SandboxPolicy, WorkspaceOptions,
};
use smartworker_worker::{Worker, WorkerEvent, WorkerOptions};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tracing::{info, warn};

/// How long one healing run may take before its job is stopped.
const HEAL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Who gets the e-mails when `APP_SMTP_TO_USER` is not set.
const DEFAULT_REVIEWER: &str = "reviewer@localhost";

/// How often e-mails waiting in the spool are tried again.
const SPOOL_RETRY: Duration = Duration::from_secs(30);

/// The opened parts of a SmartWorker instance.
pub struct App {
    /// The configuration it was opened with.
    pub cfg: Config,
    /// The queue backend.
    pub backend: Arc<dyn QueueBackend>,
    /// The memory store.
    pub memory: MemoryStore,
    /// The embedder memory's vectors come from (and search queries are embedded with).
    pub embedder: FallbackEmbedder,
    /// The healer.
    pub healer: Arc<Healer>,
    /// Where e-mails go.
    pub notifier: Arc<Notifier>,
    /// The handler of every configured queue.
    pub handlers: BTreeMap<String, Arc<dyn Handler>>,
    /// Progress of every job the workers run.
    pub worker_events: broadcast::Sender<WorkerEvent>,
}

/// Running workers, stopped together.
pub struct Running {
    workers: Vec<Worker>,
    spool: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops fetching, lets running jobs finish within their grace period, and returns.
    pub async fn shutdown(self) {
        for worker in &self.workers {
            worker.stop_token().cancel();
        }
        for worker in self.workers {
            worker.join().await;
        }
        self.spool.abort();
    }
}

/// Opens the queue backend the configuration names: the SQLite file, or Redis (connected on
/// first use, so `serve` starts while Redis is briefly away and logs when it comes back).
fn open_backend(cfg: &Config) -> anyhow::Result<Arc<dyn QueueBackend>> {
    if cfg.queue_store.backend == QueueBackendKind::Sqlite {
        let db = db_path(cfg);
        let backend = SqliteBackend::open(&db, SqliteOptions::default())
            .with_context(|| format!("opening the queue file {}", db.display()))?;
        return Ok(Arc::new(backend));
    }
    let opts = redis_options(cfg)?;
    let backend = RedisBackend::open(opts).with_context(|| redis_context(cfg))?;
    Ok(Arc::new(backend))
}

/// As [`open_backend`], but a Redis that refuses the configured credentials is an error now
/// rather than an outage retried forever.
async fn open_backend_checked(cfg: &Config) -> anyhow::Result<Arc<dyn QueueBackend>> {
    if cfg.queue_store.backend == QueueBackendKind::Sqlite {
        return open_backend(cfg);
    }
    let opts = redis_options(cfg)?;
    let backend = RedisBackend::open_checked(opts)
        .await
        .with_context(|| redis_context(cfg))?;
    Ok(Arc::new(backend))
}

/// The context of a Redis open error, naming the URL with its password hidden.
fn redis_context(cfg: &Config) -> String {
    let url = cfg.redis_connection_url();
    let url = url.as_ref().map_or("", |u| u.expose());
    format!("opening the redis queue backend at {}", redact(url))
}

/// The Redis backend's options, from `[redis]` and the queues' dead-letter queue names.
fn redis_options(cfg: &Config) -> anyhow::Result<RedisOptions> {
    let url = cfg
        .redis_connection_url()
        .context("queue.backend is redis but neither APP_REDIS_URL nor APP_REDIS_HOST is set")?;
    let mut opts = RedisOptions::new(url.expose());
    opts.prefix.clone_from(&cfg.queue_store.redis_prefix);
    opts.max_stalled = cfg.queue_store.redis_max_stalled;
    opts.cluster = cfg.queue_store.redis_cluster;
    opts.dead_letter_queues = cfg
        .queues
        .iter()
        .filter_map(|(name, q)| Some((name.clone(), q.dead_letter_queue.clone()?)))
        .collect();
    Ok(opts)
}

/// The embedded memory store in the queue file.
fn sqlite_memory(cfg: &Config, db: &Path) -> anyhow::Result<MemoryStore> {
    if cfg.memory_backend == MemoryBackendKind::Postgres {
        anyhow::bail!("memory.backend = \"postgres\" is opened with App::connect, not App::open");
    }
    MemoryStore::open(db).with_context(|| format!("opening the memory store in {}", db.display()))
}

/// Where PostgreSQL memory keeps writes while the database is down.
pub fn memory_buffer_path(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("memory-pg-buffer.db")
}

/// Memory in PostgreSQL: connects, runs the migrations and replays any buffered writes.
async fn postgres_memory(cfg: &Config) -> anyhow::Result<MemoryStore> {
    let url = cfg
        .database_url()
        .context("memory.backend = \"postgres\" needs db.host (APP_DB_HOST) or APP_DB_URL")?;
    let options = PgOptions::from_url(url.expose(), memory_buffer_path(cfg))
        .context("reading the database settings in [db]")?;
    let backend = PgBackend::connect(options)
        .await
        .context("opening the memory store in PostgreSQL")?;
    Ok(MemoryStore::from_backend(Arc::new(backend)))
}

/// The queue file of a configuration (memory shares it).
pub fn db_path(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("smartworker.db")
}

impl App {
    /// Opens every part the configuration names, with memory in the embedded SQLite store.
    ///
    /// # Errors
    /// When the state directory, the queue file or the memory store cannot be opened, or a
    /// client cannot be built from its settings; when `memory.backend` is `postgres`, which
    /// needs [`App::connect`].
    pub fn open(cfg: Config) -> anyhow::Result<App> {
        let backend = open_backend(&cfg)?;
        Self::assemble(cfg, backend, None)
    }

    /// Opens every part the configuration names, connecting to PostgreSQL first (and running
    /// its migrations) when `memory.backend` is `postgres`.
    ///
    /// # Errors
    /// As [`App::open`]; when PostgreSQL cannot be reached or holds a newer schema.
    pub async fn connect(cfg: Config) -> anyhow::Result<App> {
        let memory = match cfg.memory_backend {
            MemoryBackendKind::Sqlite => None,
            MemoryBackendKind::Postgres => Some(postgres_memory(&cfg).await?),
        };
        let backend = open_backend_checked(&cfg).await?;
        Self::assemble(cfg, backend, memory)
    }

    /// Builds the app around `backend` and `memory`, or around the embedded store when
    /// `memory` is `None`.
    fn assemble(
        cfg: Config,
        backend: Arc<dyn QueueBackend>,
        memory: Option<MemoryStore>,
    ) -> anyhow::Result<App> {
        let db = db_path(&cfg);
        let memory = match memory {
            Some(memory) => memory,
            None => sqlite_memory(&cfg, &db)?,
        }
        .with_secrets(cfg.secrets())
        .with_group_threshold(cfg.memory.group_threshold)
        .with_search_floor(cfg.memory.search_min_similarity);
        let notifier = Arc::new(open_notifier(&cfg)?);
        let embedder = FallbackEmbedder::new(primary_embedder(&cfg)?);
        let commands: HashMap<String, CommandSpec> = cfg
            .queues
            .iter()
            .map(|(name, q)| (name.clone(), command_spec(&cfg, q)))
            .collect();
        let modes: HashMap<String, CommandMode> = cfg
            .queues
            .iter()
            .map(|(name, q)| (name.clone(), q.mode))
            .collect();
        let healer = Healer::new(HealerParts {
            backend: Arc::clone(&backend),
            memory: memory.clone(),
            model: model_client(&cfg)?,
            embedder: embedder.clone(),
            notifier: Arc::clone(&notifier),
            commands: commands.clone(),
            settings: heal_settings(&cfg),
        })
        .with_command_modes(modes);
        let healer = Arc::new(healer);
        let mut handlers: BTreeMap<String, Arc<dyn Handler>> = commands
            .into_iter()
            .filter_map(|(name, spec)| {
                let queue = cfg.queues.get(&name)?;
                let handler = command_handler(&cfg, &name, queue, spec);
                Some((name, handler))
            })
            .collect();
        handlers.insert(
            HEAL_QUEUE.to_owned(),
            Arc::new(HealHandler::new(Arc::clone(&healer))),
        );
        let (worker_events, _) = broadcast::channel(1024);
        Ok(App {
            cfg,
            backend,
            memory,
            embedder,
            healer,
            notifier,
            handlers,
            worker_events,
        })
    }

    /// Registers a Rust function (or any handler) for a queue, replacing what was there.
    pub fn register(&mut self, queue: impl Into<String>, handler: Arc<dyn Handler>) {
        self.handlers.insert(queue.into(), handler);
    }

    /// Progress events of healing runs.
    pub fn heal_events(&self) -> broadcast::Receiver<HealEvent> {
        self.healer.subscribe()
    }

    /// Failure groups matching `text`: its words in full text, fused with its vector from the
    /// configured embedder (or the lexical fallback), compared only with that model's vectors.
    /// Returns the model the query was embedded with, if embedding worked.
    ///
    /// # Errors
    /// Memory errors, such as a query vector whose length differs from its model's.
    pub async fn search_failures(
        &self,
        text: &str,
        k: usize,
    ) -> Result<(Option<String>, Vec<SearchHit>), MemoryError> {
        let vector = match self.embedder.embed_with_model(&[text.to_owned()]).await {
            Ok((model, mut vectors)) => vectors.pop().map(|vector| QueryVector { model, vector }),
            Err(err) => {
                tracing::warn!(error = %err, "search query not embedded; searching text only");
                None
            }
        };
        let model = vector.as_ref().map(|v| v.model.clone());
        let query = SearchQuery {
            text: text.to_owned(),
            vector,
            k,
        };
        Ok((model, self.memory.search(query).await?))
    }

    /// Starts a worker for every queue with a handler, and the e-mail spool's retry loop.
    pub fn start(&self) -> Running {
        let workers = self
            .handlers
            .iter()
            .map(|(queue, handler)| {
                let opts = self.worker_options(queue);
                Worker::spawn(
                    Arc::clone(&self.backend),
                    queue.clone(),
                    Arc::clone(handler),
                    opts,
                )
            })
            .collect();
        let spool = Arc::clone(&self.notifier).spawn_retry_loop(SPOOL_RETRY);
        tokio::spawn(remove_leftover_sandboxes(
            sandbox_policy(&self.cfg),
            self.cfg.heal.workspace_dir.clone(),
        ));
        Running { workers, spool }
    }

    fn worker_options(&self, queue: &str) -> WorkerOptions {
        let mut opts = WorkerOptions {
            events: Some(self.worker_events.clone()),
            idle_poll: Duration::from_millis(500),
            ..WorkerOptions::default()
        };
        if queue == HEAL_QUEUE {
            opts.default_timeout = Some(HEAL_TIMEOUT);
        }
        if let Some(q) = self.cfg.queues.get(queue) {
            opts.concurrency = usize::try_from(q.concurrency).unwrap_or(1).max(1);
            opts.default_timeout = q.timeout_ms.map(Duration::from_millis);
            opts.lock = Duration::from_millis(q.lock_ms);
            // Dead workers are looked for twice per lock period.
            opts.stalled_interval = opts.lock / 2;
        }
        opts
    }

    /// True when the queue has a handler here.
    pub fn knows_queue(&self, queue: &str) -> bool {
        self.handlers.contains_key(queue)
    }

    /// The queues that have a handler here.
    pub fn queue_names(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// A job for `queue`, with the queue's default options overlaid by the producer's `opts`.
    ///
    /// # Errors
    /// When `opts` is not an object of known job options.
    pub fn new_job(
        &self,
        queue: &str,
        name: &str,
        data: Value,
        opts: Option<Value>,
    ) -> Result<NewJob, String> {
        let defaults = self
            .cfg
            .queues
            .get(queue)
            .map(QueueConfig::job_options)
            .unwrap_or_default();
        let opts = overlay_options(defaults, opts)?;
        Ok(NewJob {
            opts,
            ..NewJob::new(queue, name, data)
        })
    }
}

/// Producer options win over queue defaults, field by field.
fn overlay_options(defaults: JobOptions, opts: Option<Value>) -> Result<JobOptions, String> {
    let Some(opts) = opts else {
        return Ok(defaults);
    };
    let Value::Object(given) = opts else {
        return Err("\"opts\" must be an object".to_owned());
    };
    let Value::Object(mut merged) = serde_json::to_value(&defaults).map_err(|e| e.to_string())?
    else {
        return Err("job options do not serialise to an object".to_owned());
    };

    // One field at a time, so the message names the option that is wrong even when serde's
    // error (`invalid type: string "3", expected u32`) does not.
    let mut opts = defaults;
    for (key, value) in given {
        merged.insert(key.clone(), value);
        opts = serde_json::from_value(Value::Object(merged.clone()))
            .map_err(|e| format!("invalid job option {key:?}: {e}"))?;
    }
    Ok(opts)
}

/// A queue's handler: on the host (a process per job, or a pool of long-lived processes for
/// `mode = "persistent"`), or in the queue's sandbox for every job when
/// `EXECUTION_CONTEXT=sandbox`.
fn command_handler(
    cfg: &Config,
    name: &str,
    queue: &QueueConfig,
    spec: CommandSpec,
) -> Arc<dyn Handler> {
    match (cfg.execution_context, queue.mode) {
        (ExecutionContext::Host, CommandMode::OneShot) => Arc::new(CommandHandler::new(spec)),
        (ExecutionContext::Host, CommandMode::Persistent) => {
            let options = PersistentOptions::new(queue.process_count());
            Arc::new(PersistentCommandHandler::new(spec, options))
        }
        // Each sandboxed job gets its own copy of the project, so even a persistent handler
        // runs one process per job there, fed its request line and then end of input.
        (ExecutionContext::Sandbox, mode) => {
            let policy = sandbox_policy(cfg);
            let handler = SandboxHandler::new(spec, cfg.root_dir.clone(), sandbox_options(cfg))
                .with_workspaces(workspace_options(cfg))
                .with_backend(policy.for_queue(name).clone())
                .with_mode(mode);
            Arc::new(handler)
        }
    }
}

/// The sandbox limits, with the configured sandbox user, memory and room for writes.
fn sandbox_options(cfg: &Config) -> SandboxOptions {
    SandboxOptions {
        host_user: cfg.heal.sandbox_uid,
        memory_bytes: cfg.heal.sandbox_memory_mb << 20,
        workspace_bytes: cfg.heal.sandbox_write_mb << 20,
        ..SandboxOptions::default()
    }
}

/// Where workspace copies are made (`heal.workspace_dir`).
fn workspace_options(cfg: &Config) -> WorkspaceOptions {
    WorkspaceOptions {
        parent_dir: cfg.heal.workspace_dir.clone(),
        // Other jobs' payloads are no business of a fix's run, nor is SmartWorker's own
        // configuration, whatever its file is called.
        skip: [cfg.state_dir.clone(), db_path(cfg)]
            .into_iter()
            .chain(cfg.sources.iter().cloned())
            .collect(),
        ..WorkspaceOptions::default()
    }
}

/// `heal.sandbox` and `heal.sandbox_image` for every queue, overridden by a queue's own.
fn sandbox_policy(cfg: &Config) -> SandboxPolicy {
    let default = BackendChoice {
        kind: backend_kind(cfg.heal.sandbox),
        image: cfg.heal.sandbox_image.clone(),
        ..BackendChoice::default()
    };
    let queues = cfg
        .queues
        .iter()
        .map(|(name, q)| {
            let choice = BackendChoice {
                kind: q.sandbox.map_or(default.kind, backend_kind),
                image: q.sandbox_image.clone().or_else(|| default.image.clone()),
                ..default.clone()
            };
            (name.clone(), choice)
        })
        .collect();
    SandboxPolicy { default, queues }
}

fn backend_kind(kind: SandboxKind) -> BackendKind {
    match kind {
        SandboxKind::Auto => BackendKind::Auto,
        SandboxKind::Bubblewrap => BackendKind::Bubblewrap,
        SandboxKind::Docker => BackendKind::Docker,
    }
}

/// Removes sandbox workspaces, bubblewrap runs' cgroups and containers a crashed SmartWorker
/// left behind, the last on every Docker engine a queue may use. An engine that does not
/// answer is not an error here: healing reports it when a queue needs it.
async fn remove_leftover_sandboxes(policy: SandboxPolicy, workspaces: Option<PathBuf>) {
    let stale = tokio::task::spawn_blocking(move || {
        smartworker_sandbox::remove_stale_workspaces(workspaces.as_deref())
    });
    if let Ok(removed) = stale.await
        && !removed.is_empty()
    {
        info!(workspaces = ?removed, "removed sandbox workspaces left behind");
    }
    let cgroups = tokio::task::spawn_blocking(smartworker_sandbox::remove_leftover_cgroups);
    if let Ok(removed) = cgroups.await
        && !removed.is_empty()
    {
        info!(cgroups = ?removed, "removed sandbox cgroups left behind");
    }
    for socket in policy.docker_sockets() {
        match smartworker_sandbox::remove_leftovers(socket).await {
            Ok(removed) if removed.is_empty() => {}
            Ok(removed) => info!(containers = ?removed, "removed sandbox containers left behind"),
            Err(err) => warn!(error = %err, "cannot look for leftover sandbox containers"),
        }
    }
}

fn command_spec(cfg: &Config, queue: &QueueConfig) -> CommandSpec {
    let (program, args) = queue
        .command
        .split_first()
        .map_or(("true", &[][..]), |(p, a)| (p.as_str(), a));
    let mut spec = CommandSpec::new(program, &[], cfg.root_dir.clone());
    spec.args = args.to_vec();
    spec.timeout = queue.timeout_ms.map(Duration::from_millis);
    spec.env = passed_env(queue);
    spec
}

/// The host variables a queue passes on to its handler.
fn passed_env(queue: &QueueConfig) -> Vec<(String, String)> {
    queue
        .env
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.clone(), v)))
        .collect()
}

fn heal_settings(cfg: &Config) -> HealSettings {
    HealSettings {
        project_root: cfg.root_dir.clone(),
        state_dir: cfg.state_dir.clone(),
        rounds: cfg.heal.rounds,
        sandbox: sandbox_options(cfg),
        workspaces: workspace_options(cfg),
        backends: sandbox_policy(cfg),
        check_command: cfg.heal.check_command.clone(),
        reviewers: vec![
            cfg.smtp
                .to
                .clone()
                .unwrap_or_else(|| DEFAULT_REVIEWER.to_owned()),
        ],
        from: cfg.smtp.from.clone(),
        secrets: cfg.secrets(),
        context: Default::default(),
        limits: Default::default(),
        similar: 3,
    }
}

fn model_client(cfg: &Config) -> anyhow::Result<ModelClient> {
    let model = ModelConfig {
        base_url: cfg.llm.url.clone(),
        model: cfg.llm.model.clone(),
        api_key: cfg.llm.api_key.as_ref().map(|k| k.expose().to_owned()),
        timeout: Duration::from_secs(cfg.llm.timeout_secs),
        ..ModelConfig::default()
    };
    ModelClient::new(model).context("building the model client from [llm]")
}

/// The in-process model when `memory.model_dir` is set, else the embeddings server; either
/// way the lexical embedder stands in when it fails.
fn primary_embedder(cfg: &Config) -> anyhow::Result<Arc<dyn Embedder>> {
    if let Some(dir) = &cfg.memory.model_dir {
        let local = LocalEmbedder::load(dir)
            .with_context(|| format!("loading the embedding model in {}", dir.display()))?;
        return Ok(Arc::new(local));
    }
    let client = embed_client(cfg)?;
    Ok(match cfg.embed.dimensions {
        Some(dimensions) => Arc::new(RemoteEmbedder::with_dimensions(client, dimensions)),
        None => Arc::new(RemoteEmbedder::new(client)),
    })
}

fn embed_client(cfg: &Config) -> anyhow::Result<EmbedClient> {
    let embed = EmbedConfig {
        base_url: cfg.embed.url.clone(),
        model: cfg.embed.model.clone(),
        api_key: cfg.embed.api_key.as_ref().map(|k| k.expose().to_owned()),
        timeout: Duration::from_secs(cfg.embed.timeout_secs),
        batch_size: cfg.embed.batch_size,
        ..EmbedConfig::default()
    };
    EmbedClient::new(embed).context("building the embeddings client from [embed]")
}

fn open_notifier(cfg: &Config) -> anyhow::Result<Notifier> {
    let transport = match cfg.smtp() {
        Some(smtp) => Transport::Smtp {
            tls: TlsMode::default_for(&smtp.host),
            user: smtp.credentials.as_ref().map(|(u, _)| u.clone()),
            password: smtp
                .credentials
                .as_ref()
                .map(|(_, p)| p.expose().to_owned()),
            host: smtp.host,
            port: smtp.port,
        },
        None => Transport::Outbox {
            dir: cfg.state_dir.join("outbox"),
        },
    };
    let spool = cfg.state_dir.join("spool");
    Notifier::new(transport, spool.clone())
        .with_context(|| format!("opening the e-mail spool {}", spool.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn producer_options_override_queue_defaults_field_by_field() {
        let defaults = JobOptions {
            attempts: 3,
            autofix: true,
            ..JobOptions::default()
        };
        let merged = overlay_options(defaults, Some(json!({"attempts": 5}))).unwrap();
        assert_eq!((merged.attempts, merged.autofix), (5, true));
        let err = overlay_options(JobOptions::default(), Some(json!({"atempts": 5}))).unwrap_err();
        assert!(err.contains("unknown field `atempts`"), "{err}");
        assert!(overlay_options(JobOptions::default(), Some(json!([1]))).is_err());
    }
}
