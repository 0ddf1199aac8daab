//! .NET stacks (C#, F#, VB) as `Exception.ToString()` prints them: the
//! outermost exception's header, each inner one after ` ---> `, then the
//! frames of the innermost exception first, each outer exception's after an
//! `--- End of inner exception stack trace ---` marker.

use std::sync::LazyLock;

use regex::Regex;

use crate::block::{Block, ErrorLine, Link, Parsed, frame, number};
use crate::model::Frame;
use crate::normalize::re;

/// `at Ns.Type.Method(Args)`, optionally ` in path:line N`.
static FRAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*at ([^\s(]+)\(([^()]*)\)(?: in (.+):line (\d+))?\s*$"));
/// A header: `Ns.SomeException: message`, optionally with an HRESULT.
static HEADER: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^((?:[A-Za-z_][\w`]*\.)+[\w`]*(?:Exception|Error|Failure|Fault)",
        r"(?:`\d+)?)(?: \(0x[0-9A-Fa-f]+\))?(?::\s?(.*))?$",
    ))
});
/// A header inside a log line (`Failed to run job 42: Ns.X: msg`).
static LOOSE_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:^|\s)((?:[A-Za-z_][\w`]*\.)+[\w`]*(?:Exception|Error))",
        r"(?: \(0x[0-9A-Fa-f]+\))?(?::\s?(.*))?$",
    ))
});

/// A compiler-generated async state machine: `Ns.Type.<RunAsync>d__4.MoveNext`.
static STATE_MACHINE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\.<([A-Za-z_]\w*)>d__\d+\.MoveNext$"));

/// The marker between an inner exception's frames and its wrapper's.
const END_OF_INNER: &str = "--- End of inner exception stack trace ---";

/// How far above the first frame a log-prefixed header may sit.
const HEADER_LOOKBACK: usize = 5;

/// Counts the lines that only a .NET stack prints. A frame whose parentheses
/// hold a JVM location (`File.java:12`) is left to the JVM parser.
pub(crate) fn score(lines: &[String]) -> usize {
    let frames = lines
        .iter()
        .filter(|line| parse_frame(line).is_some())
        .count();
    let markers = lines
        .iter()
        .filter(|line| {
            let line = line.trim_start();
            line.starts_with("--- End of ") || line.starts_with("---> ")
        })
        .count();
    frames * 3 + markers * 2
}

/// Parses one `at Ns.Type.Method(Args) in path:line N` line.
fn parse_frame(line: &str) -> Option<Frame> {
    let caps = FRAME.captures(line)?;
    let args = caps.get(2)?.as_str();
    if looks_like_jvm_location(args) {
        return None;
    }
    // Before .NET Core 2.1 an async method's frames name its state machine;
    // the method it was generated from is what the source holds.
    let function = caps.get(1)?.as_str();
    let function = STATE_MACHINE.replace(function, ".$1");
    let file = caps.get(3).map_or("", |m| m.as_str());
    let line_no = caps.get(4).and_then(|m| number(m.as_str()));
    Some(frame(file, line_no, None, Some(&function)))
}

/// `Foo.java:12`, `Native Method`, `Unknown Source`: what a JVM frame holds.
fn looks_like_jvm_location(args: &str) -> bool {
    let jvm_words = ["Native Method", "Unknown Source", "<generated>"];
    if jvm_words.contains(&args) {
        return true;
    }
    args.rsplit_once(':')
        .is_some_and(|(file, line)| file.contains('.') && number(line).is_some())
}

/// One exception of the chain being read, outermost first.
struct Pending {
    errors: Vec<ErrorLine>,
    /// Frames per segment; segment 0 belongs to the innermost exception.
    segments: Vec<Vec<Frame>>,
}

impl Pending {
    fn new(error: ErrorLine) -> Self {
        Self {
            errors: vec![error],
            segments: vec![Vec::new()],
        }
    }

    /// Blocks root cause first, each caused by the one before it.
    fn into_blocks(self, parsed: &mut Parsed) {
        let mut segments = self.segments.into_iter();
        for (depth, error) in self.errors.into_iter().rev().enumerate() {
            let link = if depth == 0 {
                Link::Independent
            } else {
                Link::AfterCause
            };
            let mut block = Block::new(error, link);
            for frame in segments.next().unwrap_or_default() {
                block.push_frame(frame);
            }
            parsed.push_block(block);
        }
    }
}

