//! SEARCH/REPLACE blocks in aider's shape: reading them out of a reply and applying one to a
//! file's text. A search must match exactly one place; whitespace differences are forgiven
//! only when the exact text is nowhere in the file.

use crate::matching::{self, Lines, Miss};

/// The longest marker run accepted (`<<<<<<<` is seven; models add or drop a few).
const MARKER_RANGE: std::ops::RangeInclusive<usize> = 5..=9;

/// Which SEARCH/REPLACE marker a line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    /// `<<<<<<< SEARCH`
    Search,
    /// `=======`
    Divider,
    /// `>>>>>>> REPLACE`
    Replace,
}

/// Recognises a marker line, tolerating a few extra or missing marker characters.
pub(crate) fn marker(line: &str) -> Option<Marker> {
    let text = line.trim();
    let run = |ch: char| text.chars().take_while(|c| *c == ch).count();
    let (ch, kind) = match text.chars().next()? {
        '<' => ('<', Marker::Search),
        '=' => ('=', Marker::Divider),
        '>' => ('>', Marker::Replace),
        _ => return None,
    };
    let count = run(ch);
    if !MARKER_RANGE.contains(&count) {
        return None;
    }
    let word = text[count..].trim().to_ascii_uppercase();
    let word_ok = match kind {
        Marker::Search => matches!(word.as_str(), "SEARCH" | "ORIGINAL" | "HEAD"),
        Marker::Divider => word.is_empty(),
        Marker::Replace => matches!(word.as_str(), "" | "REPLACE" | "UPDATED"),
    };
    word_ok.then_some(kind)
}

/// One SEARCH/REPLACE block as read from the reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    /// The nearest non-blank line before the SEARCH marker within the same run of lines,
    /// which is where aider puts the file name.
    pub line_before: Option<String>,
    /// The search text, each line ending in `\n`.
    pub search: String,
    /// The replacement text, each line ending in `\n`.
    pub replace: String,
    /// False when the block was cut off before its end.
    pub complete: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Outside,
    Search,
    Replace,
}

/// Reads every SEARCH/REPLACE block from `lines`. When `closed` (the lines were a whole
/// fence), a block whose REPLACE marker is missing ends at the closing fence instead of
/// counting as cut off.
pub(crate) fn parse_blocks(lines: &[&str], closed: bool) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut state = State::Outside;
    let mut before: Option<&str> = None;
    let mut search: Vec<&str> = Vec::new();
    let mut replace: Vec<&str> = Vec::new();
    let mut line_before: Option<String> = None;

    for line in lines {
        match (state, marker(line)) {
            (State::Outside, Some(Marker::Search)) => {
                line_before = before.map(str::to_owned);
                state = State::Search;
            }
            (State::Outside, _) => {
                if !line.trim().is_empty() {
                    before = Some(line);
                }
            }
            (State::Search, Some(Marker::Divider)) => state = State::Replace,
            (State::Search, _) => search.push(line),
            (State::Replace, Some(Marker::Replace)) => {
                blocks.push(block(line_before.take(), &mut search, &mut replace, true));
                before = None;
                state = State::Outside;
            }
            // A new SEARCH before the end marker: the model dropped `>>>>>>> REPLACE`.
            (State::Replace, Some(Marker::Search)) => {
                let previous = line_before.clone();
                blocks.push(block(line_before.take(), &mut search, &mut replace, true));
                line_before = previous;
                state = State::Search;
            }
            (State::Replace, _) => replace.push(line),
        }
    }

    match state {
        State::Outside => {}
        State::Replace if closed => {
            blocks.push(block(line_before, &mut search, &mut replace, true))
        }
        State::Search | State::Replace => {
            blocks.push(block(line_before, &mut search, &mut replace, false));
        }
    }
    blocks
}

fn block(
    line_before: Option<String>,
    search: &mut Vec<&str>,
    replace: &mut Vec<&str>,
    complete: bool,
) -> Block {
    Block {
        line_before,
        search: join_lines(&std::mem::take(search)),
        replace: join_lines(&std::mem::take(replace)),
        complete,
    }
}

fn join_lines(lines: &[&str]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// Why a search did not land in exactly one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SearchMiss {
    /// Nowhere, even ignoring whitespace.
    NotFound,
    /// In this many places.
    Ambiguous(usize),
    /// An empty search names no place in a file that already has content.
    EmptySearch,
}

