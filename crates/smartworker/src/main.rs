//! The `smartworker` command: server, demo and operator CLI.

use anyhow::Context;
use clap::Parser;
use smartworker::app::App;
use smartworker::cli::{self, Cli, Command};
use smartworker::{config::Config, demo, example, server};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`smartworker jobs | head`): it has all it wanted.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // The demo shows its own progress; its log only speaks when something is wrong.
    let default_level = match cli.command {
        Command::Serve => "info",
        Command::Demo(_) => "error",
        _ => "warn",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a terminal; in a log file or a pipe they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Serve => serve(cli.config).await,
        Command::Demo(args) => demo::run(&args).await,
        command => cli::run(command, cli.config).await,
    }
}

/// Serves the API and runs the workers until SIGINT or SIGTERM, then shuts down gracefully.
async fn serve(config: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let mut cfg = cli::load_config(config)?;
    if cfg.queues.is_empty() {
        cfg = example_config(cfg)?;
    }
    cfg.server.required_token()?;
    let app = Arc::new(App::connect(cfg).await?);
    let addr = app.cfg.listen_addr();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}; is another server using APP_PORT?"))?;
    let running = app.start();
    tracing::info!(
        addr = %addr, root = %app.cfg.root_dir.display(), state = %app.cfg.state_dir.display(),
        queues = ?app.handlers.keys().collect::<Vec<_>>(), "smartworker serving"
    );
    let router = server::router(Arc::clone(&app));
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    tracing::info!("shutting down: waiting for running jobs");
    running.shutdown().await;
    if !smartworker_sandbox::finish_removals(std::time::Duration::from_secs(10)).await {
        tracing::warn!(
            "sandbox containers still being removed at exit; the next start removes them"
        );
    }
    tracing::info!("stopped");
    served.context("the HTTP server failed")
}

/// With no queues configured, `serve` runs the built-in example project so that `GET /`
/// has a demo job to heal.
fn example_config(cfg: Config) -> anyhow::Result<Config> {
    let dir = cfg.state_dir.join("example-project");
    example::extract(&dir)?;
    tracing::info!(dir = %dir.display(), "no queues configured; serving the example project");
    let mut example = cli::load_config(Some(dir.join("smartworker.toml")))?;
    example.root_dir = dir;
    example.state_dir = cfg.state_dir;
    Ok(example)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
