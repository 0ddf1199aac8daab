//! Cuts a trace that was flattened onto one line (its newlines lost or turned
//! into spaces by a log shipper or a bug reporter) back into lines, at the
//! boundaries each runtime's header and frame shapes imply, after dropping a
//! per-line log prefix that was flattened along with it. Every pattern is a
//! regex without backtracking, run a bounded number of times per line.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

use crate::normalize::re;

/// Lines shorter than this are never treated as a flattened trace.
pub(crate) const FLATTENED_MIN_LEN: usize = 100;

/// The longest log prefix looked for at the start of a flattened line.
const MAX_PREFIX_LEN: usize = 120;

/// Prefix candidates tried per flattened line.
const MAX_PREFIX_CANDIDATES: usize = 16;

/// Where a flattened line is cut: before each match of these patterns.
static CUT_BEFORE: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        // Python, exception groups included.
        r#"File "[^"]+", line \d+"#,
        r"|(?:\+ Exception Group )?Traceback \(most recent call last\):",
        r"|During handling of the above exception, another exception occurred:",
        r"|The above exception was the direct cause of the following exception:",
        r"|\+[-+]*-{3,}(?: \d+ -{3,})?",
        // V8 and JavaScriptCore, eval frames included.
        r"|\bat (?:async )?(?:new )?[^\s()]+(?: \[as [^\]]+\])? \(",
        r"(?:eval at [^()]*\([^()]*\)[^()]*|[^()]*:\d+(?::\d+)?|<anonymous>|native|index \d+)\)",
        r"|\bat (?:async )?[^\s()]*[/\\.][^\s()]*:\d+:\d+",
        r"|\[cause\]: ",
        r"|\.\.\. \d+ lines matching cause stack trace \.\.\.",
        // JVM.
        r"|\bat [\w$.<>/]+\([^()]*\)",
        r"|Caused by: ",
        r"|Suppressed: ",
        r"|\.\.\. \d+ (?:more|common frames omitted)",
        // Ruby: `from` lines (numbered when reversed) and the bare first
        // frame of each error.
        r"|(?:\b\d+: )?\bfrom \S+:\d+:in ",
        r"|[^\s`'\x22]+:\d+:in [`']",
        // Go, `GOTRACEBACK=system` headers and runtime stacks included.
        r"|(?:^|\s)(?:panic|fatal error): ",
        r"|goroutine \d+ (?:[gm]p?=\w+ )*\[[^\]]*\]:",
        r"|runtime stack:",
        r"|\[signal ",
        r"|created by ",
        r"|/\S+\.go:\d+(?: \+0x[0-9a-fA-F]+)?",
        r"|/\S+\.s:\d+ \+0x[0-9a-fA-F]+",
        // Rust.
        r"|(?i:stack backtrace:)",
        r"|\bat \S+\.rs:\d+",
        r"|thread '[^']*'(?: \(\d+\))? panicked at ",
        r"|\bnote: ",
        r"|\bLocation: +\S+\.rs:\d+",
        r"|\bBacktrace omitted\b",
        // .NET: frames whose names JVM frames cannot hold (generics,
        // explicit interfaces), inner exceptions and section markers.
        r"|\bat [^\s()]*[.`][^\s()]*\([^()]*\)",
        r"|---> ",
        r"|--- End of [\w ]+ ---",
        // PHP.
        r"|#\d{1,4} (?:/|[A-Za-z]:\\|\[internal function\]|\{main\})",
        r"|Stack trace:",
        r"|\[stacktrace\]",
        r"|\[previous exception\]",
        r"|\bthrown in ",
        r"|\bNext (?:\\?[A-Za-z_]\w*\\)*[A-Z]\w*: ",
        // Elixir.
        r"|\*\* \([A-Za-z_][\w.]*\)",
        r"|\([a-z_]\w*(?: [\w.+\-]+)?\) [\w./\-]+\.(?:ex|exs|erl|hrl):\d+: ",
        // A Markdown fence the trace was pasted in; the triple quotes around
        // a remote Python traceback (billiard).
        r"|```",
        r"|\x22\x22\x22",
        // PostgreSQL's lines under its message (libpq, JDBC, Npgsql).
        r"|\b(?:DETAIL|HINT|CONTEXT|Detail|Hint): ",
        r"|\bIs the server running (?:on|locally)\b",
    ))
});