/// Applies one search and replace to `content`.
pub(crate) fn apply_replace(
    content: &str,
    search: &str,
    replace: &str,
) -> Result<String, SearchMiss> {
    if search.trim().is_empty() {
        return if content.trim().is_empty() {
            Ok(replace.to_owned())
        } else {
            Err(SearchMiss::EmptySearch)
        };
    }

    let exact = content.match_indices(search).take(2).count();
    if exact == 1 {
        return Ok(content.replacen(search, replace, 1));
    }

    // Either the text is in several places (a whole-line match may still single one out) or
    // it differs in whitespace: both are settled line by line.
    let mut file = Lines::parse(content);
    let needle_owned = Lines::parse(search).lines;
    let needle: Vec<&str> = needle_owned.iter().map(String::as_str).collect();
    let replacement_owned = Lines::parse(replace).lines;
    let replacement: Vec<&str> = replacement_owned.iter().map(String::as_str).collect();

    let found = matching::find_block(&file.lines, &needle, None).map_err(|miss| match miss {
        Miss::NotFound => SearchMiss::NotFound,
        Miss::Ambiguous(count) => SearchMiss::Ambiguous(count),
    })?;
    matching::splice(&mut file.lines, found, &needle, &replacement);
    Ok(file.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_tolerate_small_variations() {
        assert_eq!(marker("<<<<<<< SEARCH"), Some(Marker::Search));
        assert_eq!(marker("  <<<<<<<SEARCH  "), Some(Marker::Search));
        assert_eq!(marker("======="), Some(Marker::Divider));
        assert_eq!(marker(">>>>>>> REPLACE"), Some(Marker::Replace));
        assert_eq!(marker(">>>>>>>"), Some(Marker::Replace));
        assert_eq!(marker("<<< SEARCH"), None);
        assert_eq!(marker("==== title ===="), None);
    }

    #[test]
    fn blocks_are_read_with_the_line_before_them() {
        let lines = [
            "handlers/signup.py",
            "<<<<<<< SEARCH",
            "    email = payload[\"email\"]",
            "=======",
            "    email = payload.get(\"email\")",
            ">>>>>>> REPLACE",
        ];
        let blocks = parse_blocks(&lines, false);
        assert_eq!(
            blocks,
            vec![Block {
                line_before: Some("handlers/signup.py".into()),
                search: "    email = payload[\"email\"]\n".into(),
                replace: "    email = payload.get(\"email\")\n".into(),
                complete: true,
            }]
        );
    }

    #[test]
    fn block_without_end_marker_is_cut_off_unless_fence_closed() {
        let lines = ["<<<<<<< SEARCH", "a", "=======", "b"];
        assert!(!parse_blocks(&lines, false)[0].complete);
        assert!(parse_blocks(&lines, true)[0].complete);
    }

    #[test]
    fn exact_search_is_replaced_once() {
        let out = apply_replace("a = 1\nb = 2\n", "b = 2\n", "b = 3\n");
        assert_eq!(out, Ok("a = 1\nb = 3\n".into()));
    }

    #[test]
    fn substring_in_two_places_is_settled_by_whole_lines() {
        let out = apply_replace("x = 1\nmax = 1\n", "x = 1\n", "x = 2\n");
        assert_eq!(out, Ok("x = 2\nmax = 1\n".into()));
    }

    #[test]
    fn search_with_wrong_indentation_is_reindented() {
        let content = "def f(p):\n    if p:\n        return p[\"a\"]\n";
        let out = apply_replace(
            content,
            "if p:\n    return p[\"a\"]\n",
            "if p:\n    return p.get(\"a\")\n",
        );
        assert_eq!(
            out,
            Ok("def f(p):\n    if p:\n        return p.get(\"a\")\n".into())
        );
    }

    #[test]
    fn missing_and_repeated_searches_are_misses() {
        assert_eq!(
            apply_replace("a\n", "b\n", "c\n"),
            Err(SearchMiss::NotFound)
        );
        assert_eq!(
            apply_replace("a\na\n", "a\n", "c\n"),
            Err(SearchMiss::Ambiguous(2))
        );
        assert_eq!(
            apply_replace("a\n", "\n", "c\n"),
            Err(SearchMiss::EmptySearch)
        );
        assert_eq!(apply_replace("", "", "new\n"), Ok("new\n".into()));
    }
}
