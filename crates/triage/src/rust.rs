//! Rust panics in every format since 2015: `panicked at 'msg', file:line`,
//! `panicked at file:line:col:` with the message below, and the
//! `stack backtrace:` that `RUST_BACKTRACE=1` or `full` adds.

use std::sync::LazyLock;

use regex::Regex;

use crate::block::{Block, ErrorLine, Link, Parsed, frame, number, split_location};
use crate::model::Frame;
use crate::normalize::re;

static PANIC_START: LazyLock<Regex> =
    LazyLock::new(|| re(r"thread '([^']*)'(?: \(\d+\))? panicked at "));
/// Before Rust 1.73: `'message', file:line(:col)` (the message may span lines).
static OLD_TAIL: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?s)^'(.*)', (\S+?\.rs):(\d+)(?::(\d+))?(?:\s|$)"));
/// Since Rust 1.73: `file:line:col:` with the message on the following lines.
static NEW_TAIL: LazyLock<Regex> = LazyLock::new(|| re(r"^(\S+?):(\d+):(\d+):\s*(.*)$"));
static BACKTRACE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^\s*stack backtrace:\s*$"));
static ENTRY: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*\d+:\s+(?:0x[0-9a-fA-F]+\s+-\s+)?(.*?)\s*$"));
/// An inlined frame some toolchains print without a number, indented under
/// the numbered frame it was inlined into.
static INLINED: LazyLock<Regex> = LazyLock::new(|| re(r"^\s{4,}(\S*::\S*(?: as \S+)?)\s*$"));
static AT: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*at\s+(.+?):(\d+)(?::(\d+))?\s*$"));
static HASH_SUFFIX: LazyLock<Regex> = LazyLock::new(|| re(r"::h[0-9a-f]{16}$"));
/// `eyre`'s `Location:` section: where a returned error was made, on the
/// line below it (on the same line once flattened).
static LOCATION_LABEL: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*Location:\s*(\S+\.rs:\d+(?::\d+)?)?\s*$"));
static LOCATION_PATH: LazyLock<Regex> = LazyLock::new(|| re(r"^\s+(\S+\.rs:\d+(?::\d+)?)\s*$"));

/// How many lines an old-format message may span.
const MAX_MESSAGE_LINES: usize = 40;

/// Counts the lines that only a Rust panic prints.
pub(crate) fn score(lines: &[String]) -> usize {
    let panics = lines
        .iter()
        .filter(|line| PANIC_START.is_match(line))
        .count();
    let backtraces = lines.iter().filter(|line| BACKTRACE.is_match(line)).count();
    let locations = lines
        .iter()
        .filter(|line| AT.is_match(line) && line.contains(".rs:"))
        .count();
    let made_at = usize::from(error_location(lines).is_some());
    (panics + backtraces + made_at) * 5 + locations * 2
}

/// The frame of `eyre`'s `Location:` section, if there is one.
fn error_location(lines: &[String]) -> Option<Frame> {
    let at = lines
        .iter()
        .position(|line| LOCATION_LABEL.is_match(line))?;
    let inline = LOCATION_LABEL.captures(&lines[at])?.get(1);
    let below = || {
        let next = lines.get(at + 1)?;
        LOCATION_PATH.captures(next)?.get(1)
    };
    let (file, line, column) = split_location(inline.or_else(below)?.as_str());
    Some(frame(file, line, column, None))
}

/// Parses the first panic and its backtrace.
pub(crate) fn parse(lines: &[String]) -> Parsed {
    let mut parsed = Parsed::default();
    let Some(start) = lines.iter().position(|line| PANIC_START.is_match(line)) else {
        // A returned error (`anyhow`, `eyre`) with its `Stack backtrace:`:
        // the frames are here, the error comes from its cause list.
        let mut frames = parse_backtrace(lines);
        if frames.is_empty() {
            frames.extend(error_location(lines));
        }
        if !frames.is_empty() {
            let mut block = Block::new(ErrorLine::default(), Link::Independent);
            frames.into_iter().for_each(|f| block.push_frame(f));
            parsed.push_block(block);
        }
        return parsed;
    };
    let Some(panic) = parse_panic(&lines[start..]) else {
        return parsed;
    };
    parsed.thread = Some(panic.thread);

    let mut block = Block::new(panic.error, Link::Independent);
    let location = frame(&panic.file, panic.line, panic.column, None);
    let backtrace = parse_backtrace(&lines[start..]);
    push_frames(&mut block, location, backtrace);
    parsed.push_block(block);
    parsed
}

struct Panic {
    thread: String,
    error: ErrorLine,
    file: String,
    line: Option<u32>,
    column: Option<u32>,
}

fn parse_panic(lines: &[String]) -> Option<Panic> {
    let first = lines.first()?;
    let caps = PANIC_START.captures(first)?;
    let thread = caps.get(1)?.as_str().to_owned();
    let tail = &first[caps.get(0)?.end()..];

    if tail.starts_with('\'') {
        return old_format(thread, tail, &lines[1..]);
    }
    let caps = NEW_TAIL.captures(tail)?;
    let inline = caps.get(4).map_or("", |m| m.as_str()).trim();
    let message = if inline.is_empty() {
        new_format_message(&lines[1..])
    } else {
        inline.to_owned()
    };
    Some(Panic {
        thread,
        error: panic_error(message),
        file: caps.get(1)?.as_str().to_owned(),
        line: caps.get(2).and_then(|m| number(m.as_str())),
        column: caps.get(3).and_then(|m| number(m.as_str())),
    })
}

