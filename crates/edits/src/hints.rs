//! Finding the file a block of the reply is meant for: fence info strings, label lines such
//! as `**src/x.py**` or `File: src/x.py`, first-line comments, and fence languages.
//!
//! Everything here is pure string inspection; a path found here is still untrusted and is
//! checked by `path::check_path` before anything is written.

/// What a fence's info string says: its language and, sometimes, its file.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FenceInfo {
    /// The language word, lowercased (`python`, `diff`), when there is one.
    pub lang: Option<String>,
    /// A path named in the info string (`path=x.py`, `title="x.py"`, `python:x.py`, `x.py`).
    pub path: Option<String>,
}

/// Keys that models use to put a file name in an info string.
const PATH_KEYS: [&str; 6] = ["path", "file", "filename", "filepath", "title", "name"];

/// Labels that precede a path on its own line (`File: x.py`), compared lowercased.
const LABELS: [&str; 9] = [
    "file path",
    "filepath",
    "filename",
    "file name",
    "updated file",
    "modified file",
    "fixed file",
    "file",
    "path",
];

/// File names without an extension that are still plainly files.
const BARE_NAMES: [&str; 7] = [
    "Makefile",
    "Dockerfile",
    "Procfile",
    "Gemfile",
    "Rakefile",
    "Justfile",
    "Containerfile",
];

/// Parses the text after the opening fence.
pub(crate) fn parse_info(info: &str) -> FenceInfo {
    let cleaned = info.replace(['{', '}'], " ");
    let mut found = FenceInfo::default();
    for (index, token) in split_info(&cleaned).into_iter().enumerate() {
        if let Some((key, value)) = token.split_once('=') {
            let key = key.trim().to_ascii_lowercase();
            let value = unquote(value.trim());
            if PATH_KEYS.contains(&key.as_str()) && looks_like_path(value) {
                found.path = Some(value.to_owned());
            }
            continue;
        }
        let token = unquote(&token).to_owned();
        if index == 0 {
            read_first_info_token(&token, &mut found);
        } else if found.path.is_none() && looks_like_path(&token) {
            found.path = Some(token);
        }
    }
    found
}

/// The first token is a language (`python`), a path (`src/x.py`) or both (`python:src/x.py`).
fn read_first_info_token(token: &str, found: &mut FenceInfo) {
    if let Some((lang, path)) = token.split_once(':')
        && is_word(lang)
        && looks_like_path(path)
    {
        found.lang = Some(lang.to_ascii_lowercase());
        found.path = Some(path.to_owned());
        return;
    }
    if is_word(token) && !looks_like_path(token) {
        found.lang = Some(token.to_ascii_lowercase());
        return;
    }
    if looks_like_path(token) {
        found.path = Some(token.to_owned());
    }
}