/// An unqualified error name, which alone counts towards a line being
/// flattened: a qualified one is often part of a message (Spring's `nested
/// exception is java.lang.X: ...`).
static FLAT_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:^|\s)(?:[A-Z][\w$]*)?(?:Error|Exception|ExceptionGroup)(?: \[[^\]]*\])?: ",
        r"|(?:^|\s)(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*(?:Error|Exception) \(0x[0-9A-Fa-f]+\): ",
    ))
});

/// An error header inside a flattened line; cut before it so each header
/// (a log line's copy, the runtime's own) gets a line of its own.
static CUT_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:^|\s)(?:[A-Za-z_][\w$]*\.)*(?:[A-Z][\w$]*)?(?:Error|Exception|ExceptionGroup)",
        r"(?: \[[^\]]*\])?: ",
        // A .NET header, HRESULT included.
        r"|(?:^|\s)(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*(?:Error|Exception) \(0x[0-9A-Fa-f]+\): ",
    ))
});

/// Where a flattened line is cut: after each match of these patterns.
static CUT_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"Traceback \(most recent call last\):",
        r"|During handling of the above exception, another exception occurred:",
        r"|The above exception was the direct cause of the following exception:",
        r"|\+[-+]*-{3,}(?: \d+ -{3,})?",
        r"|\bat (?:async )?(?:new )?[^\s()]+(?: \[as [^\]]+\])? \(",
        r"(?:eval at [^()]*\([^()]*\)[^()]*|[^()]*:\d+(?::\d+)?|<anonymous>|native|index \d+)\)",
        r"|\.\.\. \d+ lines matching cause stack trace \.\.\.",
        r"|goroutine \d+ (?:[gm]p?=\w+ )*\[[^\]]*\]:",
        r"|runtime stack:",
        r"|\S+\.go:\d+(?: \+0x[0-9a-fA-F]+)?(?: fp=0x[0-9a-fA-F]+ sp=0x[0-9a-fA-F]+ pc=0x[0-9a-fA-F]+)?",
        r"|\S+\.s:\d+ \+0x[0-9a-fA-F]+(?: fp=0x[0-9a-fA-F]+ sp=0x[0-9a-fA-F]+ pc=0x[0-9a-fA-F]+)?",
        r"|(?i:stack backtrace:)",
        r"|\bat \S+\.rs:\d+(?::\d+)?:?",
        r"|```[\w+-]*",
        r"|\x22\x22\x22",
    ))
});

/// A numbered Rust backtrace (or `anyhow` cause) entry inside a flattened line.
static CUT_RUST_ENTRY: LazyLock<Regex> = LazyLock::new(|| re(r"\s\d{1,4}: +\S"));

/// A line holding a Rust backtrace or cause list, whose entries are cut.
static RUST_LIST: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i:stack backtrace:)|(?:Caused by|Error): +\d{1,4}: "));

/// An exception group's rule, which makes its ` | ` gutters line starts.
static GROUP_RULE: LazyLock<Regex> = LazyLock::new(|| re(r"\+[-+]*-{3,}"));

/// An exception line behind an exception group's gutter; its message's
/// further lines each start with a gutter of their own.
static GROUP_EXCEPTION: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\|[\s|]*(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*: "));

/// A Rust assertion's message, printed with `left:` and `right:` lines below.
static RUST_ASSERT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"assertion `left [!=]= right` failed|assertion failed: `\(left [!=]= right\)`")
});
static CUT_ASSERT_SIDE: LazyLock<Regex> = LazyLock::new(|| re(r"\s(?:left|right): "));

/// A prefix that starts with a date or a time (`2024-06-03T10:15:02Z`,
/// `[10:15:02]`).
static STAMPED: LazyLock<Regex> = LazyLock::new(|| re(r"^\[?\d{1,4}[-/.:]\d{1,2}"));

/// How many times a stamped prefix must recur to mark line starts by itself.
const MIN_STAMPED_COPIES: usize = 3;

/// Labels that keep the error header after them on their own line.
const CAUSE_LABELS: [&str; 5] = ["[cause]:", "Caused by:", "Suppressed:", "--->", "Next"];

