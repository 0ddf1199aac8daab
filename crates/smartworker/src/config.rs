//! SmartWorker's configuration: built-in defaults, then `smartworker.toml`, then a `.env` file,
//! then the process environment, each later layer overriding the earlier ones key by key.
//!
//! Every wrong value is an error that names the key, the file and the line (or "environment");
//! unknown toml keys are errors too, so a typo never silently falls back to a default. Secrets
//! (the SMTP password, the database password, the model API key) never show in `Debug` output.
//!
//! Rules worth knowing:
//! - The environment names are the Bun system's (`APP_PORT`, `APP_SMTP_TO_USER`, ...); the toml
//!   spells the same settings as sections (`[server] port`, `[smtp] to`); see [`SETTINGS`].
//! - An empty value (`APP_SMTP_HOST=`) counts as not set in that layer.
//! - The `.env` file is `<cwd>/.env`, or else the one next to the config file.
//! - A relative path is resolved against the directory of the file that wrote it, or against the
//!   working directory when it came from the environment.
//! - Queues (`[queues.<name>]`) and `heal.check_command` can only be set in the toml.

mod command_mode;
mod dotenv;
mod file;
mod memory;
mod postgres;
mod queue_store;
mod sandbox;
mod value;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use smartworker_core::{Backoff, JobOptions};
use smartworker_handler::CommandMode;

use self::file::FileLayer;
use self::value::{Raw, Scalar, resolve};

pub use self::memory::{DEFAULT_GROUP_THRESHOLD, EmbedConfig, MemoryConfig};
pub use self::postgres::MemoryBackendKind;
pub use self::queue_store::{QueueBackendKind, QueueStoreConfig};
pub use self::sandbox::DEFAULT_SANDBOX_UID;
pub use self::value::Origin;

/// The config file read when `--config` is not given; a missing one is not an error.
pub const DEFAULT_CONFIG_FILE: &str = "smartworker.toml";

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 9090;
const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
const DEFAULT_REDIS_PORT: u16 = 6379;
/// Plain SMTP without TLS, as a local relay or a test server speaks it.
const DEFAULT_SMTP_PORT: u16 = 25;
const DEFAULT_SMTP_FROM: &str = "smartworker@localhost";
const DEFAULT_DB_PORT: u16 = 5432;
const DEFAULT_LLM_URL: &str = "http://localhost:8100/v1";
const DEFAULT_LLM_MODEL: &str = "qwen2.5-coder-3b-instruct";
const DEFAULT_LLM_TIMEOUT_SECS: u64 = 120;
const DEFAULT_HEAL_ROUNDS: u32 = 2;
const STATE_DIR_NAME: &str = ".smartworker";

/// One setting that every layer may set: its toml path and its environment name.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// The dotted toml path, such as `server.port`.
    pub path: &'static str,
    /// The environment (and `.env`) name, such as `APP_PORT`.
    pub env: &'static str,
}

const fn setting(path: &'static str, env: &'static str) -> Setting {
    Setting { path, env }
}

