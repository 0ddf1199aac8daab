//! Unified diffs as models write them: read into [`Hunk`]s per file, then applied by their
//! context lines rather than their line numbers, with a little fuzz at the hunk's edges.

use crate::matching::{self, Lines, Miss};
use crate::{Hunk, HunkLine};

/// How many context lines may be dropped from each end of a hunk that does not match.
const MAX_FUZZ: usize = 2;

/// The hunks for one file, as read from a diff.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FileDiff {
    /// The path from the `+++` line (or `---` when the file is deleted), prefix removed.
    pub path: Option<String>,
    /// Whether `+++ /dev/null` says the file is deleted.
    pub deletes: bool,
    /// The hunks, in order.
    pub hunks: Vec<Hunk>,
}

/// Reads a diff. With `loose`, a hunk line without a `+`, `-` or space prefix is taken as a
/// context line whose leading space the model dropped; otherwise it ends the hunk.
pub(crate) fn parse(lines: &[&str], loose: bool, known: &[String]) -> Vec<FileDiff> {
    let mut files: Vec<FileDiff> = Vec::new();
    let mut hunk: Option<Hunk> = None;
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at];
        let next = lines.get(at + 1).copied().unwrap_or_default();
        if line.starts_with("--- ") && next.starts_with("+++ ") {
            finish_hunk(&mut files, &mut hunk);
            files.push(file_from_headers(line, next, known));
            at += 2;
            continue;
        }
        if let Some(paths) = line.strip_prefix("diff --git ") {
            finish_hunk(&mut files, &mut hunk);
            // `diff --git a/x b/x` alone (no `---`/`+++`) still names the file.
            let path = paths
                .rsplit_once(" b/")
                .map(|(_, path)| path.trim().to_owned());
            files.push(FileDiff {
                path,
                ..FileDiff::default()
            });
        } else if line.starts_with("@@") {
            finish_hunk(&mut files, &mut hunk);
            hunk = Some(Hunk {
                old_start: old_start(line),
                lines: Vec::new(),
            });
        } else if let Some(current) = hunk.as_mut() {
            read_hunk_line(current, line, loose);
        }
        at += 1;
    }
    finish_hunk(&mut files, &mut hunk);
    files.retain(|file| !file.hunks.is_empty() || file.deletes);
    files
}

/// Reads a block of `+`/`-`/space lines with no `@@` header as one hunk, the way small models
/// write a ```diff fence. Returns `None` when some line is not a diff line.
pub(crate) fn parse_headerless(lines: &[&str]) -> Option<Hunk> {
    let mut hunk = Hunk {
        old_start: None,
        lines: Vec::new(),
    };
    for line in lines {
        if !(line.is_empty() || line.starts_with([' ', '+', '-', '\\'])) {
            return None;
        }
        read_hunk_line(&mut hunk, line, false);
    }
    let changes = hunk
        .lines
        .iter()
        .any(|l| !matches!(l, HunkLine::Context(_)));
    trim_trailing_blank_context(&mut hunk);
    changes.then_some(hunk)
}

fn read_hunk_line(hunk: &mut Hunk, line: &str, loose: bool) {
    let entry = match line.chars().next() {
        Some('+') => HunkLine::Add(line[1..].to_owned()),
        Some('-') => HunkLine::Remove(line[1..].to_owned()),
        Some(' ') => HunkLine::Context(line[1..].to_owned()),
        // `\ No newline at end of file`: line endings are settled when the file is written.
        Some('\\') => return,
        None => HunkLine::Context(String::new()),
        Some(_) if loose => HunkLine::Context(line.to_owned()),
        Some(_) => return,
    };
    hunk.lines.push(entry);
}

fn finish_hunk(files: &mut Vec<FileDiff>, hunk: &mut Option<Hunk>) {
    let Some(mut done) = hunk.take() else {
        return;
    };
    trim_trailing_blank_context(&mut done);
    if done.lines.is_empty() {
        return;
    }
    if files.is_empty() {
        files.push(FileDiff::default());
    }
    if let Some(file) = files.last_mut() {
        file.hunks.push(done);
    }
}

/// A blank line at a hunk's end is usually the fence's trailing newline, not file context.
fn trim_trailing_blank_context(hunk: &mut Hunk) {
    while hunk.lines.last() == Some(&HunkLine::Context(String::new())) {
        hunk.lines.pop();
    }
}

