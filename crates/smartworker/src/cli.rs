//! The operator commands: `serve`, `enqueue`, `jobs`, `dead`, `fixes`, `failures`, `search`,
//! `triage`, `doctor`.
//!
//! Commands other than `serve` and `demo` work on the state directory directly, so they need
//! no running server; a running `serve` picks up what they enqueue or retry.

/// Writes a line to stdout and returns the error when that fails, so a closed pipe
/// (`smartworker jobs | head`) ends the command instead of panicking as `println!` does.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

use crate::app::App;
use crate::config::{Config, LoadOptions};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use smartworker_core::{Job, JobId, JobState};
use smartworker_memory::{GroupQuery, GroupSummary};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// SmartWorker: background jobs that heal themselves.
#[derive(Debug, Parser)]
#[command(name = "smartworker", version, about)]
pub struct Cli {
    /// The configuration file (default: ./smartworker.toml when it exists).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the workers of every configured queue.
    Serve,
    /// Run a job with a genuine bug end to end: attempts, dead-letter, healing, verdict.
    Demo(DemoArgs),
    /// Add a job to a queue.
    Enqueue(EnqueueArgs),
    /// List jobs, or show one.
    Jobs(JobsArgs),
    /// The dead-letter queue: list, retry or remove jobs.
    Dead {
        /// What to do.
        #[command(subcommand)]
        action: DeadAction,
    },
    /// Fixes found by healing: list, show or apply.
    Fixes {
        /// What to do (default: list).
        #[command(subcommand)]
        action: Option<FixAction>,
    },
    /// Failure groups remembered in memory: list, show or find similar ones.
    Failures {
        /// What to do (default: list).
        #[command(subcommand)]
        action: Option<FailureAction>,
    },
    /// Find failure groups by words, e.g. `smartworker search "KeyError email"`.
    Search(SearchArgs),
    /// Parse a stack trace (from a file or stdin) and print it as JSON.
    Triage(TriageArgs),
    /// Check Redis, PostgreSQL, the model and embeddings servers, SMTP, bubblewrap and Docker.
    Doctor,
}

/// Options of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

/// Options of `enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The queue.
    pub queue: String,
    /// The payload as JSON; `-` reads it from stdin.
    #[arg(long, default_value = "{}")]
    pub data: String,
    /// The job's name (default: the queue's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Job options as JSON, e.g. '{"attempts":3,"backoff":{"type":"fixed","delay":1000}}'.
    #[arg(long)]
    pub opts: Option<String>,
    /// Wait up to this many seconds for the outcome (a `serve` must be running).
    #[arg(long)]
    pub wait: Option<u64>,
}

/// Options of `jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Show this job in full.
    pub id: Option<String>,
    /// Only this queue (default: all).
    #[arg(long)]
    pub queue: Option<String>,
    /// Only this state: waiting, delayed, active, completed or dead.
    #[arg(long)]
    pub state: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

/// `dead` actions.
#[derive(Debug, Subcommand)]
pub enum DeadAction {
    /// List dead-lettered jobs with their last error.
    List {
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
    },
    /// Put a job back on its queue with fresh attempts.
    Retry {
        /// The job.
        id: String,
    },
    /// Delete a job from the dead-letter queue.
    Remove {
        /// The job.
        id: String,
    },
}

/// `fixes` actions.
#[derive(Debug, Subcommand)]
pub enum FixAction {
    /// List fixes, newest first.
    List,
    /// Show a fix with its diff and every round.
    Show {
        /// The fix.
        id: i64,
    },
    /// Apply a fix's edits to the project and retry its job.
    Apply {
        /// The fix.
        id: i64,
    },
}

/// `failures` actions.
#[derive(Debug, Subcommand)]
pub enum FailureAction {
    /// List failure groups, last seen first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only groups last seen before this time (milliseconds since the epoch), to page on.
        #[arg(long)]
        before: Option<i64>,
        /// Only groups that touched this queue.
        #[arg(long)]
        queue: Option<String>,
    },
    /// Show a group with its jobs, newest failures and fixes, as JSON.
    Show {
        /// The group.
        id: i64,
    },
    /// The groups most like this one.
    Similar {
        /// The group.
        id: i64,
        /// At most this many.
        #[arg(long, default_value_t = 5)]
        k: usize,
    },
}

/// Options of `search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The words to look for.
    pub text: String,
    /// At most this many groups.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
}