/// The end of a Python frame and the exception that follows its source line.
static PY_FRAME_TAIL: LazyLock<Regex> =
    LazyLock::new(|| re(r#"^File "[^"]+", line \d+(?:, in \S+)?"#));
/// A module-qualified class followed by a colon is an exception line too,
/// whatever its name ends with (`billiard.einfo.ExceptionWithTraceback:`).
static PY_EXCEPTION_IN_TAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:^|\s)((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*",
        r"(?:Error|Exception|Interrupt|Exit|Iteration|Warning|DoesNotExist|Timeout))(?::\s|$)",
        r"|(?:^|\s)((?:[a-z_]\w*\.)+[A-Z]\w*):(?:\s|$)",
    ))
});

/// A Ruby error's first line, `file:line:in 'm': message (Class)`, up to its
/// class; what follows (error_highlight's source line) is another line.
static RUBY_HEADER: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[^\s`'\x22]+:\d+:in [`'][^`']*': .*? \([A-Z][\w:]*\)(?:\s|$)"));

/// An inlined Rust frame, printed without a number under the frame it was
/// inlined into.
static RUST_INLINED: LazyLock<Regex> = LazyLock::new(|| re(r"^[<\w]\S*::\S*(?: as \S+)?$"));

static DIGITS: LazyLock<Regex> = LazyLock::new(|| re(r"\d+"));

/// A name no log prefix holds: the error itself, repeated as a cause.
static ERROR_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"(?:Error|Exception|Throwable)\b"));

/// A line is flattened when it holds two or more frame or header markers,
/// at least one of them a frame marker.
pub(crate) fn looks_flattened(line: &str) -> bool {
    if line.len() < FLATTENED_MIN_LEN {
        return false;
    }
    let markers = CUT_BEFORE.find_iter(line).take(3).count();
    if markers == 0 {
        return false;
    }
    let errors = FLAT_ERROR.find_iter(line).take(2).count();
    let rust_entries = if RUST_LIST.is_match(line) {
        CUT_RUST_ENTRY.find_iter(line).take(2).count()
    } else {
        0
    };
    markers + errors + rust_entries >= 2
}

/// Cuts a flattened trace back into lines, re-indenting frame lines so the
/// parsers can tell them from error lines.
pub(crate) fn split_flattened(line: &str) -> Vec<String> {
    let (line, line_starts) = strip_recurring_prefix(line);
    let line = line.as_ref();

    let mut cuts: Vec<usize> = CUT_BEFORE.find_iter(line).map(|m| m.start()).collect();
    cuts.extend(line_starts);
    // An error name right after a colon is part of a message
    // (`ExecutionException: java.lang.RuntimeException: x`), as is one after
    // Spring's `nested exception is`; one after a cause label stays on the
    // label's line.
    let within = |at: &usize| {
        let before = line[..*at].trim_end();
        let in_message = before.ends_with(':') || before.ends_with(" exception is");
        in_message || CAUSE_LABELS.iter().any(|label| before.ends_with(label))
    };
    cuts.extend(
        CUT_ERROR
            .find_iter(line)
            .map(|m| m.start())
            .filter(|at| !within(at)),
    );
    cuts.extend(CUT_AFTER.find_iter(line).map(|m| m.end()));
    if RUST_LIST.is_match(line) {
        cuts.extend(CUT_RUST_ENTRY.find_iter(line).map(|m| m.start()));
    }
    if RUST_ASSERT.is_match(line) {
        cuts.extend(CUT_ASSERT_SIDE.find_iter(line).map(|m| m.start()));
    }
    let grouped = GROUP_RULE.is_match(line);
    if grouped {
        // An exception group's ` | ` gutter starts each of its lines.
        cuts = cuts.into_iter().map(|at| before_gutter(line, at)).collect();
    }
    // A location in brackets is part of a message (asynq's `panic
    // [/app/x.go:41]: ...`), not a frame of its own.
    let in_brackets = |at: usize| {
        let after_open = line[..at].ends_with('[') && !line[at..].starts_with(char::is_whitespace);
        after_open || line[at..].starts_with(']')
    };
    cuts.retain(|&at| !in_brackets(at));
    cuts.push(0);
    cuts.push(line.len());
    cuts.sort_unstable();
    cuts.dedup();

    let mut pieces = Vec::new();
    for pair in cuts.windows(2) {
        let piece = line[pair[0]..pair[1]].trim();
        if piece.is_empty() {
            continue;
        }
        for piece in split_ruby_header(piece) {
            for piece in split_python_frame_tail(piece) {
                if grouped {
                    pieces.extend(split_group_message(&piece));
                } else {
                    pieces.push(piece);
                }
            }
        }
    }
    pieces.into_iter().map(|piece| reindent(&piece)).collect()
}

