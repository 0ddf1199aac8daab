//! Finding a run of lines inside a file the way a careful human would: exactly first, then
//! ignoring trailing whitespace, then ignoring indentation, and re-indenting the replacement
//! when only the indentation differed.
//!
//! Searches run as substring searches over joined lines, so their cost stays close to linear
//! in the size of the file whatever the model sends.

/// How many places a search counts before it stops: enough to tell one from many.
const MAX_MATCHES: usize = 64;

/// A file's text as lines without their endings, remembering whether it ended in a newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lines {
    /// The lines, without `\n`.
    pub lines: Vec<String>,
    /// Whether the text ended with `\n` (an empty text does not).
    pub trailing_newline: bool,
}

impl Lines {
    /// Splits `text` into lines.
    pub fn parse(text: &str) -> Lines {
        let trailing_newline = text.ends_with('\n');
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines = if text.is_empty() {
            Vec::new()
        } else {
            body.split('\n').map(str::to_owned).collect()
        };
        Lines {
            lines,
            trailing_newline,
        }
    }

    /// Joins the lines back into text.
    pub fn render(&self) -> String {
        let mut text = self.lines.join("\n");
        if self.trailing_newline && !self.lines.is_empty() {
            text.push('\n');
        }
        text
    }
}

/// How closely a found run of lines matched what was searched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fit {
    /// Every line equal.
    Exact,
    /// Equal once trailing whitespace is dropped.
    TrailingSpace,
    /// Equal once all surrounding whitespace is dropped; the replacement needs re-indenting.
    Indent,
}

/// Where a run of lines was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    /// Index of the first matched line.
    pub start: usize,
    /// How it matched.
    pub fit: Fit,
}

/// Why a run of lines was not found in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Miss {
    /// Nowhere, even ignoring whitespace.
    NotFound,
    /// In this many places (counted up to a cap), with no line hint to choose between them.
    Ambiguous(usize),
}

/// Finds `needle` in `hay` as whole lines. With several matches at the best fit, `hint` (a
/// 0-based line index) picks the nearest one; without a hint several matches are a miss.
pub(crate) fn find_block(
    hay: &[String],
    needle: &[&str],
    hint: Option<usize>,
) -> Result<Found, Miss> {
    if needle.is_empty() || needle.len() > hay.len() {
        return Err(Miss::NotFound);
    }
    for fit in [Fit::Exact, Fit::TrailingSpace, Fit::Indent] {
        let starts = match_starts(hay, needle, fit);
        match (starts.as_slice(), hint) {
            ([], _) => continue,
            ([start], _) => return Ok(Found { start: *start, fit }),
            (many, Some(hint)) => {
                let start = many
                    .iter()
                    .copied()
                    .min_by_key(|start| start.abs_diff(hint));
                return start
                    .map(|start| Found { start, fit })
                    .ok_or(Miss::NotFound);
            }
            (many, None) => return Err(Miss::Ambiguous(many.len())),
        }
    }
    Err(Miss::NotFound)
}

fn normalize(line: &str, fit: Fit) -> &str {
    match fit {
        Fit::Exact => line,
        Fit::TrailingSpace => line.trim_end(),
        Fit::Indent => line.trim(),
    }
}

/// Every line index where `needle` starts in `hay` under `fit`, up to [`MAX_MATCHES`].
fn match_starts(hay: &[String], needle: &[&str], fit: Fit) -> Vec<usize> {
    // Framing both texts in newlines makes a substring match a whole-line match.
    let hay_text = frame(hay.iter().map(|line| normalize(line, fit)));
    let needle_text = frame(needle.iter().map(|line| normalize(line, fit)));
    let newlines: Vec<usize> = hay_text.match_indices('\n').map(|(at, _)| at).collect();

    let mut starts = Vec::new();
    let mut from = 0;
    while starts.len() < MAX_MATCHES {
        let Some(found) = hay_text
            .get(from..)
            .and_then(|rest| rest.find(&needle_text))
        else {
            break;
        };
        let at = from + found;
        // The match begins at the newline before its first line, so that newline's rank is
        // the line's index.
        if let Ok(line) = newlines.binary_search(&at) {
            starts.push(line);
        }
        from = at + 1;
    }
    starts
}

