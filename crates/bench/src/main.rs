//! `smartworker-bench`: measures the embedded SQLite backend (or the Redis one, with
//! `--redis-url`) and writes each measurement as JSON, so `bench/run.sh` and `bench/redis.sh`
//! can merge them into one results file and print a table.
//!
//! Every measurement runs on loopback or on files in a temporary directory that is removed
//! when it ends; nothing here talks to another host.

mod backend;
mod latency;
mod machine;
mod redis_report;
mod report;
mod rss;
mod stats;
mod throughput;
mod triage;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Measures SmartWorker's embedded backend; each subcommand writes one JSON result.
#[derive(Parser, Debug)]
#[command(name = "smartworker-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// No-op jobs per second: jobs added in bulk, timed from worker start to the last finish.
    Throughput(throughput::ThroughputArgs),
    /// Enqueue-to-start latency of jobs added one by one at a steady rate.
    Latency(latency::LatencyArgs),
    /// The resident memory (VmRSS) of a running process.
    Rss(rss::RssArgs),
    /// This machine: cores, CPU model, memory and load.
    Machine {
        /// Where to write the JSON.
        #[arg(long)]
        out: PathBuf,
    },
    /// Prints a free TCP port on 127.0.0.1 (free when asked; bind it soon).
    FreePort,
    /// Waits until other processes keep fewer than `--below` cores busy, at most `--max-secs`.
    WaitQuiet {
        /// Busy cores (over two seconds) under which the machine counts as quiet.
        #[arg(long, default_value_t = 0.3)]
        below: f64,
        /// The longest wait, in seconds.
        #[arg(long, default_value_t = 60)]
        max_secs: u64,
    },
    /// Stack-trace parsing time: the triage fixtures and hostile inputs.
    Triage(triage::TriageArgs),
    /// Merges the JSON files of a run into one and prints the table.
    Report(report::ReportArgs),
    /// Merges the JSON files of a `bench/redis.sh` run and prints its table and ratios.
    RedisReport(redis_report::RedisReportArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Throughput(args) => write_json(&args.out.clone(), &throughput::run(&args).await?),
        Command::Latency(args) => write_json(&args.out.clone(), &latency::run(&args).await?),
        Command::Rss(args) => write_json(&args.out.clone(), &rss::measure(&args)?),
        Command::Machine { out } => write_json(&out, &machine::describe()?),
        Command::FreePort => free_port(),
        Command::WaitQuiet { below, max_secs } => wait_quiet(below, max_secs).await,
        Command::Triage(args) => write_json(&args.out.clone(), &triage::run(&args)?),
        Command::Report(args) => report::run(&args),
        Command::RedisReport(args) => redis_report::run(&args),
    }
}

/// Writes `value` as pretty JSON to `path`.
fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot encode the result")?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

async fn wait_quiet(below: f64, max_secs: u64) -> anyhow::Result<()> {
    let busy = machine::wait_quiet(below, std::time::Duration::from_secs(max_secs)).await?;
    let verdict = match busy < below {
        true => "quiet",
        false => "still busy; measuring anyway",
    };
    eprintln!("other processes keep {busy:.2} cores busy: {verdict}");
    Ok(())
}

fn free_port() -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    let port = listener.local_addr().context("no local address")?.port();
    writeln!(std::io::stdout(), "{port}").context("cannot write to stdout")
}