/// Splits an exception line behind a group's gutter from the further lines
/// of its message, each behind a gutter of its own.
fn split_group_message(piece: &str) -> Vec<String> {
    if !GROUP_EXCEPTION.is_match(piece) {
        return vec![piece.to_owned()];
    }
    let mut parts = piece.split(" | ").map(str::trim);
    let first = parts.next().unwrap_or(piece).to_owned();
    std::iter::once(first)
        .chain(
            parts
                .filter(|part| !part.is_empty())
                .map(|part| format!("| {part}")),
        )
        .collect()
}

/// Moves a cut back over a `|` gutter that stands alone before it.
fn before_gutter(line: &str, at: usize) -> usize {
    let before = line[..at].trim_end();
    let Some(rest) = before.strip_suffix('|') else {
        return at;
    };
    if rest.is_empty() || rest.ends_with(char::is_whitespace) {
        rest.len()
    } else {
        at
    }
}

fn is_gutter(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_whitespace() || c == '|' || c == '+')
}

/// Splits a Ruby error's first line from the source line printed after it.
fn split_ruby_header(piece: &str) -> Vec<&str> {
    let Some(header) = RUBY_HEADER.find(piece) else {
        return vec![piece];
    };
    let (head, tail) = piece.split_at(header.end());
    [head.trim(), tail.trim()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect()
}

/// Splits a flattened Python frame from the exception line that followed it.
fn split_python_frame_tail(piece: &str) -> Vec<String> {
    let Some(frame) = PY_FRAME_TAIL.find(piece) else {
        return vec![piece.to_owned()];
    };
    let tail = &piece[frame.end()..];
    let Some(caps) = PY_EXCEPTION_IN_TAIL.captures(tail) else {
        return vec![piece.to_owned()];
    };
    let Some(exception) = caps.get(1).or_else(|| caps.get(2)) else {
        return vec![piece.to_owned()];
    };
    let at = frame.end() + exception.start();
    vec![piece[..at].trim().to_owned(), piece[at..].trim().to_owned()]
}

/// Gives a piece of a flattened line the indentation its kind of line has;
/// an exception group's gutter stays in front of it.
fn reindent(piece: &str) -> String {
    if let Some(rest) = piece.strip_prefix('|') {
        let rest = rest.trim_start();
        return format!("| {}{rest}", indent_of(rest));
    }
    format!("{}{piece}", indent_of(piece))
}

fn indent_of(piece: &str) -> &'static str {
    if piece.starts_with("File \"") {
        "  "
    } else if piece.starts_with("at ") {
        "    "
    } else if piece.starts_with("from ") || piece.ends_with("+0x0") || is_go_location(piece) {
        "\t"
    } else if piece
        .split_once(':')
        .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
    {
        "   "
    } else if RUST_INLINED.is_match(piece) {
        "      "
    } else {
        ""
    }
}

fn is_go_location(piece: &str) -> bool {
    piece.starts_with('/') && piece.contains(".go:")
}

/// Drops the copies of a per-line log prefix (`worker_1 | `, a timestamp and
/// a process name) that a flattened line carries before each former line.
/// The prefix is the text before the first marker, cut at a word boundary,
/// whose copies (digits may vary) stand right before most frame markers.
///
/// A logger may prefix only the first line of each record (Sidekiq logs the
/// error line and the backtrace as two records); such a prefix stands before
/// few markers, but when it starts with a date or a time and recurs, its
/// copies are where lines started, and are returned as cuts.
fn strip_recurring_prefix(line: &str) -> (Cow<'_, str>, Vec<usize>) {
    let first_marker = [CUT_BEFORE.find(line), CUT_ERROR.find(line)]
        .into_iter()
        .flatten()
        .map(|m| m.start())
        .min()
        .unwrap_or(0);
    let markers: Vec<usize> = CUT_BEFORE.find_iter(line).map(|m| m.start()).collect();
    let mut head_end = first_marker.min(MAX_PREFIX_LEN);
    while !line.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let head = &line[..head_end];

    let candidates = prefix_candidates(head);
    for candidate in candidates.iter().rev() {
        let Some((copies, prefixed)) = prefix_copies(line, candidate, &markers) else {
            continue;
        };
        let before_markers = prefixed * 2 >= markers.len();
        let stamped = STAMPED.is_match(candidate) && copies.len() >= MIN_STAMPED_COPIES;
        if !before_markers && !stamped {
            continue;
        }
        let mut out = String::with_capacity(line.len());
        let mut starts = Vec::new();
        let mut from = 0;
        for (start, end) in copies {
            out.push_str(&line[from..start]);
            out.push(' ');
            if !before_markers {
                starts.push(out.len());
            }
            from = end;
        }
        out.push_str(&line[from..]);
        return (Cow::Owned(out), starts);
    }
    (Cow::Borrowed(line), Vec::new())
}

