//! The reviewer's e-mail: one per healing outcome, saying exactly what was verified.

use smartworker_core::Job;
use smartworker_memory::FixSource;
use smartworker_notify::Email;
use smartworker_triage::Trace;
use std::fmt::Write;
use std::path::Path;

/// Everything the e-mail reports.
pub(crate) struct Outcome<'a> {
    pub job: &'a Job,
    pub trace: &'a Trace,
    pub stack: &'a str,
    pub verified: bool,
    pub reason: Option<&'a str>,
    pub root_cause: &'a str,
    pub diff: &'a str,
    pub after: &'a str,
    pub fix_id: Option<i64>,
    pub source: Option<FixSource>,
    pub model: &'a str,
    pub rounds: u32,
    pub patch: Option<&'a Path>,
    pub from: &'a str,
    pub to: &'a [String],
}

/// The message for one outcome.
pub(crate) fn compose(o: &Outcome<'_>) -> Email {
    let error = format!("{}: {}", o.trace.error_type, o.trace.message);
    let verdict = if o.verified {
        "Verified fix"
    } else {
        "No verified fix"
    };
    let subject = format!(
        "[SmartWorker] {verdict} for job {} on {}: {}",
        o.job.id,
        o.job.queue,
        crate::prompt::tail(&error, 120)
    );
    let mut text = String::new();
    let attempts = o.job.attempts.len();
    let _ = writeln!(
        text,
        "Job {} ({}) on queue \"{}\" failed {attempts} time(s) and was moved to the \
         dead-letter queue.\n",
        o.job.id, o.job.name, o.job.queue
    );
    write_verdict(&mut text, o);
    if !o.root_cause.is_empty() {
        let _ = writeln!(text, "Root cause:\n{}\n", o.root_cause);
    }
    let _ = writeln!(text, "Before (the original failure):\n{error}\n");
    let _ = writeln!(
        text,
        "{}\n",
        indent(crate::prompt::tail(o.stack.trim(), 3_000))
    );
    if !o.after.trim().is_empty() {
        let _ = writeln!(text, "After (the same job in the sandbox with the change):");
        let _ = writeln!(
            text,
            "{}\n",
            indent(crate::prompt::tail(o.after.trim(), 3_000))
        );
    }
    if !o.diff.is_empty() {
        let _ = writeln!(text, "Diff:\n{}", o.diff);
    }
    write_how_to_apply(&mut text, o);
    Email {
        from: o.from.to_owned(),
        to: o.to.to_vec(),
        subject,
        text,
        headers: vec![("X-SmartWorker-Job".into(), o.job.id.0.clone())],
    }
}

fn write_verdict(text: &mut String, o: &Outcome<'_>) {
    if o.verified {
        let origin = match o.source {
            Some(FixSource::Memory) => "reused from memory (a verified fix of the same failure)",
            _ => "proposed by the model",
        };
        let _ = writeln!(
            text,
            "Verdict: VERIFIED. The original job, with its original payload, succeeded in an \
             isolated sandbox with the change below applied. The change was {origin}.\n"
        );
        return;
    }
    let reason = o.reason.unwrap_or("no fix was found");
    let _ = writeln!(
        text,
        "Verdict: NOT VERIFIED. {reason}.\nNothing was changed in your project. The job stays \
         in the dead-letter queue.\n"
    );
}

fn write_how_to_apply(text: &mut String, o: &Outcome<'_>) {
    let Some(fix) = o.fix_id else {
        return;
    };
    let by = match o.source {
        Some(FixSource::Memory) => "memory".to_owned(),
        _ => format!("{} in {} round(s)", o.model, o.rounds),
    };
    let _ = writeln!(text, "\nFix {fix} (from {by}).");
    if !o.verified {
        let _ = writeln!(
            text,
            "It did not pass in the sandbox; review it before using it."
        );
    }
    let _ = writeln!(
        text,
        "How to apply (in the project's directory, or with --config):"
    );
    let _ = writeln!(
        text,
        "  smartworker fixes apply {fix}   # applies the diff to the project and retries job {}",
        o.job.id
    );
    if let Some(patch) = o.patch {
        let _ = writeln!(text, "  or: git apply {}", patch.display());
        let _ = writeln!(text, "      smartworker dead retry {}", o.job.id);
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