/// Every setting that all layers may set. `APP_LLM_TIMEOUT_SECS` and `APP_HEAL_SANDBOX*` are new
/// in SmartWorker; the other names are the Bun system's.
pub const SETTINGS: &[Setting] = &[
    setting("root_dir", "APP_ROOT_DIR"),
    setting("state_dir", "APP_STATE_DIR"),
    setting("execution_context", "EXECUTION_CONTEXT"),
    setting("server.host", "APP_HOST"),
    setting("server.port", "APP_PORT"),
    setting("server.max_body_bytes", "APP_MAX_BODY_BYTES"),
    setting("server.api_token", "APP_API_TOKEN"),
    setting("redis.host", "APP_REDIS_HOST"),
    setting("redis.port", "APP_REDIS_PORT"),
    setting("redis.url", "APP_REDIS_URL"),
    setting("redis.prefix", "APP_REDIS_PREFIX"),
    setting("redis.max_stalled", "APP_REDIS_MAX_STALLED"),
    setting("redis.cluster", "APP_REDIS_CLUSTER"),
    setting("queue.backend", "APP_QUEUE_BACKEND"),
    setting("smtp.host", "APP_SMTP_HOST"),
    setting("smtp.port", "APP_SMTP_PORT"),
    setting("smtp.user", "APP_SMTP_USER"),
    setting("smtp.pass", "APP_SMTP_PASS"),
    setting("smtp.to", "APP_SMTP_TO_USER"),
    setting("smtp.from", "APP_SMTP_FROM"),
    setting("db.host", "APP_DB_HOST"),
    setting("db.port", "APP_DB_PORT"),
    setting("db.user", "APP_DB_USER"),
    setting("db.password", "APP_DB_PASSWORD"),
    setting("db.name", "APP_DB_NAME"),
    setting("db.url", "APP_DB_URL"),
    setting("memory.backend", "APP_MEMORY_BACKEND"),
    setting("llm.url", "APP_LLM_URL"),
    setting("llm.model", "APP_LLM_MODEL"),
    setting("llm.api_key", "APP_LLM_API_KEY"),
    setting("llm.timeout_secs", "APP_LLM_TIMEOUT_SECS"),
    setting("embed.url", "APP_EMBED_URL"),
    setting("embed.model", "APP_EMBED_MODEL"),
    setting("embed.api_key", "APP_EMBED_API_KEY"),
    setting("embed.timeout_secs", "APP_EMBED_TIMEOUT_SECS"),
    setting("embed.batch_size", "APP_EMBED_BATCH_SIZE"),
    setting("embed.dimensions", "APP_EMBED_DIMENSIONS"),
    setting("memory.model_dir", "APP_EMBED_MODEL_DIR"),
    setting("memory.group_threshold", "APP_MEMORY_GROUP_THRESHOLD"),
    setting(
        "memory.search_min_similarity",
        "APP_MEMORY_SEARCH_MIN_SIMILARITY",
    ),
    setting("heal.rounds", "APP_HEAL_ROUNDS"),
    setting("heal.sandbox", "APP_HEAL_SANDBOX"),
    setting("heal.sandbox_image", "APP_HEAL_SANDBOX_IMAGE"),
    setting("heal.sandbox_uid", "APP_HEAL_SANDBOX_UID"),
    setting("heal.sandbox_memory_mb", "APP_HEAL_SANDBOX_MEMORY_MB"),
    setting("heal.sandbox_write_mb", "APP_HEAL_SANDBOX_WRITE_MB"),
    setting("heal.workspace_dir", "APP_HEAL_WORKSPACE_DIR"),
];

/// A value that must not be shown: `Debug` prints `Secret(***)` and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What [`Config::load`] reads.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `--config`: a file that must exist. `None` reads `./smartworker.toml` if it exists.
    pub config_path: Option<PathBuf>,
    /// The working directory, against which relative paths are resolved.
    pub cwd: PathBuf,
    /// The process environment; tests pass their own.
    pub env: Vec<(String, String)>,
}

