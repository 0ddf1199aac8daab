//! The healer: one healing run per dead-lettered job, as the steps in the crate docs.

use crate::email;
use crate::prompt::{self, FailureContext};
use crate::protect::Protected;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use smartworker_core::{Handler, Job, JobFailure, JobId, JobState, QueueBackend};
use smartworker_edits::{Edit, Limits};
use smartworker_handler::{CommandHandler, CommandMode, CommandOutput, CommandSpec, job_stdin};
use smartworker_memory::{
    AttemptTimings, ChunkKind, EmbeddedChunks, FailureInput, FailureRecord, FallbackEmbedder,
    FixSource, FrameInput, HealAttemptRecord, LexicalEmbedder, MemoryError, MemoryStore, NewFix,
    SimilarFailure, chunks_for_failure, chunks_for_fix, embed_chunks, mask_payload, mask_secrets,
};
use smartworker_model::{ChatMessage, ModelClient};
use smartworker_notify::{Delivery, Notifier};
use smartworker_sandbox::{
    SandboxBackend, SandboxOptions, SandboxPolicy, Workspace, WorkspaceOptions,
};
use smartworker_triage::{ContextOptions, ParseOptions, Snippet, Trace};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::broadcast;
use tracing::{info, warn};

/// How healing is set up.
#[derive(Clone, Debug)]
pub struct HealSettings {
    /// The project the handlers run in; edits may touch nothing outside it.
    pub project_root: PathBuf,
    /// Where fix patches are saved (`<state_dir>/fixes/`).
    pub state_dir: PathBuf,
    /// Model rounds per healing run; a failed round is fed back to the next.
    pub rounds: u32,
    /// Limits of the sandbox re-run.
    pub sandbox: SandboxOptions,
    /// Where workspace copies are made, and how large a project may be.
    pub workspaces: WorkspaceOptions,
    /// Which sandbox backend each queue's re-runs use.
    pub backends: SandboxPolicy,
    /// The project's own checks, run over the same edited copy after the job passes (in a
    /// sandbox run of their own: they see the project with the fix, not what the job wrote).
    pub check_command: Option<Vec<String>>,
    /// Who reviews fixes.
    pub reviewers: Vec<String>,
    /// The sender of the e-mails.
    pub from: String,
    /// Values masked wherever they appear in traces, payloads and prompts.
    pub secrets: Vec<String>,
    /// How much source the model sees.
    pub context: ContextOptions,
    /// Limits on what one fix may change.
    pub limits: Limits,
    /// How many similar past failures the model is shown.
    pub similar: usize,
}

/// What a healer is built from.
pub struct HealerParts {
    /// The queue backend, to read the dead-lettered job.
    pub backend: Arc<dyn QueueBackend>,
    /// The memory store.
    pub memory: MemoryStore,
    /// The model client.
    pub model: ModelClient,
    /// The embedder, falling back to the lexical one.
    pub embedder: FallbackEmbedder,
    /// Where e-mails go.
    pub notifier: Arc<Notifier>,
    /// How each queue's handler runs, for the sandbox re-run.
    pub commands: HashMap<String, CommandSpec>,
    /// Settings.
    pub settings: HealSettings,
}

/// What a healing run reports as it goes, for progress displays.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HealEvent {
    /// The trace was parsed.
    Triaged {
        /// The healed job.
        job_id: JobId,
        /// The error type.
        error_type: String,
        /// The message.
        message: String,
        /// The project frames, innermost first, as `file:line in function`.
        frames: Vec<String>,
        /// The failure's fingerprint.
        fingerprint: String,
    },
    /// The failure was stored in memory.
    Remembered {
        /// Its group.
        group_id: i64,
        /// Whether the group is new.
        new_group: bool,
        /// The embedding model used.
        embedding_model: String,
        /// Similar past failures found.
        similar: usize,
    },
    /// A verified fix of the same group is being re-verified.
    ReusingFix {
        /// The fix.
        fix_id: i64,
    },
    /// The model is being asked.
    ModelRequest {
        /// The round, from 1.
        round: u32,
        /// The model's name.
        model: String,
    },
    /// The model answered.
    ModelReply {
        /// The round.
        round: u32,
        /// The reply's length in characters.
        chars: usize,
        /// How long it took.
        elapsed_ms: u64,
    },
    /// The reply held no edit that could be applied.
    EditRefused {
        /// The round.
        round: u32,
        /// Why.
        reason: String,
    },
    /// The job re-ran in the sandbox with the edit applied.
    SandboxRun {
        /// The round (0 for a fix reused from memory).
        round: u32,
        /// The backend that ran it: `bubblewrap` or `docker`.
        backend: String,
        /// Whether the job succeeded.
        passed: bool,
        /// The handler's exit code.
        exit_code: Option<i32>,
        /// The error when it failed, or the result when it passed.
        summary: String,
    },
    /// The run ended.
    Verdict {
        /// Whether a fix was verified.
        verified: bool,
        /// The stored fix, when any edit was proposed.
        fix_id: Option<i64>,
        /// Why healing ended without a verified fix.
        reason: Option<String>,
    },
    /// The e-mail went out (or was spooled, or written to the outbox).
    Emailed {
        /// Where it went.
        delivery: String,
    },
}

