//! The error line when no runtime printed one: error-tracker reports rendered
//! as Markdown (`**Error type:** `X``, `**X** in **context**`), and a
//! best-effort line for input nothing else recognises.

use std::sync::LazyLock;

use regex::Regex;

use crate::block::{ErrorLine, find_error_token};
use crate::normalize::re;

static TYPE_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^\s*\*\*(?:error|exception)(?: type| class)?\s*:?\s*\*\*\s*:?\s*(.+)$")
});
static MESSAGE_FIELD: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^\s*\*\*(?:error |exception )?message\s*:?\s*\*\*\s*:?\s*(.+)$"));
/// Bugsnag's title: `**NoMethodError** in **worker#queue**`.
static BOLD_TITLE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*\*\*([A-Z][\w:.]*)\*\*(?:\s+in\s+.*)?\s*$"));

/// How Node's inspector shows an error without a stack: `[Name: message]`,
/// as an unhandled rejection with a non-error reason prints.
static BRACKETED: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:^|\s)\[([A-Z][\w$]*(?:Error|Exception|Rejection|Warning)): ([^\]]*)\]")
});

/// An `anyhow`/`eyre` cause entry: `    0: message` under `Caused by:`.
static CAUSE_ENTRY: LazyLock<Regex> = LazyLock::new(|| re(r"^\s+(?:\d+:\s+)?(\S.*)$"));

/// The first entry of a numbered cause list: `   0: message`.
static NUMBERED_ENTRY: LazyLock<Regex> = LazyLock::new(|| re(r"^\s+0:\s+\S"));

/// The longest best-effort message kept.
const MAX_MESSAGE_CHARS: usize = 500;

/// The error named by Markdown report fields, when there are any.
pub(crate) fn markdown_error(lines: &[String]) -> Option<ErrorLine> {
    if let Some(error_type) = lines.iter().find_map(|line| field(&TYPE_FIELD, line)) {
        let message = lines.iter().find_map(|line| field(&MESSAGE_FIELD, line));
        return Some(ErrorLine {
            error_type,
            qualified: None,
            message: message.unwrap_or_default(),
        });
    }
    let (index, error_type) = lines.iter().enumerate().find_map(|(index, line)| {
        let caps = BOLD_TITLE.captures(line)?;
        Some((index, caps.get(1)?.as_str().to_owned()))
    })?;
    let message = lines[index + 1..]
        .iter()
        .map(|line| line.trim())
        .find(|line| !line.is_empty())
        .filter(|line| !line.starts_with(['#', '[', '`', '*', '|']))
        .unwrap_or_default();
    Some(ErrorLine {
        error_type,
        qualified: None,
        message: message.to_owned(),
    })
}

fn field(pattern: &Regex, line: &str) -> Option<String> {
    let value = pattern.captures(line)?.get(1)?.as_str();
    Some(strip_inline_code(value).to_owned())
}

/// `` `` a `b` c `` `` and `` `x` `` lose their backticks.
fn strip_inline_code(value: &str) -> &str {
    let value = value.trim();
    let ticks = value.len() - value.trim_start_matches('`').len();
    if ticks == 0 || !value.ends_with(&"`".repeat(ticks)) || value.len() < ticks * 2 {
        return value;
    }
    value[ticks..value.len() - ticks].trim()
}

/// The line most likely to name the error in unrecognised input: one that
/// names an error type, else one that mentions an error, else the first.
pub(crate) fn best_effort_error(lines: &[String]) -> ErrorLine {
    if let Some(error) = markdown_error(lines) {
        return error;
    }
    if let Some(error) = lines.iter().find_map(|line| bracketed_error(line)) {
        return error;
    }
    if let Some(error) = lines.iter().find_map(|line| find_error_token(line)) {
        return error;
    }
    // A job framework's log line naming a Python error by its repr, with
    // no traceback (`Task x retry: Retry in 60s: ConnectionError(...)`).
    if let Some(error) = lines
        .iter()
        .find_map(|line| crate::python::repr_error(line))
    {
        return error;
    }
    let mentions = |line: &&String| {
        let lower = line.to_lowercase();
        ["error", "exception", "panic", "fatal", "fail"]
            .iter()
            .any(|w| lower.contains(w))
    };
    let line = lines
        .iter()
        .find(mentions)
        .or_else(|| lines.iter().find(|line| !line.trim().is_empty()));
    let message: String = line
        .map_or("", |l| l.trim())
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .collect();
    ErrorLine {
        error_type: String::new(),
        qualified: None,
        message,
    }
}

fn bracketed_error(line: &str) -> Option<ErrorLine> {
    let caps = BRACKETED.captures(line)?;
    Some(ErrorLine {
        error_type: caps.get(1)?.as_str().to_owned(),
        qualified: None,
        message: caps.get(2)?.as_str().trim().to_owned(),
    })
}

/// The causes listed under a `Caused by:` line (Rust's `anyhow` and `eyre`
/// print a returned error this way), outermost first. Flattened, a single
/// cause shares the label's line. `color-eyre` lists the error and its
/// causes, numbered, right under an empty `Error:` line.
pub(crate) fn listed_causes(lines: &[String]) -> Vec<ErrorLine> {
    let labelled = lines
        .iter()
        .position(|line| line.trim().starts_with("Caused by:"));
    let numbered_under_error = || {
        lines
            .windows(2)
            .position(|pair| pair[0].trim() == "Error:" && NUMBERED_ENTRY.is_match(&pair[1]))
    };
    let Some(start) = labelled.or_else(numbered_under_error) else {
        return Vec::new();
    };
    let inline = lines[start]
        .trim()
        .strip_prefix("Caused by:")
        .map(str::trim)
        .filter(|rest| !rest.is_empty());
    let listed = lines[start + 1..]
        .iter()
        .map_while(|line| CAUSE_ENTRY.captures(line)?.get(1))
        .map(|message| message.as_str());
    inline
        .into_iter()
        .chain(listed)
        .map(|message| ErrorLine {
            error_type: "Error".to_owned(),
            qualified: None,
            message: message.trim().to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes_in(lines: &[&str]) -> Vec<String> {
        let lines: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        listed_causes(&lines)
            .into_iter()
            .map(|c| c.message)
            .collect()
    }

    #[test]
    fn color_eyre_lists_the_error_and_its_causes_under_an_empty_error_line() {
        let report = [
            "Error: ",
            "   0: job 7 failed",
            "   1: db down",
            "",
            "Location:",
        ];
        assert_eq!(causes_in(&report), vec!["job 7 failed", "db down"]);
    }

    #[test]
    fn a_single_cause_on_the_label_line_is_listed() {
        let report = [
            "Error: job 4 failed",
            "Caused by: bad json",
            "Stack backtrace:",
        ];
        assert_eq!(causes_in(&report), vec!["bad json"]);
    }

    #[test]
    fn inline_code_with_backticks_inside_is_unwrapped() {
        assert_eq!(
            strip_inline_code("`` undefined method `pos' ``"),
            "undefined method `pos'"
        );
        assert_eq!(strip_inline_code("`NoMethodError`"), "NoMethodError");
    }
}
