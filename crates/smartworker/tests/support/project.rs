//! A copy of a project in a temporary directory where the `smartworker` binary runs with a
//! clean environment, one-off commands and `serve` processes alike.

use super::{Output, closed_port, drain, wait};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The longest one command may take before a test calls it a hang.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Copies the directory tree `from` into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Polls `done` every 100 ms until it holds; panics naming `what` after `limit`.
#[track_caller]
pub fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A project copied into a temporary directory; commands get only PATH, HOME, loopback
/// model URLs that nothing answers, and what tests [`set`](Project::set).
pub struct Project {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Project {
    /// A copy of `source`.
    pub fn copy_of(source: &Path) -> Project {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(source, dir.path());
        let closed = format!("http://127.0.0.1:{}/v1", closed_port());
        let env = [
            ("APP_HOST", "127.0.0.1".to_owned()),
            ("APP_LLM_URL", closed.clone()),
            ("APP_EMBED_URL", closed),
        ];
        Project {
            dir,
            env: env.map(|(k, v)| (k.to_owned(), v)).to_vec(),
        }
    }

    /// Where the copy is.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Sets a variable for every later command.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.env.push((name.to_owned(), value.into()));
    }

    /// The binary with `args`, run in the project.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_smartworker"));
        command
            .args(args)
            .current_dir(self.root())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs a one-off command to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"").unwrap();
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        let status = wait(&mut child, DEADLINE);
        let output = Output {
            code: status.and_then(|s| s.code()),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        };
        assert!(status.is_some(), "{args:?} hung:\n{}", output.all());
        output
    }

    /// Starts `smartworker serve` on a free loopback port and waits until it serves; `name`
    /// tells its log apart from other servers of the same project.
    pub fn serve(&self, name: &str) -> Server {
        self.serve_with(name, &[])
    }

    /// [`serve`](Project::serve) with variables of its own on top of the project's.
    pub fn serve_with(&self, name: &str, env: &[(&str, String)]) -> Server {
        let log = self.root().join(format!("{name}.log"));
        let port = closed_port();
        let child = self
            .command(&["serve"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("APP_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(File::create(self.root().join(format!("{name}.out"))).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let server = Server { child, log, port };
        server.wait_for_log("smartworker serving");
        server
    }
}

/// A running `smartworker serve`; killed on drop if a test fails before stopping it.
pub struct Server {
    child: Child,
    log: PathBuf,
    /// The port its API listens on.
    pub port: u16,
}

impl Server {
    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log holds `needle`.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str) {
        eventually(
            &format!("{needle:?} in {}", self.log.display()),
            DEADLINE,
            || self.log().contains(needle),
        );
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and returns the exit status and the whole log.
    pub fn stop(mut self) -> (Option<ExitStatus>, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = wait(&mut self.child, DEADLINE);
        (status, self.log())
    }

    /// Kills it with SIGKILL, as a crash or the OOM killer would, and reaps it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
