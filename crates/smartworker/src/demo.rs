//! `smartworker demo`: the example project's sign-up job, which has a genuine bug, run end to
//! end on embedded defaults, with each stage shown as it happens.
//!
//! It ends with the verified diff and where the e-mail went, or with one clear reason why
//! healing could not run. It never waits longer than `--timeout`.

/// Writes a line to stdout. A reader that went away (`smartworker demo | head`) must not stop
/// the run halfway, with jobs active, as `println!`'s panic would; the rest goes unread.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

use crate::app::App;
use crate::cli::DemoArgs;
use crate::config::{Config, LoadOptions};
use crate::{example, server};
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use smartworker_core::{FinishOutcome, HEAL_QUEUE, JobId};
use smartworker_heal::HealEvent;
use smartworker_worker::WorkerEvent;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// How the demo ended.
struct Ending {
    verified: bool,
    fix_id: Option<i64>,
    reason: Option<String>,
    delivery: String,
}

/// Prints stage lines, under a spinner when stderr is a terminal.
struct Display {
    spinner: Option<ProgressBar>,
}

impl Display {
    fn new() -> Display {
        if !std::io::stderr().is_terminal() {
            return Display { spinner: None };
        }
        let spinner = ProgressBar::new_spinner();
        let style = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        spinner.set_style(style);
        spinner.enable_steady_tick(Duration::from_millis(120));
        Display {
            spinner: Some(spinner),
        }
    }

    fn line(&self, text: impl AsRef<str>) {
        match &self.spinner {
            Some(s) => s.println(text.as_ref()),
            None => say!("{}", text.as_ref()),
        }
    }

    fn waiting(&self, text: impl Into<String>) {
        if let Some(s) = &self.spinner {
            s.set_message(text.into());
        }
    }

    fn finish(&self) {
        if let Some(s) = &self.spinner {
            s.finish_and_clear();
        }
    }
}

/// Runs the demo.
///
/// # Errors
/// When the example cannot be set up, or nothing finishes before `--timeout`.
pub async fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let base = tempfile::Builder::new()
        .prefix("smartworker-demo-")
        .tempdir()
        .context("creating the demo's temporary directory")?
        .keep();
    say!(
        "SmartWorker demo; state and example project in {}\n",
        base.display()
    );
    let app = App::open(demo_config(&base)?)?;
    let mut jobs = app.worker_events.subscribe();
    let mut heals = app.heal_events();
    let running = app.start();

    let job = app
        .new_job(
            server::DEMO_QUEUE,
            server::DEMO_QUEUE,
            server::demo_payload(),
            None,
        )
        .map_err(anyhow::Error::msg)?;
    let attempts = job.opts.attempts;
    let id = app.backend.add(job).await?;
    let display = Display::new();
    display.line(format!(
        "▸ job {id} queued on {:?} ({attempts} attempts, healing on): {}",
        server::DEMO_QUEUE,
        server::demo_payload()
    ));
    let watch = follow(&display, &id, &mut jobs, &mut heals);
    let ending = tokio::time::timeout(Duration::from_secs(args.timeout), watch).await;
    display.finish();
    running.shutdown().await;
    let Ok(ending) = ending else {
        bail!(
            "the demo did not finish within {}s; state is in {}",
            args.timeout,
            base.display()
        );
    };
    conclude(&app, &ending?, &base).await
}

/// The example's configuration, with its root and state inside `base`.
fn demo_config(base: &Path) -> anyhow::Result<Config> {
    let project = base.join("project");
    example::extract(&project)?;
    let opts = LoadOptions {
        config_path: Some(project.join("smartworker.toml")),
        cwd: project.clone(),
        env: std::env::vars().collect(),
    };
    let mut cfg = Config::load(&opts)?;
    // The user's APP_ROOT_DIR or APP_STATE_DIR belong to their own project, not the demo's.
    cfg.state_dir = project.join(".smartworker");
    cfg.root_dir = project;
    Ok(cfg)
}

/// Shows events until the healing run has mailed its outcome.
async fn follow(
    display: &Display,
    id: &JobId,
    jobs: &mut broadcast::Receiver<WorkerEvent>,
    heals: &mut broadcast::Receiver<HealEvent>,
) -> anyhow::Result<Ending> {
    let mut ending = Ending {
        verified: false,
        fix_id: None,
        reason: None,
        delivery: String::new(),
    };
    display.waiting(format!("running job {id}"));
    loop {
        tokio::select! {
            event = jobs.recv() => match event {
                Ok(event) => show_job_event(display, id, &event),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => bail!("the workers stopped"),
            },
            event = heals.recv() => match event {
                Ok(HealEvent::Emailed { delivery }) => {
                    display.line(format!("▸ e-mail: {delivery}"));
                    ending.delivery = delivery;
                    return Ok(ending);
                }
                Ok(HealEvent::Verdict { verified, fix_id, reason }) => {
                    (ending.verified, ending.fix_id) = (verified, fix_id);
                    ending.reason.clone_from(&reason);
                    show_verdict(display, verified, fix_id);
                }
                Ok(event) => show_heal_event(display, &event),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => bail!("the healer stopped"),
            },
        }
    }
}

