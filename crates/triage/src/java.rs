//! JVM stacks (Java, Kotlin, Scala): `at pkg.Class.method(File.java:N)`,
//! `Caused by:` chains, elided `... N more` lines and log lines in between.

use std::sync::LazyLock;

use regex::Regex;

use crate::block::{Block, ErrorLine, Link, Parsed, frame, number};
use crate::model::Frame;
use crate::normalize::re;

static FRAME: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*at\s+([\w$.<>/\-]+)\(([^()]*)\)"));
/// An exception header at the start of a line.
static HEADER: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r#"^\s*(?:Exception in thread "[^"]*"\s+|(Caused by):\s+|Suppressed:\s+)?"#,
        r"((?:[A-Za-z_$][\w$]*\.)+[A-Za-z_$][\w$]*|[A-Z][\w$]*(?:Exception|Error|Throwable))",
        r"(?::\s?(.*))?$",
    ))
});
/// The JVM's `... 12 more` and logback's `... 12 common frames omitted`.
static ELIDED: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*\.\.\.\s*(\d+)\s+(?:more|common frames omitted)\s*$"));
/// A qualified exception class anywhere in a (log) line.
static LOOSE_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    re(r"((?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Throwable))(?::\s?(.*))?$")
});

/// How far above the first frame a log-prefixed header may sit.
const HEADER_LOOKBACK: usize = 5;

/// Counts the lines that only a JVM stack prints.
pub(crate) fn score(lines: &[String]) -> usize {
    let frames = lines
        .iter()
        .filter(|line| parse_frame(line).is_some())
        .count();
    let causes = lines
        .iter()
        .filter(|line| line.trim_start().starts_with("Caused by: "))
        .count();
    frames * 2 + causes
}

/// Parses one `at pkg.Class.method(File.java:N)` line.
fn parse_frame(line: &str) -> Option<Frame> {
    let caps = FRAME.captures(line)?;
    let function = caps.get(1)?.as_str();
    // Java 9+ prints the module (`java.base/`) or class loader (`app//`).
    let function = function.rsplit('/').next().unwrap_or(function);
    let location = caps.get(2)?.as_str();
    let (file, line_no) = match location.rsplit_once(':') {
        Some((file, line_no)) if number(line_no).is_some() => (file, number(line_no)),
        _ => (location, None),
    };
    Some(frame(file, line_no, None, Some(function)))
}

/// Parses every exception of the blob, in print order.
pub(crate) fn parse(lines: &[String]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut nesting = Nesting::default();
    let mut current: Option<Block> = None;

    for (index, line) in lines.iter().enumerate() {
        if let Some(frame) = parse_frame(line) {
            let block = current.get_or_insert_with(|| {
                let error = loose_header(lines, index).unwrap_or_default();
                Block::new(error, Link::Independent)
            });
            block.push_frame(frame);
            continue;
        }
        if let Some(block) = current.as_mut()
            && let Some(count) = ELIDED.captures(line).and_then(|c| number(&c[1]))
        {
            block.elided = usize::try_from(count).unwrap_or(usize::MAX);
            continue;
        }
        let Some((error, link)) = header(line) else {
            continue;
        };
        if let Some(done) = current.take() {
            nesting.keep(done, &mut parsed);
        }
        nesting.enter(line);
        current = Some(Block::new(error, link));
    }
    if let Some(done) = current.take() {
        nesting.keep(done, &mut parsed);
    }
    nesting.aside.into_iter().for_each(|b| parsed.push_block(b));

    // A header that no frame followed and nothing links to is noise (a log
    // line naming a class), unless it is all there is.
    if parsed.blocks.len() > 1 {
        parsed
            .blocks
            .retain(|block| !block.frames.is_empty() || block.link != Link::Independent);
    }
    parsed
}

/// Where the exception being read sits. The JVM prints a `Suppressed:`
/// exception, and the causes it has, indented inside the exception that
/// suppressed it, before that exception's own `Caused by:`. Those blocks are
/// kept aside, so the `Caused by:` printed at the outer indentation after
/// them still links to the exception that suppressed them.
#[derive(Default)]
struct Nesting {
    /// The indentation of the first header: a pasted trace may be indented
    /// as a whole.
    base: Option<usize>,
    /// The indentation of the open `Suppressed:` header.
    suppressed_at: Option<usize>,
    /// Whether the block being read is a suppressed one (or its cause).
    in_aside: bool,
    aside: Vec<Block>,
}

impl Nesting {
    fn enter(&mut self, header_line: &str) {
        let indent = crate::block::indent(header_line);
        let base = *self.base.get_or_insert(indent);
        if header_line.trim_start().starts_with("Suppressed:") {
            self.suppressed_at = Some(indent);
            self.in_aside = true;
            return;
        }
        // Flattened or unindented, nothing tells a suppressed exception's
        // cause from the outer one's; the outer one's is far more common.
        self.in_aside = self
            .suppressed_at
            .is_some_and(|at| indent > base && indent >= at);
        if !self.in_aside {
            self.suppressed_at = None;
        }
    }

    fn keep(&mut self, block: Block, parsed: &mut Parsed) {
        if !self.in_aside {
            parsed.push_block(block);
        } else if self.aside.len() < crate::block::MAX_BLOCKS {
            self.aside.push(block);
        }
    }
}

fn header(line: &str) -> Option<(ErrorLine, Link)> {
    let caps = HEADER.captures(line)?;
    let link = if caps.get(1).is_some() {
        Link::CauseOfPrevious
    } else {
        Link::Independent
    };
    let error = ErrorLine {
        error_type: caps.get(2)?.as_str().to_owned(),
        qualified: None,
        message: caps.get(3).map_or("", |m| m.as_str()).trim().to_owned(),
    };
    Some((error, link))
}

/// The header of frames that no anchored header preceded: a qualified class
/// name somewhere in the log lines just above.
fn loose_header(lines: &[String], first_frame: usize) -> Option<ErrorLine> {
    crate::block::header_above(lines, first_frame, HEADER_LOOKBACK, &LOOSE_HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_prefix_is_dropped_from_the_function() {
        let frame = parse_frame("\tat java.base/java.lang.Thread.run(Thread.java:829)");
        let frame = frame.map(|f| (f.file, f.line, f.function));
        assert_eq!(
            frame,
            Some((
                "Thread.java".into(),
                Some(829),
                Some("java.lang.Thread.run".into())
            ))
        );
    }

    #[test]
    fn exception_logged_by_a_log_line_is_found_above_its_frames() {
        let lines: Vec<String> = [
            "12:00 ERROR job failed: java.lang.IllegalStateException: queue closed",
            "\tat com.acme.jobs.Mailer.send(Mailer.java:42)",
        ]
        .map(str::to_owned)
        .into();
        let parsed = parse(&lines);
        assert_eq!(
            parsed.blocks[0].error.error_type,
            "java.lang.IllegalStateException"
        );
        assert_eq!(parsed.blocks[0].error.message, "queue closed");
    }
}