/// Splits on whitespace, keeping quoted values (`title="my file.py"`) in one token.
fn split_info(info: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for ch in info.chars() {
        match quote {
            Some(open) if ch == open => {
                quote = None;
                current.push(ch);
            }
            Some(_) => current.push(ch),
            None if ch == '"' || ch == '\'' => {
                quote = Some(ch);
                current.push(ch);
            }
            None if ch.is_whitespace() || ch == ',' => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            None => current.push(ch),
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\'', '`'] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

fn is_word(text: &str) -> bool {
    let mut chars = text.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    starts_with_letter && chars.all(|c| c.is_ascii_alphanumeric() || "+-_#".contains(c))
}

/// Whether a token reads as a file path: it has a separator, an extension, a dotfile name or
/// a well-known bare name. Hostile shapes (`/etc/passwd`, `C:\x`) count as paths on purpose,
/// so that they reach the path check and are refused with a reason instead of being ignored.
pub(crate) fn looks_like_path(token: &str) -> bool {
    if token.is_empty() || token.len() > 4096 || token.contains("://") {
        return false;
    }
    if token
        .chars()
        .any(|c| c.is_whitespace() || "`\"'<>|*?,;()[]{}".contains(c))
    {
        return false;
    }
    if token.contains(['/', '\\']) {
        let last = token.rsplit(['/', '\\']).next().unwrap_or_default();
        return !last.is_empty() && last.chars().any(|c| c.is_alphanumeric());
    }
    if BARE_NAMES.contains(&token) {
        return true;
    }
    has_extension(token)
}

/// `x.py`, `.env`, `.gitignore`: a dot followed by a short run with at least one letter.
fn has_extension(name: &str) -> bool {
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    let ext_ok = (1..=12).contains(&ext.len())
        && ext
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && ext.chars().any(|c| c.is_ascii_alphabetic());
    let stem_ok = stem.is_empty()
        || stem
            .chars()
            .all(|c| c.is_alphanumeric() || "._-+@".contains(c));
    ext_ok && stem_ok
}

/// A path from a line that is nothing but a path in some dress: `**x.py**`, `### x.py`,
/// `` `x.py`: ``, `File: x.py`, `- x.py`, or the bare `x.py` that aider puts before a fence.
pub(crate) fn path_from_label_line(line: &str) -> Option<String> {
    let mut text = line.trim();
    // Each round takes off one layer; eight is more dressing than any model uses.
    for _ in 0..8 {
        let next = strip_one_layer(text);
        if next == text {
            break;
        }
        text = next;
    }
    looks_like_path(text).then(|| text.to_owned())
}

fn strip_one_layer(text: &str) -> &str {
    let text = text.trim();
    if let Some(rest) = text.strip_suffix(':') {
        return rest;
    }
    for wrap in ["**", "__", "*", "`", "\"", "'"] {
        if let Some(inner) = text.strip_prefix(wrap).and_then(|t| t.strip_suffix(wrap))
            && !inner.is_empty()
        {
            return inner;
        }
    }
    if text.starts_with('#') {
        return text.trim_start_matches('#');
    }
    if let Some(rest) = strip_list_marker(text) {
        return rest;
    }
    strip_label(text).unwrap_or(text)
}

fn strip_list_marker(text: &str) -> Option<&str> {
    for marker in ["- ", "* ", "+ "] {
        if let Some(rest) = text.strip_prefix(marker) {
            return Some(rest);
        }
    }
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let rest = &text[digits..];
    rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") "))
}

fn strip_label(text: &str) -> Option<&str> {
    let lower = text.to_ascii_lowercase();
    for label in LABELS {
        let Some(rest) = lower.strip_prefix(label) else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(after_colon) = rest.strip_prefix(':') else {
            continue;
        };
        let start = text.len() - after_colon.len();
        return Some(&text[start..]);
    }
    None
}

/// Every path-like token in a sentence (`Here is the fixed \`x.py\`:`), punctuation removed.
pub(crate) fn paths_in_prose(line: &str) -> Vec<String> {
    let tokens = line.split(|c: char| c.is_whitespace() || c == '`' || c == '*');
    let cleaned = tokens.map(|token| {
        token
            .trim_start_matches(['(', '"', '\''])
            .trim_end_matches([':', ',', '.', ';', ')', '"', '\'', '!', '?'])
    });
    cleaned
        .filter(|token| looks_like_path(token))
        .map(str::to_owned)
        .collect()
}

/// A path from a first-line comment inside a block: `# x.py`, `// file: src/x.ts`,
/// `/* x.css */`, `<!-- x.html -->`, `-- x.sql`.
pub(crate) fn path_from_comment(line: &str) -> Option<String> {
    let text = line.trim();
    if text.starts_with("#!") || text.starts_with("#[") || text.starts_with("#include") {
        return None;
    }
    let body = ["//", "#", "--", "/*", "<!--", ";"]
        .iter()
        .find_map(|marker| text.strip_prefix(marker))?;
    let body = body.trim_end_matches("*/").trim_end_matches("-->").trim();
    let body = strip_label(body).unwrap_or(body).trim();
    let body = unquote(body);
    looks_like_path(body).then(|| body.to_owned())
}

/// Maps a path the model wrote onto one of the files it was shown, when that is unambiguous:
/// `signup.py` for `handlers/signup.py`, or `app/handlers/signup.py` for the same.
pub(crate) fn resolve_known(candidate: &str, known: &[String]) -> String {
    let trimmed = candidate.strip_prefix("./").unwrap_or(candidate);
    if known.iter().any(|file| file == trimmed) {
        return trimmed.to_owned();
    }
    // Only plain relative paths are mapped; anything odd goes to the path check as written.
    let plain = !trimmed.starts_with(['/', '~']) && !trimmed.contains(['\\', ':']);
    if !plain || trimmed.split('/').any(|part| part == "..") {
        return trimmed.to_owned();
    }
    let matches: Vec<&String> = known
        .iter()
        .filter(|file| ends_with_path(file, trimmed) || ends_with_path(trimmed, file))
        .collect();
    match matches.as_slice() {
        [only] => (*only).clone(),
        _ => trimmed.to_owned(),
    }
}