/// The outcome of one healing run; the heal job's result.
#[derive(Clone, Debug, Serialize)]
pub struct HealReport {
    /// The healed job.
    pub job_id: JobId,
    /// Whether a fix was verified.
    pub verified: bool,
    /// The stored fix.
    pub fix_id: Option<i64>,
    /// `model` or `memory`.
    pub source: Option<FixSource>,
    /// Model rounds used.
    pub rounds: u32,
    /// The root cause as the model put it.
    pub root_cause: String,
    /// The diff of the fix.
    pub diff: String,
    /// Why healing ended without a verified fix.
    pub reason: Option<String>,
    /// Where the e-mail went.
    pub delivery: String,
}

/// Why a healing run could not run at all. A run that ends without a verified fix is not an
/// error: it is a [`HealReport`] with a reason.
#[derive(Debug, thiserror::Error)]
pub enum HealError {
    /// The job to heal is gone.
    #[error("job {0} not found")]
    JobNotFound(JobId),
    /// The queue backend failed.
    #[error(transparent)]
    Backend(#[from] smartworker_core::BackendError),
    /// The memory store failed.
    #[error(transparent)]
    Memory(#[from] smartworker_memory::MemoryError),
    /// Embedding failed even with the fallback.
    #[error(transparent)]
    Embed(#[from] smartworker_memory::EmbedError),
    /// The e-mail could not even be spooled.
    #[error(transparent)]
    Notify(#[from] smartworker_notify::NotifyError),
}

/// What one verification of edits found.
enum Verification {
    /// The edits could not be applied.
    Refused(String),
    /// The edits could not be tried, for a reason that is not the answer's: the workspace or
    /// the sandbox failed. Asking the model again would not help.
    Unverifiable(String),
    /// The job ran in the sandbox.
    Ran {
        diff: String,
        backend: &'static str,
        output: CommandOutput,
        outcome: Result<Value, JobFailure>,
        ms: u64,
    },
}

/// The failure being healed, prepared once.
struct Case {
    job: Job,
    stack: String,
    trace: Trace,
    snippets: Vec<Snippet>,
    record: FailureRecord,
    similar: Vec<SimilarFailure>,
    payload: Value,
}

/// The state a run carries to its end.
#[derive(Default)]
struct Progress {
    rounds: u32,
    root_cause: String,
    diff: String,
    edits: Value,
    after: String,
    verified: bool,
    source: Option<FixSource>,
    reason: Option<String>,
}

/// One reply of the model (round 0 is a fix reused from memory).
struct Answer<'a> {
    round: u32,
    question: &'a str,
    reply: &'a str,
    started: Instant,
}

/// A round as it is stored: the reply, its edits and what verifying them found.
struct Round<'a> {
    answer: &'a Answer<'a>,
    edits: &'a [Edit],
    verification: &'a Verification,
}

/// Heals dead-lettered jobs.
pub struct Healer {
    parts: HealerParts,
    /// Queues whose command is not one-shot; the re-run is read the way they answer.
    modes: HashMap<String, CommandMode>,
    events: broadcast::Sender<HealEvent>,
}

impl Healer {
    /// A healer from its parts.
    pub fn new(parts: HealerParts) -> Healer {
        let (events, _) = broadcast::channel(256);
        Healer {
            parts,
            modes: HashMap::new(),
            events,
        }
    }

    /// Says how each queue's command talks (queues not named are one-shot), so a persistent
    /// handler's re-run is fed one request line and judged by its answer, not its exit code.
    pub fn with_command_modes(mut self, modes: HashMap<String, CommandMode>) -> Healer {
        self.modes = modes;
        self
    }

    /// Progress events of every run.
    pub fn subscribe(&self) -> broadcast::Receiver<HealEvent> {
        self.events.subscribe()
    }

    fn emit(&self, event: HealEvent) {
        let _ = self.events.send(event);
    }

    fn settings(&self) -> &HealSettings {
        &self.parts.settings
    }

    /// Heals the dead-lettered job `job_id`; `heal_job` is the id of the healing job itself.
    ///
    /// # Errors
    /// Only when storage fails; every other way healing can end is a report with a reason.
    pub async fn heal(&self, job_id: &JobId, heal_job: &str) -> Result<HealReport, HealError> {
        let job = self.parts.backend.get(job_id).await?;
        let job = job.ok_or_else(|| HealError::JobNotFound(job_id.clone()))?;
        let case = self.prepare(job).await?;
        let mut progress = Progress::default();
        match self.blocker(&case) {
            Some(reason) => progress.reason = Some(reason),
            None => self.repair(&case, heal_job, &mut progress).await?,
        }
        self.conclude(&case, heal_job, progress).await
    }

    /// Triage and memory: parse the trace, gather code, store the failure, find similar ones.
    async fn prepare(&self, job: Job) -> Result<Case, HealError> {
        let s = self.settings();
        let last = job.last_attempt();
        let raw = last.and_then(|a| a.stack.clone().or_else(|| a.error.clone()));
        let stack = mask_secrets(&raw.unwrap_or_default(), &s.secrets);
        let opts = ParseOptions {
            root: Some(s.project_root.clone()),
        };
        let trace = smartworker_triage::parse(&stack, &opts);
        let fingerprint = smartworker_triage::fingerprint(&trace);
        let snippets = smartworker_triage::gather_context(&trace, &s.project_root, &s.context);
        self.emit(HealEvent::Triaged {
            job_id: job.id.clone(),
            error_type: trace.error_type.clone(),
            message: trace.message.clone(),
            frames: trace.app_frames().map(describe_frame).collect(),
            fingerprint: fingerprint.clone(),
        });

        let payload = mask_payload(&job.data, &s.secrets);
        let input = FailureInput {
            job_id: job.id.0.clone(),
            queue: job.queue.clone(),
            job_name: job.name.clone(),
            fingerprint,
            error_type: trace.error_type.clone(),
            message: trace.message.clone(),
            stack: stack.clone(),
            frames: frame_inputs(&trace, &snippets, &s.project_root),
            payload: payload.clone(),
        };
        let embedded = self
            .parts
            .embedder
            .embed_chunks(chunks_for_failure(&input))
            .await?;
        let (record, embedded) = self.remember(input, embedded).await?;
        let query = error_vector(&embedded);
        let model = embedded.model().to_owned();
        let similar = match query {
            Some(v) => {
                let k = s.similar;
                self.parts
                    .memory
                    .similar_failures(&model, &v, k, Some(record.group_id))
                    .await?
            }
            None => Vec::new(),
        };
        self.emit(HealEvent::Remembered {
            group_id: record.group_id,
            new_group: record.new_group,
            embedding_model: model,
            similar: similar.len(),
        });
        Ok(Case {
            job,
            stack,
            trace,
            snippets,
            record,
            similar,
            payload,
        })
    }

    /// Why this job cannot be healed at all, if it cannot.
    /// Stores the failure. When the store holds the model's vectors at another length (the
    /// server behind the model's name changed), the failure is stored with the lexical
    /// embedding instead, so memory and healing go on; vectors are still never mixed.
    async fn remember(
        &self,
        input: FailureInput,
        embedded: EmbeddedChunks,
    ) -> Result<(FailureRecord, EmbeddedChunks), HealError> {
        let memory = &self.parts.memory;
        match memory.record_failure(input.clone(), embedded.clone()).await {
            Err(MemoryError::DimensionMismatch { .. }) => {
                warn!(
                    model = embedded.model(),
                    dimensions = embedded.dimensions(),
                    "the embedding model's vectors changed length; this failure is stored with \
                     the lexical embedding"
                );
                let chunks = chunks_for_failure(&input);
                let lexical = embed_chunks(&LexicalEmbedder, chunks).await?;
                let record = memory.record_failure(input, lexical.clone()).await?;
                Ok((record, lexical))
            }
            other => Ok((other?, embedded)),
        }
    }

    fn blocker(&self, case: &Case) -> Option<String> {
        if case.job.state != JobState::Dead {
            return Some(format!(
                "job {} is {}, not in the dead-letter queue; it was retried or removed",
                case.job.id, case.job.state
            ));
        }
        if !self.parts.commands.contains_key(&case.job.queue) {
            return Some(format!(
                "queue {:?} has no command handler; only command handlers can be re-run in \
                 a sandbox to verify a fix",
                case.job.queue
            ));
        }
        if case.snippets.is_empty() {
            return Some(format!(
                "the stack trace names no file inside the project root {}; nothing to fix there",
                self.settings().project_root.display()
            ));
        }
        None
    }

    /// Reuses a verified fix from memory, or asks the model, round after round.
    async fn repair(
        &self,
        case: &Case,
        heal_job: &str,
        progress: &mut Progress,
    ) -> Result<(), HealError> {
        let choice = self.settings().backends.for_queue(&case.job.queue);
        let sandbox = match choice.resolve().await {
            Ok(sandbox) => sandbox,
            Err(err) => {
                return self
                    .refuse_unsandboxed(case, heal_job, progress, &err)
                    .await;
            }
        };
        if self.reuse(case, &sandbox, heal_job, progress).await? {
            return Ok(());
        }
        self.ask_model(case, &sandbox, heal_job, progress).await
    }

    /// No sandbox can run here: healing stops, and the refusal is recorded as the run's only
    /// attempt, so the record says why instead of holding nothing. Edited code never runs
    /// unsandboxed.
    async fn refuse_unsandboxed(
        &self,
        case: &Case,
        heal_job: &str,
        progress: &mut Progress,
        err: &smartworker_sandbox::SandboxError,
    ) -> Result<(), HealError> {
        let reason = format!("healing refused: {err}");
        warn!(job_id = %case.job.id, reason = %reason, "no sandbox to verify a fix");
        let answer = Answer {
            round: 0,
            question: "",
            reply: "",
            started: Instant::now(),
        };
        let refused = Verification::Refused(reason.clone());
        let round = Round {
            answer: &answer,
            edits: &[],
            verification: &refused,
        };
        self.record_round(case, heal_job, &round).await?;
        progress.reason = Some(reason);
        Ok(())
    }

    /// Tries the newest verified fix of the failure's group; true when it verified again.
    async fn reuse(
        &self,
        case: &Case,
        sandbox: &SandboxBackend,
        heal_job: &str,
        progress: &mut Progress,
    ) -> Result<bool, HealError> {
        let memory = &self.parts.memory;
        let Some(fix) = memory.verified_fix_for_group(case.record.group_id).await? else {
            return Ok(false);
        };
        self.emit(HealEvent::ReusingFix {
            fix_id: fix.summary.id,
        });
        let Ok(edits) = serde_json::from_value::<Vec<Edit>>(fix.edits_json.clone()) else {
            warn!(
                fix_id = fix.summary.id,
                "stored fix has unreadable edits; asking the model"
            );
            return Ok(false);
        };
        let started = Instant::now();
        let verification = self.verify(case, &edits, sandbox).await;
        let answer = Answer {
            round: 0,
            question: "",
            reply: "",
            started,
        };
        let done = Round {
            answer: &answer,
            edits: &edits,
            verification: &verification,
        };
        let passed = self.record_round(case, heal_job, &done).await?;
        if passed {
            progress.verified = true;
            progress.source = Some(FixSource::Memory);
            progress.root_cause = fix.summary.root_cause.clone();
            progress.edits = fix.edits_json.clone();
            absorb(progress, &verification);
        }
        Ok(passed)
    }

    async fn ask_model(
        &self,
        case: &Case,
        sandbox: &SandboxBackend,
        heal_job: &str,
        progress: &mut Progress,
    ) -> Result<(), HealError> {
        let mut messages = prompt::initial(&FailureContext {
            queue: &case.job.queue,
            job_name: &case.job.name,
            trace: &case.trace,
            stack: &case.stack,
            payload: &case.payload,
            snippets: &case.snippets,
            similar: &case.similar,
        });
        for round in 1..=self.settings().rounds.max(1) {
            progress.rounds = round;
            let started = Instant::now();
            let Some(reply) = self.ask(round, &messages, progress).await else {
                return Ok(());
            };
            let question = messages
                .last()
                .map(|m| m.content.clone())
                .unwrap_or_default();
            let answer = Answer {
                round,
                question: &question,
                reply: &reply,
                started,
            };
            let verification = self
                .try_answer(case, sandbox, heal_job, &answer, progress)
                .await?;
            if progress.verified {
                return Ok(());
            }
            let (feedback, reason) = self.feedback(&verification);
            progress.reason = Some(reason);
            if matches!(verification, Verification::Unverifiable(_)) {
                break;
            }
            messages.push(ChatMessage::assistant(reply));
            messages.push(ChatMessage::user(feedback));
        }
        Ok(())
    }

    /// Asks the model once; `None`, with the reason kept, when it cannot be asked.
    async fn ask(
        &self,
        round: u32,
        messages: &[ChatMessage],
        progress: &mut Progress,
    ) -> Option<String> {
        let started = Instant::now();
        let model = self.parts.model.config().model.clone();
        self.emit(HealEvent::ModelRequest { round, model });
        match self.parts.model.chat(messages).await {
            Ok(reply) => {
                let chars = reply.content.chars().count();
                let elapsed_ms = millis(started);
                self.emit(HealEvent::ModelReply {
                    round,
                    chars,
                    elapsed_ms,
                });
                Some(reply.content)
            }
            Err(err) => {
                progress.reason = Some(format!("the model could not be asked: {err}"));
                None
            }
        }
    }

    /// Parses one reply into edits, verifies them and records the round.
    async fn try_answer(
        &self,
        case: &Case,
        sandbox: &SandboxBackend,
        heal_job: &str,
        answer: &Answer<'_>,
        progress: &mut Progress,
    ) -> Result<Verification, HealError> {
        progress.root_cause = prompt::root_cause(answer.reply);
        let known: Vec<String> = case.snippets.iter().map(|s| s.path.clone()).collect();
        let edits = smartworker_edits::parse_reply(answer.reply, &known);
        let verification = match &edits {
            Ok(edits) => self.verify(case, edits, sandbox).await,
            Err(err) => Verification::Refused(err.to_string()),
        };
        let edits = edits.unwrap_or_default();
        let round = Round {
            answer,
            edits: &edits,
            verification: &verification,
        };
        let passed = self.record_round(case, heal_job, &round).await?;
        absorb(progress, &verification);
        if matches!(verification, Verification::Ran { .. }) {
            progress.edits = serde_json::to_value(&edits).unwrap_or(Value::Null);
        }
        if passed {
            progress.verified = true;
            progress.source = Some(FixSource::Model);
        }
        Ok(verification)
    }

    /// What the model is told after a round that did not verify, and why healing would stop
    /// here if it were the last round.
    fn feedback(&self, verification: &Verification) -> (String, String) {
        match verification {
            Verification::Refused(reason) => (
                prompt::refused(reason),
                format!("the model's last answer was refused: {reason}"),
            ),
            Verification::Unverifiable(reason) => (
                String::new(),
                format!("the fix could not be verified: {reason}"),
            ),
            Verification::Ran {
                output, outcome, ..
            } => {
                let failure = outcome.as_ref().err();
                let error = failure.map(|f| f.message.clone()).unwrap_or_default();
                // The failure's own stack: stderr for a one-shot command, the answer's `stack`
                // for a persistent one.
                let stack = failure.and_then(|f| f.stack.as_deref());
                let stderr =
                    mask_secrets(stack.unwrap_or(&output.stderr), &self.settings().secrets);
                (
                    prompt::still_failing(&error, &stderr),
                    format!(
                        "the job still failed in the sandbox with the model's last fix: {}",
                        prompt::tail(&error, 200)
                    ),
                )
            }
        }
    }

    /// Why an edit of `path` is refused: a path outside the project, or one a fix may not
    /// change ([`Protected`]).
    fn refusal(&self, path: &str, shown: &[String]) -> Option<String> {
        let s = self.settings();
        let file = match smartworker_edits::check_path(&s.project_root, path) {
            Ok(file) => file,
            Err(err) => return Some(err.to_string()),
        };
        let root = s
            .project_root
            .canonicalize()
            .unwrap_or_else(|_| s.project_root.clone());
        let protected = Protected {
            root: &root,
            checks: s.check_command.as_deref(),
            skipped: &s.workspaces.skip,
            shown,
        };
        protected.refusal(path, &file)
    }

    /// Applies `edits` in a fresh workspace and re-runs the job there. The workspace is
    /// destroyed whatever happens.
    async fn verify(&self, case: &Case, edits: &[Edit], sandbox: &SandboxBackend) -> Verification {
        let job = &case.job;
        let s = self.settings();
        let Some(command) = self.parts.commands.get(&job.queue) else {
            return Verification::Refused(format!("queue {:?} has no command handler", job.queue));
        };
        // The workspace copy leaves out symlinks that lead outside the project, so a path that
        // is safe there may not be in the project itself; a fix must be appliable to both.
        let shown: Vec<String> = case.snippets.iter().map(|s| s.path.clone()).collect();
        if let Some(refusal) = edits.iter().find_map(|e| self.refusal(e.path(), &shown)) {
            return Verification::Refused(refusal);
        }
        let root = s.project_root.clone();
        let (edits, limits) = (edits.to_vec(), s.limits.clone());
        let workspaces = s.workspaces.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            // The error says whether the answer was at fault (true) or the workspace.
            let ws = Workspace::create(&root, &workspaces)
                .map_err(|e| (false, format!("cannot create the workspace: {e}")))?;
            let applied = smartworker_edits::apply(ws.path(), &edits, &limits)
                .map_err(|e| (true, e.to_string()))?;
            Ok::<_, (bool, String)>((ws, applied))
        })
        .await;
        let (ws, applied) = match prepared {
            Ok(Ok(done)) => done,
            Ok(Err((true, reason))) => return Verification::Refused(reason),
            Ok(Err((false, reason))) => return Verification::Unverifiable(reason),
            Err(err) => {
                return Verification::Unverifiable(format!("workspace task failed: {err}"));
            }
        };

        let started = Instant::now();
        let spec = CommandHandler::new(command.clone()).spec_for(job);
        let mut opts = s.sandbox.clone();
        opts.env = smartworker_sandbox::job_sandbox_env(command, job);
        let stdin = job_stdin(job);
        let run = sandbox
            .run(&spec, &ws, &s.project_root, &opts, &stdin)
            .await;
        let output = match run {
            Ok(output) => output,
            Err(err) => {
                return Verification::Unverifiable(format!("the sandbox could not run: {err}"));
            }
        };
        let mode = self.modes.get(&job.queue).copied().unwrap_or_default();
        let mut outcome = mode.outcome(&output, job);
        // A process of the run killed for memory fails it, even when the handler survived
        // and exited 0: the fix did not run as it would in production.
        if outcome.is_ok() && output.memory_killed {
            outcome = Err(JobFailure::new(format!(
                "a process of the run was killed for using more than the memory limit of {} \
                 bytes",
                opts.memory_bytes
            )));
        }
        if outcome.is_ok()
            && let Err(failure) = self.run_checks(&ws, &opts, sandbox).await
        {
            outcome = Err(failure);
        }
        if let Err(err) = ws.destroy() {
            warn!(error = %err, "workspace not fully removed");
        }
        Verification::Ran {
            diff: applied.diff,
            backend: sandbox.name(),
            output,
            outcome,
            ms: millis(started),
        }
    }

