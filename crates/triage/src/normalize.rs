//! Turns a pasted trace into clean lines before any language parser sees it.
//! It undoes what logs and chat tools do to traces: structured log records
//! (`record`), JSON escaping, ANSI colour codes, HTML entities, Markdown
//! quotes and fences, CRLF, traces flattened onto one line, and per-line log
//! prefixes. Work is bounded by `MAX_INPUT_BYTES`.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use crate::{flatten, record};

/// The most input the parser reads; longer input keeps its head and its tail,
/// because Python prints the error last and most other runtimes print it first.
pub const MAX_INPUT_BYTES: usize = 1 << 20;

/// The longest log prefix learned from frame lines.
const MAX_PREFIX_LEN: usize = 120;

/// Clean lines, ready for the language parsers.
pub(crate) struct Normalized {
    /// The lines, without line terminators.
    pub(crate) lines: Vec<String>,
    /// Whether the input was cut to `MAX_INPUT_BYTES`.
    pub(crate) truncated: bool,
}

static ANSI: LazyLock<Regex> = LazyLock::new(|| re(r"\x1b\[[0-9;?]*[ -/]*[@-~]"));
static HTML_ENTITY: LazyLock<Regex> =
    LazyLock::new(|| re(r"&(#[xX][0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-zA-Z]{2,8});"));