impl LoadOptions {
    /// Options for this process: its working directory and environment. Variables whose name or
    /// value is not UTF-8 are skipped (no SmartWorker setting can have such a name).
    ///
    /// # Errors
    /// When the working directory cannot be read.
    pub fn from_process(config_path: Option<PathBuf>) -> io::Result<Self> {
        let env = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        Ok(LoadOptions {
            config_path,
            cwd: std::env::current_dir()?,
            env,
        })
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` names a file that does not exist.
    #[error("config file {0} does not exist")]
    Missing(String),
    /// A file exists but could not be read.
    #[error("cannot read {shown}: {source}")]
    Read {
        /// The file, as messages show it.
        shown: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file is not valid TOML or `.env` syntax.
    #[error("{shown}:{line}: {message}")]
    Syntax {
        /// The file, as messages show it.
        shown: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A key is unknown, or its value is wrong.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        /// Where the key was written.
        origin: Origin,
        /// The key as that place spells it (`queues.signup.attempts`, `APP_PORT`).
        key: String,
        /// What is wrong, naming the value.
        message: String,
    },
}

/// Whether SmartWorker itself runs on the host or inside a sandbox (`EXECUTION_CONTEXT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExecutionContext {
    /// On the host (the default).
    #[default]
    Host,
    /// Inside a container or sandbox already.
    Sandbox,
}

/// Which sandbox verifies fixes (`heal.sandbox`, or a queue's own `sandbox`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SandboxKind {
    /// The best sandbox this machine has (the default): bubblewrap, else Docker with an image.
    #[default]
    Auto,
    /// Always bubblewrap.
    Bubblewrap,
    /// Always Docker.
    Docker,
}

/// The HTTP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// The address to listen on (`APP_HOST`, default 127.0.0.1).
    pub host: String,
    /// The port (`APP_PORT`, default 9090).
    pub port: u16,
    /// The largest request body accepted (`APP_MAX_BODY_BYTES`, default 1 MiB).
    pub max_body_bytes: u64,
    /// `APP_API_TOKEN`: the bearer token every route but `/healthz` requires when `host` is not
    /// a loopback address.
    pub api_token: Option<Secret>,
}

/// The server would listen off loopback with nothing guarding the API.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to listen on {0}, which is not a loopback address, without an API token; \
     set APP_API_TOKEN (or [server] api_token), or bind to 127.0.0.1"
)]
pub struct UnguardedListen(pub String);

impl ServerConfig {
    /// Whether `host` is a loopback address (`127.0.0.0/8`, `::1`) or `localhost`.
    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        if host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        host.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    }

    /// The token requests must carry: `None` on loopback, where the API is open.
    ///
    /// # Errors
    /// [`UnguardedListen`] when the host is off loopback and no token is configured; `serve`
    /// refuses to start then.
    pub fn required_token(&self) -> Result<Option<&Secret>, UnguardedListen> {
        if self.is_loopback() {
            return Ok(None);
        }
        match &self.api_token {
            Some(token) if !token.expose().is_empty() => Ok(Some(token)),
            _ => Err(UnguardedListen(self.host.clone())),
        }
    }
}

/// The Redis queue backend; without a host the embedded SQLite backend is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// `APP_REDIS_HOST`; none means "use the embedded store".
    pub host: Option<String>,
    /// `APP_REDIS_PORT`, default 6379.
    pub port: u16,
}

/// E-mail; without a host, messages are written to the outbox folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpConfig {
    /// `APP_SMTP_HOST`; none means "write to the outbox".
    pub host: Option<String>,
    /// `APP_SMTP_PORT`, default 25 (plain SMTP, as a localhost relay speaks it).
    pub port: u16,
    /// `APP_SMTP_USER`; set together with the password or not at all.
    pub user: Option<String>,
    /// `APP_SMTP_PASS`.
    pub pass: Option<Secret>,
    /// `APP_SMTP_TO_USER`: the reviewer who receives fixes.
    pub to: Option<String>,
    /// `APP_SMTP_FROM`, default `smartworker@localhost`.
    pub from: String,
}

/// An SMTP server to send through, as [`Config::smtp`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpServer {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User name and password, when the server wants a login.
    pub credentials: Option<(String, Secret)>,
}

/// PostgreSQL for memory; without a host the embedded store is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbConfig {
    /// `APP_DB_HOST`; none means "use the embedded store".
    pub host: Option<String>,
    /// `APP_DB_PORT`, default 5432.
    pub port: u16,
    /// `APP_DB_USER`.
    pub user: Option<String>,
    /// `APP_DB_PASSWORD`; only with a user.
    pub password: Option<Secret>,
    /// `APP_DB_NAME`.
    pub name: Option<String>,
    /// `APP_DB_URL`: the whole `postgres://` URL instead of host, port, user and name.
    pub url: Option<Secret>,
}