fn file_from_headers(old: &str, new: &str, known: &[String]) -> FileDiff {
    let old_path = header_path(&old[4..], known);
    let new_path = header_path(&new[4..], known);
    let deletes = new_path.is_none() && old_path.is_some();
    FileDiff {
        path: new_path.or(old_path),
        deletes,
        hunks: Vec::new(),
    }
}

/// The path in a `---`/`+++` header: timestamp dropped, `a/`/`b/` prefix dropped unless the
/// prefixed path is one of the known files, `/dev/null` as none.
fn header_path(text: &str, known: &[String]) -> Option<String> {
    let path = text.split('\t').next().unwrap_or_default().trim();
    if path == "/dev/null" || path.is_empty() {
        return None;
    }
    if known.iter().any(|file| file == path) {
        return Some(path.to_owned());
    }
    let stripped = path.strip_prefix("a/").or_else(|| path.strip_prefix("b/"));
    Some(stripped.unwrap_or(path).to_owned())
}

/// The old start line from `@@ -12,7 +12,8 @@`, when the header has one.
fn old_start(header: &str) -> Option<usize> {
    let after = header.trim_start_matches('@').trim_start();
    let number = after.strip_prefix('-')?;
    let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Why a hunk could not be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HunkMiss {
    /// 1-based number of the hunk.
    pub hunk: usize,
    /// What went wrong, in words.
    pub reason: String,
}

/// Applies `hunks` in order to `content`.
pub(crate) fn apply(content: &str, hunks: &[Hunk]) -> Result<String, HunkMiss> {
    let mut file = Lines::parse(content);
    if content.is_empty() {
        file.trailing_newline = true;
    }
    // Earlier hunks move later ones; the shift keeps their line hints meaningful.
    let mut shift: isize = 0;
    for (index, hunk) in hunks.iter().enumerate() {
        let added = apply_hunk(&mut file.lines, hunk, shift).map_err(|reason| HunkMiss {
            hunk: index + 1,
            reason,
        })?;
        shift += added;
    }
    Ok(file.render())
}

/// Applies one hunk; returns how many lines it added (negative when it removed more).
fn apply_hunk(file: &mut Vec<String>, hunk: &Hunk, shift: isize) -> Result<isize, String> {
    let hint = hunk
        .old_start
        .map(|start| shifted(start.saturating_sub(1), shift));
    let old = hunk.old_lines();
    let new = hunk.new_lines();
    let grew = new.len() as isize - old.len() as isize;

    if old.is_empty() {
        // With no old lines, the header names the line to insert after, not the first line.
        let after = hunk.old_start.map(|start| shifted(start, shift));
        let at = after.unwrap_or(file.len()).min(file.len());
        file.splice(at..at, new.iter().map(|line| (*line).to_owned()));
        return Ok(grew);
    }

    for fuzz in 0..=MAX_FUZZ {
        let Some(trimmed) = trim_context(hunk, fuzz) else {
            break;
        };
        let (old, new) = (trimmed.old_lines(), trimmed.new_lines());
        match matching::find_block(file, &old, hint) {
            Ok(found) => {
                matching::splice(file, found, &old, &new);
                return Ok(grew);
            }
            Err(Miss::Ambiguous(count)) => {
                return Err(format!("its context matches {count} places"));
            }
            Err(Miss::NotFound) => {}
        }
    }
    let first = old
        .iter()
        .find(|line| !line.trim().is_empty())
        .unwrap_or(&"");
    Err(format!(
        "its context starting {:?} is not in the file",
        first.trim()
    ))
}

/// A line number moved by `shift`, kept at zero or above whatever the model wrote.
fn shifted(line: usize, shift: isize) -> usize {
    let line = isize::try_from(line).unwrap_or(isize::MAX);
    usize::try_from(line.saturating_add(shift)).unwrap_or(0)
}

/// The hunk with up to `fuzz` context lines dropped from each end; `None` once nothing but
/// additions would be left to anchor it.
fn trim_context(hunk: &Hunk, fuzz: usize) -> Option<Hunk> {
    let lines = &hunk.lines;
    let is_context = |line: &HunkLine| matches!(line, HunkLine::Context(_));
    let lead = lines.iter().take_while(|l| is_context(l)).count().min(fuzz);
    let tail = lines
        .iter()
        .rev()
        .take_while(|l| is_context(l))
        .count()
        .min(fuzz);
    if fuzz > 0 && lead == 0 && tail == 0 {
        return None;
    }
    let end = lines.len().saturating_sub(tail).max(lead);
    let trimmed = Hunk {
        old_start: hunk.old_start.map(|start| start.saturating_add(lead)),
        lines: lines[lead..end].to_vec(),
    };
    (!trimmed.old_lines().is_empty()).then_some(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(text: &str) -> Vec<FileDiff> {
        let lines: Vec<&str> = text.lines().collect();
        parse(&lines, true, &[])
    }

    #[test]
    fn headers_give_paths_without_prefixes() {
        let files = diff("--- a/src/x.py\n+++ b/src/x.py\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path.as_deref(), Some("src/x.py"));
        assert_eq!(files[0].hunks[0].old_start, Some(1));
        assert_eq!(files[0].hunks[0].old_lines(), vec!["a", "b"]);
        assert_eq!(files[0].hunks[0].new_lines(), vec!["a", "c"]);
    }

    #[test]
    fn deleted_file_is_marked() {
        let files = diff("--- a/x.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n");
        assert!(files[0].deletes);
    }

    #[test]
    fn hunk_with_wrong_line_numbers_applies_by_context() {
        let content = "one\ntwo\nthree\nfour\n";
        let files = diff("--- x\n+++ x\n@@ -40,3 +40,3 @@\n two\n-three\n+THREE\n four\n");
        assert_eq!(
            apply(content, &files[0].hunks),
            Ok("one\ntwo\nTHREE\nfour\n".into())
        );
    }

    #[test]
    fn hunk_with_a_wrong_context_line_applies_with_fuzz() {
        let content = "a\nb\nc\nd\n";
        let files = diff("@@ @@\n a\n b\n-c\n+C\n x-not-in-file\n");
        assert_eq!(apply(content, &files[0].hunks), Ok("a\nb\nC\nd\n".into()));
    }

    #[test]
    fn context_without_leading_space_is_tolerated() {
        let content = "def f():\n    return 1\n";
        let files = diff("@@ -1,2 +1,2 @@\ndef f():\n-    return 1\n+    return 2\n");
        assert_eq!(
            apply(content, &files[0].hunks),
            Ok("def f():\n    return 2\n".into())
        );
    }

    #[test]
    fn hunk_whose_context_is_missing_names_the_line() {
        let files = diff("@@ -1 +1 @@\n-nowhere\n+x\n");
        let miss = apply("a\n", &files[0].hunks).expect_err("must miss");
        assert_eq!(
            miss.reason,
            "its context starting \"nowhere\" is not in the file"
        );
    }

    #[test]
    fn headerless_plus_minus_block_is_one_hunk() {
        let hunk =
            parse_headerless(&["     x = 1", "-    y = x", "+    y = x + 1", ""]).expect("hunk");
        assert_eq!(hunk.new_lines(), vec!["    x = 1", "    y = x + 1"]);
        assert_eq!(parse_headerless(&["plain text"]), None);
    }

    #[test]
    fn absurd_line_numbers_are_only_hints() {
        let files = diff("@@ -18446744073709551615,3 +99999999999999999999 @@\n-b\n+c\n");
        assert_eq!(apply("a\nb\n", &files[0].hunks), Ok("a\nc\n".into()));
        let files = diff("@@ -18446744073709551615,0 +1 @@\n+z\n");
        assert_eq!(apply("a\n", &files[0].hunks), Ok("a\nz\n".into()));
    }

    #[test]
    fn git_header_alone_names_the_file() {
        let files = diff("diff --git a/src/x.py b/src/x.py\n@@ -1 +1 @@\n-a\n+b\n");
        assert_eq!(files[0].path.as_deref(), Some("src/x.py"));
    }

    #[test]
    fn pure_insertion_goes_after_the_named_line() {
        let files = diff("@@ -1,0 +2 @@\n+inserted\n");
        assert_eq!(
            apply("a\nb\n", &files[0].hunks),
            Ok("a\ninserted\nb\n".into())
        );
    }

    #[test]
    fn new_file_from_dev_null_is_created() {
        let files = diff("--- /dev/null\n+++ b/new.py\n@@ -0,0 +1,2 @@\n+a\n+b\n");
        assert_eq!(files[0].path.as_deref(), Some("new.py"));
        assert_eq!(apply("", &files[0].hunks), Ok("a\nb\n".into()));
    }
}