    /// The project's own checks, over the same edited copy, when configured.
    async fn run_checks(
        &self,
        ws: &Workspace,
        opts: &SandboxOptions,
        sandbox: &SandboxBackend,
    ) -> Result<Value, JobFailure> {
        let s = self.settings();
        let Some((program, args)) = s.check_command.as_ref().and_then(|c| c.split_first()) else {
            return Ok(Value::Null);
        };
        let mut spec = CommandSpec::new(program.clone(), &[], s.project_root.clone());
        spec.args = args.to_vec();
        let run = sandbox.run(&spec, ws, &s.project_root, opts, b"").await;
        match run {
            Ok(out) if out.exit_code == Some(0) => Ok(Value::Null),
            Ok(out) => {
                let ended = match (out.exit_code, out.timed_out) {
                    (_, true) => "timed out".to_owned(),
                    (Some(code), _) => format!("exit {code}"),
                    (None, _) => "killed".to_owned(),
                };
                Err(JobFailure::with_stack(
                    format!("the project's checks failed ({ended})"),
                    format!("{}{}", out.stdout, out.stderr),
                ))
            }
            Err(err) => Err(JobFailure::new(format!(
                "the project's checks could not run: {err}"
            ))),
        }
    }

    /// Stores one round and says whether it verified.
    async fn record_round(
        &self,
        case: &Case,
        heal_job: &str,
        done: &Round<'_>,
    ) -> Result<bool, HealError> {
        let (answer, verification) = (done.answer, done.verification);
        let round = answer.round;
        let secrets = &self.settings().secrets;
        let mut record = HealAttemptRecord {
            heal_job_id: heal_job.to_owned(),
            job_id: case.job.id.0.clone(),
            round,
            prompt: answer.question.to_owned(),
            reply: answer.reply.to_owned(),
            edits_json: serde_json::to_value(done.edits).unwrap_or(Value::Null),
            sandbox_stdout: String::new(),
            sandbox_stderr: String::new(),
            sandbox_exit: None,
            verdict: String::new(),
            refusal: None,
            timings: AttemptTimings {
                total_ms: millis(answer.started),
                ..AttemptTimings::default()
            },
        };
        let passed = match verification {
            Verification::Refused(reason) => {
                self.emit(HealEvent::EditRefused {
                    round,
                    reason: reason.clone(),
                });
                record.verdict = "refused".into();
                record.refusal = Some(reason.clone());
                false
            }
            Verification::Unverifiable(reason) => {
                record.verdict = "error".into();
                record.refusal = Some(reason.clone());
                false
            }
            Verification::Ran {
                output,
                outcome,
                ms,
                backend,
                ..
            } => {
                record.sandbox_stdout = mask_secrets(&output.stdout, secrets);
                record.sandbox_stderr = mask_secrets(&stderr_with_ending(output, outcome), secrets);
                record.sandbox_exit = output.exit_code;
                record.timings.sandbox_ms = *ms;
                record.verdict = if outcome.is_ok() { "passed" } else { "failed" }.into();
                let summary = match outcome {
                    Ok(v) => prompt::tail(&v.to_string(), 300).to_owned(),
                    Err(f) => f.message.clone(),
                };
                self.emit(HealEvent::SandboxRun {
                    round,
                    backend: (*backend).to_owned(),
                    passed: outcome.is_ok(),
                    exit_code: output.exit_code,
                    summary,
                });
                outcome.is_ok()
            }
        };
        self.parts.memory.record_heal_attempt(record).await?;
        Ok(passed)
    }

