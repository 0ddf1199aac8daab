//! A private `redis-server` for tests: on a free loopback port, in a temporary directory, with
//! persistence off unless asked, killed when dropped. Never the machine's own Redis.

use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary the tests start; `REDIS_SERVER` overrides it.
const DEFAULT_BINARY: &str = "/usr/bin/redis-server";

/// How long a fresh server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How the test server runs.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Keep data across restarts with an append-only file in the server's directory, synced
    /// on every write; off by default.
    pub append_only: bool,
    /// A password clients must give (`requirepass`).
    pub password: Option<String>,
    /// Run as a Redis Cluster node (see [`RedisCluster`]).
    pub cluster: bool,
}

/// A running private redis-server.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    opts: ServerOptions,
}

impl RedisServer {
    /// Starts a server with persistence off.
    ///
    /// # Errors
    /// When `redis-server` is missing or does not start; the message says which.
    pub fn start() -> io::Result<RedisServer> {
        RedisServer::start_with(ServerOptions::default())
    }

    /// Starts a server with `opts`.
    ///
    /// # Errors
    /// When `redis-server` is missing or does not start.
    pub fn start_with(opts: ServerOptions) -> io::Result<RedisServer> {
        let dir = tempfile::Builder::new().prefix("sw-redis-").tempdir()?;
        let port = free_port()?;
        let child = spawn(dir.path(), port, &opts)?;
        let mut server = RedisServer {
            child: Some(child),
            port,
            dir,
            opts,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>` (with the password when one is set).
    pub fn url(&self) -> String {
        match &self.opts.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The server's working directory (where an append-only file goes).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server at once, as a crash would (SIGKILL).
    ///
    /// # Errors
    /// When the process cannot be killed or reaped.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and directory (after [`RedisServer::kill`]).
    ///
    /// # Errors
    /// When it does not come back.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill()?;
        self.child = Some(spawn(self.dir.path(), self.port, &self.opts)?);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log =
                    std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "redis-server on port {} exited with {status}: {log}",
                    self.port
                )));
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::other(format!(
            "redis-server on port {} did not accept connections within {START_TIMEOUT:?}",
            self.port
        )))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A private three-node Redis Cluster (primaries only) on free loopback ports.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers and joins them with `redis-cli --cluster create`.
    ///
    /// # Errors
    /// When a server does not start or the cluster does not become ready.
    pub fn start() -> io::Result<RedisCluster> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start_with(ServerOptions {
                cluster: true,
                ..ServerOptions::default()
            })?);
        }
        let cli = binary().with_file_name("redis-cli");
        let mut create = Command::new(&cli);
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", cli.display())))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {text}"
            )));
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_ready(&cli)?;
        Ok(cluster)
    }

    /// `redis://127.0.0.1:<port>` of the first node, a seed for cluster clients.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    fn wait_ready(&self, cli: &Path) -> io::Result<()> {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            let ready = self.nodes.iter().all(|node| {
                Command::new(cli)
                    .args(["-p", &node.port().to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(io::Error::other(
            "the test cluster never reached cluster_state:ok",
        ))
    }
}

fn binary() -> PathBuf {
    std::env::var_os("REDIS_SERVER").map_or_else(|| PathBuf::from(DEFAULT_BINARY), PathBuf::from)
}

fn spawn(dir: &Path, port: u16, opts: &ServerOptions) -> io::Result<Child> {
    let bin = binary();
    let mut cmd = Command::new(&bin);
    cmd.arg("--bind")
        .arg("127.0.0.1")
        .arg("--port")
        .arg(port.to_string())
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .arg("--save")
        .arg("")
        .arg("--daemonize")
        .arg("no")
        .arg("--appendonly")
        .arg(if opts.append_only { "yes" } else { "no" });
    if opts.append_only {
        // Every write on disk before the reply, so a killed server loses nothing it acked.
        cmd.arg("--appendfsync").arg("always");
    }
    if let Some(pw) = &opts.password {
        cmd.arg("--requirepass").arg(pw);
    }
    if opts.cluster {
        cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
            .arg("--cluster-config-file")
            .arg(dir.join("nodes.conf"));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {}: {e}", bin.display())))
}

/// A port that was free a moment ago, with its cluster bus port (+10000) free too.
fn free_port() -> io::Result<u16> {
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, bus)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::other("no free port pair found on 127.0.0.1"))
}
