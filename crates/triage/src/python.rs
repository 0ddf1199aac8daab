//! CPython tracebacks (Python 2 and 3): frames, caret lines, chained
//! exceptions, headerless fragments and Celery-style `Type(args)` reprs.

use std::sync::LazyLock;

use regex::Regex;

use crate::block::{Block, ErrorLine, Link, Parsed, frame, indent, number};
use crate::normalize::re;

static HEADER: LazyLock<Regex> = LazyLock::new(|| re(r"Traceback \(most recent call last\):"));
static FRAME: LazyLock<Regex> =
    LazyLock::new(|| re(r#"\bFile "([^"]+)", line (\d+)(?:, in ([^\s]+))?"#));
/// IPython and Python 3.13 REPL style: `File /path/x.py:12, in func(...)`.
static FRAME_IPYTHON: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*File (\S[^,]*?):(\d+), in ([\w<>.]+)"));
/// Exception-group gutters: `  | ` before each line, `+-+---- 1 ----` rules.
static GROUP_RULE: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*\+[-+]*-{3,}.*$"));
static GROUP_GUTTER: LazyLock<Regex> = LazyLock::new(|| re(r"^(\s*)[|+]( |$)"));
/// The rule that opens an exception group's first sub-exception.
static FIRST_SUB_EXCEPTION: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*\+[-+]*-{3,} 1 -{3,}"));
static CARET: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*[\^~]+[\s\^~]*$"));
static EXCEPTION: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)(?::(?:\s(.*))?)?\s*$"));
/// `KeyError('analyzer',)` in a worker's log header (Python 2 and 3 reprs).
static REPR: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:^|:\s)([A-Z]\w*(?:Error|Exception|Exit|Interrupt|Iteration|Warning))\((.*)\)\s*$")
});

/// One error's repr as the only argument of another's.
static INNER_REPR: LazyLock<Regex> = LazyLock::new(|| re(r"^[A-Z]\w*\((.*)\)$"));

const CAUSE_MARKER: &str = "The above exception was the direct cause of the following exception";
const CONTEXT_MARKER: &str = "During handling of the above exception, another exception occurred";

/// Counts the lines that only a Python traceback prints.
pub(crate) fn score(lines: &[String]) -> usize {
    let frames = lines
        .iter()
        .filter(|l| FRAME.is_match(l) || FRAME_IPYTHON.is_match(l))
        .count();
    let headers = lines.iter().filter(|l| HEADER.is_match(l)).count();
    frames * 2 + headers * 3
}

/// The parser's position inside the current block.
#[derive(Default)]
struct State {
    parsed: Parsed,
    current: Option<Block>,
    pending_link: Option<Link>,
    /// The indentation of the last `File` line, while its source may follow.
    frame_indent: Option<usize>,
    expect_source: bool,
    /// The line just parsed was an exception without a message, which is how
    /// billiard's `ExceptionWithTraceback` and `RemoteTraceback` introduce
    /// the traceback they quote in `"""` on the next line.
    error_without_message: bool,
}

impl State {
    fn finish_block(&mut self) {
        if let Some(mut block) = self.current.take() {
            // Python prints the outermost call first.
            block.frames.reverse();
            self.parsed.push_block(block);
        }
        self.frame_indent = None;
        self.expect_source = false;
    }

    fn start_block(&mut self) {
        self.finish_block();
        let link = self.pending_link.take().unwrap_or(Link::Independent);
        self.current = Some(Block::new(ErrorLine::default(), link));
    }

    /// Whether the error just printed is an exception group.
    fn last_error_is_group(&self) -> bool {
        let last = self.current.as_ref().or(self.parsed.blocks.last());
        last.is_some_and(|b| b.error.error_type.ends_with("ExceptionGroup"))
    }

    fn current_has_error(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|b| !b.error.error_type.is_empty())
    }
}

