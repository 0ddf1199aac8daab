//! What the model is told, and how its root cause is read back.
//!
//! The prompt is written for small coder models: one job, the error, the code with line
//! numbers, similar past failures with their fixes, and one clear format for the answer.
//! Secrets are masked before anything reaches this module.

use smartworker_memory::SimilarFailure;
use smartworker_model::ChatMessage;
use smartworker_triage::{Snippet, Trace};
use std::fmt::Write;

/// The longest stack trace given to the model, in bytes (its tail is kept).
const MAX_STACK: usize = 6_000;

/// The longest sandbox output fed back after a failed round, in bytes.
const MAX_FEEDBACK: usize = 4_000;

const SYSTEM: &str = "You are a senior software engineer on call for a background job system. \
A job failed for good. Find the root cause in the project's code and fix it so the same job, \
with the same payload, succeeds.

Answer in this order:
1. `Root cause:` followed by one or two sentences.
2. The fix: the complete corrected file in one fenced code block whose info string is the \
language and the file's path relative to the project root, for example ```python \
path=handlers/users.py. Change only what the fix needs; keep everything else as it is.

Do not fix the payload; fix the code. Do not add new dependencies.";

/// What the first request says about the failure.
pub struct FailureContext<'a> {
    /// The job's queue.
    pub queue: &'a str,
    /// The job's name.
    pub job_name: &'a str,
    /// The parsed trace.
    pub trace: &'a Trace,
    /// The raw stack trace, secrets masked.
    pub stack: &'a str,
    /// The payload, secrets masked.
    pub payload: &'a serde_json::Value,
    /// The code the trace points at.
    pub snippets: &'a [Snippet],
    /// Similar failures from memory.
    pub similar: &'a [SimilarFailure],
}

/// The system and first user message of a healing conversation.
pub fn initial(ctx: &FailureContext<'_>) -> Vec<ChatMessage> {
    vec![
        ChatMessage::system(SYSTEM),
        ChatMessage::user(describe_failure(ctx)),
    ]
}

fn describe_failure(ctx: &FailureContext<'_>) -> String {
    let mut text = String::new();
    let trace = ctx.trace;
    let _ = writeln!(
        text,
        "The job `{}` on queue `{}` failed with:",
        ctx.job_name, ctx.queue
    );
    let _ = writeln!(text, "{}: {}\n", trace.error_type, trace.message);
    let _ = writeln!(
        text,
        "Stack trace:\n```\n{}\n```\n",
        tail(ctx.stack.trim(), MAX_STACK)
    );
    let payload = serde_json::to_string_pretty(ctx.payload).unwrap_or_default();
    let _ = writeln!(
        text,
        "Job payload:\n```json\n{}\n```\n",
        tail(&payload, MAX_STACK)
    );
    for snippet in ctx.snippets {
        write_snippet(&mut text, snippet);
    }
    if !ctx.similar.is_empty() {
        write_similar(&mut text, ctx.similar);
    }
    let files: Vec<&str> = ctx.snippets.iter().map(|s| s.path.as_str()).collect();
    if let Some(first) = files.first() {
        let _ = writeln!(
            text,
            "Reply with `Root cause:` and the corrected file (most likely `{first}`) in a fenced \
             block with its path."
        );
    }
    text
}

fn write_snippet(text: &mut String, snippet: &Snippet) {
    let scope = if snippet.whole_file {
        "whole file".to_owned()
    } else {
        format!("lines {}-{}", snippet.start_line, snippet.end_line)
    };
    let at = snippet
        .line
        .map(|l| format!(", the error is at line {l}"))
        .unwrap_or_default();
    let _ = writeln!(text, "File `{}` ({scope}{at}):\n```", snippet.path);
    for (i, line) in snippet.text.lines().enumerate() {
        let number = snippet.start_line as usize + i;
        let _ = writeln!(text, "{number:>4} | {line}");
    }
    let _ = writeln!(text, "```\n");
}

fn write_similar(text: &mut String, similar: &[SimilarFailure]) {
    let _ = writeln!(text, "Similar failures seen before:");
    for s in similar {
        let fix = match &s.fix {
            Some(f) if f.verified => format!("fixed (verified): {}", f.root_cause),
            Some(f) => format!("a fix was tried but not verified: {}", f.root_cause),
            None => "no fix known".to_owned(),
        };
        let _ = writeln!(text, "- {}: {} ({fix})", s.error_type, one_line(&s.message));
    }
    text.push('\n');
}

/// The follow-up when the reply held no edit that could be applied.
pub fn refused(reason: &str) -> String {
    format!(
        "Your answer could not be applied: {reason}.\nReply again with `Root cause:` and the \
         complete corrected file in one fenced block whose info string names its path, for \
         example ```python path=handlers/users.py."
    )
}

/// The follow-up when the job still failed in the sandbox with the edit applied.
pub fn still_failing(error: &str, stderr: &str) -> String {
    format!(
        "I applied your change and re-ran the same job in a sandbox. It still fails:\n{error}\n\n\
         Output:\n```\n{}\n```\nFind what is still wrong and reply with the complete corrected \
         file again.",
        tail(stderr.trim(), MAX_FEEDBACK)
    )
}