/// Whether `long` ends with the whole components of `short`.
fn ends_with_path(long: &str, short: &str) -> bool {
    long.len() > short.len()
        && long.ends_with(short)
        && long.as_bytes()[long.len() - short.len() - 1] == b'/'
}

/// The language family of a fence language word, when it is one this crate knows.
pub(crate) fn family_of_lang(lang: &str) -> Option<&'static str> {
    let family = match lang {
        "python" | "py" | "python3" | "py3" => "python",
        "javascript" | "js" | "jsx" | "node" | "mjs" | "cjs" | "typescript" | "ts" | "tsx" => {
            "javascript"
        }
        "rust" | "rs" => "rust",
        "go" | "golang" => "go",
        "ruby" | "rb" => "ruby",
        "java" => "java",
        "bash" | "sh" | "shell" | "zsh" => "shell",
        "json" | "jsonc" => "json",
        "yaml" | "yml" => "yaml",
        "toml" => "toml",
        "html" | "htm" => "html",
        "css" | "scss" => "css",
        "sql" => "sql",
        "markdown" | "md" => "markdown",
        "c" | "h" => "c",
        "cpp" | "c++" | "cc" | "hpp" => "cpp",
        "php" => "php",
        _ => return None,
    };
    Some(family)
}

/// The language family of a file, from its extension.
pub(crate) fn family_of_path(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let (_, ext) = name.rsplit_once('.')?;
    let ext = ext.to_ascii_lowercase();
    match ext.as_str() {
        "pyw" | "pyi" => Some("python"),
        "mts" | "cts" => Some("javascript"),
        "bash" | "zsh" => Some("shell"),
        _ => family_of_lang(&ext),
    }
}

/// Fences that hold commands to run rather than a file (`console`, `powershell`; `bash`
/// unless the target is itself a shell script).
pub(crate) fn is_command_lang(lang: &str) -> bool {
    matches!(
        lang,
        "console"
            | "terminal"
            | "shell-session"
            | "sh-session"
            | "powershell"
            | "ps1"
            | "pwsh"
            | "cmd"
            | "bat"
            | "bash"
            | "sh"
            | "shell"
            | "zsh"
    )
}

/// Fences that hold program output rather than a file.
pub(crate) fn is_output_lang(lang: &str) -> bool {
    matches!(
        lang,
        "text" | "txt" | "plaintext" | "output" | "log" | "pycon" | "pytb" | "traceback"
    )
}

/// Whether a block reads like a few shell commands (`pip install x`, `$ npm test`).
pub(crate) fn looks_like_commands(content: &str) -> bool {
    const PROGRAMS: [&str; 16] = [
        "$ ", "pip ", "pip3 ", "npm ", "npx ", "yarn ", "pnpm ", "bun ", "cargo ", "python ",
        "python3 ", "node ", "cd ", "git ", "export ", "sudo ",
    ];
    let lines: Vec<&str> = content.lines().filter(|l| !l.trim().is_empty()).collect();
    !lines.is_empty()
        && lines.len() <= 5
        && lines
            .iter()
            .all(|line| PROGRAMS.iter().any(|p| line.trim_start().starts_with(p)))
}