    /// Stores the fix, saves its patch, sends the e-mail and builds the report.
    async fn conclude(
        &self,
        case: &Case,
        heal_job: &str,
        progress: Progress,
    ) -> Result<HealReport, HealError> {
        let fix_id = if progress.diff.is_empty() {
            None
        } else {
            Some(self.store_fix(case, heal_job, &progress).await?)
        };
        let reason = if progress.verified {
            None
        } else {
            progress.reason.clone().or(Some("no fix was found".into()))
        };
        self.emit(HealEvent::Verdict {
            verified: progress.verified,
            fix_id,
            reason: reason.clone(),
        });
        let s = self.settings();
        let patch = fix_id.map(|id| s.state_dir.join("fixes").join(format!("fix-{id}.patch")));
        if let Some(path) = &patch {
            save_patch(path, &progress.diff).await;
        }
        let mail = email::compose(&email::Outcome {
            job: &case.job,
            trace: &case.trace,
            stack: &case.stack,
            verified: progress.verified,
            reason: reason.as_deref(),
            root_cause: &progress.root_cause,
            diff: &progress.diff,
            after: &progress.after,
            fix_id,
            source: progress.source,
            model: &self.parts.model.config().model,
            rounds: progress.rounds,
            patch: patch.as_deref(),
            from: &s.from,
            to: &s.reviewers,
        });
        let delivery = describe_delivery(self.parts.notifier.send(&mail).await?);
        self.emit(HealEvent::Emailed {
            delivery: delivery.clone(),
        });
        if progress.verified {
            info!(job_id = %case.job.id, fix_id = ?fix_id, "fix verified");
        } else {
            info!(job_id = %case.job.id, reason = ?reason, "healing ended without a verified fix");
        }
        Ok(HealReport {
            job_id: case.job.id.clone(),
            verified: progress.verified,
            fix_id,
            source: progress.source,
            rounds: progress.rounds,
            root_cause: progress.root_cause,
            diff: progress.diff,
            reason,
            delivery,
        })
    }