/// The model's root cause: the text after `Root cause:`, or else the prose before the first
/// code block, cut to a few sentences.
pub fn root_cause(reply: &str) -> String {
    // Reasoning models think aloud in <think> first; the answer follows it.
    let reply = reply.rsplit("</think>").next().unwrap_or(reply);
    let prose = reply.split("```").next().unwrap_or_default();
    let marked = reply.lines().find_map(|line| {
        let clean = line
            .trim()
            .trim_start_matches(['#', '*', '-', ' ', '1', '.']);
        let lower = clean.to_ascii_lowercase();
        lower.starts_with("root cause").then(|| {
            let rest = &clean["root cause".len()..];
            rest.trim_start_matches(['*', ':', ' ']).trim().to_owned()
        })
    });
    let text = match marked {
        Some(t) if !t.is_empty() => t,
        _ => explanation(prose),
    };
    cut(&text, 600)
}

/// The prose before the code without the model's pleasantries ("Sure!", "Here is the fix:").
fn explanation(prose: &str) -> String {
    const FILLER: [&str; 7] = [
        "sure",
        "certainly",
        "of course",
        "here is",
        "here's",
        "below is",
        "i see the",
    ];
    let kept: Vec<&str> = sentences(prose)
        .into_iter()
        .filter(|s| !s.is_empty())
        .filter(|s| !FILLER.iter().any(|f| s.to_ascii_lowercase().starts_with(f)))
        .collect();
    kept.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits prose after `.`, `!`, `?` or `:` followed by a space or the end, and at line ends,
/// so a file name (`users.py`) or a path stays whole.
fn sentences(prose: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut start = 0;
    let mut chars = prose.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let ends = c == '\n'
            || (matches!(c, '.' | '!' | '?' | ':') && next.is_none_or(char::is_whitespace));
        if ends {
            let end = at + c.len_utf8();
            found.push(prose[start..end].trim());
            start = end;
        }
    }
    found.push(prose[start..].trim());
    found
}

fn one_line(text: &str) -> String {
    cut(text.lines().next().unwrap_or_default(), 200)
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The last `max` bytes of `text`, starting at a line when possible.
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let rest = &text[start..];
    rest.find('\n').map_or(rest, |i| &rest[i + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;
    use smartworker_triage::{ParseOptions, parse};

    /// Reported: the recorded root cause read `handlers/lib/users. py`.
    #[test]
    fn a_file_name_in_the_prose_is_kept_whole() {
        let reply =
            "The bug is in handlers/lib/users.py: it reads a missing key.\n```python\nx\n```";
        assert_eq!(
            root_cause(reply),
            "The bug is in handlers/lib/users.py: it reads a missing key."
        );
    }

    #[test]
    fn root_cause_is_read_from_a_marked_line_or_the_prose_before_the_code() {
        let marked = "Sure! Let me look.\n\n**Root cause:** the handler reads `data['user']` but \
                      the payload has `email` at the top.\n\n```python path=a.py\nx=1\n```";
        assert_eq!(
            root_cause(marked),
            "the handler reads `data['user']` but the payload has `email` at the top."
        );
        let unmarked = "The code divides by the count,\nwhich is zero for empty lists.\n```py\n```";
        assert_eq!(
            root_cause(unmarked),
            "The code divides by the count, which is zero for empty lists."
        );
        assert_eq!(root_cause(&"é".repeat(400)).chars().count(), 301);
        let chatty = "Sure! Here is the corrected module:\n\nThe loop stops one short.\n```py\n```";
        assert_eq!(root_cause(chatty), "The loop stops one short.");
        let thinking = "<think>Root cause: maybe the cache?</think>\nRoot cause: off by one.";
        assert_eq!(root_cause(thinking), "off by one.");
    }

    #[test]
    fn tail_keeps_whole_lines_at_the_end() {
        assert_eq!(tail("one\ntwo\nthree", 7), "three");
        assert_eq!(tail("short", 100), "short");
    }

    #[test]
    fn first_request_shows_error_stack_payload_and_numbered_code() {
        let stack = "Traceback (most recent call last):\n  File \"/p/handlers/signup.py\", line 3, \
                     in main\n    email = data[\"user\"][\"email\"]\nKeyError: 'user'\n";
        let trace = parse(stack, &ParseOptions::default());
        let snippet = Snippet {
            path: "handlers/signup.py".into(),
            line: Some(3),
            start_line: 1,
            end_line: 3,
            text: "import json\ndata = json.load(sys.stdin)\nemail = data[\"user\"][\"email\"]"
                .into(),
            whole_file: true,
        };
        let payload = serde_json::json!({"email": "***"});
        let ctx = FailureContext {
            queue: "signup",
            job_name: "signup",
            trace: &trace,
            stack,
            payload: &payload,
            snippets: &[snippet],
            similar: &[],
        };
        let messages = initial(&ctx);
        expect![[r#"
            The job `signup` on queue `signup` failed with:
            KeyError: 'user'

            Stack trace:
            ```
            Traceback (most recent call last):
              File "/p/handlers/signup.py", line 3, in main
                email = data["user"]["email"]
            KeyError: 'user'
            ```

            Job payload:
            ```json
            {
              "email": "***"
            }
            ```

            File `handlers/signup.py` (whole file, the error is at line 3):
            ```
               1 | import json
               2 | data = json.load(sys.stdin)
               3 | email = data["user"]["email"]
            ```

            Reply with `Root cause:` and the corrected file (most likely `handlers/signup.py`) in a fenced block with its path.
        "#]]
        .assert_eq(&messages[1].content);
    }
}