/// The OpenAI-compatible chat model that proposes fixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmConfig {
    /// `APP_LLM_URL`, the API base without a trailing slash (default `http://localhost:8100/v1`).
    pub url: String,
    /// `APP_LLM_MODEL`, default `qwen2.5-coder-3b-instruct`.
    pub model: String,
    /// `APP_LLM_API_KEY`, sent as a bearer token when set.
    pub api_key: Option<Secret>,
    /// `APP_LLM_TIMEOUT_SECS`: how long one completion may take (default 120).
    pub timeout_secs: u64,
}

/// Healing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealConfig {
    /// `APP_HEAL_ROUNDS`: how many times the model may retry a fix that failed in the sandbox
    /// (default 2).
    pub rounds: u32,
    /// `heal.sandbox` / `APP_HEAL_SANDBOX`: `auto`, `bubblewrap` or `docker`.
    pub sandbox: SandboxKind,
    /// `heal.sandbox_image` / `APP_HEAL_SANDBOX_IMAGE`: the Docker image of queues without
    /// their own; without one, Docker is not used.
    pub sandbox_image: Option<String>,
    /// `heal.sandbox_uid` / `APP_HEAL_SANDBOX_UID`: the user and group id sandboxed code runs
    /// as (default 61000, an id no account uses; never 0).
    pub sandbox_uid: u32,
    /// `heal.sandbox_memory_mb` / `APP_HEAL_SANDBOX_MEMORY_MB`: a sandboxed run's memory, in
    /// MiB (default 2048).
    pub sandbox_memory_mb: u64,
    /// `heal.sandbox_write_mb` / `APP_HEAL_SANDBOX_WRITE_MB`: what a sandboxed run may write
    /// under the project in all, beyond the project's own size, in MiB (default 256).
    pub sandbox_write_mb: u64,
    /// `heal.workspace_dir` / `APP_HEAL_WORKSPACE_DIR`: where workspace copies are made
    /// (default the system's temp dir); a tmpfs such as `/dev/shm` makes copying cheap.
    pub workspace_dir: Option<PathBuf>,
    /// `heal.check_command`: the project's own checks (argv), which must pass in the sandbox too.
    pub check_command: Option<Vec<String>>,
}

/// One `[queues.<name>]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// The handler's argv, such as `["python3", "handlers/signup.py"]`.
    pub command: Vec<String>,
    /// How many jobs of this queue run at once (default 1).
    pub concurrency: u32,
    /// Default attempts per job (default 1).
    pub attempts: u32,
    /// Default backoff between attempts.
    pub backoff: Option<Backoff>,
    /// Default milliseconds one attempt may take.
    pub timeout_ms: Option<u64>,
    /// How long a worker's lock on a job lasts unless renewed (default 30000); a job whose
    /// worker died runs again once its lock has expired.
    pub lock_ms: u64,
    /// Heal jobs of this queue that fail for good (default false).
    pub autofix: bool,
    /// Host environment variables passed on to the handler; all others are withheld.
    pub env: Vec<String>,
    /// `oneshot` (the default): a process per job; `persistent`: long-lived processes that
    /// read one job per line on stdin and answer each on stdout.
    pub mode: CommandMode,
    /// How many processes a persistent queue keeps (default: its concurrency).
    pub processes: Option<u32>,
    /// The Redis backend's dead-letter queue for this queue (default `<queue>-dlq`).
    pub dead_letter_queue: Option<String>,
    /// This queue's sandbox backend, instead of `heal.sandbox`.
    pub sandbox: Option<SandboxKind>,
    /// This queue's Docker image, instead of `heal.sandbox_image`.
    pub sandbox_image: Option<String>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            command: Vec::new(),
            concurrency: 1,
            attempts: 1,
            backoff: None,
            timeout_ms: None,
            lock_ms: 30_000,
            autofix: false,
            env: Vec::new(),
            mode: CommandMode::OneShot,
            processes: None,
            dead_letter_queue: None,
            sandbox: None,
            sandbox_image: None,
        }
    }
}