/// Parses every traceback in `lines`, in print order.
pub(crate) fn parse(lines: &[String]) -> Parsed {
    let mut state = State::default();
    for line in lines {
        if FIRST_SUB_EXCEPTION.is_match(line) && state.last_error_is_group() {
            // The group only wraps its sub-exceptions: the first one is the
            // cause, the others are printed beside it.
            state.finish_block();
            state.pending_link = Some(Link::CauseOfPrevious);
            continue;
        }
        parse_line(&mut state, &strip_group_gutter(line));
    }
    state.finish_block();

    let mut parsed = state.parsed;
    if parsed.blocks.iter().all(|b| b.error.error_type.is_empty()) {
        apply_header_repr(&mut parsed, lines);
    }
    parsed
}

fn parse_line(state: &mut State, line: &str) {
    let quotes_its_cause = std::mem::take(&mut state.error_without_message);
    if quotes_its_cause && line.trim() == "\"\"\"" {
        // The quoted traceback is the remote error this one carries.
        state.finish_block();
        state.pending_link = Some(Link::CauseOfPrevious);
        return;
    }
    if HEADER.is_match(line) {
        state.start_block();
        return;
    }
    if line.contains(CAUSE_MARKER) || line.contains(CONTEXT_MARKER) {
        state.finish_block();
        state.pending_link = Some(Link::AfterCause);
        return;
    }
    if let Some((file, line_no, function)) = match_frame(line) {
        if state.current.is_none() || state.current_has_error() {
            state.start_block();
        }
        if let Some(block) = state.current.as_mut() {
            block.push_frame(frame(&file, line_no, None, function.as_deref()));
        }
        state.frame_indent = Some(indent(line));
        state.expect_source = true;
        return;
    }
    parse_other_line(state, line);
}

/// Turns an exception group's gutter into indentation of the same width, so
/// the group's own traceback parses like any other.
fn strip_group_gutter(line: &str) -> String {
    if GROUP_RULE.is_match(line) {
        return String::new();
    }
    GROUP_GUTTER.replace(line, "$1 $2").into_owned()
}

fn match_frame(line: &str) -> Option<(String, Option<u32>, Option<String>)> {
    let caps = FRAME
        .captures(line)
        .or_else(|| FRAME_IPYTHON.captures(line))?;
    let file = caps.get(1)?.as_str().to_owned();
    let line_no = caps.get(2).and_then(|m| number(m.as_str()));
    let function = caps.get(3).map(|m| m.as_str().to_owned());
    Some((file, line_no, function))
}

/// A source line, a caret line, the exception line, or noise.
fn parse_other_line(state: &mut State, line: &str) {
    if line.trim().is_empty() || CARET.is_match(line) {
        return;
    }
    let Some(frame_indent) = state.frame_indent else {
        return;
    };
    let expect_source = std::mem::replace(&mut state.expect_source, false);
    if expect_source && indent(line) > frame_indent {
        return;
    }
    if state.current_has_error() || indent(line) > frame_indent {
        return;
    }
    let Some(error) = exception_line(line) else {
        return;
    };
    state.error_without_message = error.message.is_empty();
    if let Some(block) = state.current.as_mut() {
        block.error = error;
    }
}

/// Parses `pkg.module.Type: message` into a short type and a qualified one.
fn exception_line(line: &str) -> Option<ErrorLine> {
    let caps = EXCEPTION.captures(line)?;
    let qualified = caps.get(1)?.as_str();
    let message = caps.get(2).map_or("", |m| m.as_str()).trim().to_owned();
    let short = qualified.rsplit('.').next().unwrap_or(qualified);
    let qualified = (short != qualified).then(|| qualified.to_owned());
    Some(ErrorLine {
        error_type: short.to_owned(),
        qualified,
        message,
    })
}

/// When no exception line survived (a truncated paste), falls back to the
/// `Type(args)` repr that Celery and RQ print in their log header.
fn apply_header_repr(parsed: &mut Parsed, lines: &[String]) {
    let Some(error) = lines.iter().find_map(|line| repr_error(line)) else {
        return;
    };
    match parsed.blocks.first_mut() {
        Some(block) => block.error = error,
        None => parsed.push_block(Block::new(error, Link::Independent)),
    }
}

