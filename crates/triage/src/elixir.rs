//! Elixir (and Erlang, through Elixir's formatter) stacks as Oban, Exq and
//! `Exception.format/3` print them: `** (Type) message` then indented
//! `(app 1.2.3) lib/x.ex:12: Mod.fun/1` frames, innermost first.

use std::sync::LazyLock;

use regex::Regex;

use crate::block::{Block, ErrorLine, Link, Parsed, frame, number};
use crate::model::Frame;
use crate::normalize::re;

/// `(my_app 0.1.0) lib/my_app/worker.ex:12: MyApp.Worker.perform/1`, the
/// app and version optional (scripts, old Elixir versions).
static FRAME: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^\s*(?:\([a-z_]\w*(?: [\w.+\-]+)?\) )?",
        r"([\w./\-]+\.(?:ex|exs|erl|hrl)):(\d+): (.+?)\s*$",
    ))
});
/// `** (ArgumentError) message`; `** (exit) …` and `** (throw) …` too.
static HEADER: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:^|\s)\*\* \(([A-Za-z_][\w.]*)\)(?: (.*))?$"));

/// Counts the lines that only an Elixir stack prints.
pub(crate) fn score(lines: &[String]) -> usize {
    let frames = lines
        .iter()
        .filter(|line| parse_frame(line).is_some())
        .count();
    let headers = lines.iter().filter(|line| HEADER.is_match(line)).count();
    frames * 3 + headers * 2
}

/// Parses one `(app 1.2.3) lib/x.ex:12: Mod.fun/1` line; the app is left
/// out, as modules say where code comes from.
fn parse_frame(line: &str) -> Option<Frame> {
    let caps = FRAME.captures(line)?;
    let file = caps.get(1)?.as_str();
    let line_no = caps.get(2).and_then(|m| number(m.as_str()));
    Some(frame(file, line_no, None, caps.get(3).map(|m| m.as_str())))
}

/// Parses every error of the blob, in print order.
pub(crate) fn parse(lines: &[String]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut current: Option<Block> = None;

    for line in lines {
        if let Some(frame) = parse_frame(line) {
            current
                .get_or_insert_with(|| Block::new(ErrorLine::default(), Link::Independent))
                .push_frame(frame);
            continue;
        }
        let Some(error) = header(line) else {
            continue;
        };
        // `** (exit) exited in: GenServer.call(…)` prints the exit's reason
        // under it, indented, as `** (EXIT) time out`: the reason caused it.
        let is_reason = line.starts_with(char::is_whitespace)
            && current.as_ref().is_some_and(|b| b.frames.is_empty());
        let link = if is_reason {
            Link::CauseOfPrevious
        } else {
            Link::Independent
        };
        if let Some(done) = current.take() {
            parsed.push_block(done);
        }
        current = Some(Block::new(error, link));
    }
    if let Some(done) = current.take() {
        parsed.push_block(done);
    }
    parsed
}

fn header(line: &str) -> Option<ErrorLine> {
    let caps = HEADER.captures(line)?;
    Some(ErrorLine {
        error_type: caps.get(1)?.as_str().to_owned(),
        qualified: None,
        message: caps.get(2).map_or("", |m| m.as_str()).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_drops_its_app_and_version() {
        let frame =
            parse_frame("    (my_app 0.1.0) lib/my_app/worker.ex:12: MyApp.Worker.perform/1");
        let frame = frame.map(|f| (f.file, f.line, f.function));
        assert_eq!(
            frame,
            Some((
                "lib/my_app/worker.ex".into(),
                Some(12),
                Some("MyApp.Worker.perform/1".into())
            ))
        );
    }
}