fn frame<'a>(lines: impl Iterator<Item = &'a str>) -> String {
    let mut text = String::from("\n");
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// The leading whitespace of a line.
pub(crate) fn indent_of(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

/// Shifts `lines` by the difference between the indentation the model used (`from`) and the
/// indentation the file has at the same place (`to`).
pub(crate) fn reindent(lines: &[&str], from: &str, to: &str) -> Vec<String> {
    lines
        .iter()
        .map(|line| shift_line(line, from, to))
        .collect()
}

fn shift_line(line: &str, from: &str, to: &str) -> String {
    if line.trim().is_empty() || from == to {
        return (*line).to_owned();
    }
    if let Some(extra) = to.strip_prefix(from) {
        return format!("{extra}{line}");
    }
    if let Some(cut) = from.strip_prefix(to) {
        return line.strip_prefix(cut).unwrap_or(line).to_owned();
    }
    match line.strip_prefix(from) {
        Some(rest) => format!("{to}{rest}"),
        None => (*line).to_owned(),
    }
}

/// Replaces `hay[found.start..found.start + needle.len()]` with `replacement`, re-indenting it
/// when the match ignored indentation.
pub(crate) fn splice(hay: &mut Vec<String>, found: Found, needle: &[&str], replacement: &[&str]) {
    let end = found.start + needle.len();
    let new_lines = match found.fit {
        Fit::Indent => {
            let (from, to) = indent_pair(&hay[found.start..end], needle);
            reindent(replacement, from, to)
        }
        Fit::Exact | Fit::TrailingSpace => replacement.iter().map(|l| (*l).to_owned()).collect(),
    };
    hay.splice(found.start..end, new_lines);
}

/// The indentation of the first non-blank needle line and of the file line it matched.
fn indent_pair<'a>(matched: &'a [String], needle: &[&'a str]) -> (&'a str, &'a str) {
    let pair = needle
        .iter()
        .zip(matched)
        .find(|(line, _)| !line.trim().is_empty());
    match pair {
        Some((from, to)) => (indent_of(from), indent_of(to)),
        None => ("", ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        Lines::parse(text).lines
    }

    #[test]
    fn lines_round_trip_with_and_without_final_newline() {
        for text in ["", "a", "a\n", "a\n\nb\n", "\n"] {
            assert_eq!(Lines::parse(text).render(), text, "{text:?}");
        }
    }

    #[test]
    fn exact_match_wins_over_looser_ones() {
        let hay = lines("  x = 1\nx = 1\n");
        let found = find_block(&hay, &["x = 1"], None);
        assert_eq!(
            found,
            Ok(Found {
                start: 1,
                fit: Fit::Exact
            })
        );
    }

    #[test]
    fn indentation_differences_are_tolerated() {
        let hay = lines("def f():\n    if a:\n        return 1\n");
        let found = find_block(&hay, &["if a:", "    return 1"], None);
        assert_eq!(
            found,
            Ok(Found {
                start: 1,
                fit: Fit::Indent
            })
        );
    }

    #[test]
    fn several_matches_need_a_hint() {
        let hay = lines("a\nb\na\nb\n");
        assert_eq!(find_block(&hay, &["a", "b"], None), Err(Miss::Ambiguous(2)));
        let found = find_block(&hay, &["a", "b"], Some(3));
        assert_eq!(
            found,
            Ok(Found {
                start: 2,
                fit: Fit::Exact
            })
        );
    }

    #[test]
    fn overlapping_matches_are_counted() {
        let hay = lines("a\na\na\n");
        assert_eq!(find_block(&hay, &["a", "a"], None), Err(Miss::Ambiguous(2)));
    }

    #[test]
    fn partial_lines_do_not_match() {
        let hay = lines("max = 10\n");
        assert_eq!(find_block(&hay, &["x = 1"], None), Err(Miss::NotFound));
    }

    #[test]
    fn splice_reindents_an_indent_fit() {
        let mut hay = lines("class A:\n    def f(self):\n        return 1\n");
        let needle = ["def f(self):", "    return 1"];
        let found = find_block(&hay, &needle, None).expect("found");
        splice(&mut hay, found, &needle, &["def f(self):", "    return 2"]);
        assert_eq!(hay, lines("class A:\n    def f(self):\n        return 2\n"));
    }
}