impl QueueConfig {
    /// How many processes a persistent queue keeps: `processes`, else one per concurrent job.
    pub fn process_count(&self) -> usize {
        let count = self.processes.unwrap_or(self.concurrency);
        usize::try_from(count).unwrap_or(1).max(1)
    }

    /// The options a job added to this queue gets unless its producer says otherwise.
    pub fn job_options(&self) -> JobOptions {
        JobOptions {
            attempts: self.attempts,
            backoff: self.backoff,
            timeout: self.timeout_ms,
            autofix: self.autofix,
            ..JobOptions::default()
        }
    }
}

/// The whole configuration, every layer applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The project root that handlers run in and fixes edit (`APP_ROOT_DIR`; default the config
    /// file's directory, or the working directory).
    pub root_dir: PathBuf,
    /// Where queues, memory and the outbox live (`APP_STATE_DIR`; default `<root>/.smartworker`).
    pub state_dir: PathBuf,
    /// `EXECUTION_CONTEXT`.
    pub execution_context: ExecutionContext,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[redis]`.
    pub redis: RedisConfig,
    /// `[queue]` and the Redis settings beyond host and port.
    pub queue_store: QueueStoreConfig,
    /// `[smtp]`.
    pub smtp: SmtpConfig,
    /// `[db]`.
    pub db: DbConfig,
    /// `memory.backend`: where memory lives (see [`MemoryBackendKind`]).
    pub memory_backend: MemoryBackendKind,
    /// `[llm]`.
    pub llm: LlmConfig,
    /// `[embed]`.
    pub embed: EmbedConfig,
    /// `[memory]`.
    pub memory: MemoryConfig,
    /// `[heal]`.
    pub heal: HealConfig,
    /// `[queues.<name>]`, by name.
    pub queues: BTreeMap<String, QueueConfig>,
    /// The files read, in the order they were applied.
    pub sources: Vec<PathBuf>,
}

/// The merged raw values, keyed by toml path; a later layer replaces an earlier one's value.
#[derive(Default)]
struct Layers(BTreeMap<&'static str, Raw>);

impl Layers {
    /// Sets a value unless it is empty, which counts as not set.
    fn set(&mut self, path: &'static str, raw: Raw) {
        let empty = matches!(&raw.value, Scalar::Text(s) | Scalar::Str(s) if s.is_empty());
        if !empty {
            self.0.insert(path, raw);
        }
    }

    /// Sets the setting whose environment name is `name`, if there is one.
    fn set_env(&mut self, name: &str, value: &str, origin: Origin) {
        let Some(setting) = SETTINGS.iter().find(|s| s.env == name) else {
            return;
        };
        let raw = Raw {
            key: name.to_owned(),
            value: Scalar::Text(value.to_owned()),
            origin,
        };
        self.set(setting.path, raw);
    }

    fn get(&self, path: &str) -> Option<&Raw> {
        self.0.get(path)
    }

    /// Converts the value at `path`, if set.
    fn read<T>(
        &self,
        path: &str,
        convert: impl FnOnce(&Raw) -> Result<T, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(path).map(convert).transpose()
    }
}

/// A file read whole, with its name as messages show it.
struct SourceFile {
    path: PathBuf,
    shown: String,
    text: String,
}

impl Config {
    /// Loads the configuration: defaults, the toml file, the `.env` file, the environment.
    ///
    /// # Errors
    /// A missing `--config` file, an unreadable file, bad syntax, an unknown toml key or a wrong
    /// value; the message names the key and where it was written.
    pub fn load(opts: &LoadOptions) -> Result<Config, ConfigError> {
        let mut layers = Layers::default();
        let mut sources = Vec::new();

        let config_file = read_config_file(opts)?;
        let mut file_layer = FileLayer::default();
        if let Some(config) = &config_file {
            file_layer = file::parse(&config.text, &config.path, &config.shown)?;
            for (path, raw) in std::mem::take(&mut file_layer.scalars) {
                layers.set(path, raw);
            }
            sources.push(config.path.clone());
        }

        let config_dir = config_file.as_ref().and_then(|f| f.path.parent());
        if let Some(env_file) = read_dotenv(&opts.cwd, config_dir)? {
            apply_dotenv(&mut layers, &env_file)?;
            sources.push(env_file.path);
        }

        for (name, value) in &opts.env {
            layers.set_env(name, value, Origin::Environment);
        }
        build(&layers, file_layer, &opts.cwd, config_dir, sources)
    }

    /// `redis://host:port` when a Redis host is configured.
    pub fn redis_url(&self) -> Option<String> {
        let host = self.redis.host.as_deref()?;
        Some(format!("redis://{}:{}", url_host(host), self.redis.port))
    }

    /// `postgres://user:password@host:port/name` when a database host is configured; user,
    /// password and name are left out when not set and percent-encoded when they are. A
    /// configured `db.url` is returned as it is.
    pub fn database_url(&self) -> Option<Secret> {
        let db = &self.db;
        if let Some(url) = &db.url {
            return Some(url.clone());
        }
        let host = db.host.as_deref()?;
        let mut url = String::from("postgres://");
        if let Some(user) = &db.user {
            url.push_str(&percent_encode(user));
            if let Some(password) = &db.password {
                url.push(':');
                url.push_str(&percent_encode(password.expose()));
            }
            url.push('@');
        }
        url.push_str(&format!("{}:{}", url_host(host), db.port));
        if let Some(name) = &db.name {
            url.push('/');
            url.push_str(&percent_encode(name));
        }
        Some(Secret::new(url))
    }

    /// The SMTP server, when a host is configured; otherwise e-mails go to the outbox.
    pub fn smtp(&self) -> Option<SmtpServer> {
        let host = self.smtp.host.clone()?;
        let credentials = self.smtp.user.clone().zip(self.smtp.pass.clone());
        Some(SmtpServer {
            host,
            port: self.smtp.port,
            credentials,
        })
    }

    /// Where queues, memory and the outbox live.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// `host:port` for the HTTP server to listen on.
    pub fn listen_addr(&self) -> String {
        format!("{}:{}", url_host(&self.server.host), self.server.port)
    }

    /// Every configured secret, to be masked in stack traces, payloads and logs. A secret that
    /// changes when percent-encoded is listed in both forms, since URLs carry the encoded one.
    pub fn secrets(&self) -> Vec<String> {
        let all = [
            &self.smtp.pass,
            &self.db.password,
            &self.llm.api_key,
            &self.embed.api_key,
            &self.server.api_token,
        ];
        let mut secrets = Vec::new();
        let redis = self.redis_password().map(Secret::new);
        for secret in all.into_iter().flatten().chain(redis.as_ref()) {
            let plain = secret.expose();
            // The embeddings key falls back to the model key; list a shared value once.
            if plain.is_empty() || secrets.iter().any(|s| s == plain) {
                continue;
            }
            let encoded = percent_encode(plain);
            if encoded != plain {
                secrets.push(encoded);
            }
            secrets.push(plain.to_owned());
        }
        secrets.extend(self.db.url.as_ref().and_then(|u| url_password(u.expose())));
        secrets
    }
}

