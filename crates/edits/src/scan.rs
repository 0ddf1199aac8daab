//! Splits a reply into prose lines, fenced blocks, bare SEARCH/REPLACE blocks and bare
//! unified diffs, in one pass over its lines.
//!
//! The pass is linear in the reply's size and stops at [`MAX_BLOCKS`] blocks, so a reply of
//! thousands of fences is refused before any of them is looked at closely.

use crate::search::{self, Marker};

/// The most blocks (fences, bare SEARCH/REPLACE blocks, bare diffs) one reply may hold.
pub(crate) const MAX_BLOCKS: usize = 256;

/// One piece of a reply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    /// A line outside every block.
    Prose(&'a str),
    /// A fenced block.
    Fence(Fence<'a>),
    /// SEARCH/REPLACE lines outside any fence, from the SEARCH marker on.
    SearchReplace {
        /// The lines, markers included.
        lines: Vec<&'a str>,
    },
    /// A unified diff outside any fence.
    Diff {
        /// The lines, headers included.
        lines: Vec<&'a str>,
    },
}

/// A fenced block.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fence<'a> {
    /// The text after the opening fence, trimmed.
    pub info: &'a str,
    /// The lines between the fences, with the opening fence's indentation removed.
    pub lines: Vec<&'a str>,
    /// False when the reply ended (or another fence opened) before this one closed.
    pub closed: bool,
}

/// Scanning stopped because the reply holds too many blocks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooManyBlocks;

/// Splits `text` (with `\n` line endings) into items.
pub(crate) fn scan(text: &str) -> Result<Vec<Item<'_>>, TooManyBlocks> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut items = Vec::new();
    let mut blocks = 0;
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at];
        let (item, next) = if let Some(open) = fence_open(line) {
            read_fence(&lines, at, &open)
        } else if search::marker(line) == Some(Marker::Search) {
            read_bare_search_replace(&lines, at)
        } else if diff_starts(&lines, at) {
            read_bare_diff(&lines, at)
        } else {
            items.push(Item::Prose(line));
            at += 1;
            continue;
        };
        blocks += 1;
        if blocks > MAX_BLOCKS {
            return Err(TooManyBlocks);
        }
        items.push(item);
        at = next;
    }
    Ok(items)
}

/// An opening fence: its character, length, indentation and info string.
struct Open<'a> {
    ch: char,
    len: usize,
    indent: usize,
    info: &'a str,
}

fn fence_open(line: &str) -> Option<Open<'_>> {
    let trimmed = line.trim_start();
    let ch = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = trimmed.chars().take_while(|c| *c == ch).count();
    if len < 3 {
        return None;
    }
    let info = trimmed[len..].trim();
    // A backtick in the info string means inline code such as ```x = 1```, not a fence.
    if ch == '`' && info.contains('`') {
        return None;
    }
    let indent = line.len() - trimmed.len();
    Some(Open {
        ch,
        len,
        indent,
        info,
    })
}

fn closes(line: &str, open: &Open<'_>) -> bool {
    let trimmed = line.trim();
    trimmed.len() >= open.len && trimmed.chars().all(|c| c == open.ch)
}

/// Reads a fence from its opening line; returns it and the index of the line after it.
fn read_fence<'a>(lines: &[&'a str], start: usize, open: &Open<'a>) -> (Item<'a>, usize) {
    let mut body = Vec::new();
    let mut in_search = false;
    let mut at = start + 1;
    while at < lines.len() {
        let line = lines[at];
        match search::marker(line) {
            Some(Marker::Search) => in_search = true,
            Some(Marker::Divider | Marker::Replace) => in_search = false,
            None => {}
        }
        // A fence line inside a SEARCH section is file content (a Markdown file being edited).
        if !in_search && closes(line, open) {
            return (fence(open, body, true), at + 1);
        }
        // Models often forget to close a block before opening the next one; an opener with a
        // language at the same length is taken as that, leaving this block unclosed.
        if !in_search && reopens(line, open) {
            return (fence(open, body, false), at);
        }
        body.push(dedent(line, open.indent));
        at += 1;
    }
    (fence(open, body, false), at)
}

fn reopens(line: &str, open: &Open<'_>) -> bool {
    fence_open(line)
        .is_some_and(|next| next.ch == open.ch && next.len == open.len && !next.info.is_empty())
}