/// Joins lines until the `', file:line` tail closes the quoted message.
fn old_format(thread: String, tail: &str, rest: &[String]) -> Option<Panic> {
    let mut text = tail.to_owned();
    let mut following = rest.iter().take(MAX_MESSAGE_LINES);
    loop {
        if let Some(caps) = OLD_TAIL.captures(&text) {
            let message = caps.get(1)?.as_str().lines().next().unwrap_or("");
            return Some(Panic {
                thread,
                error: panic_error(message.trim().to_owned()),
                file: caps.get(2)?.as_str().to_owned(),
                line: caps.get(3).and_then(|m| number(m.as_str())),
                column: caps.get(4).and_then(|m| number(m.as_str())),
            });
        }
        text.push('\n');
        text.push_str(following.next()?);
    }
}

/// The message after a new-format header: the line below it. A message of
/// several lines (`assert_eq!` adds `left:` and `right:`) keeps its first,
/// as every runtime's does here: the rest varies from run to run.
fn new_format_message(rest: &[String]) -> String {
    let Some(line) = rest.first() else {
        return String::new();
    };
    let trimmed = line.trim();
    let ends =
        BACKTRACE.is_match(line) || trimmed.starts_with("note: ") || PANIC_START.is_match(line);
    if ends {
        return String::new();
    }
    trimmed.to_owned()
}

fn panic_error(message: String) -> ErrorLine {
    ErrorLine {
        error_type: "panic".to_owned(),
        qualified: None,
        message,
    }
}

/// The frames after `stack backtrace:`, innermost first, each symbol with
/// the `at file:line:col` line that may follow it.
fn parse_backtrace(lines: &[String]) -> Vec<Frame> {
    let Some(start) = lines.iter().position(|line| BACKTRACE.is_match(line)) else {
        return Vec::new();
    };
    let mut frames: Vec<Frame> = Vec::new();
    for line in &lines[start + 1..] {
        if let Some(caps) = AT.captures(line) {
            let Some(last) = frames.last_mut().filter(|f| f.file.is_empty()) else {
                continue;
            };
            last.file = caps.get(1).map_or("", |m| m.as_str()).to_owned();
            last.line = caps.get(2).and_then(|m| number(m.as_str()));
            last.column = caps.get(3).and_then(|m| number(m.as_str()));
            continue;
        }
        let Some(caps) = ENTRY.captures(line).or_else(|| INLINED.captures(line)) else {
            break;
        };
        let symbol = caps.get(1).map_or("", |m| m.as_str());
        let symbol = HASH_SUFFIX.replace(symbol, "");
        let function = (!symbol.is_empty() && symbol != "<unknown>").then_some(symbol.as_ref());
        frames.push(frame("", None, None, function));
    }
    frames
}

/// Puts the panic location first and drops the panic machinery (the leading
/// `std`/`core` frames) the backtrace starts with. A backtrace frame at the
/// location absorbs it, wherever it sits: indexing and `unwrap` leave frames
/// of `core` between the machinery and the caller.
fn push_frames(block: &mut Block, location: Frame, backtrace: Vec<Frame>) {
    let rest: Vec<Frame> = backtrace
        .into_iter()
        .skip_while(|f| f.function.as_deref().is_some_and(is_panic_machinery))
        .collect();

    let same_place = rest
        .iter()
        .any(|f| f.line == location.line && same_file(&f.file, &location.file));
    if !same_place {
        block.push_frame(location);
    }
    for frame in rest {
        block.push_frame(frame);
    }
}

fn same_file(a: &str, b: &str) -> bool {
    !a.is_empty() && !b.is_empty() && (a.ends_with(b) || b.ends_with(a))
}

/// Frames of the standard library and the unwinder, which print the panic.
fn is_panic_machinery(symbol: &str) -> bool {
    if symbol.starts_with("rust_begin_unwind") || symbol.starts_with("rust_panic") {
        return true;
    }
    if symbol.starts_with("__rust") || symbol.starts_with("_rust") {
        return true;
    }
    let root = symbol_crate(symbol);
    matches!(
        root,
        "std" | "core" | "alloc" | "backtrace" | "panic_unwind"
    )
}

/// The crate a symbol belongs to: `a::b::c` is `a`, `<a::T as b::Tr>::f` is
/// `a`, and `<usize as b::Tr>::f` is `b` (a primitive type's impl lives in the
/// trait's crate). MSVC spells some types `enum$<...>` and `tuple$<...>`.
pub(crate) fn symbol_crate(symbol: &str) -> &str {
    let symbol = symbol.trim_start_matches(['<', '&', '*', ' ', '_']);
    let symbol = symbol.strip_prefix("mut ").unwrap_or(symbol);
    let symbol = ["enum$<", "tuple$<"]
        .iter()
        .find_map(|msvc| symbol.strip_prefix(msvc))
        .unwrap_or(symbol);
    let symbol = match symbol.split_once(" as ") {
        Some((self_type, trait_path)) if !self_type.contains("::") => trait_path,
        _ => symbol,
    };
    let end = symbol
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(symbol.len());
    &symbol[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_crates_of_impls_and_msvc_names() {
        assert_eq!(
            symbol_crate("<usize as core::slice::index::SliceIndex<[T]>>::index"),
            "core"
        );
        assert_eq!(symbol_crate("<app::Job as core::fmt::Display>::fmt"), "app");
        assert_eq!(
            symbol_crate("enum$<core::result::Result<u8,app::E>, 1, 0, Err>::unwrap<u8,app::E>"),
            "core"
        );
    }
}
