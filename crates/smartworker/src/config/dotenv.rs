//! A parser for `.env` files in the dialect the Bun system read.
//!
//! Supported: `KEY=VALUE`, an optional `export ` prefix, blank lines, `#` comment lines, a ` #`
//! comment after an unquoted value, and values in double quotes (with `\n`, `\r`, `\t`, `\"`,
//! `\\` escapes), single quotes or backticks (taken literally); quoted values may span lines.
//! Not supported: `${VAR}` expansion, which is kept as written.

/// One assignment, with the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A line that is not an assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Parses a whole file.
pub(crate) fn parse(text: &str) -> Result<Vec<Entry>, SyntaxError> {
    let mut entries = Vec::new();
    let mut pos = 0;
    let mut line = 1;
    while pos < text.len() {
        let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
        let current = text[pos..line_end].trim();
        let mut end = (line_end + 1).min(text.len());
        if !current.is_empty() && !current.starts_with('#') {
            let (key, value_text) = split_assignment(current).ok_or_else(|| SyntaxError {
                line,
                message: format!("expected KEY=VALUE, found {current:?}"),
            })?;

            // `value_text` runs to the end of the line (less trailing blanks), so its offset in
            // the file follows from the line's trimmed end.
            let value_start = pos + (text[pos..line_end].trim_end().len() - value_text.len());
            let (value, value_end) = read_value(text, value_start, line_end, line, key)?;
            entries.push(Entry {
                key: key.to_owned(),
                value,
                line,
            });
            end = value_end;
        }
        line += text[pos..end].matches('\n').count();
        pos = end;
    }
    Ok(entries)
}

/// Splits `[export ]KEY = rest` into the key and the trimmed rest.
fn split_assignment(line: &str) -> Option<(&str, &str)> {
    let body = match line.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => line,
    };
    let (key, value) = body.split_once('=')?;
    let key = key.trim_end();
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((key, value.trim_start()))
}

/// Reads the value starting at byte `start`; returns it and the offset just past its last line.
fn read_value(
    text: &str,
    start: usize,
    line_end: usize,
    line: usize,
    key: &str,
) -> Result<(String, usize), SyntaxError> {
    let quote = text[start..]
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '\'' | '`'));
    let Some(quote) = quote else {
        let value = strip_comment(&text[start..line_end]).trim_end().to_owned();
        return Ok((value, (line_end + 1).min(text.len())));
    };

    let unterminated = || SyntaxError {
        line,
        message: format!("{key}: the value's opening {quote} is never closed"),
    };
    let body_start = start + quote.len_utf8();
    let (value, close) = if quote == '"' {
        unescape_until_quote(&text[body_start..]).ok_or_else(unterminated)?
    } else {
        let close = text[body_start..].find(quote).ok_or_else(unterminated)?;
        (text[body_start..body_start + close].to_owned(), close)
    };

    // Only blanks or a comment may follow the closing quote on its line.
    let after = body_start + close + quote.len_utf8();
    let after_end = text[after..].find('\n').map_or(text.len(), |i| after + i);
    let trailing = text[after..after_end].trim();
    if !trailing.is_empty() && !trailing.starts_with('#') {
        let closing_line = line + text[start..after].matches('\n').count();
        return Err(SyntaxError {
            line: closing_line,
            message: format!("{key}: unexpected {trailing:?} after the closing {quote}"),
        });
    }
    Ok((value, (after_end + 1).min(text.len())))
}

/// Cuts a ` #` comment off an unquoted value; a `#` inside a word (`a#b`) is kept.
fn strip_comment(value: &str) -> &str {
    let mut previous_blank = true;
    for (i, c) in value.char_indices() {
        if c == '#' && previous_blank {
            return &value[..i];
        }
        previous_blank = c == ' ' || c == '\t';
    }
    value
}

/// Reads a double-quoted body up to its closing quote; returns the value and the quote's offset.
fn unescape_until_quote(body: &str) -> Option<(String, usize)> {
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, i)),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                'r' => value.push('\r'),
                't' => value.push('\t'),
                escaped @ ('"' | '\\') => value.push(escaped),
                other => {
                    value.push('\\');
                    value.push(other);
                }
            },
            _ => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    fn check(text: &str, expect: Expect) {
        let shown = match parse(text) {
            Ok(entries) => entries
                .iter()
                .map(|e| format!("{}: {} = {:?}\n", e.line, e.key, e.value))
                .collect::<String>(),
            Err(e) => format!("error at line {}: {}\n", e.line, e.message),
        };
        expect.assert_eq(&shown);
    }

    #[test]
    fn plain_assignments_comments_and_export_are_read() {
        check(
            "# settings\n\nAPP_PORT=9191\nexport APP_HOST = 0.0.0.0 # all interfaces\n\
             \tAPP_LLM_MODEL=a#b\nEMPTY=\n",
            expect![[r#"
                3: APP_PORT = "9191"
                4: APP_HOST = "0.0.0.0"
                5: APP_LLM_MODEL = "a#b"
                6: EMPTY = ""
            "#]],
        );
    }

    #[test]
    fn quoted_values_keep_hashes_and_unescape_double_quotes() {
        check(
            "A=\"p#ss \\\"w\\\" \\n end\" # note\nB='lit \\n #x'\nC=`tick`\r\nD=\"\"\n",
            expect![[r#"
                1: A = "p#ss \"w\" \n end"
                2: B = "lit \\n #x"
                3: C = "tick"
                4: D = ""
            "#]],
        );
    }

    #[test]
    fn a_quoted_value_may_span_lines_and_later_lines_keep_their_numbers() {
        check(
            "KEY=\"-----BEGIN-----\nabc\n-----END-----\"\nNEXT=1\n",
            expect![[r#"
                1: KEY = "-----BEGIN-----\nabc\n-----END-----"
                4: NEXT = "1"
            "#]],
        );
    }

    #[test]
    fn a_line_without_an_equals_sign_is_refused_with_its_line() {
        check(
            "A=1\n\nnot an assignment\n",
            expect![[r#"
            error at line 3: expected KEY=VALUE, found "not an assignment"
        "#]],
        );
    }

    #[test]
    fn an_unclosed_quote_is_refused_at_its_opening_line() {
        check(
            "A=1\nB='open\nC=2\n",
            expect![[r#"
            error at line 2: B: the value's opening ' is never closed
        "#]],
        );
    }

    #[test]
    fn text_after_a_closing_quote_is_refused() {
        check(
            "A=\"x\" y\n",
            expect![[r#"
            error at line 1: A: unexpected "y" after the closing "
        "#]],
        );
    }

    #[test]
    fn a_key_with_a_bad_character_is_refused() {
        check(
            "APP-PORT=1\n",
            expect![[r#"
            error at line 1: expected KEY=VALUE, found "APP-PORT=1"
        "#]],
        );
    }
}