/// Parses every exception of the blob, in print order.
pub(crate) fn parse(lines: &[String]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut current: Option<Pending> = None;

    for (index, line) in lines.iter().enumerate() {
        if let Some(frame) = parse_frame(line) {
            let pending = current.get_or_insert_with(|| {
                Pending::new(loose_header(lines, index).unwrap_or_default())
            });
            if let Some(segment) = pending.segments.last_mut() {
                segment.push(frame);
            }
            continue;
        }
        if line.trim() == END_OF_INNER {
            if let Some(pending) = current.as_mut() {
                pending.segments.push(Vec::new());
            }
            continue;
        }
        let headers = headers(line);
        let Some((first, inner)) = headers.split_first() else {
            continue;
        };
        let (error, is_inner) = first.clone();
        match current.as_mut() {
            // An inner exception's header belongs to the chain being read,
            // as long as no frame has been printed yet.
            Some(pending) if is_inner && pending.segments.iter().all(Vec::is_empty) => {
                pending.errors.push(error);
            }
            _ => {
                if let Some(done) = current.take() {
                    done.into_blocks(&mut parsed);
                }
                current = Some(Pending::new(error));
            }
        }
        if let Some(pending) = current.as_mut() {
            pending.errors.extend(inner.iter().map(|(e, _)| e.clone()));
        }
    }
    if let Some(done) = current.take() {
        done.into_blocks(&mut parsed);
    }

    drop_stray_headers(&mut parsed.blocks);
    parsed
}

/// A header that no frame followed and that no wrapper links to is a log
/// line naming a type, unless it is all there is.
fn drop_stray_headers(blocks: &mut Vec<Block>) {
    if blocks.len() < 2 {
        return;
    }
    let keep: Vec<bool> = (0..blocks.len())
        .map(|at| {
            let block = &blocks[at];
            let wrapped = blocks
                .get(at + 1)
                .is_some_and(|b| b.link == Link::AfterCause);
            !block.frames.is_empty() || block.link != Link::Independent || wrapped
        })
        .collect();
    let mut keep = keep.into_iter();
    blocks.retain(|_| keep.next().unwrap_or(true));
}

/// The headers of a line: .NET Framework prints inner exceptions on the
/// same line, `Outer: msg ---> Inner: msg`. Each comes with whether it is an
/// inner exception.
fn headers(line: &str) -> Vec<(ErrorLine, bool)> {
    let line = line.trim_start();
    let (leading_inner, line) = match line.strip_prefix("---> ") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let mut found = Vec::new();
    for (at, piece) in line.split(" ---> ").enumerate() {
        let Some(caps) = HEADER.captures(piece) else {
            break;
        };
        let (Some(name), message) = (caps.get(1), caps.get(2)) else {
            break;
        };
        let error = ErrorLine {
            error_type: name.as_str().to_owned(),
            qualified: None,
            message: message.map_or("", |m| m.as_str()).trim().to_owned(),
        };
        found.push((error, at > 0 || leading_inner));
    }
    found
}

/// The header of frames that no anchored header preceded.
fn loose_header(lines: &[String], first_frame: usize) -> Option<ErrorLine> {
    crate::block::header_above(lines, first_frame, HEADER_LOOKBACK, &LOOSE_HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_with_location_keeps_windows_path_and_line() {
        let frame =
            parse_frame(r"   at App.Jobs.Sync.Run(Int32 id) in C:\src\App\Jobs\Sync.cs:line 42");
        let frame = frame.map(|f| (f.file, f.line, f.function));
        assert_eq!(
            frame,
            Some((
                r"C:\src\App\Jobs\Sync.cs".into(),
                Some(42),
                Some("App.Jobs.Sync.Run".into())
            ))
        );
    }

    #[test]
    fn async_state_machine_frame_names_its_method() {
        let frame = parse_frame(
            "   at Shop.Jobs.PriceJob.<RunAsync>d__4.MoveNext() in /src/PriceJob.cs:line 33",
        );
        let function = frame.and_then(|f| f.function);
        assert_eq!(function.as_deref(), Some("Shop.Jobs.PriceJob.RunAsync"));
    }

    #[test]
    fn jvm_frame_is_not_a_dotnet_frame() {
        assert!(parse_frame("\tat com.acme.Mailer.send(Mailer.java:42)").is_none());
    }

    #[test]
    fn same_line_inner_exceptions_are_each_a_header() {
        let found = headers("System.Exception: outer ---> System.IO.IOException: disk full");
        let types: Vec<(&str, bool)> = found
            .iter()
            .map(|(e, inner)| (e.error_type.as_str(), *inner))
            .collect();
        assert_eq!(
            types,
            [("System.Exception", false), ("System.IO.IOException", true)]
        );
    }
}
