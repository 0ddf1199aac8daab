//! V8 (Node.js) and JavaScriptCore (Bun) stacks: `at fn (file:line:col)`,
//! anonymous `at file:line:col`, async and constructor frames, several errors
//! in one blob, and `[cause]:` / `Caused by:` chains.

use std::sync::LazyLock;

use regex::Regex;

use crate::block::{Block, ErrorLine, Link, Parsed, find_error_token, frame, split_location};
use crate::model::Frame;
use crate::normalize::re;

static FRAME: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*at\s+(.+?)\s*$"));
/// A location in parentheses, at the end of the frame.
static CALL: LazyLock<Regex> = LazyLock::new(|| re(r"^(.*?)\s+\(([^()]*(?:\([^()]*\)[^()]*)*)\)$"));
/// `at /path/file.js:1:2` (anonymous); also matches Windows drive paths.
static BARE_LOCATION: LazyLock<Regex> = LazyLock::new(|| re(r"^\S.*:\d+(?::\d+)?$"));
/// Bun's `error: message` header (JavaScriptCore lower-cases the name).
static BUN_HEADER: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*error:\s+(.*)$"));
/// `key: value` property lines Node and Bun print between message and frames.
static PROPERTY: LazyLock<Regex> = LazyLock::new(|| re(r"^\s+[\w$\[\]]+:\s|^\s*[{}]\s*$"));
/// A header line that names no error type: `Name: message`.
static LOOSE_HEADER: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*([A-Za-z_$][\w$.]*):\s+(.*)$"));

/// How far above a run of frames its header may sit.
const HEADER_LOOKBACK: usize = 8;

/// Counts the lines that only a V8 or JavaScriptCore stack prints.
pub(crate) fn score(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|line| parse_frame(line).is_some())
        .count()
        * 2
}

/// Parses one `at ...` line; `None` for anything else (JVM frames included).
pub(crate) fn parse_frame(line: &str) -> Option<Frame> {
    let body = FRAME.captures(line)?.get(1)?.as_str();
    let body = body.trim_end_matches(['"', '\'', '`', '{', '}', ',', ';', ']', ' ']);
    let body = body.strip_prefix("async ").unwrap_or(body);

    // A JVM frame has no space before its parenthesis; this one must.
    let parsed = if let Some(caps) = CALL.captures(body) {
        call_frame(caps.get(1)?.as_str(), caps.get(2)?.as_str())
    } else if BARE_LOCATION.is_match(body) && !body.contains(' ') || is_windows_location(body) {
        let (file, line_no, column) = split_location(body);
        frame(file, line_no, column, None)
    } else {
        return None;
    };
    // Rust backtraces print `at src/x.rs:1:2` lines too; V8 never runs `.rs`.
    (!parsed.file.ends_with(".rs")).then_some(parsed)
}

fn is_windows_location(body: &str) -> bool {
    body.get(1..3) == Some(":\\") && BARE_LOCATION.is_match(body)
}

fn call_frame(function: &str, location: &str) -> Frame {
    let function = function.strip_prefix("new ").unwrap_or(function).trim();
    let location = eval_origin(location);
    let (file, line_no, column) = split_location(location);
    let function = (!function.is_empty()).then_some(function);
    frame(file, line_no, column, function)
}

/// `eval at fn (/file.js:1:2), <anonymous>:3:4` points at the eval's caller.
fn eval_origin(location: &str) -> &str {
    let Some(rest) = location.strip_prefix("eval at ") else {
        return location;
    };
    let Some(open) = rest.find('(') else {
        return location;
    };
    let inner = &rest[open + 1..];
    inner.find(')').map_or(location, |close| &inner[..close])
}

/// Parses every error of the blob, in print order.
pub(crate) fn parse(lines: &[String]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut current: Option<Block> = None;
    let mut last_frame_line: Option<usize> = None;

    for (index, line) in lines.iter().enumerate() {
        let Some(frame) = parse_frame(line) else {
            continue;
        };
        let run_start = last_frame_line.is_none_or(|last| last + 1 != index);
        if run_start {
            let floor = last_frame_line.map_or(0, |last| last + 1);
            if let Some(header) = find_header(lines, floor, index, current.is_none()) {
                if let Some(done) = current.take() {
                    parsed.push_block(done);
                }
                current = Some(Block::new(header.error, header.link));
            }
        }
        current
            .get_or_insert_with(|| Block::new(ErrorLine::default(), Link::Independent))
            .push_frame(frame);
        last_frame_line = Some(index);
    }
    if let Some(done) = current.take() {
        parsed.push_block(done);
    }
    if parsed.blocks.is_empty()
        && let Some(header) = find_header(lines, 0, lines.len(), true)
    {
        parsed.push_block(Block::new(header.error, header.link));
    }
    parsed
}

struct Header {
    error: ErrorLine,
    link: Link,
}