/// The error of a `Type(args)` repr ending a job framework's log line
/// (`raised unexpected: KeyError('id')`, `retry: Retry in 60s: X(...)`).
pub(crate) fn repr_error(line: &str) -> Option<ErrorLine> {
    let caps = REPR.captures(line)?;
    let error_type = caps.get(1)?.as_str().to_owned();
    let args = repr_args(caps.get(2)?.as_str());
    // str() of a KeyError is the repr of its key; of other errors, the text,
    // which for an error wrapping another (`X(Inner("text"))`) is the inner's.
    let message = if error_type == "KeyError" {
        args
    } else {
        INNER_REPR
            .captures(args)
            .and_then(|inner| inner.get(1))
            .map_or(args, |inner| repr_args(inner.as_str()))
    };
    let message = if error_type == "KeyError" {
        message
    } else {
        strip_quotes(message)
    };
    Some(ErrorLine {
        error_type,
        qualified: None,
        message: message.to_owned(),
    })
}

/// A repr's arguments without the trailing comma of a one-element tuple
/// and the `u` of Python 2's unicode literals.
fn repr_args(args: &str) -> &str {
    let args = args.trim().trim_end_matches(',').trim();
    args.strip_prefix('u')
        .filter(|a| a.starts_with('\''))
        .unwrap_or(args)
}

fn strip_quotes(text: &str) -> &str {
    for quote in ['\'', '"'] {
        if text.len() >= 2 && text.starts_with(quote) && text.ends_with(quote) {
            return &text[1..text.len() - 1];
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn celery_repr_is_used_when_the_exception_line_is_cut() {
        let parsed = parse(&lines(
            "Task x raised unexpected: KeyError(u'analyzer',)\n\
             Traceback (most recent call last):\n  File \"/app/a.py\", line 3, in run\n    x()",
        ));
        let error = &parsed.blocks[0].error;
        assert_eq!(
            (error.error_type.as_str(), error.message.as_str()),
            ("KeyError", "'analyzer'")
        );
    }

    #[test]
    fn repr_of_an_error_wrapping_another_gives_the_inner_text() {
        let error =
            repr_error("retry: Retry in 60s: ConnectionError(MaxRetryError(\"pool full\"))");
        assert_eq!(
            error.map(|e| (e.error_type, e.message)),
            Some(("ConnectionError".into(), "pool full".into()))
        );
    }

    #[test]
    fn exception_group_reports_the_group_not_a_repr_in_its_source() {
        let parsed = parse(&lines(
            "  + Exception Group Traceback (most recent call last):\n  |   File \"/app/x.py\", line 3, \
             in run\n  |     raise ExceptionGroup(\"many\", [ValueError(1)])\n  | ExceptionGroup: many \
             (1 sub-exception)\n  +-+---------------- 1 ----------------\n    | ValueError: 1",
        ));
        let error = &parsed.blocks[0].error;
        assert_eq!(
            (error.error_type.as_str(), error.message.as_str()),
            ("ExceptionGroup", "many (1 sub-exception)")
        );
    }

    #[test]
    fn traceback_quoted_after_an_empty_exception_is_its_cause() {
        let parsed = parse(&lines(
            "Traceback (most recent call last):\n  File \"/lib/pool.py\", line 9, in lost\n    \
             raise Lost()\nbilliard.einfo.ExceptionWithTraceback: \n\"\"\"\nTraceback (most recent \
             call last):\n  File \"/lib/pool.py\", line 9, in lost\n    raise Lost()\nLost: gone\n\"\"\"",
        ));
        let links: Vec<Link> = parsed.blocks.iter().map(|b| b.link).collect();
        assert_eq!(links, vec![Link::Independent, Link::CauseOfPrevious]);
        assert_eq!(parsed.blocks[1].error.message, "gone");
    }

    #[test]
    fn source_line_that_looks_like_a_name_is_not_the_exception() {
        let parsed = parse(&lines(
            "Traceback (most recent call last):\n  File \"/app/a.py\", line 3, in run\n    \
             raise\nRuntimeError: No active exception to reraise",
        ));
        assert_eq!(parsed.blocks[0].error.error_type, "RuntimeError");
    }
}