/// Options of `triage`.
#[derive(Debug, Args)]
pub struct TriageArgs {
    /// The file holding the trace (default: stdin).
    pub file: Option<PathBuf>,
    /// The application's root: frames under it are in-app.
    #[arg(long)]
    pub root: Option<PathBuf>,
}

/// Loads the configuration as the CLI flags say.
///
/// # Errors
/// Any configuration error, naming the key, file and line.
pub fn load_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    let opts = LoadOptions::from_process(path).context("reading the working directory")?;
    // A configuration error's message is complete (key, file, line and cause); keeping its
    // source as well would print the cause twice.
    Config::load(&opts).map_err(|err| anyhow::anyhow!("{err}"))
}

/// Runs a command other than `serve` and `demo`.
///
/// # Errors
/// What the command failed with, with context.
pub async fn run(command: Command, config: Option<PathBuf>) -> anyhow::Result<()> {
    match command {
        Command::Triage(args) => triage(&args),
        Command::Doctor => {
            let cfg = load_config(config)?;
            let checks = crate::doctor::run_checks(&cfg).await;
            let table = crate::doctor::render(&checks);
            out!("{}", table.trim_end_matches('\n'));
            // The model, embeddings and Docker checks only warn: the demo and the lexical
            // fallback run without them, and bubblewrap stands in for Docker.
            let optional = ["model server", "embeddings server", "docker"];
            let failed: Vec<&str> = checks
                .iter()
                .filter(|c| !c.ok && !optional.contains(&c.name.as_str()))
                .map(|c| c.name.as_str())
                .collect();
            if !failed.is_empty() {
                bail!("{} check(s) failed: {}", failed.len(), failed.join(", "));
            }
            Ok(())
        }
        Command::Enqueue(args) => enqueue(&App::connect(load_config(config)?).await?, args).await,
        Command::Jobs(args) => jobs(&App::connect(load_config(config)?).await?, args).await,
        Command::Dead { action } => dead(&App::connect(load_config(config)?).await?, action).await,
        Command::Fixes { action } => {
            fixes(
                &App::connect(load_config(config)?).await?,
                action.unwrap_or(FixAction::List),
            )
            .await
        }
        Command::Failures { action } => {
            let action = action.unwrap_or(FailureAction::List {
                limit: 20,
                before: None,
                queue: None,
            });
            failures(&App::connect(load_config(config)?).await?, action).await
        }
        Command::Search(args) => search(&App::connect(load_config(config)?).await?, &args).await,
        Command::Serve | Command::Demo(_) => bail!("serve and demo are run by main"),
    }
}

fn triage(args: &TriageArgs) -> anyhow::Result<()> {
    let text = match &args.file {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading the trace from stdin")?;
            buf
        }
    };
    let text = String::from_utf8_lossy(&text);
    let root = args.root.as_deref().map(triage_root).transpose()?;
    let trace = smartworker_triage::parse(&text, &smartworker_triage::ParseOptions { root });
    out!("{}", serde_json::to_string_pretty(&trace)?);
    Ok(())
}

/// The `--root` of `triage`, absolute. A root that is not a directory is refused: triage would
/// otherwise fall back to its heuristics and quietly ignore it.
fn triage_root(root: &Path) -> anyhow::Result<PathBuf> {
    if !root.is_dir() {
        bail!("--root {} is not a directory", root.display());
    }
    std::path::absolute(root).with_context(|| format!("resolving --root {}", root.display()))
}

fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    let text = if text == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .context("reading JSON from stdin")?;
        buf
    } else {
        text.to_owned()
    };
    serde_json::from_str(&text).with_context(|| format!("{what} is not valid JSON"))
}

async fn enqueue(app: &App, args: EnqueueArgs) -> anyhow::Result<()> {
    let data = parse_json("--data", &args.data)?;
    let opts = args
        .opts
        .as_deref()
        .map(|o| parse_json("--opts", o))
        .transpose()?;
    let name = args.name.unwrap_or_else(|| args.queue.clone());
    // As the API does: a job on a queue nothing serves would wait forever.
    if !app.knows_queue(&args.queue) {
        bail!(
            "queue {:?} has no handler; configure it under [queues.{}]",
            args.queue,
            args.queue
        );
    }
    let job = app
        .new_job(&args.queue, &name, data, opts)
        .map_err(anyhow::Error::msg)?;
    let id = app.backend.add(job).await?;
    out!("{id}");
    if let Some(secs) = args.wait {
        let job = app
            .backend
            .wait_finished(&id, Duration::from_secs(secs))
            .await?;
        out!("{}", serde_json::to_string_pretty(&job)?);
        if job.state == JobState::Dead {
            bail!("job {id} failed: {}", job.failed_reason.unwrap_or_default());
        }
        if !job.is_finished() {
            bail!(
                "job {id} is still {} after {secs}s; is `smartworker serve` running?",
                job.state
            );
        }
    }
    Ok(())
}

