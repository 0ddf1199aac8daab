//! Finding a function's definition by name and replacing it: by indentation for Python, by
//! brace matching for JavaScript, TypeScript, Rust and other C-like languages.
//!
//! The brace scanner skips strings and comments well enough for ordinary handler code; it is
//! not a parser, and a definition it cannot delimit is reported, never guessed at.

use crate::matching::{Lines, indent_of};
use std::ops::Range;

/// How a language delimits a function's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    /// Python: the body is every following line indented deeper than the `def`.
    Indent,
    /// Braces; `rust` makes `'` a lifetime unless it closes a one-character literal.
    Braces { rust: bool },
}

/// The style for a file, from its extension; `None` for languages this crate cannot delimit.
pub(crate) fn style_for(path: &str) -> Option<Style> {
    let ext = path
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())?;
    match ext.as_str() {
        "py" | "pyw" | "pyi" => Some(Style::Indent),
        "rs" => Some(Style::Braces { rust: true }),
        "js" | "mjs" | "cjs" | "jsx" | "ts" | "mts" | "cts" | "tsx" | "go" | "java" | "c"
        | "cc" | "cpp" | "h" | "hpp" | "cs" | "php" | "kt" | "swift" | "scala" => {
            Some(Style::Braces { rust: false })
        }
        _ => None,
    }
}

/// The function name when `line` begins a definition: `def f(`, `async def f(`,
/// `function f(`, `export async function f(`, `const f = (`…`) =>`, `pub fn f(`, `func f(`.
pub(crate) fn def_name(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    for prefix in [
        "export ",
        "default ",
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "async ",
        "unsafe ",
    ] {
        rest = rest
            .strip_prefix(prefix)
            .map(str::trim_start)
            .unwrap_or(rest);
        rest = rest
            .strip_prefix("async ")
            .map(str::trim_start)
            .unwrap_or(rest);
    }
    for keyword in ["def ", "function ", "function* ", "fn ", "func "] {
        if let Some(after) = rest.strip_prefix(keyword) {
            let after = after.trim_start();
            let name = ident_prefix(after)?;
            let next = after[name.len()..].trim_start();
            return (next.starts_with('(') || next.starts_with('<')).then_some(name);
        }
    }
    for keyword in ["const ", "let ", "var "] {
        if let Some(after) = rest.strip_prefix(keyword) {
            return arrow_binding(after.trim_start());
        }
    }
    None
}

/// `f = (a) => …`, `f = async function (…)`, `f: Handler = async (p) => {`.
fn arrow_binding(text: &str) -> Option<&str> {
    let name = ident_prefix(text)?;
    let (_, value) = text[name.len()..].split_once('=')?;
    let value = value.trim_start();
    let value = value
        .strip_prefix("async")
        .map(str::trim_start)
        .unwrap_or(value);
    let is_function = value.starts_with("function") || value.contains("=>");
    (!value.starts_with('=') && is_function).then_some(name)
}

fn ident_prefix(text: &str) -> Option<&str> {
    let end = text
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '$'))
        .map_or(text.len(), |(at, _)| at);
    let name = &text[..end];
    let starts_ok = name.chars().next().is_some_and(|c| !c.is_ascii_digit());
    starts_ok.then_some(name)
}

/// Why a function could not be located.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FindMiss {
    /// No definition with that name.
    NotFound,
    /// This many definitions with that name.
    Ambiguous(usize),
    /// The definition was found but its end was not (unbalanced braces, say).
    Unterminated,
}

/// The lines of the one definition of `name`, decorators and attributes included.
pub(crate) fn find(lines: &[String], name: &str, style: Style) -> Result<Range<usize>, FindMiss> {
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| def_name(&lines[i]) == Some(name))
        .collect();
    let start = match starts.as_slice() {
        [] => return Err(FindMiss::NotFound),
        [only] => *only,
        many => return Err(FindMiss::Ambiguous(many.len())),
    };
    let end = end_of(lines, start, style).ok_or(FindMiss::Unterminated)?;
    Ok(leading_attributes(lines, start)..end)
}

/// Extends a definition upwards over decorators (`@x`) and attributes (`#[x]`).
fn leading_attributes(lines: &[String], start: usize) -> usize {
    let indent = indent_of(&lines[start]);
    let mut first = start;
    while first > 0 {
        let line = &lines[first - 1];
        let text = line.trim_start();
        let same_level = indent_of(line) == indent;
        if !(same_level && (text.starts_with('@') || text.starts_with("#["))) {
            break;
        }
        first -= 1;
    }
    first
}

/// The line index just past the definition starting at `start`.
fn end_of(lines: &[String], start: usize, style: Style) -> Option<usize> {
    match style {
        Style::Indent => indent_end(lines, start),
        Style::Braces { rust } => brace_end(lines, start, rust),
    }
}

fn indent_end(lines: &[String], start: usize) -> Option<usize> {
    let header_end = python_header_end(lines, start)?;
    let depth = indent_of(&lines[start]).len();
    let mut end = header_end + 1;
    let mut at = end;
    while at < lines.len() {
        let line = &lines[at];
        if line.trim().is_empty() {
            at += 1;
            continue;
        }
        if indent_of(line).len() <= depth {
            break;
        }
        at += 1;
        end = at;
    }
    Some(end)
}