    async fn store_fix(
        &self,
        case: &Case,
        heal_job: &str,
        progress: &Progress,
    ) -> Result<i64, HealError> {
        let source = progress.source.unwrap_or(FixSource::Model);
        let fix = NewFix {
            group_id: case.record.group_id,
            failure_id: case.record.failure_id,
            job_id: case.job.id.0.clone(),
            queue: case.job.queue.clone(),
            verified: progress.verified,
            root_cause: progress.root_cause.clone(),
            diff: progress.diff.clone(),
            edits_json: progress.edits.clone(),
            source,
            model: match source {
                FixSource::Memory => "memory".to_owned(),
                FixSource::Model => self.parts.model.config().model.clone(),
            },
            rounds: progress.rounds,
            heal_job_id: Some(heal_job.to_owned()),
        };
        let id = self.parts.memory.record_fix(fix).await?;
        let chunks = chunks_for_fix(&progress.root_cause, &progress.diff);
        if !chunks.is_empty() {
            let embedded = self.parts.embedder.embed_chunks(chunks).await?;
            self.parts.memory.record_fix_vectors(id, embedded).await?;
        }
        Ok(id)
    }
}

/// The run's stderr, ending with how the sandbox stopped it when it did (a timeout or a
/// signal, e.g. the kernel's OOM kill), since the handler itself cannot say so.
///
/// A failure the job's own output does not show is added after it: how the sandbox stopped the
/// run (`[sandbox] timed out after 10s`), or the project's checks failing after the job passed,
/// with what the checks printed.
fn stderr_with_ending(output: &CommandOutput, outcome: &Result<Value, JobFailure>) -> String {
    let stopped = output.timed_out || output.signal.is_some();
    match outcome {
        Err(failure) if stopped => format!("{}\n[sandbox] {}\n", output.stderr, failure.message),
        // A memory kill is already stated at the end of the output, by the sandbox.
        Err(failure) if output.exit_code == Some(0) && !output.memory_killed => {
            let shown = failure.stack.as_deref().unwrap_or_default();
            format!("{}\n[{}]\n{shown}", output.stderr, failure.message)
        }
        _ => output.stderr.clone(),
    }
}

