//! PHP stacks: `Uncaught Type: msg in file:line` (or Laravel's
//! `[object] (Type(code: N): msg at file:line)`), numbered `#N file(line):
//! call()` frames and `Next Type: …` wrappers. PHP names, on each numbered
//! line, the function called *from* that line; frames here instead pair each
//! location with the function it lies in, innermost first, like the other
//! runtimes.

use std::sync::LazyLock;

use regex::Regex;

use crate::block::{Block, ErrorLine, Link, Parsed, frame, number};
use crate::normalize::re;

/// `#3 /app/X.php(42): App\X->handle()`, `#4 [internal function]: f()` or
/// `#5 {main}`.
static FRAME: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\s*#\d{1,4} (?:(\{main\})|(?:\[internal function\]|(.+?)\((\d+)\)): ?(.*)$)")
});
/// `PHP Fatal error:  Uncaught Type: msg in file:line` and `Next Type: …`.
static HEADER: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:^|Uncaught |^\s*(Next) )",
        r"((?:\\?[A-Za-z_]\w*\\+)*[A-Z]\w*)(?:\(code: -?\d+\))?: (.*) in (\S+?):(\d+)$",
    ))
});
/// Laravel's `[object] (Type(code: N): msg at file:line)`, possibly after
/// `[previous exception]` (a cause, printed after what it caused).
static LARAVEL_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(\[previous exception\] )?\[object\] \(((?:[A-Za-z_]\w*\\+)*[A-Za-z_]\w*)",
        r"\(code: -?\w+\): (.*) at (\S+?):(\d+)\)",
    ))
});

/// Counts the lines that only a PHP stack prints.
pub(crate) fn score(lines: &[String]) -> usize {
    let frames = lines.iter().filter(|line| FRAME.is_match(line)).count();
    let headers = lines
        .iter()
        .filter(|line| {
            let trimmed = line.trim();
            trimmed == "Stack trace:" || trimmed.starts_with("[stacktrace]")
        })
        .count();
    frames * 3 + headers * 2
}

/// One numbered line: its location (none for `{main}` and internal calls)
/// and the function it calls.
struct Call {
    location: Option<(String, Option<u32>)>,
    callee: Option<String>,
    is_main: bool,
}

fn parse_call(line: &str) -> Option<Call> {
    let caps = FRAME.captures(line)?;
    let location = caps.get(2).map(|file| {
        let line_no = caps.get(3).and_then(|m| number(m.as_str()));
        (unescape(file.as_str()), line_no)
    });
    let callee = caps
        .get(4)
        .map(|m| call_name(m.as_str()))
        .filter(|name| !name.is_empty());
    Some(Call {
        location,
        callee,
        is_main: caps.get(1).is_some(),
    })
}

/// `App\Jobs\X->handle(Object(App\Y))` becomes `App\Jobs\X->handle`.
fn call_name(call: &str) -> String {
    let name = call.split_once('(').map_or(call, |(name, _)| name);
    unescape(name.trim())
}

/// Laravel's log lines JSON-escape the exception: backslashes are doubled
/// and quotes escaped.
fn unescape(text: &str) -> String {
    text.replace(r"\\", r"\").replace(r#"\""#, "\"")
}

/// One error and the calls printed under it.
struct Pending {
    error: ErrorLine,
    throw_site: (String, Option<u32>),
    link: Link,
    calls: Vec<Call>,
}

impl Pending {
    /// Pairs each location with the function it lies in: the throw site
    /// lies in the function frame #0 calls, frame #N's line in #N+1's.
    fn into_block(mut self) -> Block {
        let mut block = Block::new(self.error, self.link);
        // An error raised inside an internal function (or turned into an
        // exception by an error handler) reports the line that called it:
        // what PHP printed before that line is not the application's.
        let site = Some(&self.throw_site);
        if let Some(at) = self.calls.iter().position(|c| c.location.as_ref() == site) {
            self.calls.drain(..=at);
        }
        let mut location = Some(self.throw_site);
        for call in self.calls {
            if let Some((file, line)) = location.take() {
                block.push_frame(frame(&file, line, None, call.callee.as_deref()));
            }
            if call.is_main {
                break;
            }
            location = call.location;
        }
        if let Some((file, line)) = location {
            block.push_frame(frame(&file, line, None, None));
        }
        block
    }
}

/// Parses every error of the blob, in print order.
pub(crate) fn parse(lines: &[String]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut current: Option<Pending> = None;

    for line in lines {
        if let Some(call) = parse_call(line) {
            if let Some(pending) = current.as_mut() {
                pending.calls.push(call);
            }
            continue;
        }
        let Some(next) = header(line) else {
            continue;
        };
        if let Some(done) = current.take() {
            parsed.push_block(done.into_block());
        }
        current = Some(next);
    }
    if let Some(done) = current.take() {
        parsed.push_block(done.into_block());
    }
    parsed
}

fn header(line: &str) -> Option<Pending> {
    if let Some(caps) = LARAVEL_HEADER.captures(line) {
        let link = if caps.get(1).is_some() {
            Link::CauseOfPrevious
        } else {
            Link::Independent
        };
        return pending(&caps, link);
    }
    let caps = HEADER.captures(line)?;
    let link = if caps.get(1).is_some() {
        Link::AfterCause
    } else {
        Link::Independent
    };
    pending(&caps, link)
}

/// A pending error from a header's type (2), message (3), file (4), line (5).
fn pending(caps: &regex::Captures<'_>, link: Link) -> Option<Pending> {
    let error = ErrorLine {
        error_type: unescape(caps.get(2)?.as_str().trim_start_matches('\\')),
        qualified: None,
        message: unescape(caps.get(3)?.as_str().trim()),
    };
    let file = unescape(caps.get(4)?.as_str());
    let line = caps.get(5).and_then(|m| number(m.as_str()));
    Some(Pending {
        error,
        throw_site: (file, line),
        link,
        calls: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throw_site_lies_in_the_function_frame_zero_calls() {
        let lines: Vec<String> = [
            r"PHP Fatal error:  Uncaught RuntimeException: boom in /app/src/Job.php:12",
            "Stack trace:",
            r"#0 /app/src/Worker.php(30): App\Job->handle()",
            "#1 {main}",
        ]
        .map(str::to_owned)
        .into();
        let parsed = parse(&lines);
        let frames: Vec<(String, Option<u32>, Option<String>)> = parsed.blocks[0]
            .frames
            .iter()
            .map(|f| (f.file.clone(), f.line, f.function.clone()))
            .collect();
        assert_eq!(
            frames,
            [
                (
                    "/app/src/Job.php".into(),
                    Some(12),
                    Some(r"App\Job->handle".into())
                ),
                ("/app/src/Worker.php".into(), Some(30), None),
            ]
        );
    }
}