/// The line that ends a `def` header (the `:` after the parameters, which may span lines).
fn python_header_end(lines: &[String], start: usize) -> Option<usize> {
    let mut depth: i32 = 0;
    for (at, line) in lines.iter().enumerate().skip(start) {
        for ch in line.chars() {
            match ch {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            }
        }
        let code = line.split('#').next().unwrap_or_default().trim_end();
        if depth <= 0 && code.ends_with(':') {
            return Some(at);
        }
    }
    None
}

fn brace_end(lines: &[String], start: usize, rust: bool) -> Option<usize> {
    let mut scanner = BraceScanner::new(rust);
    for (at, line) in lines.iter().enumerate().skip(start) {
        if scanner.line(line) {
            return Some(at + 1);
        }
    }
    None
}

/// Tracks brace depth across lines, skipping strings and comments.
struct BraceScanner {
    rust: bool,
    depth: i32,
    parens: i32,
    opened: bool,
    in_block_comment: bool,
    in_template: bool,
}

impl BraceScanner {
    fn new(rust: bool) -> BraceScanner {
        BraceScanner {
            rust,
            depth: 0,
            parens: 0,
            opened: false,
            in_block_comment: false,
            in_template: false,
        }
    }

    /// Feeds one line; true once the definition has ended on it.
    fn line(&mut self, line: &str) -> bool {
        let chars: Vec<char> = line.chars().collect();
        let mut at = 0;
        while at < chars.len() {
            at = self.step(&chars, at);
            if self.opened && self.depth == 0 {
                return true;
            }
        }
        // `const f = (a) => a + 1;` has no braces: it ends at the semicolon.
        !self.opened && self.parens <= 0 && !self.in_template && line.trim_end().ends_with(';')
    }

    /// Looks at the character at `at`; returns where to look next.
    fn step(&mut self, chars: &[char], at: usize) -> usize {
        let ch = chars[at];
        let next = chars.get(at + 1).copied();
        if self.in_block_comment {
            if ch == '*' && next == Some('/') {
                self.in_block_comment = false;
                return at + 2;
            }
            return at + 1;
        }
        if self.in_template {
            if ch == '`' {
                self.in_template = false;
            }
            return at + 1 + usize::from(ch == '\\');
        }
        match (ch, next) {
            ('/', Some('/')) => chars.len(),
            ('/', Some('*')) => {
                self.in_block_comment = true;
                at + 2
            }
            ('"', _) => skip_string(chars, at, '"'),
            ('\'', _) if !self.rust => skip_string(chars, at, '\''),
            ('\'', _) => skip_rust_char(chars, at),
            ('`', _) if !self.rust => {
                self.in_template = true;
                at + 1
            }
            _ => {
                self.count(ch);
                at + 1
            }
        }
    }

    fn count(&mut self, ch: char) {
        match ch {
            '{' => {
                self.depth += 1;
                self.opened = true;
            }
            '}' => self.depth -= 1,
            '(' => self.parens += 1,
            ')' => self.parens -= 1,
            _ => {}
        }
    }
}

/// The index after a string that opens at `at`; strings do not span lines here.
fn skip_string(chars: &[char], at: usize, quote: char) -> usize {
    let mut i = at + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// `'x'` and `'\n'` are character literals; any other `'` starts a lifetime.
fn skip_rust_char(chars: &[char], at: usize) -> usize {
    match (chars.get(at + 1), chars.get(at + 2), chars.get(at + 3)) {
        (Some('\\'), _, _) => skip_string(chars, at, '\''),
        (Some(_), Some('\''), _) => at + 3,
        _ => at + 1,
    }
}

/// The name of the function when `content` is one definition and nothing else (leading
/// comments, decorators and blank lines aside).
pub(crate) fn sole_function(content: &str, style: Style) -> Option<String> {
    let lines = Lines::parse(content).lines;
    let first = lines.iter().position(|line| !is_preamble(line))?;
    let name = def_name(&lines[first])?;
    let min_indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent_of(l).len())
        .min()?;
    if indent_of(&lines[first]).len() != min_indent {
        return None;
    }
    let end = end_of(&lines, first, style)?;
    let rest_is_empty = lines[end..]
        .iter()
        .all(|line| is_preamble(line) && !is_decorator(line));
    rest_is_empty.then(|| name.to_owned())
}

/// Blank lines, comments and decorators, which may precede a definition.
fn is_preamble(line: &str) -> bool {
    let text = line.trim();
    text.is_empty() || is_comment(text) || is_decorator(line)
}

fn is_decorator(line: &str) -> bool {
    let text = line.trim_start();
    text.starts_with('@') || text.starts_with("#[")
}

fn is_comment(text: &str) -> bool {
    ["#", "//", "/*", "*", "*/"]
        .iter()
        .any(|m| text.starts_with(m))
        && !text.starts_with("#[")
}