/// Reads the toml file: `--config` must exist, the default may be missing.
fn read_config_file(opts: &LoadOptions) -> Result<Option<SourceFile>, ConfigError> {
    let (path, shown) = match &opts.config_path {
        Some(path) => (resolve(&opts.cwd, path), path.display().to_string()),
        None => (
            opts.cwd.join(DEFAULT_CONFIG_FILE),
            DEFAULT_CONFIG_FILE.to_owned(),
        ),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(SourceFile { path, shown, text })),
        Err(e) if e.kind() == io::ErrorKind::NotFound && opts.config_path.is_none() => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ConfigError::Missing(shown)),
        Err(source) => Err(ConfigError::Read { shown, source }),
    }
}

/// Reads `<cwd>/.env`, or else `.env` next to the config file; neither existing is fine.
fn read_dotenv(cwd: &Path, config_dir: Option<&Path>) -> Result<Option<SourceFile>, ConfigError> {
    let candidates = std::iter::once(cwd).chain(config_dir);
    for dir in candidates {
        let path = dir.join(".env");
        let shown = match path.strip_prefix(cwd) {
            Ok(relative) => relative.display().to_string(),
            Err(_) => path.display().to_string(),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(Some(SourceFile { path, shown, text })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ConfigError::Read { shown, source }),
        }
    }
    Ok(None)
}