async fn jobs(app: &App, args: JobsArgs) -> anyhow::Result<()> {
    if let Some(id) = args.id {
        let job = app.backend.get(&JobId(id.clone())).await?;
        let job = job.with_context(|| format!("job {id} not found"))?;
        out!("{}", serde_json::to_string_pretty(&job)?);
        return Ok(());
    }
    let states =
        match &args.state {
            Some(s) => vec![JobState::parse(s).with_context(|| {
                format!("unknown state {s:?}; expected one of {}", state_names())
            })?],
            None => JobState::ALL.to_vec(),
        };
    let listed = collect(app, args.queue, &states, args.limit).await?;
    print_jobs(&listed)
}

/// The states `--state` accepts, for error messages.
fn state_names() -> String {
    let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
    names.join(", ")
}

/// The newest `limit` jobs in `states`, of `queue` or of every queue.
///
/// A queue that is neither configured nor holds any job is refused: it is most likely a typo,
/// and "no jobs" would hide it.
async fn collect(
    app: &App,
    queue: Option<String>,
    states: &[JobState],
    limit: usize,
) -> anyhow::Result<Vec<Job>> {
    let backend = &app.backend;
    let stored = backend.queues().await?;
    let queues = match queue {
        Some(q) if app.knows_queue(&q) || stored.contains(&q) => vec![q],
        Some(q) => bail!("no queue named {q:?}; {}", known_queues(app, &stored)),
        None => stored,
    };
    let mut jobs = Vec::new();
    for queue in &queues {
        for state in states {
            jobs.extend(backend.list(queue, *state, limit).await?);
        }
    }
    jobs.sort_by_key(|j| std::cmp::Reverse(j.created_at));
    jobs.truncate(limit);
    Ok(jobs)
}

/// The queues `collect` accepts, for its refusal.
fn known_queues(app: &App, stored: &[String]) -> String {
    let mut names: Vec<&str> = app
        .queue_names()
        .chain(stored.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        "no queue is configured or holds a job".to_owned()
    } else {
        format!("known: {}", names.join(", "))
    }
}

fn print_jobs(jobs: &[Job]) -> anyhow::Result<()> {
    if jobs.is_empty() {
        out!("no jobs");
        return Ok(());
    }
    out!(
        "{:<8} {:<20} {:<10} {:>8}  last error",
        "id",
        "queue",
        "state",
        "attempts"
    );
    for job in jobs {
        let error = job
            .attempts
            .last()
            .and_then(|a| a.error.as_deref())
            .unwrap_or("");
        let error: String = error.chars().take(60).collect();
        // `as_str`, not the state's `Display`, which ignores the column width.
        out!(
            "{:<8} {:<20} {:<10} {:>8}  {error}",
            job.id.0,
            job.queue,
            job.state.as_str(),
            job.attempts_made
        );
    }
    Ok(())
}

async fn dead(app: &App, action: DeadAction) -> anyhow::Result<()> {
    match action {
        DeadAction::List { queue } => {
            print_jobs(&collect(app, queue, &[JobState::Dead], 100).await?)?;
        }
        DeadAction::Retry { id } => {
            app.backend.retry_dead(&JobId(id.clone())).await?;
            out!("job {id} is waiting again with fresh attempts");
        }
        DeadAction::Remove { id } => {
            let job = app.backend.get(&JobId(id.clone())).await?;
            let job = job.with_context(|| format!("job {id} not found"))?;
            if job.state != JobState::Dead {
                bail!("job {id} is {}, not in the dead-letter queue", job.state);
            }
            app.backend.remove(&job.id).await?;
            out!("job {id} removed");
        }
    }
    Ok(())
}

