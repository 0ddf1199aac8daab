//! Go panics and fatal errors: the `panic:` line, the signal, and the
//! function/location line pairs of the first (panicking) goroutine.

use std::sync::LazyLock;

use regex::Regex;

use crate::block::{Block, ErrorLine, Link, Parsed, frame, number};
use crate::normalize::re;

static PANIC: LazyLock<Regex> = LazyLock::new(|| re(r"(?:^|\s)(panic|fatal error): (.*)$"));
/// The error asynq makes of a panic it recovered from a handler:
/// `panic [/app/tasks/x.go:41]: message`, the location of the panic inside.
static RECOVERED_AT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:^|\s)panic \[(\S+?\.go):(\d+)\]: (.*)$"));
static SIGNAL: LazyLock<Regex> = LazyLock::new(|| re(r"\[signal (\w+)"));
/// `goroutine 7 [running]:`; with `GOTRACEBACK=system` or `crash` since Go
/// 1.23, `goroutine 7 gp=0xc000 m=4 mp=0xc000 [running]:`.
static GOROUTINE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*goroutine \d+ (?:[gm]p?=\w+ )*\[[^\]]*\]:"));
/// `\t/src/x.go:12 +0x1d`; with `GOTRACEBACK=system`, the frame's pointers
/// follow (`fp=0xc000 sp=0xc000 pc=0x4a`).
static LOCATION: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^\s*(\S.*?\.(?:go|s|c)):(\d+)(?:\s+\+0x[0-9a-fA-F]+)?",
        r"(?:\s+fp=0x[0-9a-fA-F]+\s+sp=0x[0-9a-fA-F]+\s+pc=0x[0-9a-fA-F]+)?\s*$",
    ))
});
/// A package-qualified Go function without arguments: `a.com/b.(*T).M`.
static GO_FUNCTION: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[\w.\-/]*\w\.(?:\(\*?\w+\)\.)?[\w.]+$"));
static CREATED_BY: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*created by (\S+?)(?: in goroutine \d+)?\s*$"));

/// Counts the lines that only a Go panic prints.
pub(crate) fn score(lines: &[String]) -> usize {
    let locations = lines.iter().filter(|line| LOCATION.is_match(line)).count();
    let goroutines = lines.iter().filter(|line| GOROUTINE.is_match(line)).count();
    let panics = lines
        .iter()
        .filter(|line| PANIC.is_match(line) || RECOVERED_AT.is_match(line))
        .count();
    locations * 2 + (goroutines + panics) * 3
}

/// Parses the panic and the panicking goroutine's frames.
pub(crate) fn parse(lines: &[String]) -> Parsed {
    let mut parsed = Parsed::default();
    let error = lines
        .iter()
        .find_map(|line| panic_line(line))
        .or_else(|| recovered_panic_line(lines))
        .or_else(|| returned_error_line(lines))
        .unwrap_or_default();
    parsed.signal = lines
        .iter()
        .find_map(|line| SIGNAL.captures(line)?.get(1).map(|m| m.as_str().to_owned()));

    let mut block = Block::new(error, Link::Independent);
    let mut seen_goroutine = false;
    let mut previous: Option<&str> = None;
    for line in lines {
        if GOROUTINE.is_match(line) {
            // Only the first goroutine panicked; the rest is a dump of others.
            if seen_goroutine && !block.frames.is_empty() {
                break;
            }
            seen_goroutine = true;
            previous = None;
            continue;
        }
        if let Some(caps) = LOCATION.captures(line) {
            let file = caps.get(1).map_or("", |m| m.as_str());
            let line_no = caps.get(2).and_then(|m| number(m.as_str()));
            let function = previous.and_then(function_name);
            block.push_frame(frame(file, line_no, None, function.as_deref()));
            previous = None;
            continue;
        }
        if !line.trim().is_empty() {
            previous = Some(line);
        }
    }
    // Without a stack, asynq's error still says where the panic was.
    if block.frames.is_empty()
        && let Some(caps) = lines.iter().find_map(|line| RECOVERED_AT.captures(line))
    {
        let file = caps.get(1).map_or("", |m| m.as_str());
        let line_no = caps.get(2).and_then(|m| number(m.as_str()));
        block.push_frame(frame(file, line_no, None, None));
    }
    parsed.push_block(block);
    parsed
}