/// Keeps what a round produced: its diff and what the job printed.
fn absorb(progress: &mut Progress, verification: &Verification) {
    if let Verification::Ran {
        diff,
        output,
        outcome,
        ..
    } = verification
    {
        progress.diff = diff.clone();
        progress.after = match outcome {
            Ok(_) => output.stdout.clone(),
            Err(_) => format!("{}{}", output.stdout, stderr_with_ending(output, outcome)),
        };
    }
}

async fn save_patch(path: &std::path::Path, diff: &str) {
    let write = async {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::write(path, diff).await
    };
    if let Err(err) = write.await {
        warn!(path = %path.display(), error = %err, "cannot save the fix's patch");
    }
}

fn describe_delivery(delivery: Delivery) -> String {
    match delivery {
        Delivery::Written { path } => format!("written to {}", path.display()),
        Delivery::Sent => "sent over SMTP".to_owned(),
        Delivery::Deferred { spool_path, reason } => {
            format!(
                "queued in {} (SMTP unavailable: {reason})",
                spool_path.display()
            )
        }
    }
}

fn describe_frame(frame: &smartworker_triage::Frame) -> String {
    let line = frame.line.map(|l| format!(":{l}")).unwrap_or_default();
    let function = frame
        .function
        .as_deref()
        .map(|f| format!(" in {f}"))
        .unwrap_or_default();
    format!("{}{line}{function}", frame.file)
}