/// Whether a line is a comment that stands in for code the model left out, such as
/// `# ... rest of the code unchanged ...` or `// ... existing code ...`.
pub(crate) fn is_elision(line: &str) -> bool {
    let text = line.trim();
    let Some(body) = ["//", "#", "--", "/*", "<!--"]
        .iter()
        .find_map(|m| text.strip_prefix(m))
    else {
        return false;
    };
    let body = body
        .trim()
        .trim_end_matches("*/")
        .trim_end_matches("-->")
        .trim();
    if !(body.contains("...") || body.contains('…')) {
        return false;
    }
    let bare = body.trim_matches(|c: char| c == '.' || c == '…' || c.is_whitespace());
    if bare.is_empty() {
        return true;
    }
    const WORDS: [&str; 9] = [
        "rest",
        "existing",
        "unchanged",
        "remaining",
        "same",
        "omitted",
        "previous",
        "other",
        "original",
    ];
    let lower = bare.to_lowercase();
    WORDS.iter().any(|word| lower.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(text: &str) -> (Option<String>, Option<String>) {
        let parsed = parse_info(text);
        (parsed.lang, parsed.path)
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    fn info_strings_give_language_and_path() {
        assert_eq!(info("python"), (some("python"), None));
        assert_eq!(
            info("python path=handlers/signup.py"),
            (some("python"), some("handlers/signup.py"))
        );
        assert_eq!(
            info("handlers/signup.py"),
            (None, some("handlers/signup.py"))
        );
        assert_eq!(info("py title=\"x.py\""), (some("py"), some("x.py")));
        assert_eq!(
            info("python:src/app.py"),
            (some("python"), some("src/app.py"))
        );
        assert_eq!(
            info("ts {filename=\"src/x.ts\"}"),
            (some("ts"), some("src/x.ts"))
        );
        assert_eq!(info("rust src/lib.rs"), (some("rust"), some("src/lib.rs")));
        assert_eq!(info(""), (None, None));
    }

    #[test]
    fn label_lines_give_a_path() {
        for line in [
            "**handlers/signup.py**",
            "**handlers/signup.py**:",
            "File: handlers/signup.py",
            "### handlers/signup.py",
            "### File: `handlers/signup.py`",
            "`handlers/signup.py`:",
            "handlers/signup.py",
            "- `handlers/signup.py`",
            "**File: handlers/signup.py**",
            "filename: \"handlers/signup.py\"",
        ] {
            assert_eq!(
                path_from_label_line(line),
                some("handlers/signup.py"),
                "{line}"
            );
        }
    }

    #[test]
    fn prose_is_not_a_label_line() {
        for line in [
            "Here's the fixed code:",
            "Update `signup.py` as follows:",
            "Python 3.11",
            "e.g.",
            "See https://example.invalid/x.py",
        ] {
            assert_eq!(path_from_label_line(line), None, "{line}");
        }
    }

    #[test]
    fn hostile_paths_still_look_like_paths() {
        assert!(looks_like_path("/etc/passwd"));
        assert!(looks_like_path("../../etc/passwd"));
        assert!(looks_like_path("C:\\x"));
        assert!(!looks_like_path("3.11"));
        assert!(!looks_like_path("python"));
    }

    #[test]
    fn first_line_comments_give_a_path() {
        assert_eq!(
            path_from_comment("# handlers/signup.py"),
            some("handlers/signup.py")
        );
        assert_eq!(path_from_comment("// file: src/x.ts"), some("src/x.ts"));
        assert_eq!(
            path_from_comment("/* styles/a.css */"),
            some("styles/a.css")
        );
        assert_eq!(path_from_comment("#!/usr/bin/env python"), None);
        assert_eq!(path_from_comment("# fixed version"), None);
        assert_eq!(path_from_comment("#[derive(Debug)]"), None);
    }

    #[test]
    fn known_files_resolve_short_names() {
        let known = vec![
            "handlers/signup.py".to_owned(),
            "handlers/login.py".to_owned(),
        ];
        assert_eq!(resolve_known("signup.py", &known), "handlers/signup.py");
        assert_eq!(
            resolve_known("./handlers/login.py", &known),
            "handlers/login.py"
        );
        assert_eq!(
            resolve_known("app/handlers/login.py", &known),
            "handlers/login.py"
        );
        assert_eq!(
            resolve_known("/app/handlers/login.py", &known),
            "/app/handlers/login.py"
        );
        assert_eq!(resolve_known("other.py", &known), "other.py");
    }

    #[test]
    fn elision_comments_are_recognised() {
        assert!(is_elision("    # ... rest of the code unchanged ..."));
        assert!(is_elision("// ... existing code ..."));
        assert!(is_elision("# ..."));
        assert!(!is_elision("# retry up to 3 times"));
        assert!(!is_elision("    ..."));
        assert!(!is_elision("x = call(...)"));
    }
}