fn panic_line(line: &str) -> Option<ErrorLine> {
    if let Some(caps) = RECOVERED_AT.captures(line) {
        return Some(ErrorLine {
            error_type: "panic".to_owned(),
            qualified: None,
            message: caps.get(3)?.as_str().trim().to_owned(),
        });
    }
    let caps = PANIC.captures(line)?;
    let message = caps.get(2)?.as_str().trim();
    let message = message.strip_suffix(" [recovered]").unwrap_or(message);
    Some(ErrorLine {
        error_type: caps.get(1)?.as_str().to_owned(),
        qualified: None,
        message: message.to_owned(),
    })
}

/// A panic that a recover handler logged with `debug.Stack()`: no `panic:`
/// line, but a log line above the goroutine naming the panic, and the
/// message after its first `": "`.
fn recovered_panic_line(lines: &[String]) -> Option<ErrorLine> {
    let header = lines.iter().position(|line| GOROUTINE.is_match(line))?;
    let line = lines[..header]
        .iter()
        .rev()
        .find(|line| line.to_ascii_lowercase().contains("panic"))?;
    let at = line.to_ascii_lowercase().find("panic")?;
    let (_, message) = line[at..].split_once(": ")?;
    Some(ErrorLine {
        error_type: "panic".to_owned(),
        qualified: None,
        message: message.trim().to_owned(),
    })
}

/// An error value printed with its stack (`%+v` of pkg/errors and its
/// successors): no panic and no goroutine header, and the message on the
/// last line above the first function and location pair.
fn returned_error_line(lines: &[String]) -> Option<ErrorLine> {
    if lines.iter().any(|line| GOROUTINE.is_match(line)) {
        return None;
    }
    let first_location = lines.iter().position(|line| LOCATION.is_match(line))?;
    let above_function = first_location.checked_sub(1)?;
    let function_line = lines[above_function].trim();
    let message = match split_trailing_function(function_line) {
        // Flattened: the message and the first function share a line.
        (head, Some(_)) if !head.is_empty() => head,
        _ => lines[..above_function]
            .iter()
            .rev()
            .map(|line| line.trim())
            .find(|line| !line.is_empty())?,
    };
    Some(ErrorLine {
        error_type: "error".to_owned(),
        qualified: None,
        message: message.to_owned(),
    })
}

/// Splits `text pkg.Func` into the text and a trailing Go function name,
/// which is how a flattened trace leaves each function: after the text
/// before it.
fn split_trailing_function(line: &str) -> (&str, Option<&str>) {
    let Some((head, last)) = line.rsplit_once(' ') else {
        return (line, None);
    };
    if GO_FUNCTION.is_match(last) {
        (head.trim_end(), Some(last))
    } else {
        (line, None)
    }
}

/// `pkg.(*T).Method(0xc000, {0x1, 0x2})` or `created by pkg.F in goroutine 7`
/// becomes `pkg.(*T).Method` or `pkg.F`.
fn function_name(line: &str) -> Option<String> {
    if let Some(caps) = CREATED_BY.captures(line) {
        return caps.get(1).map(|m| m.as_str().to_owned());
    }
    let trimmed = line.trim();
    if trimmed.contains(' ') && !trimmed.ends_with(')') {
        return split_trailing_function(trimmed).1.map(str::to_owned);
    }
    Some(strip_arguments(trimmed).to_owned())
}

/// Removes the trailing balanced argument list; a receiver like `(*T)` is
/// never last, so it stays.
fn strip_arguments(function: &str) -> &str {
    if !function.ends_with(')') {
        return function;
    }
    let mut depth = 0usize;
    for (index, c) in function.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return &function[..index];
                }
            }
            _ => {}
        }
    }
    function
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_stripped_but_receivers_kept() {
        assert_eq!(
            strip_arguments("a.com/x.(*Service).run(0xc0, {0x1, 0x2})"),
            "a.com/x.(*Service).run"
        );
        assert_eq!(strip_arguments("main.main()"), "main.main");
        assert_eq!(
            strip_arguments("a.com/x.(*Manager).Run.func1.4(0xc8)"),
            "a.com/x.(*Manager).Run.func1.4"
        );
    }
}