/// Replaces the definition of `name` in `source` with `content`, re-indented to where the old
/// definition sat. Comment lines right above the old definition are replaced too when the new
/// content brings its own leading comments, so doc comments are not doubled.
pub(crate) fn replace(
    source: &str,
    name: &str,
    content: &str,
    style: Style,
) -> Result<String, FindMiss> {
    let mut file = Lines::parse(source);
    let mut range = find(&file.lines, name, style)?;
    let new = Lines::parse(content).lines;
    let new_has_comments = new
        .iter()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| is_comment(l.trim()));
    if new_has_comments {
        while range.start > 0 && is_comment(file.lines[range.start - 1].trim()) {
            range.start -= 1;
        }
    }

    let target = indent_of(&file.lines[range.start]).to_owned();
    let new_refs: Vec<&str> = trim_blank_edges(&new);
    let from = new_refs
        .iter()
        .find(|l| !l.trim().is_empty())
        .map_or("", |l| indent_of(l));
    let replacement = crate::matching::reindent(&new_refs, from, &target);
    file.lines.splice(range, replacement);
    Ok(file.render())
}

fn trim_blank_edges(lines: &[String]) -> Vec<&str> {
    let first = lines
        .iter()
        .position(|l| !l.trim().is_empty())
        .unwrap_or(lines.len());
    let last = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(first, |at| at + 1);
    lines[first..last].iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        Lines::parse(text).lines
    }

    #[test]
    fn definitions_are_named() {
        assert_eq!(def_name("def handle(payload):"), Some("handle"));
        assert_eq!(def_name("    async def handle(self, p):"), Some("handle"));
        assert_eq!(
            def_name("export async function handle(job) {"),
            Some("handle")
        );
        assert_eq!(def_name("const handle = async (job) => {"), Some("handle"));
        assert_eq!(
            def_name("export const handle: Handler = (job) => job.data;"),
            Some("handle")
        );
        assert_eq!(
            def_name("pub(crate) async fn handle(job: Job) -> Result<()> {"),
            Some("handle")
        );
        assert_eq!(def_name("fn parse<T>(x: T) {"), Some("parse"));
        assert_eq!(def_name("const LIMIT = 10;"), None);
        assert_eq!(def_name("defaults = {}"), None);
        assert_eq!(def_name("handle(payload)"), None);
    }

    #[test]
    fn python_function_ends_where_indentation_returns() {
        let src = lines(
            "import os\n\n@retry\ndef f(\n    a,\n):\n    x = 1\n\n    return x\n\n\ndef g():\n    pass\n",
        );
        assert_eq!(find(&src, "f", Style::Indent), Ok(2..9));
        assert_eq!(find(&src, "g", Style::Indent), Ok(11..13));
        assert_eq!(find(&src, "h", Style::Indent), Err(FindMiss::NotFound));
    }

    #[test]
    fn brace_function_ends_at_its_closing_brace() {
        let src = lines(
            "function f(a) {\n  const s = \"}\"; // }\n  if (a) { return `${a}}`; }\n}\nfunction g() {}\n",
        );
        assert_eq!(find(&src, "f", Style::Braces { rust: false }), Ok(0..4));
        assert_eq!(find(&src, "g", Style::Braces { rust: false }), Ok(4..5));
    }

    #[test]
    fn rust_lifetimes_and_char_literals_do_not_confuse_braces() {
        let src =
            lines("#[inline]\nfn f<'a>(s: &'a str) -> bool {\n    s.contains('{')\n}\nfn g() {}\n");
        assert_eq!(find(&src, "f", Style::Braces { rust: true }), Ok(0..4));
    }

    #[test]
    fn arrow_function_without_braces_ends_at_semicolon() {
        let src = lines("const f = (a) =>\n  a + 1;\nconst g = 2;\n");
        assert_eq!(find(&src, "f", Style::Braces { rust: false }), Ok(0..2));
    }

    #[test]
    fn duplicate_definitions_are_ambiguous() {
        let src = lines("def f():\n    pass\nclass A:\n    def f(self):\n        pass\n");
        assert_eq!(find(&src, "f", Style::Indent), Err(FindMiss::Ambiguous(2)));
    }

    #[test]
    fn sole_function_requires_nothing_else() {
        assert_eq!(
            sole_function("# fixed\ndef f(p):\n    return p\n", Style::Indent),
            Some("f".into())
        );
        assert_eq!(
            sole_function("import os\ndef f(p):\n    return p\n", Style::Indent),
            None
        );
        assert_eq!(
            sole_function("def f():\n    pass\ndef g():\n    pass\n", Style::Indent),
            None
        );
        assert_eq!(sole_function("x = 1\n", Style::Indent), None);
    }

    #[test]
    fn method_is_replaced_at_its_own_indentation() {
        let src =
            "class A:\n    def f(self):\n        return 1\n\n    def g(self):\n        return 2\n";
        let out = replace(src, "f", "def f(self):\n    return 10\n", Style::Indent);
        let expected =
            "class A:\n    def f(self):\n        return 10\n\n    def g(self):\n        return 2\n";
        assert_eq!(out, Ok(expected.into()));
    }
}
