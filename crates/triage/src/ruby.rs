//! Ruby backtraces: `file:line:in 'method'` (every quoting style since 1.9,
//! and the unquoted form error trackers print), `from` lines, the
//! `msg (Class)` first line, and Bugsnag's `file:line - method`.

use std::sync::LazyLock;

use regex::Regex;

use crate::block::{Block, ErrorLine, Link, Parsed, find_error_token, frame, number};
use crate::model::Frame;
use crate::normalize::re;

static FRAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(?:\d+: )?(?:from\s+)?(\S(?:.*?\S)?):(\d+):in\s+(.+?)\s*$"));
/// Ruby 2.5 to 2.7 on a terminal print the backtrace reversed and numbered
/// (`\t3: from x.rb:7:in 'm'`), outermost first, under `Traceback (most
/// recent call last):`; the error line, with the innermost frame, comes last.
static NUMBERED: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*\d+: from\s"));
/// The first line of an uncaught error: `file:line:in 'm': message (Class)`.
static FIRST_LINE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[`']([^`']*)': (.*) \(([A-Z][\w:]*)\)$"));
/// Bugsnag and some APMs: `app/x.rb:7 - perform`.
static DASH_FRAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(\S+\.(?:rb|rake|erb|haml|slim|ru)):(\d+) - (.+?)\s*$"));

/// `Foo::Bar: message`: a namespaced Ruby class needs no `Error` suffix.
static QUALIFIED_ERROR: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:^|[\s\[(])((?:[A-Z]\w*::)+[A-Z]\w*): (.+)$"));
/// Rails' and ActiveJob's log lines end with `Class (message):`; the greedy
/// start makes the class the rightmost one.
static RAILS_ERROR: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:^|.*\s)((?:[A-Z]\w*::)*[A-Z]\w*) \((.+)\):?\s*$"));

/// How a log record's prefix ends before the text it logged: a level
/// (`WARN`, Ruby's `ERROR --`), or a bracket or pipe (`app[worker.1]`).
static LOG_PREFIX_END: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:\b(?:DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|FATAL|CRITICAL)(?:\s+--)?|[\]|])\s*$")
});

/// How far above the first frame the error line may sit.
const HEADER_LOOKBACK: usize = 5;

/// Counts the lines that only a Ruby backtrace prints.
pub(crate) fn score(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|line| parse_frame(line).is_some())
        .count()
        * 2
}

/// One frame and, on an uncaught error's first line, the error itself.
fn parse_frame_and_error(line: &str) -> Option<(Frame, Option<ErrorLine>)> {
    if let Some(caps) = DASH_FRAME.captures(line) {
        let file = caps.get(1)?.as_str();
        let line_no = caps.get(2).and_then(|m| number(m.as_str()));
        return Some((
            frame(file, line_no, None, caps.get(3).map(|m| m.as_str())),
            None,
        ));
    }
    let caps = FRAME.captures(line)?;
    let file = behind_record_prefix(caps.get(1)?.as_str())?;
    let line_no = caps.get(2).and_then(|m| number(m.as_str()));
    let rest = caps.get(3)?.as_str();

    if let Some(first) = FIRST_LINE.captures(rest) {
        let function = first.get(1).map(|m| m.as_str());
        let error = ErrorLine {
            error_type: first.get(3)?.as_str().to_owned(),
            qualified: None,
            message: first.get(2)?.as_str().trim().to_owned(),
        };
        return Some((frame(file, line_no, None, function), Some(error)));
    }
    let function = rest.trim_matches(['`', '\'']);
    Some((frame(file, line_no, None, Some(function)), None))
}

/// The file of a frame, which may carry the prefix of the log record it
/// starts (Sidekiq logs a backtrace as one record, so only its first line
/// has the timestamp and level): `None` when the text before it is not
/// such a prefix but a message.
fn behind_record_prefix(file: &str) -> Option<&str> {
    let Some((head, path)) = file.rsplit_once(": ") else {
        return Some(file);
    };
    LOG_PREFIX_END.is_match(head).then_some(path.trim())
}

fn parse_frame(line: &str) -> Option<Frame> {
    parse_frame_and_error(line).map(|(frame, _)| frame)
}

/// Parses the backtrace and the error line found on or above it.
pub(crate) fn parse(lines: &[String]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut block: Option<Block> = None;
    // Numbered frames waiting for the error line that ends a reversed trace.
    let mut reversed: Vec<Frame> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some((frame, error)) = parse_frame_and_error(line) else {
            continue;
        };
        if NUMBERED.is_match(line) {
            if reversed.len() < crate::block::MAX_FRAMES {
                reversed.push(frame);
            }
            continue;
        }
        if !reversed.is_empty() {
            if let Some(done) = block.take() {
                parsed.push_block(done);
            }
            // Not the lines above: the `Traceback` header would read as a
            // Rails `Class (message)` line.
            let mut current = Block::new(error.unwrap_or_default(), Link::Independent);
            current.push_frame(frame);
            reversed.drain(..).rev().for_each(|f| current.push_frame(f));
            block = Some(current);
            continue;
        }
        // Ruby prints an error's cause after it, starting with its own
        // `file:line:in 'm': message (Class)` line.
        if let Some(cause) = &error
            && let Some(done) = block.take_if(|b| !b.frames.is_empty())
        {
            parsed.push_block(done);
            block = Some(Block::new(cause.clone(), Link::CauseOfPrevious));
        }
        let current = block.get_or_insert_with(|| {
            let error = error
                .clone()
                .or_else(|| header_above(lines, index))
                .unwrap_or_default();
            Block::new(error, Link::Independent)
        });
        current.push_frame(frame);
    }
    if let Some(block) = block {
        parsed.push_block(block);
    }
    // A reversed trace cut before its error line still has its frames.
    if !reversed.is_empty() {
        let mut cut = Block::new(ErrorLine::default(), Link::Independent);
        reversed.into_iter().rev().for_each(|f| cut.push_frame(f));
        parsed.push_block(cut);
    }
    parsed
}

fn header_above(lines: &[String], first_frame: usize) -> Option<ErrorLine> {
    let from = first_frame.saturating_sub(HEADER_LOOKBACK);
    lines[from..first_frame]
        .iter()
        .rev()
        .find_map(|line| error_line(line))
}

/// The error a log line names: `Type: message` as every runtime prints it,
/// else Ruby's own shapes.
fn error_line(line: &str) -> Option<ErrorLine> {
    if let Some(error) = find_error_token(line) {
        return Some(error);
    }
    let caps = QUALIFIED_ERROR
        .captures(line)
        .or_else(|| RAILS_ERROR.captures(line))?;
    Some(ErrorLine {
        error_type: caps.get(1)?.as_str().to_owned(),
        qualified: None,
        message: caps.get(2)?.as_str().trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_backtrace_line_behind_its_record_prefix_is_a_frame() {
        let line = "2024-06-03T10:15:02Z pid=7 WARN: /gems/pg-1.5/lib/pg.rb:7:in `connect'";
        let frame = parse_frame(line).map(|f| (f.file, f.line));
        assert_eq!(frame, Some(("/gems/pg-1.5/lib/pg.rb".into(), Some(7))));
        assert!(parse_frame("undefined method: /app/x.rb:3:in `y'").is_none());
    }
}