fn fence<'a>(open: &Open<'a>, lines: Vec<&'a str>, closed: bool) -> Item<'a> {
    Item::Fence(Fence {
        info: open.info,
        lines,
        closed,
    })
}

fn dedent(line: &str, indent: usize) -> &str {
    let spaces = line.len() - line.trim_start_matches(' ').len();
    &line[spaces.min(indent)..]
}

/// Reads SEARCH/REPLACE lines outside a fence up to the end marker (or the end of the reply).
fn read_bare_search_replace<'a>(lines: &[&'a str], start: usize) -> (Item<'a>, usize) {
    let mut at = start;
    while at < lines.len() {
        let is_end = search::marker(lines[at]) == Some(Marker::Replace);
        at += 1;
        if is_end {
            break;
        }
    }
    let item = Item::SearchReplace {
        lines: lines[start..at].to_vec(),
    };
    (item, at)
}

/// A bare diff starts with `diff --git` or with a `---` line directly followed by `+++`.
fn diff_starts(lines: &[&str], at: usize) -> bool {
    let line = lines[at];
    if line.starts_with("diff --git ") {
        return true;
    }
    let next = lines.get(at + 1).copied().unwrap_or_default();
    line.starts_with("--- ") && next.starts_with("+++ ")
}

/// Reads a bare diff for as long as its lines look like diff lines. A blank line ends it
/// unless the next line carries on a hunk (a list item `- like this` after a blank line is
/// prose, not a removed line).
fn read_bare_diff<'a>(lines: &[&'a str], start: usize) -> (Item<'a>, usize) {
    let mut at = start;
    while at < lines.len() {
        let line = lines[at];
        let keep = if line.is_empty() {
            lines
                .get(at + 1)
                .is_some_and(|next| continues_after_blank(next))
        } else {
            is_diff_line(line)
        };
        if !keep {
            break;
        }
        at += 1;
    }
    let item = Item::Diff {
        lines: lines[start..at].to_vec(),
    };
    (item, at)
}

fn is_diff_line(line: &str) -> bool {
    const HEADERS: [&str; 10] = [
        "diff --git ",
        "index ",
        "new file mode",
        "deleted file mode",
        "old mode",
        "new mode",
        "similarity index",
        "rename from",
        "rename to",
        "@@",
    ];
    line.starts_with([' ', '+', '-', '\\']) || HEADERS.iter().any(|h| line.starts_with(h))
}

fn continues_after_blank(next: &str) -> bool {
    let removal = next.starts_with('-') && !next.starts_with("- ");
    removal
        || next.starts_with([' ', '+'])
        || next.starts_with("@@")
        || next.starts_with("diff --git ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fences(text: &str) -> Vec<Fence<'_>> {
        let items = scan(text).expect("scan");
        let only = items.into_iter().filter_map(|item| match item {
            Item::Fence(fence) => Some(fence),
            _ => None,
        });
        only.collect()
    }

    #[test]
    fn closed_and_unclosed_fences_are_told_apart() {
        let found = fences("Fix:\n```python\nx = 1\n```\nand\n```py\ny = 2\n");
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[0].info, found[0].closed, found[0].lines.clone()),
            ("python", true, vec!["x = 1"])
        );
        assert_eq!((found[1].info, found[1].closed), ("py", false));
    }

    #[test]
    fn longer_fence_holds_a_shorter_one() {
        let found = fences("````markdown\n```python\nx\n```\n````\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].lines, vec!["```python", "x", "```"]);
    }

    #[test]
    fn indented_fence_content_is_dedented() {
        let found = fences("1. Change it:\n   ```python\n   def f():\n       pass\n   ```\n");
        assert_eq!(found[0].lines, vec!["def f():", "    pass"]);
    }

    #[test]
    fn opener_inside_an_open_fence_starts_a_new_block() {
        let found = fences("```python\nx = 1\n```python\ny = 2\n```\n");
        assert_eq!(found.len(), 2);
        assert!(!found[0].closed);
        assert!(found[1].closed);
    }

    #[test]
    fn bare_diff_stops_before_a_bullet_list() {
        let text = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n\n- Changed a to b\n";
        let items = scan(text).expect("scan");
        let Item::Diff { lines } = &items[0] else {
            panic!("expected a diff, got {items:?}");
        };
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn too_many_fences_stop_the_scan() {
        let text = "```\nx\n```\n".repeat(MAX_BLOCKS + 1);
        assert_eq!(scan(&text), Err(TooManyBlocks));
    }
}