/// The project frames with the code the model will see.
fn frame_inputs(trace: &Trace, snippets: &[Snippet], root: &std::path::Path) -> Vec<FrameInput> {
    trace
        .app_frames()
        .map(|frame| {
            let relative = smartworker_triage::resolve_in_root(&frame.file, root);
            let path = relative.map(|p| p.to_string_lossy().replace('\\', "/"));
            let code = snippets
                .iter()
                .find(|s| Some(&s.path) == path.as_ref())
                .map(|s| s.text.clone());
            FrameInput {
                file: path.unwrap_or_else(|| frame.file.clone()),
                line: frame.line,
                function: frame.function.clone(),
                code,
            }
        })
        .collect()
}

/// The vector of the "error and message" chunk, the one similar failures are searched by.
fn error_vector(embedded: &EmbeddedChunks) -> Option<Vec<f32>> {
    let chunks = embedded.chunks();
    let error = chunks
        .iter()
        .find(|(chunk, _)| chunk.kind == ChunkKind::Error);
    error.or(chunks.first()).map(|(_, v)| v.clone())
}

fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs healing jobs from the heal queue.
pub struct HealHandler {
    healer: Arc<Healer>,
}

impl HealHandler {
    /// A handler that heals with `healer`.
    pub fn new(healer: Arc<Healer>) -> HealHandler {
        HealHandler { healer }
    }
}

#[async_trait]
impl Handler for HealHandler {
    async fn run(&self, job: &Job) -> Result<Value, JobFailure> {
        let Some(target) = job.data.get("job_id").and_then(Value::as_str) else {
            return Err(JobFailure::new("heal job has no \"job_id\" in its data"));
        };
        let report = self.healer.heal(&JobId::from(target), &job.id.0).await;
        let report = report.map_err(|e| JobFailure::new(format!("healing failed: {e}")))?;
        serde_json::to_value(report).map_err(|e| JobFailure::new(e.to_string()))
    }
}