fn show_job_event(display: &Display, id: &JobId, event: &WorkerEvent) {
    match event {
        WorkerEvent::Started {
            job_id,
            queue,
            attempt,
            ..
        } if job_id == id => {
            display.waiting(format!(
                "job {job_id} attempt {attempt} running on {queue:?}"
            ));
        }
        WorkerEvent::Started { queue, .. } if queue == HEAL_QUEUE => {
            display.waiting("healing: triage".to_owned());
        }
        WorkerEvent::Finished {
            job_id,
            attempt,
            error,
            outcome,
            ..
        } if job_id == id => {
            let error = error.as_deref().unwrap_or("");
            let next = match outcome {
                FinishOutcome::Completed => "completed (no bug hit?)".to_owned(),
                FinishOutcome::Retrying { .. } => "will retry after backoff".to_owned(),
                FinishOutcome::DeadLettered { heal_job: Some(h) } => {
                    format!("moved to the dead-letter queue; heal job {h} queued")
                }
                FinishOutcome::DeadLettered { heal_job: None } => {
                    "moved to the dead-letter queue".to_owned()
                }
                FinishOutcome::LockLost => "lock lost".to_owned(),
            };
            display.line(format!("✗ attempt {attempt} failed: {error}\n    → {next}"));
        }
        _ => {}
    }
}

fn show_heal_event(display: &Display, event: &HealEvent) {
    let line = match event {
        HealEvent::Triaged {
            error_type,
            message,
            frames,
            ..
        } => {
            let top = frames
                .first()
                .map_or("no project frame".to_owned(), |f| format!("at {f}"));
            format!(
                "▸ triage: {error_type}: {message} {top} ({} project frames)",
                frames.len()
            )
        }
        HealEvent::Remembered {
            group_id,
            new_group,
            embedding_model,
            similar,
        } => {
            let group = if *new_group {
                "new failure group"
            } else {
                "known failure group"
            };
            format!(
                "▸ memory: {group} {group_id} (embeddings: {embedding_model}), \
                 {similar} similar past failures"
            )
        }
        HealEvent::ReusingFix { fix_id } => {
            format!("▸ memory: verified fix {fix_id} exists for this group; re-verifying it")
        }
        HealEvent::ModelRequest { round, model } => {
            display.waiting(format!("waiting for {model} (round {round})"));
            format!("▸ model: asking {model} for a fix (round {round})")
        }
        HealEvent::ModelReply {
            round,
            chars,
            elapsed_ms,
        } => {
            format!("▸ model: answered round {round} in {elapsed_ms} ms ({chars} characters)")
        }
        HealEvent::EditRefused { round, reason } => {
            format!("✗ edits of round {round} refused: {reason}")
        }
        HealEvent::SandboxRun {
            round,
            backend,
            passed,
            exit_code,
            summary,
        } => {
            let verdict = if *passed { "passed" } else { "failed" };
            let exit = exit_code.map_or(String::new(), |c| format!(", exit {c}"));
            format!(
                "▸ sandbox ({backend}): the same job re-ran with the fix (round {round}): \
                 {verdict}{exit}: {summary}"
            )
        }
        HealEvent::Verdict { .. } | HealEvent::Emailed { .. } => return,
    };
    display.line(line);
}

fn show_verdict(display: &Display, verified: bool, fix_id: Option<i64>) {
    if verified {
        let fix = fix_id.map(|f| format!(" (fix {f})")).unwrap_or_default();
        display.line(format!("✓ verdict: VERIFIED{fix}"));
        return;
    }
    // The closing lines give the reason once, with what to do about it.
    display.line("✗ verdict: not verified");
}

async fn conclude(app: &App, ending: &Ending, base: &Path) -> anyhow::Result<()> {
    say!();
    if let (true, Some(fix_id)) = (ending.verified, ending.fix_id) {
        let fix = app
            .memory
            .get_fix(fix_id)
            .await?
            .context("the verified fix is missing")?;
        say!("Verified fix {fix_id}: {}\n", fix.fix.summary.root_cause);
        say!("{}", fix.fix.diff);
        say!("The e-mail to the reviewer was {}.", ending.delivery);
        say!(
            "Inspect: smartworker --config {} fixes show {fix_id}",
            config_path(base).display()
        );
        return Ok(());
    }
    let reason = ending.reason.as_deref().unwrap_or("no fix was found");
    say!("Healing could not produce a verified fix: {reason}.");
    say!("The report e-mail was {}.", ending.delivery);
    if let Some(hint) = model_hint(reason, &app.cfg.llm.url) {
        say!("\n{hint}");
    }
    Ok(())
}

/// What to do when the model server failed, unless the reason already says it.
///
/// An unreachable server's reason names the URL and the command that starts one on its port;
/// repeating it (with another port) would only confuse.
fn model_hint(reason: &str, url: &str) -> Option<String> {
    if !reason.contains("the model could not be asked") || reason.contains("llama-server") {
        return None;
    }
    Some(format!(
        "Check the OpenAI-compatible server at {url}, or point APP_LLM_URL at another one \
         (APP_LLM_TIMEOUT_SECS sets how long to wait for it), and run the demo again."
    ))
}

fn config_path(base: &Path) -> PathBuf {
    base.join("project").join("smartworker.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_hint_names_the_configured_url_only_when_the_reason_lacks_one() {
        let url = "http://127.0.0.1:8200/v1";
        let unreachable = "the model could not be asked: no model server answers at \
                           http://127.0.0.1:8200/v1; start one (llama.cpp: llama-server --port 8200)";
        assert_eq!(model_hint(unreachable, url), None);
        assert_eq!(model_hint("the sandbox run failed", url), None);
        let timeout = "the model could not be asked: model server at x did not answer within 5s";
        let hint = model_hint(timeout, url).unwrap();
        assert!(hint.contains(url) && !hint.contains("8100"), "{hint}");
    }
}