/// Looks upwards from a run of frames for the error header that starts it.
/// Only the first run may fall back to a loose `Name: message` line; later
/// runs without a real header continue the previous error.
fn find_header(lines: &[String], floor: usize, run_start: usize, first: bool) -> Option<Header> {
    let from = run_start.saturating_sub(HEADER_LOOKBACK).max(floor);
    let window = &lines[from..run_start];
    if let Some(header) = window.iter().rev().find_map(|line| strong_header(line)) {
        return Some(header);
    }
    if !first {
        return None;
    }
    let line = window
        .iter()
        .rev()
        .find(|line| !line.trim().is_empty() && !PROPERTY.is_match(line))?;
    if let Some(error) = glued_error(line) {
        return Some(Header {
            error,
            link: Link::Independent,
        });
    }
    let error = match LOOSE_HEADER.captures(line) {
        Some(caps) => ErrorLine {
            error_type: caps.get(1).map_or("Error", |m| m.as_str()).to_owned(),
            qualified: None,
            message: caps.get(2).map_or("", |m| m.as_str()).trim().to_owned(),
        },
        None => ErrorLine {
            error_type: "Error".to_owned(),
            qualified: None,
            message: line.trim().to_owned(),
        },
    };
    Some(Header {
        error,
        link: Link::Independent,
    })
}

/// A failure reason stored just before the stack it came from, with no
/// separator: `msgError: msg` (Bull's `failedReason` + `stacktrace`),
/// possibly behind a log prefix that ends in whitespace.
fn glued_error(line: &str) -> Option<ErrorLine> {
    let line = line.trim();
    line.match_indices("Error: ").find_map(|(at, _)| {
        let message = line[at + "Error: ".len()..].trim();
        let name = glued_name(&line[..at], message)?;
        (!message.is_empty()).then(|| ErrorLine {
            error_type: format!("{name}Error"),
            qualified: None,
            message: message.to_owned(),
        })
    })
}

/// The error name's head (`Type` of `TypeError`, or nothing) when `before`
/// is a prefix, then `message`, then that head.
fn glued_name<'a>(before: &'a str, message: &str) -> Option<&'a str> {
    let head_len = before.len()
        - before
            .trim_end_matches(|c: char| c.is_ascii_alphanumeric())
            .len();
    (0..=head_len).find_map(|len| {
        let (rest, name) = before.split_at(before.len() - len);
        let prefix = rest.strip_suffix(message)?;
        let alone = prefix.is_empty() || prefix.ends_with(char::is_whitespace);
        alone.then_some(name)
    })
}

/// A line that certainly starts an error: it names an error type, or is
/// Bun's `error:` header, possibly behind `[cause]:` or `Caused by:`.
fn strong_header(line: &str) -> Option<Header> {
    let trimmed = line.trim_start();
    let (rest, link) = match trimmed
        .strip_prefix("[cause]:")
        .or_else(|| trimmed.strip_prefix("Caused by:"))
    {
        Some(rest) => (rest, Link::CauseOfPrevious),
        None => (trimmed, Link::Independent),
    };
    if let Some(error) = find_error_token(rest) {
        return Some(Header { error, link });
    }
    let caps = BUN_HEADER.captures(rest)?;
    let message = caps.get(1)?.as_str().trim().to_owned();
    let error = ErrorLine {
        error_type: "Error".to_owned(),
        qualified: None,
        message,
    };
    Some(Header { error, link })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_forms_are_parsed() {
        let cases = [
            (
                "    at new ScriptLoader (/$bunfs/root/cli:46509:21)",
                ("/$bunfs/root/cli", Some(46509), Some("ScriptLoader")),
            ),
            (
                "    at async Foo.bar (/app/a.js:1:2)",
                ("/app/a.js", Some(1), Some("Foo.bar")),
            ),
            (
                r"    at C:\snapshot\app\dist\e.js:77:81",
                (r"C:\snapshot\app\dist\e.js", Some(77), None),
            ),
            (
                "    at Generator.next (<anonymous>)",
                ("<anonymous>", None, Some("Generator.next")),
            ),
            (
                "    at eval (eval at run (/app/a.js:3:9), <anonymous>:1:1)",
                ("/app/a.js", Some(3), Some("eval")),
            ),
        ];
        for (line, (file, line_no, function)) in cases {
            let parsed = parse_frame(line).map(|f| (f.file, f.line, f.function));
            assert_eq!(
                parsed,
                Some((file.to_owned(), line_no, function.map(str::to_owned))),
                "{line}"
            );
        }
    }

    #[test]
    fn glued_failure_reason_is_found_behind_a_log_prefix() {
        let found = glued_error("worker-3  | job lostTypeError: job lost");
        assert_eq!(
            found.map(|e| (e.error_type, e.message)),
            Some(("TypeError".into(), "job lost".into()))
        );
        assert!(glued_error("worker-3  | not the messageError: job lost").is_none());
    }

    #[test]
    fn jvm_frame_is_not_a_javascript_frame() {
        assert!(
            parse_frame("\tat org.quartz.core.JobRunShell.run(JobRunShell.java:216)").is_none()
        );
    }
}
