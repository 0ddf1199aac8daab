//! What every language parser produces: blocks of one error each, with their
//! frames and how each block links to the one printed before it.

use std::sync::LazyLock;

use regex::Regex;

use crate::model::Frame;
use crate::normalize::re;

/// Frames kept per error; deeper stacks (recursion) are cut.
pub(crate) const MAX_FRAMES: usize = 512;

/// Errors kept per trace.
pub(crate) const MAX_BLOCKS: usize = 64;

/// An error as its header line names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ErrorLine {
    /// The type as reported in `Trace::error_type`.
    pub(crate) error_type: String,
    /// The qualified type, when it differs from `error_type`.
    pub(crate) qualified: Option<String>,
    /// The first line of the message.
    pub(crate) message: String,
}

/// The header of frames that no anchored header preceded: the nearest line of the
/// `lookback` lines above `first_frame` that `header` matches, its first group being the
/// type and its second the message.
pub(crate) fn header_above(
    lines: &[String],
    first_frame: usize,
    lookback: usize,
    header: &Regex,
) -> Option<ErrorLine> {
    let from = first_frame.saturating_sub(lookback);
    lines[from..first_frame].iter().rev().find_map(|line| {
        let caps = header.captures(line)?;
        Some(ErrorLine {
            error_type: caps.get(1)?.as_str().to_owned(),
            qualified: None,
            message: caps.get(2).map_or("", |m| m.as_str()).trim().to_owned(),
        })
    })
}

/// How a block relates to the block printed just before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// An unrelated error (or the first one).
    Independent,
    /// The previous block caused this one (Python's "direct cause" and
    /// "during handling" markers print the cause first).
    AfterCause,
    /// This block caused the previous one (JVM and Node `Caused by:` and
    /// `[cause]:` print the cause last).
    CauseOfPrevious,
}

/// One error and its frames, innermost first.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub(crate) error: ErrorLine,
    pub(crate) frames: Vec<Frame>,
    pub(crate) link: Link,
    /// How many frames the runtime left out because the error it caused
    /// ends with the same ones (the JVM's `... N more`).
    pub(crate) elided: usize,
}

impl Block {
    pub(crate) fn new(error: ErrorLine, link: Link) -> Self {
        Self {
            error,
            frames: Vec::new(),
            link,
            elided: 0,
        }
    }

    /// Adds a frame unless the block already holds `MAX_FRAMES`.
    pub(crate) fn push_frame(&mut self, frame: Frame) {
        if self.frames.len() < MAX_FRAMES {
            self.frames.push(frame);
        }
    }
}

/// What a language parser found.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    /// The errors, in the order they were printed.
    pub(crate) blocks: Vec<Block>,
    /// The panicking thread (Rust).
    pub(crate) thread: Option<String>,
    /// The fatal signal (Go).
    pub(crate) signal: Option<String>,
}

impl Parsed {
    /// Appends a block unless the trace already holds `MAX_BLOCKS`.
    pub(crate) fn push_block(&mut self, block: Block) {
        if self.blocks.len() < MAX_BLOCKS {
            self.blocks.push(block);
        }
    }
}

/// A frame not yet classified.
pub(crate) fn frame(
    file: &str,
    line: Option<u32>,
    column: Option<u32>,
    function: Option<&str>,
) -> Frame {
    Frame {
        file: file.to_owned(),
        line,
        column,
        function: function.map(str::to_owned),
        in_app: false,
    }
}

/// An error type token anywhere in a line: `TypeError: msg`, `Error: msg`,
/// `Foo::BarError: msg`, `Error [ERR_X]: msg`.
static ERROR_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:^|[^\w$.:])((?:[A-Za-z_$][\w$]*(?:\.|::))*",
        r"(?:[A-Z][\w$]*(?:Error|Exception)|Error|Exception))",
        r"(?: ?\[[^\]]*\])?(?::[ \t]*(.*))?$",
    ))
});

/// Finds the leftmost `Type: message` (or a bare `Type` ending the line) in a
/// line that may carry a log prefix.
pub(crate) fn find_error_token(line: &str) -> Option<ErrorLine> {
    let mut start = 0;
    while start < line.len() {
        let caps = ERROR_TOKEN.captures_at(line, start)?;
        let whole = caps.get(0)?;
        let name = caps.get(1)?;
        match caps.get(2) {
            Some(message) => {
                return Some(ErrorLine {
                    error_type: name.as_str().to_owned(),
                    qualified: None,
                    message: message.as_str().trim().to_owned(),
                });
            }
            None if line[..whole.start()].trim().is_empty() => {
                return Some(ErrorLine {
                    error_type: name.as_str().to_owned(),
                    ..ErrorLine::default()
                });
            }
            None => start = name.end(),
        }
    }
    None
}

/// Parses a `line` or `line:column` suffix number.
pub(crate) fn number(text: &str) -> Option<u32> {
    text.trim().parse().ok()
}

/// Splits `file:line:column` (or `file:line`, or `file`) from the right, so
/// Windows drive letters and URLs keep their colons.
pub(crate) fn split_location(location: &str) -> (&str, Option<u32>, Option<u32>) {
    let Some((rest, last)) = location.rsplit_once(':') else {
        return (location, None, None);
    };
    let Some(last_number) = number(last).filter(|_| is_digits(last)) else {
        return (location, None, None);
    };
    let Some((file, middle)) = rest.rsplit_once(':') else {
        return (rest, Some(last_number), None);
    };
    match number(middle).filter(|_| is_digits(middle)) {
        Some(line) => (file, Some(line), Some(last_number)),
        None => (rest, Some(last_number), None),
    }
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// The number of leading spaces and tabs.
pub(crate) fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_token_skips_log_prefix_words() {
        let found = find_error_token("[Nest] 6 ERROR [ExceptionsHandler] Error: Input bad");
        assert_eq!(
            found.map(|e| (e.error_type, e.message)),
            Some(("Error".into(), "Input bad".into()))
        );
    }

    #[test]
    fn error_token_takes_leftmost_error_after_a_rejection_label() {
        let found = find_error_token("Unhandled Rejection: TypeError: x (reading '0')");
        assert_eq!(found.map(|e| e.error_type), Some("TypeError".into()));
    }

    #[test]
    fn location_split_keeps_windows_drive() {
        assert_eq!(
            split_location(r"C:\a\b.js:77:81"),
            (r"C:\a\b.js", Some(77), Some(81))
        );
        assert_eq!(
            split_location("src/manager.rs:432"),
            ("src/manager.rs", Some(432), None)
        );
        assert_eq!(split_location("<anonymous>"), ("<anonymous>", None, None));
    }
}