/// Applies the known keys of a `.env` file; other keys belong to other programs and are ignored.
fn apply_dotenv(layers: &mut Layers, file: &SourceFile) -> Result<(), ConfigError> {
    let entries = dotenv::parse(&file.text).map_err(|e| ConfigError::Syntax {
        shown: file.shown.clone(),
        line: e.line,
        message: e.message,
    })?;
    for entry in entries {
        let origin = Origin::File {
            path: file.path.clone(),
            shown: file.shown.clone(),
            line: entry.line,
        };
        layers.set_env(&entry.key, &entry.value, origin);
    }
    Ok(())
}

/// Converts the merged values into a [`Config`].
fn build(
    layers: &Layers,
    file_layer: FileLayer,
    cwd: &Path,
    config_dir: Option<&Path>,
    sources: Vec<PathBuf>,
) -> Result<Config, ConfigError> {
    let root_dir = match layers.get("root_dir") {
        Some(raw) => raw.path(cwd)?,
        None => config_dir.unwrap_or(cwd).to_owned(),
    };
    let state_dir = match layers.get("state_dir") {
        Some(raw) => raw.path(cwd)?,
        None => root_dir.join(STATE_DIR_NAME),
    };
    let execution_context =
        match layers.read("execution_context", |r| r.choice(&["host", "sandbox"]))? {
            Some("sandbox") => ExecutionContext::Sandbox,
            _ => ExecutionContext::Host,
        };
    let db = db(layers)?;
    let has_database = db.host.is_some() || db.url.is_some();
    let heal = heal(layers, file_layer.check_command, cwd, &root_dir)?;
    Ok(Config {
        root_dir,
        state_dir,
        execution_context,
        server: server(layers)?,
        redis: redis(layers)?,
        queue_store: queue_store::read(layers)?,
        smtp: smtp(layers)?,
        db,
        memory_backend: postgres::memory_backend(layers, has_database)?,
        llm: llm(layers)?,
        embed: memory::embed(layers)?,
        memory: memory::memory(layers, cwd)?,
        heal,
        queues: file_layer.queues,
        sources,
    })
}

fn server(layers: &Layers) -> Result<ServerConfig, ConfigError> {
    Ok(ServerConfig {
        host: layers
            .read("server.host", Raw::host)?
            .unwrap_or_else(|| DEFAULT_HOST.to_owned()),
        port: layers
            .read("server.port", Raw::port)?
            .unwrap_or(DEFAULT_PORT),
        max_body_bytes: layers
            .read("server.max_body_bytes", Raw::positive)?
            .unwrap_or(DEFAULT_MAX_BODY_BYTES),
        api_token: layers.read("server.api_token", Raw::secret)?,
    })
}