async fn fixes(app: &App, action: FixAction) -> anyhow::Result<()> {
    match action {
        FixAction::List => {
            let fixes = app.memory.list_fixes(50).await?;
            if fixes.is_empty() {
                out!("no fixes yet");
            }
            for fix in fixes {
                let verdict = if fix.verified {
                    "verified"
                } else {
                    "not verified"
                };
                out!(
                    "fix {:<4} job {:<6} {:<14} {}",
                    fix.id,
                    fix.job_id,
                    verdict,
                    fix.root_cause
                );
            }
        }
        FixAction::Show { id } => {
            let fix = app
                .memory
                .get_fix(id)
                .await?
                .with_context(|| format!("fix {id} not found"))?;
            out!("{}", serde_json::to_string_pretty(&fix)?);
        }
        FixAction::Apply { id } => apply_fix(app, id).await?,
    }
    Ok(())
}

/// Applies a stored fix's edits to the project root, then retries its job.
async fn apply_fix(app: &App, id: i64) -> anyhow::Result<()> {
    let fix = app
        .memory
        .get_fix(id)
        .await?
        .with_context(|| format!("fix {id} not found"))?;
    // The diff, not the stored edits: a whole-file edit would overwrite what changed in the
    // project since, while the diff's hunks apply by their context, as `git apply` would.
    let edits = smartworker_edits::parse_reply(&fix.fix.diff, &[])
        .with_context(|| format!("fix {id} has no diff that can be applied"))?;
    if !fix.fix.summary.verified {
        eprintln!("warning: fix {id} was not verified in the sandbox");
    }
    let root = app.cfg.root_dir.clone();
    let applied = smartworker_edits::apply(&root, &edits, &smartworker_edits::Limits::default())
        .with_context(|| format!("applying fix {id} to {}", root.display()))?;
    out!("{}", applied.diff);
    let job = JobId(fix.fix.summary.job_id.clone());
    match app.backend.retry_dead(&job).await {
        Ok(()) => out!(
            "applied to {}; job {job} is waiting again",
            applied.files.join(", ")
        ),
        Err(err) => out!(
            "applied to {}; job {job} not retried: {err}",
            applied.files.join(", ")
        ),
    }
    Ok(())
}

async fn failures(app: &App, action: FailureAction) -> anyhow::Result<()> {
    match action {
        FailureAction::List {
            limit,
            before,
            queue,
        } => {
            // One more than asked for, to know whether another page follows.
            let query = GroupQuery {
                limit: limit + 1,
                before,
                queue,
            };
            let mut groups = app.memory.groups(query).await?;
            let more = groups.len() > limit;
            groups.truncate(limit);
            print_groups(groups.iter().map(|g| (g, None)))?;
            if more && let Some(last) = groups.last() {
                out!("more: --before {}", last.group.last_seen);
            }
        }
        FailureAction::Show { id } => {
            let detail = app.memory.group_detail(id).await?;
            let detail = detail.with_context(|| format!("failure group {id} not found"))?;
            out!("{}", serde_json::to_string_pretty(&detail)?);
        }
        FailureAction::Similar { id, k } => {
            let similar = app.memory.similar_groups(id, k).await?;
            print_groups(
                similar
                    .iter()
                    .map(|s| (&s.summary, Some(f64::from(s.score)))),
            )?;
        }
    }
    Ok(())
}

async fn search(app: &App, args: &SearchArgs) -> anyhow::Result<()> {
    if args.text.trim().is_empty() {
        bail!("nothing to search for; give some words, e.g. smartworker search \"KeyError email\"");
    }
    let (_, hits) = app.search_failures(&args.text, args.k).await?;
    print_groups(hits.iter().map(|h| (&h.summary, Some(h.score))))
}

/// One line per group: id, count, fixes, last seen, queues, error; with a score when ranked.
fn print_groups<'a>(
    groups: impl Iterator<Item = (&'a GroupSummary, Option<f64>)>,
) -> anyhow::Result<()> {
    let groups: Vec<_> = groups.collect();
    if groups.is_empty() {
        out!("no failure groups");
        return Ok(());
    }
    out!(
        "{:<6} {:>6} {:>5} {:>8}  {:<16} error",
        "group",
        "count",
        "fixes",
        "score",
        "queues"
    );
    for (summary, score) in groups {
        let g = &summary.group;
        let score = score.map_or_else(|| "-".to_owned(), |s| format!("{s:.3}"));
        let error: String = format!("{}: {}", g.error_type, g.message)
            .chars()
            .take(70)
            .collect();
        out!(
            "{:<6} {:>6} {:>5} {:>8}  {:<16} {error}",
            g.id,
            g.count,
            summary.fixes,
            score,
            g.queues.join(",")
        );
    }
    Ok(())
}