static QUOTE: LazyLock<Regex> = LazyLock::new(|| re(r"^[ \t]{0,3}(?:> ?)+"));
static FENCE: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*(?:```|~~~)[\w+-]*\s*$"));

/// Frame markers used to learn a log prefix: what precedes them on a line.
static FRAME_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r#"File "[^"]+", line \d+"#,
        r"|\bat (?:async )?(?:new )?[^\s()]+ \([^()]*:\d+(?::\d+)?\)",
        r"|\bat (?:async )?[^\s()]+:\d+:\d+",
        r"|\bat [\w$.<>/]+\([^()]*\)",
        r"|(?:\b\d+: )?\bfrom \S+:\d+:in ",
        r"|\S+\.rb:\d+:in ",
        r"|/\S+\.go:\d+ \+0x",
        r"|\bat \S+\.rs:\d+",
        r"|(?:^|\s)\d{1,4}: +(?:0x[0-9a-fA-F]+ - |[<\w]+::)",
    ))
});

static DIGITS: LazyLock<Regex> = LazyLock::new(|| re(r"\d+"));

/// Compiles a pattern written in this crate.
///
/// # Panics
///
/// Panics when the pattern is invalid; every pattern is a literal in this
/// crate and is compiled by the test suite.
#[allow(clippy::expect_used)] // reason: literal patterns, exercised by every test
pub(crate) fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("literal regex is valid")
}

/// Cleans `text` into lines.
pub(crate) fn normalize(text: &str) -> Normalized {
    let (text, truncated) = cap(text);
    let text = record::expand_records(&text);
    let text = unescape_json(&text);
    let text = ANSI.replace_all(&text, "").into_owned();
    let text = decode_html_entities(&text);

    let mut lines = Vec::new();
    for raw in text.split('\n') {
        let line = raw.trim_end_matches('\r');
        for piece in line.split('\r') {
            push_clean_line(&mut lines, piece);
        }
    }
    strip_learned_prefix(&mut lines);
    Normalized { lines, truncated }
}

/// Keeps the head and the tail of an oversized input.
fn cap(text: &str) -> (String, bool) {
    if text.len() <= MAX_INPUT_BYTES {
        return (text.to_owned(), false);
    }
    let half = MAX_INPUT_BYTES / 2;
    let mut head_end = half;
    while !text.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = text.len() - half;
    while !text.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    let joined = format!("{}\n{}", &text[..head_end], &text[tail_start..]);
    (joined, true)
}

/// Undoes JSON string escaping when the text is a JSON string, or when it
/// holds more escaped newlines than real ones (a trace inside a JSON log line).
fn unescape_json(text: &str) -> String {
    let trimmed = text.trim();
    if trimmed.len() >= 2
        && trimmed.starts_with('"')
        && trimmed.ends_with('"')
        && let Ok(decoded) = serde_json::from_str::<String>(trimmed)
    {
        return unescape_json(&decoded);
    }

    let mut current = text.to_owned();
    // Twice at most: a trace logged as JSON inside another JSON log line.
    for _ in 0..2 {
        let escaped = current.matches("\\n").count();
        let real = current.matches('\n').count();
        if escaped < 2 || escaped <= real {
            break;
        }
        current = unescape_sequences(&current);
    }
    current
}

/// Replaces JSON escape sequences in one pass, so `\\n` stays a backslash
/// followed by `n` (a Windows path) while `\n` becomes a newline.
fn unescape_sequences(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('/') => out.push('/'),
            Some('u') => {
                let hex: String = chars.clone().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(decoded) if hex.len() == 4 => {
                        out.push(decoded);
                        for _ in 0..4 {
                            chars.next();
                        }
                    }
                    _ => out.push_str("\\u"),
                }
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Decodes the HTML entities that error trackers put in rendered traces.
fn decode_html_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    HTML_ENTITY
        .replace_all(text, |caps: &regex::Captures<'_>| {
            decode_entity(&caps[1]).map_or_else(|| caps[0].to_owned(), String::from)
        })
        .into_owned()
}

fn decode_entity(name: &str) -> Option<char> {
    if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
        return u32::from_str_radix(hex, 16).ok().and_then(char::from_u32);
    }
    if let Some(decimal) = name.strip_prefix('#') {
        return decimal.parse().ok().and_then(char::from_u32);
    }
    let decoded = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        _ => return None,
    };
    Some(decoded)
}

/// Strips Markdown quoting and fences from one line, splits it when it is a
/// flattened trace, and appends the result.
fn push_clean_line(lines: &mut Vec<String>, raw: &str) {
    let line = QUOTE.replace(raw, "");
    let line = line.trim_end();
    if FENCE.is_match(line) {
        lines.push(String::new());
        return;
    }
    if !flatten::looks_flattened(line) {
        lines.push(line.to_owned());
        return;
    }
    lines.extend(flatten::split_flattened(line));
}

/// Learns a log prefix from the frame lines (`worker_1 | `, a timestamp and a
/// process name, ...) and strips it from every line that carries it. The
/// prefix's digits may vary from line to line (timestamps); its shape may not.
fn strip_learned_prefix(lines: &mut [String]) {
    let learned = learn_prefix(lines)
        .or_else(|| learn_pipe_prefix(lines))
        .or_else(|| learn_stamped_prefix(lines));
    let Some(prefix) = learned else {
        return;
    };
    for line in lines.iter_mut() {
        if let Some(found) = prefix.find(line) {
            *line = line[found.end()..].to_owned();
        }
    }
}

/// The most common shape of text before a frame marker, as an anchored regex.
fn learn_prefix(lines: &[String]) -> Option<Regex> {
    let mut shapes: HashMap<String, usize> = HashMap::new();
    let mut marker_lines = 0usize;
    for line in lines {
        let Some(marker) = FRAME_MARKER.find(line) else {
            continue;
        };
        marker_lines += 1;
        let before = line[..marker.start()].trim_end();
        if before.is_empty() || before.len() > MAX_PREFIX_LEN {
            continue;
        }
        *shapes
            .entry(DIGITS.replace_all(before, "0").into_owned())
            .or_default() += 1;
    }

    // Frame lines nested deeper (an exception group's sub-exceptions) carry
    // more gutter after the prefix: the prefix is what all of them share.
    let total: usize = shapes.values().sum();
    let (shape, count) = shapes
        .iter()
        .max_by_key(|(shape, count)| (**count, shape.len()))?;
    if *count < 2 {
        return None;
    }
    if let Some(common) = common_shape(&shapes)
        && total * 2 >= marker_lines
    {
        return shape_regex(&common);
    }
    if count * 2 < marker_lines {
        return None;
    }
    shape_regex(shape)
}

/// The start that differing shapes share, up to a word boundary; `None`
/// when there is one shape or they share no word.
fn common_shape(shapes: &HashMap<String, usize>) -> Option<String> {
    if shapes.len() < 2 {
        return None;
    }
    let keys: Vec<&str> = shapes.keys().map(String::as_str).collect();
    shared_words(&keys)
}

/// The longest start that all `texts` share, cut back to a word boundary.
fn shared_words(texts: &[&str]) -> Option<String> {
    let first = texts.first()?;
    let mut common = first.len();
    for text in &texts[1..] {
        common = first
            .char_indices()
            .zip(text.chars())
            .find(|((_, a), b)| a != b)
            .map_or(common.min(text.len()), |((at, _), _)| common.min(at));
    }
    let shared = &first[..common];
    let at_boundary = texts.iter().all(|text| {
        text[common..]
            .chars()
            .next()
            .is_none_or(char::is_whitespace)
    });
    let word_end = if at_boundary {
        common
    } else {
        shared.rfind(char::is_whitespace)?
    };
    let prefix = shared[..word_end].trim_end();
    (!prefix.is_empty()).then(|| prefix.to_owned())
}

/// Without frame markers or a pipe, a prefix that starts with a timestamp
/// (a digit run) and that every non-empty line shares (`journald`, CRI).
fn learn_stamped_prefix(lines: &[String]) -> Option<Regex> {
    let shapes: Vec<String> = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let head: String = line.chars().take(MAX_PREFIX_LEN).collect();
            DIGITS.replace_all(&head, "0").into_owned()
        })
        .collect();
    if shapes.len() < 3 {
        return None;
    }
    let texts: Vec<&str> = shapes.iter().map(String::as_str).collect();
    let shared = shared_words(&texts)?;
    let stamped = shared
        .split_whitespace()
        .next()
        .is_some_and(|word| word.contains('0'));
    (stamped && shared.len() >= 8)
        .then(|| shape_regex(&shared))
        .flatten()
}

/// An anchored pattern for a shape whose `0`s stand for digit runs.
fn shape_regex(shape: &str) -> Option<Regex> {
    let pattern = shape
        .split('0')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(r"\d+");
    Regex::new(&format!("^{pattern}")).ok()
}

/// A process prefix ending in a pipe (`worker_1 | `, `12:41:13 web.1 | `).
static PIPE_PREFIX: LazyLock<Regex> = LazyLock::new(|| re(r#"^[^|"'()\[\]{}]{1,40}?\|"#));

/// Without frame markers (a panic with no backtrace), a pipe-ended prefix
/// that at least half the lines share.
fn learn_pipe_prefix(lines: &[String]) -> Option<Regex> {
    let mut shapes: HashMap<String, usize> = HashMap::new();
    let mut non_empty = 0usize;
    for line in lines.iter().filter(|line| !line.trim().is_empty()) {
        non_empty += 1;
        if let Some(found) = PIPE_PREFIX.find(line) {
            *shapes
                .entry(DIGITS.replace_all(found.as_str(), "0").into_owned())
                .or_default() += 1;
        }
    }
    let (shape, count) = shapes
        .into_iter()
        .max_by_key(|(shape, count)| (*count, shape.len()))?;
    if count < 2 || count * 2 < non_empty {
        return None;
    }
    let pattern = shape
        .split('0')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(r"\d+");
    Regex::new(&format!("^{pattern}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        normalize(text).lines
    }

    #[test]
    fn json_escaped_trace_is_unescaped_keeping_windows_backslashes() {
        let text = r#"Traceback (most recent call last):\n  File \"C:\\new\\app.py\", line 3, in main\nKeyError: 'x'"#;
        assert_eq!(
            lines(text),
            vec![
                "Traceback (most recent call last):",
                r#"  File "C:\new\app.py", line 3, in main"#,
                "KeyError: 'x'",
            ]
        );
    }

    #[test]
    fn docker_json_log_records_become_their_text() {
        let text = "{\"log\":\"Error: boom\\n\",\"stream\":\"stderr\"}\n\
                    {\"log\":\"    at run (/app/a.js:1:2)\\n\",\"stream\":\"stderr\"}";
        assert_eq!(
            lines(text),
            vec!["Error: boom", "    at run (/app/a.js:1:2)"]
        );
    }

    #[test]
    fn pino_record_gives_message_then_error_stack() {
        let text = r#"{"level":50,"msg":"job failed","err":{"type":"Error","message":"boom","stack":"Error: boom\n    at run (/app/a.js:1:2)"}}"#;
        assert_eq!(
            lines(text),
            vec!["job failed", "Error: boom", "    at run (/app/a.js:1:2)"]
        );
    }

    #[test]
    fn record_logged_inside_another_record_is_unwrapped() {
        let inner =
            r#"{"exception": "KeyError", "error": "'id'", "backtrace": ["/app/a.rb:1:in `x'"]}"#;
        let outer = serde_json::json!({"level": "error", "msg": inner}).to_string();
        assert_eq!(lines(&outer), vec!["KeyError: 'id'", "/app/a.rb:1:in `x'"]);
    }

    #[test]
    fn pretty_record_behind_a_prefix_on_every_line_is_unwrapped() {
        let text = "web_1  | {\nweb_1  |   \"message\": \"boom\",\n\
                    web_1  |   \"stack\": \"Error: boom\\n    at run (/app/a.js:1:2)\"\nweb_1  | }";
        assert_eq!(
            lines(text),
            vec!["boom", "Error: boom", "    at run (/app/a.js:1:2)"]
        );
    }

    #[test]
    fn record_after_a_short_log_prefix_is_unwrapped() {
        let text = r#"12:00:01 worker | {"msg": "Error: boom\n    at run (/app/a.js:1:2)"}"#;
        assert_eq!(
            lines(text),
            vec!["Error: boom", "    at run (/app/a.js:1:2)"]
        );
    }

    #[test]
    fn prefix_is_what_frame_lines_nested_at_different_depths_share() {
        let text = "w1 |   |   File \"/app/a.py\", line 3, in run\n\
                    w1 |   |   File \"/app/b.py\", line 4, in go\n\
                    w1 |     |   File \"/app/c.py\", line 5, in f";
        assert_eq!(
            lines(text),
            vec![
                "   |   File \"/app/a.py\", line 3, in run",
                "   |   File \"/app/b.py\", line 4, in go",
                "     |   File \"/app/c.py\", line 5, in f",
            ]
        );
    }

    #[test]
    fn timestamp_prefix_on_every_line_is_stripped_without_frames() {
        let text = "2024-05-02T10:00:01.17Z stderr F thread 'main' panicked at src/a.rs:8:14:\n\
                    2024-05-02T10:00:01.18Z stderr F index out of bounds\n\
                    2024-05-02T10:00:01.19Z stderr F note: run with `RUST_BACKTRACE=1`";
        assert_eq!(
            lines(text),
            vec![
                " thread 'main' panicked at src/a.rs:8:14:",
                " index out of bounds",
                " note: run with `RUST_BACKTRACE=1`",
            ]
        );
    }

    #[test]
    fn html_entities_are_decoded() {
        assert_eq!(
            lines("undefined method &#x60;x&#x27; &lt;main&gt;"),
            vec!["undefined method `x' <main>"]
        );
    }

    #[test]
    fn varying_timestamp_prefix_is_learned_and_stripped() {
        let text = "2024-01-01 10:00:01.123 app | Error: boom\n\
                    2024-01-01 10:00:01.124 app |     at run (/app/a.js:1:2)\n\
                    2024-01-01 10:00:01.125 app |     at main (/app/b.js:3:4)";
        assert_eq!(
            lines(text),
            vec![
                " Error: boom",
                "     at run (/app/a.js:1:2)",
                "     at main (/app/b.js:3:4)"
            ]
        );
    }

    #[test]
    fn flattened_python_trace_is_split_into_lines() {
        let text = "Traceback (most recent call last): File \"/app/jobs.py\", line 9, in run \
                    handle(payload) File \"/app/jobs.py\", line 4, in handle return payload['id'] \
                    KeyError: 'id'";
        assert_eq!(
            lines(text),
            vec![
                "Traceback (most recent call last):",
                "  File \"/app/jobs.py\", line 9, in run handle(payload)",
                "  File \"/app/jobs.py\", line 4, in handle return payload['id']",
                "KeyError: 'id'",
            ]
        );
    }

    #[test]
    fn oversized_input_keeps_head_and_tail() {
        let text = format!("head\n{}\ntail", "x".repeat(MAX_INPUT_BYTES * 2));
        let normalized = normalize(&text);
        assert!(normalized.truncated);
        assert_eq!(normalized.lines.first().map(String::as_str), Some("head"));
        assert_eq!(normalized.lines.last().map(String::as_str), Some("tail"));
    }
}