fn redis(layers: &Layers) -> Result<RedisConfig, ConfigError> {
    Ok(RedisConfig {
        host: layers.read("redis.host", Raw::host)?,
        port: layers
            .read("redis.port", Raw::port)?
            .unwrap_or(DEFAULT_REDIS_PORT),
    })
}

fn smtp(layers: &Layers) -> Result<SmtpConfig, ConfigError> {
    let user = layers.read("smtp.user", Raw::text)?;
    let pass = layers.read("smtp.pass", Raw::secret)?;

    // A login needs both halves; one alone is a mistake that would only show when mail fails.
    match (layers.get("smtp.user"), layers.get("smtp.pass")) {
        (Some(user), None) => {
            return Err(user.invalid(missing_partner("smtp.pass", "APP_SMTP_PASS")));
        }
        (None, Some(pass)) => {
            return Err(pass.invalid(missing_partner("smtp.user", "APP_SMTP_USER")));
        }
        _ => {}
    }
    Ok(SmtpConfig {
        host: layers.read("smtp.host", Raw::host)?,
        port: layers
            .read("smtp.port", Raw::port)?
            .unwrap_or(DEFAULT_SMTP_PORT),
        user,
        pass,
        to: layers.read("smtp.to", Raw::text)?,
        from: layers
            .read("smtp.from", Raw::text)?
            .unwrap_or_else(|| DEFAULT_SMTP_FROM.to_owned()),
    })
}

fn missing_partner(path: &str, env: &str) -> String {
    format!("set without {path} (or {env})")
}

fn db(layers: &Layers) -> Result<DbConfig, ConfigError> {
    let user = layers.read("db.user", Raw::text)?;
    let password = layers.read("db.password", Raw::secret)?;
    if let (None, Some(raw)) = (&user, layers.get("db.password")) {
        return Err(raw.invalid(missing_partner("db.user", "APP_DB_USER")));
    }
    Ok(DbConfig {
        host: layers.read("db.host", Raw::host)?,
        port: layers
            .read("db.port", Raw::port)?
            .unwrap_or(DEFAULT_DB_PORT),
        user,
        password,
        name: layers.read("db.name", Raw::text)?,
        url: postgres::db_url(layers)?,
    })
}

fn llm(layers: &Layers) -> Result<LlmConfig, ConfigError> {
    Ok(LlmConfig {
        url: layers
            .read("llm.url", Raw::http_url)?
            .unwrap_or_else(|| DEFAULT_LLM_URL.to_owned()),
        model: layers
            .read("llm.model", Raw::text)?
            .unwrap_or_else(|| DEFAULT_LLM_MODEL.to_owned()),
        api_key: layers.read("llm.api_key", Raw::secret)?,
        timeout_secs: layers
            .read("llm.timeout_secs", Raw::positive)?
            .unwrap_or(DEFAULT_LLM_TIMEOUT_SECS),
    })
}

fn heal(
    layers: &Layers,
    check_command: Option<Vec<String>>,
    cwd: &Path,
    root: &Path,
) -> Result<HealConfig, ConfigError> {
    let sandbox = sandbox::heal_sandbox(layers, cwd, root)?;
    Ok(HealConfig {
        rounds: layers
            .read("heal.rounds", Raw::positive_u32)?
            .unwrap_or(DEFAULT_HEAL_ROUNDS),
        sandbox: sandbox.kind,
        sandbox_image: sandbox.image,
        sandbox_uid: sandbox.uid,
        sandbox_memory_mb: sandbox.memory_mb,
        sandbox_write_mb: sandbox.write_mb,
        workspace_dir: sandbox.workspace_dir,
        check_command,
    })
}

/// A host as it goes into a URL: IPv6 addresses get brackets.
fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        return format!("[{host}]");
    }
    host.to_owned()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests;

/// The password of a `scheme://user:password@host/...` URL, as written (percent-encoded).
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_owned())
}