/// The word-boundary prefixes of `head`, shortest first.
fn prefix_candidates(head: &str) -> Vec<&str> {
    let mut candidates: Vec<&str> = head
        .char_indices()
        .filter(|&(at, c)| c.is_whitespace() && at > 0)
        .map(|(at, _)| head[..at].trim_end())
        .chain(std::iter::once(head.trim_end()))
        .filter(|candidate| candidate.len() >= 3 && !ERROR_NAME.is_match(candidate))
        .collect();
    candidates.dedup();
    candidates.truncate(MAX_PREFIX_CANDIDATES);
    candidates
}

/// The spans of `candidate`'s copies (by shape) standing alone between
/// whitespace, when they are at least two, and how many of the frame markers
/// they stand right before.
fn prefix_copies(
    line: &str,
    candidate: &str,
    markers: &[usize],
) -> Option<(Vec<(usize, usize)>, usize)> {
    // A literal part seen once rules the candidate out before any compiling.
    let literal = DIGITS.split(candidate).max_by_key(|part| part.len())?;
    line.match_indices(literal).nth(1)?;
    let shape = DIGITS
        .split(candidate)
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(r"\d+");
    let pattern = Regex::new(&shape).ok()?;
    let alone = |start: usize, end: usize| {
        let before = line[..start].chars().next_back();
        let after = line[end..].chars().next();
        before.is_none_or(char::is_whitespace) && after.is_none_or(char::is_whitespace)
    };
    let copies: Vec<(usize, usize)> = pattern
        .find_iter(line)
        .map(|m| (m.start(), m.end()))
        .filter(|&(start, end)| alone(start, end))
        .collect();
    if copies.len() < 2 {
        return None;
    }
    let ends: Vec<usize> = copies.iter().map(|&(_, end)| end).collect();
    // Between a copy and the marker it stands before, only whitespace and an
    // exception group's gutter may sit.
    let prefixed = markers
        .iter()
        .filter(|&&at| {
            let nearest = ends.partition_point(|&end| end <= at);
            nearest > 0 && is_gutter(&line[ends[nearest - 1]..at])
        })
        .count();
    Some((copies, prefixed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_compose_prefix_is_dropped_before_each_line() {
        let line = "worker-1  | TypeError: boom in the renderer worker-1  |     at render \
                    (/app/mail.js:3:30) worker-1  |     at run (/app/mail.js:6:14)";
        assert_eq!(
            split_flattened(line),
            vec![
                "TypeError: boom in the renderer",
                "    at render (/app/mail.js:3:30)",
                "    at run (/app/mail.js:6:14)",
            ]
        );
    }

    #[test]
    fn prefix_is_dropped_before_exception_group_gutters() {
        let line = "w-1  | Traceback (most recent call last): w-1  |   |   File \"/app/a.py\", \
                    line 3, in run w-1  |   | ExceptionGroup: many (1 sub-exception) \
                    w-1  |   +-+---- 1 ----";
        assert_eq!(
            split_flattened(line),
            vec![
                "Traceback (most recent call last):",
                "|   File \"/app/a.py\", line 3, in run",
                "| ExceptionGroup: many (1 sub-exception)",
                "+-+---- 1 ----",
            ]
        );
    }

    #[test]
    fn a_repeated_error_header_is_not_taken_for_a_prefix() {
        let line = "java.lang.IllegalStateException: closed at a.B.c(B.java:1) Caused by: \
                    java.lang.IllegalStateException: closed at a.B.d(B.java:2)";
        assert_eq!(
            split_flattened(line),
            vec![
                "java.lang.IllegalStateException: closed",
                "    at a.B.c(B.java:1)",
                "Caused by: java.lang.IllegalStateException: closed",
                "    at a.B.d(B.java:2)",
            ]
        );
    }

    #[test]
    fn timestamped_prefix_of_each_record_marks_where_lines_started() {
        // Only the first backtrace line carries the prefix: the backtrace
        // was one record.
        let line = "2024-06-03T10:15:02.118Z pid=7 tid=ow WARN: start \
                    2024-06-03T10:15:02.119Z pid=7 tid=ow WARN: PG::ConnectionBad: refused \
                    2024-06-03T10:15:02.119Z pid=7 tid=ow WARN: /gems/pg.rb:7:in `connect' \
                    /gems/ar.rb:3:in `new' /gems/ar.rb:9:in `get' /app/job.rb:8:in `perform'";
        assert_eq!(
            split_flattened(line),
            vec![
                "start",
                "PG::ConnectionBad: refused",
                "/gems/pg.rb:7:in `connect'",
                "/gems/ar.rb:3:in `new'",
                "/gems/ar.rb:9:in `get'",
                "/app/job.rb:8:in `perform'",
            ]
        );
    }

    #[test]
    fn postgres_detail_line_is_not_part_of_the_message() {
        let line = "org.postgresql.util.PSQLException: ERROR: duplicate key value \
                    Detail: Key (id)=(5) already exists. at org.postgresql.X.y(X.java:1)";
        assert_eq!(
            split_flattened(line),
            vec![
                "org.postgresql.util.PSQLException: ERROR: duplicate key value",
                "Detail: Key (id)=(5) already exists.",
                "    at org.postgresql.X.y(X.java:1)",
            ]
        );
    }

    #[test]
    fn error_names_inside_a_message_stay_in_it() {
        let line = "a.WrapException: nested exception is a.b.CauseException: x; see \
                    java.lang.IllegalStateException: y at a.B.c(B.java:1) \
                    Caused by: a.b.CauseException: x at a.B.d(B.java:2)";
        assert_eq!(
            split_flattened(line),
            vec![
                "a.WrapException: nested exception is a.b.CauseException: x; see",
                "java.lang.IllegalStateException: y",
                "    at a.B.c(B.java:1)",
                "Caused by: a.b.CauseException: x",
                "    at a.B.d(B.java:2)",
            ]
        );
    }

    #[test]
    fn assertion_sides_and_group_message_lines_are_lines_of_their_own() {
        let line = "thread 'w' panicked at src/a.rs:1:5: assertion `left == right` failed \
                    left: 7 right: 9 note: run with `RUST_BACKTRACE=1`";
        assert_eq!(
            split_flattened(line),
            vec![
                "thread 'w' panicked at src/a.rs:1:5:",
                "assertion `left == right` failed",
                "left: 7",
                "right: 9",
                "note: run with `RUST_BACKTRACE=1`",
            ]
        );
        let grouped = "| Traceback (most recent call last): |   File \"/a.py\", line 3, in f \
                       | httpx.HTTPStatusError: Server error | For more: https://x +---- 2 ----";
        let pieces = split_flattened(grouped);
        assert_eq!(pieces[2], "| httpx.HTTPStatusError: Server error");
        assert_eq!(pieces[3], "| For more: https://x");
    }

    #[test]
    fn a_location_in_brackets_stays_in_its_message() {
        let line = "goroutine 4 [running]: main.run() /app/run.go:9 +0x1d \
                    2024/06/03 retrying: panic [/app/run.go:9]: index out of range";
        assert_eq!(
            split_flattened(line).last().map(String::as_str),
            Some("2024/06/03 retrying: panic [/app/run.go:9]: index out of range")
        );
    }

    #[test]
    fn ruby_header_is_split_from_the_highlighted_source() {
        let line = "/app/job.rb:7:in `owner': undefined method `name' for nil (NoMethodError)  \
                    owner.name ^^^^^ from /app/job.rb:3:in `perform'";
        assert_eq!(
            split_flattened(line),
            vec![
                "/app/job.rb:7:in `owner': undefined method `name' for nil (NoMethodError)",
                "owner.name ^^^^^",
                "\tfrom /app/job.rb:3:in `perform'",
            ]
        );
    }
}
