//! Reading a model's reply into [`Edit`]s: whole files and lone functions in fences,
//! SEARCH/REPLACE blocks, and unified diffs, with the file for each found wherever the model
//! put it.
//!
//! Nothing here touches the disk. Blocks that cannot be used are skipped with a reason; a
//! reply that yields no edit at all is an error carrying those reasons. A fence that the reply
//! never closes is refused as partial (a reply cut off by the token limit would otherwise
//! truncate the file), except for the SEARCH/REPLACE blocks inside it that did finish.

use crate::Edit;
use crate::function;
use crate::hints::{self, FenceInfo};
use crate::scan::{self, Fence, Item};
use crate::search::{self, Marker};
use crate::udiff;
use serde::Serialize;

/// The largest reply accepted, in bytes; far beyond what a fix needs.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// How many prose lines before a block are searched for its file name.
const LOOKBACK_LINES: usize = 3;

/// Why a reply gave no edits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing in the reply could be used; `reason` says what was there instead.
    #[error("no usable edit in the reply: {reason}")]
    NoEdits { reason: String },
    /// The reply is larger than [`MAX_REPLY_BYTES`].
    #[error("reply is {size} bytes, more than the {max} accepted")]
    TooLarge { size: usize, max: usize },
    /// The reply holds more blocks than any fix needs.
    #[error("reply has more than {max} blocks")]
    TooManyBlocks { max: usize },
}

/// A block of the reply that was not turned into an edit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// 1-based number of the block in the reply.
    pub block: usize,
    /// Why it was skipped, in words for a human.
    pub reason: String,
}

/// The edits read from a reply, with the blocks that were passed over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Parsed {
    /// The edits, in reply order, with superseded ones removed.
    pub edits: Vec<Edit>,
    /// Blocks that were not used, and why.
    pub skipped: Vec<Skipped>,
}

/// Reads the edits in `reply`. `known_files` are the project-relative paths that were shown
/// to the model; a block without a path targets the only one of them, if there is exactly one.
///
/// # Errors
///
/// [`ParseError::NoEdits`] when nothing usable is found, with the reasons each block was
/// skipped; [`ParseError::TooLarge`] and [`ParseError::TooManyBlocks`] for oversized replies.
pub fn parse_reply(reply: &str, known_files: &[String]) -> Result<Vec<Edit>, ParseError> {
    parse_reply_detailed(reply, known_files).map(|parsed| parsed.edits)
}

/// The reply without the model's reasoning: `<think>` blocks (Qwen3, DeepSeek-R1 and their
/// kin) hold drafts, not answers, so nothing in them may become an edit. An unclosed block
/// runs to the end of the reply.
fn without_reasoning(reply: &str) -> String {
    let mut kept = String::with_capacity(reply.len());
    let mut rest = reply;
    while let Some(open) = rest.find("<think>") {
        kept.push_str(&rest[..open]);
        let after = &rest[open + "<think>".len()..];
        match after.find("</think>") {
            Some(close) => rest = &after[close + "</think>".len()..],
            None => return kept,
        }
    }
    kept.push_str(rest);
    kept
}

/// Like [`parse_reply`], also returning the blocks that were skipped and why, so the reasons
/// can be stored with the attempt.
///
/// # Errors
///
/// As [`parse_reply`].
pub fn parse_reply_detailed(reply: &str, known_files: &[String]) -> Result<Parsed, ParseError> {
    if reply.len() > MAX_REPLY_BYTES {
        return Err(ParseError::TooLarge {
            size: reply.len(),
            max: MAX_REPLY_BYTES,
        });
    }
    let text = without_reasoning(&reply.replace("\r\n", "\n"));
    let items = scan::scan(&text).map_err(|_| ParseError::TooManyBlocks {
        max: scan::MAX_BLOCKS,
    })?;

    let mut reader = Reader::new(known_files);
    reader.read(&items);
    reader.drop_excerpts();
    let edits = dedupe(reader.edits);
    if edits.is_empty() {
        return Err(ParseError::NoEdits {
            reason: no_edits_reason(&reader.skipped),
        });
    }
    Ok(Parsed {
        edits,
        skipped: reader.skipped,
    })
}

fn no_edits_reason(skipped: &[Skipped]) -> String {
    if skipped.is_empty() {
        return "it has no fenced code block, SEARCH/REPLACE block or diff".to_owned();
    }
    let reasons: Vec<String> = skipped
        .iter()
        .map(|skip| format!("block {}: {}", skip.block, skip.reason))
        .collect();
    reasons.join("; ")
}

/// Walks the items of a reply, collecting edits and skip reasons.
struct Reader<'k> {
    known: &'k [String],
    edits: Vec<Edit>,
    skipped: Vec<Skipped>,
    block: usize,
    /// Edits aimed at the only known file because their block named none: (edit, block).
    implicit: Vec<(usize, usize)>,
}

/// Where a whole-file block's path came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Named by the model (info string, label line, first-line comment or prose).
    Named,
    /// The only known file, because the block named none.
    OnlyKnownFile,
}

impl<'k> Reader<'k> {
    fn new(known: &'k [String]) -> Reader<'k> {
        Reader {
            known,
            edits: Vec::new(),
            skipped: Vec::new(),
            block: 0,
            implicit: Vec::new(),
        }
    }

    fn read(&mut self, items: &[Item<'_>]) {
        let mut recent: Vec<&str> = Vec::new();
        for item in items {
            match item {
                Item::Prose(line) => {
                    if !line.trim().is_empty() {
                        recent.push(line);
                    }
                    continue;
                }
                Item::Fence(fence) => {
                    self.block += 1;
                    self.fence(fence, &recent);
                }
                Item::SearchReplace { lines } => {
                    self.block += 1;
                    self.search_replace(lines, false, None, &recent);
                }
                Item::Diff { lines } => {
                    self.block += 1;
                    self.diff(lines, false, None, &recent);
                }
            }
            recent.clear();
        }
    }

    fn skip(&mut self, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            block: self.block,
            reason: reason.into(),
        });
    }

    fn fence(&mut self, fence: &Fence<'_>, recent: &[&str]) {
        let info = hints::parse_info(fence.info);
        let has_markers = fence
            .lines
            .iter()
            .any(|line| search::marker(line) == Some(Marker::Search));
        if has_markers {
            return self.search_replace(&fence.lines, fence.closed, info.path.as_deref(), recent);
        }
        if !fence.closed {
            return self.skip(
                "the block is cut off before its closing fence; a partial file is not applied",
            );
        }
        let lang = info.lang.as_deref();
        if matches!(lang, Some("diff" | "patch" | "udiff")) || starts_like_diff(&fence.lines) {
            return self.diff(&fence.lines, true, info.path.as_deref(), recent);
        }
        self.whole_file(fence, &info, recent);
    }

    /// The path named in the prose lines just before a block: a label line first, then a
    /// sentence that mentions one of the known files.
    fn path_before(&self, recent: &[&str]) -> Option<String> {
        let window = recent.iter().rev().take(LOOKBACK_LINES);
        let label = window
            .clone()
            .find_map(|line| hints::path_from_label_line(line));
        if let Some(path) = label {
            return Some(hints::resolve_known(&path, self.known));
        }
        let nearest = recent.last()?;
        let mentioned: Vec<String> = hints::paths_in_prose(nearest)
            .iter()
            .map(|path| hints::resolve_known(path, self.known))
            .collect();
        let known: Vec<&String> = mentioned
            .iter()
            .filter(|path| self.known.contains(path))
            .collect();
        if let [first, rest @ ..] = known.as_slice()
            && rest.iter().all(|other| other == first)
        {
            return Some((*first).clone());
        }
        // "Create `handlers/util.py`:" names a file nobody showed the model; a sentence that
        // introduces a block and mentions exactly one path is taken at its word.
        match mentioned.as_slice() {
            [only] if known.is_empty() && nearest.trim_end().ends_with(':') => Some(only.clone()),
            _ => None,
        }
    }

    /// Among blocks that named no file, a short whole-file block next to a much longer one is
    /// a quoted excerpt or a usage example, not the file: small models add both around a fix.
    fn drop_excerpts(&mut self) {
        let lines_of = |edit: &Edit| match edit {
            Edit::WholeFile { content, .. } | Edit::ReplaceFunction { content, .. } => {
                content.lines().count()
            }
            Edit::Replace { .. } | Edit::Patch { .. } => 0,
        };
        let longest = self
            .implicit
            .iter()
            .map(|&(at, _)| lines_of(&self.edits[at]))
            .max()
            .unwrap_or(0);
        let mut excerpts: Vec<(usize, usize)> = self
            .implicit
            .iter()
            .copied()
            .filter(|&(at, _)| matches!(self.edits[at], Edit::WholeFile { .. }))
            .filter(|&(at, _)| lines_of(&self.edits[at]) * 2 < longest)
            .collect();
        // Remove from the back so the earlier indices stay valid.
        excerpts.sort_unstable_by_key(|&(at, _)| std::cmp::Reverse(at));
        for (at, block) in excerpts {
            self.edits.remove(at);
            self.skipped.push(Skipped {
                block,
                reason: "the block looks like an excerpt or example beside a fuller version"
                    .to_owned(),
            });
        }
        self.skipped.sort_by_key(|skip| skip.block);
    }

    fn only_known_file(&self) -> Option<String> {
        match self.known {
            [only] => Some(only.clone()),
            _ => None,
        }
    }

    fn no_path_reason(&self, what: &str) -> String {
        format!(
            "{what} names no file and {} files were given as context",
            self.known.len()
        )
    }

    fn search_replace(
        &mut self,
        lines: &[&str],
        closed: bool,
        fence_path: Option<&str>,
        recent: &[&str],
    ) {
        let fallback = fence_path
            .map(|path| hints::resolve_known(path, self.known))
            .or_else(|| self.path_before(recent));
        let mut previous: Option<String> = None;
        for block in search::parse_blocks(lines, closed) {
            let own = block
                .line_before
                .as_deref()
                .and_then(hints::path_from_label_line);
            let own = own.map(|path| hints::resolve_known(&path, self.known));
            let path = own
                .or_else(|| previous.clone())
                .or_else(|| fallback.clone())
                .or_else(|| self.only_known_file());
            let Some(path) = path else {
                self.skip(self.no_path_reason("a SEARCH/REPLACE block"));
                continue;
            };
            if !block.complete {
                self.skip(format!(
                    "the SEARCH/REPLACE block for {path} is cut off before its end"
                ));
                continue;
            }
            previous = Some(path.clone());
            self.edits.push(Edit::Replace {
                path,
                search: block.search,
                replace: block.replace,
            });
        }
    }

    fn diff(&mut self, lines: &[&str], in_fence: bool, fence_path: Option<&str>, recent: &[&str]) {
        let mut files = udiff::parse(lines, in_fence, self.known);
        if files.is_empty() && in_fence {
            files.extend(udiff::parse_headerless(lines).map(|hunk| udiff::FileDiff {
                hunks: vec![hunk],
                ..udiff::FileDiff::default()
            }));
        }
        if files.is_empty() {
            return self.skip("the diff has no hunks");
        }
        let fallback = fence_path
            .map(|path| hints::resolve_known(path, self.known))
            .or_else(|| self.path_before(recent))
            .or_else(|| self.only_known_file());
        for file in files {
            self.diff_file(file, fallback.as_deref());
        }
    }

    fn diff_file(&mut self, file: udiff::FileDiff, fallback: Option<&str>) {
        let path = file
            .path
            .map(|path| hints::resolve_known(&path, self.known));
        let Some(path) = path.or_else(|| fallback.map(str::to_owned)) else {
            return self.skip(self.no_path_reason("a diff"));
        };
        if file.deletes {
            return self.skip(format!(
                "the diff deletes {path}; deleting files is not supported"
            ));
        }
        self.edits.push(Edit::Patch {
            path,
            hunks: file.hunks,
        });
    }

    fn whole_file(&mut self, fence: &Fence<'_>, info: &FenceInfo, recent: &[&str]) {
        let lang = info.lang.as_deref();
        let first = fence.lines.iter().find(|line| !line.trim().is_empty());
        let comment_path = first
            .and_then(|line| hints::path_from_comment(line))
            .map(|path| hints::resolve_known(&path, self.known));
        let named = info
            .path
            .as_deref()
            .map(|path| hints::resolve_known(path, self.known))
            .or_else(|| self.path_before(recent))
            .or_else(|| comment_path.clone());
        let (path, source) = match named {
            Some(path) => (path, Source::Named),
            None => match self.only_known_file() {
                Some(path) => (path, Source::OnlyKnownFile),
                None => return self.skip(self.no_path_reason("the block")),
            },
        };

        let mut lines: Vec<&str> = fence.lines.clone();
        if comment_path.as_deref() == Some(path.as_str())
            && let Some(at) = lines.iter().position(|line| !line.trim().is_empty())
        {
            lines.remove(at);
        }
        let content: String = lines.iter().map(|line| format!("{line}\n")).collect();
        if let Some(reason) = refusal(&path, lang, &content, source) {
            return self.skip(reason);
        }

        let function =
            function::style_for(&path).and_then(|style| function::sole_function(&content, style));
        let edit = match function {
            Some(name) => Edit::ReplaceFunction {
                path,
                name,
                content,
            },
            None => Edit::WholeFile { path, content },
        };
        if source == Source::OnlyKnownFile {
            self.implicit.push((self.edits.len(), self.block));
        }
        self.edits.push(edit);
    }
}

/// Why a whole-file block must not be used for `path`, if it must not.
fn refusal(path: &str, lang: Option<&str>, content: &str, source: Source) -> Option<String> {
    if content.trim().is_empty() {
        return Some(format!("the block for {path} is empty"));
    }
    if let Some(line) = content.lines().find(|line| hints::is_elision(line)) {
        return Some(format!(
            "the block for {path} leaves code out ({:?}); a partial file is not applied",
            line.trim()
        ));
    }
    let target = hints::family_of_path(path);
    if let (Some(lang), Some(target)) = (lang.and_then(hints::family_of_lang), target)
        && lang != target
    {
        return Some(format!("the block is {lang} but {path} is {target}"));
    }
    if source == Source::Named {
        return None;
    }
    let is_shell_target = target == Some("shell");
    if lang.is_some_and(hints::is_command_lang) && !is_shell_target {
        return Some("the block holds shell commands, not a file".to_owned());
    }
    if lang.is_some_and(hints::is_output_lang) || looks_like_output(content) {
        return Some("the block holds program output, not a file".to_owned());
    }
    let data_target = matches!(target, Some("json" | "yaml"));
    if content.trim_start().starts_with(['{', '[']) && !data_target {
        return Some("the block holds data, not a file".to_owned());
    }
    if hints::looks_like_commands(content) && !is_shell_target {
        return Some("the block holds shell commands, not a file".to_owned());
    }
    None
}

/// A stack trace pasted back, which small models like to quote.
fn looks_like_output(content: &str) -> bool {
    let first = content
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default();
    first.starts_with("Traceback (most recent call last)") || first.trim_start().starts_with("at ")
}

fn starts_like_diff(lines: &[&str]) -> bool {
    let Some(at) = lines.iter().position(|line| !line.trim().is_empty()) else {
        return false;
    };
    let line = lines[at];
    let next = lines.get(at + 1).copied().unwrap_or_default();
    line.starts_with("diff --git ")
        || (line.starts_with("--- ") && next.starts_with("+++ "))
        || line.starts_with("@@ -")
}

/// Drops edits that a later one makes moot: a whole file replaces everything before it for
/// that file, a function replaces an earlier version of the same function, and an exact
/// repeat of an earlier edit is dropped (models often restate their answer).
fn dedupe(edits: Vec<Edit>) -> Vec<Edit> {
    let mut kept: Vec<Edit> = Vec::new();
    for edit in edits {
        if kept.contains(&edit) {
            continue;
        }
        match &edit {
            Edit::WholeFile { path, .. } => kept.retain(|old| old.path() != path),
            Edit::ReplaceFunction { path, name, .. } => kept.retain(|old| {
                !matches!(old, Edit::ReplaceFunction { path: p, name: n, .. } if p == path && n == name)
            }),
            Edit::Replace { .. } | Edit::Patch { .. } => {}
        }
        kept.push(edit);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(files: &[&str]) -> Vec<String> {
        files.iter().map(|file| (*file).to_owned()).collect()
    }

    fn parsed(reply: &str, files: &[&str]) -> Vec<Edit> {
        match parse_reply(reply, &known(files)) {
            Ok(edits) => edits,
            Err(err) => panic!("reply was refused: {err}"),
        }
    }

    fn refused(reply: &str, files: &[&str]) -> String {
        match parse_reply(reply, &known(files)) {
            Ok(edits) => panic!("reply was accepted: {edits:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn path_in_info_string() {
        let edits = parsed("```python path=app/x.py\nx = 1\n```\n", &[]);
        assert_eq!(
            edits,
            vec![Edit::WholeFile {
                path: "app/x.py".into(),
                content: "x = 1\n".into()
            }]
        );
    }

    #[test]
    fn path_in_first_line_comment_is_removed_from_content() {
        let edits = parsed("```ts\n// file: src/x.ts\nexport const x = 1;\n```\n", &[]);
        assert_eq!(
            edits,
            vec![Edit::WholeFile {
                path: "src/x.ts".into(),
                content: "export const x = 1;\n".into()
            }]
        );
    }

    #[test]
    fn pathless_block_targets_the_only_known_file() {
        let edits = parsed("Try this:\n```python\nimport os\nx = 1\n```\n", &["a/b.py"]);
        assert_eq!(edits[0].path(), "a/b.py");
    }

    #[test]
    fn pathless_block_with_two_known_files_is_refused() {
        let reason = refused("```python\nx = 1\n```\n", &["a.py", "b.py"]);
        assert_eq!(
            reason,
            "no usable edit in the reply: block 1: the block names no file and 2 files were given as context"
        );
    }

    #[test]
    fn lone_function_becomes_a_function_replacement() {
        let edits = parsed("```python\ndef handle(p):\n    return p\n```\n", &["h.py"]);
        assert!(
            matches!(&edits[0], Edit::ReplaceFunction { name, .. } if name == "handle"),
            "{edits:?}"
        );
    }

    #[test]
    fn shell_and_output_blocks_are_not_files() {
        let reason = refused("Run:\n```bash\npip install requests\n```\n", &["h.py"]);
        assert!(
            reason.contains("the block is shell but h.py is python"),
            "{reason}"
        );
        let reason = refused("```\npip install requests\n```\n", &["h.py"]);
        assert!(reason.contains("shell commands"), "{reason}");
        let reason = refused(
            "```\nTraceback (most recent call last):\n  File \"h.py\"\n```\n",
            &["h.py"],
        );
        assert!(reason.contains("program output"), "{reason}");
    }

    #[test]
    fn later_whole_file_supersedes_the_quoted_original() {
        let reply = "The bug is here:\n```python\nx = d['a']\n```\nFixed:\n```python\nx = d.get('a')\n```\n";
        let edits = parsed(reply, &["h.py"]);
        assert_eq!(
            edits,
            vec![Edit::WholeFile {
                path: "h.py".into(),
                content: "x = d.get('a')\n".into()
            }]
        );
    }

    #[test]
    fn usage_example_after_the_fix_is_not_taken_for_the_file() {
        let reply = "Fixed:\n```python\ndef handle(p):\n    x = 1\n    return p.get('a')\n```\nUsage:\n```python\nhandle({'a': 1})\n```\n";
        let parsed = parse_reply_detailed(reply, &known(&["h.py"])).expect("parses");
        assert!(
            matches!(&parsed.edits[..], [Edit::ReplaceFunction { .. }]),
            "{parsed:?}"
        );
        assert_eq!(parsed.skipped[0].block, 2);
    }

    #[test]
    fn example_payload_is_not_taken_for_the_file() {
        let reason = refused("Payload:\n```\n{\"email\": \"a@b.c\"}\n```\n", &["h.py"]);
        assert!(reason.contains("holds data"), "{reason}");
    }

    #[test]
    fn elided_file_is_refused() {
        let reason = refused(
            "```python\nimport os\n# ... rest of the code unchanged ...\n```\n",
            &["h.py"],
        );
        assert!(reason.contains("leaves code out"), "{reason}");
    }

    #[test]
    fn prose_mention_of_a_known_file_names_the_block() {
        let reply = "Here is the updated `signup.py`:\n```python\nimport os\n```\n";
        let edits = parsed(reply, &["handlers/signup.py", "handlers/login.py"]);
        assert_eq!(edits[0].path(), "handlers/signup.py");
    }

    #[test]
    fn introducing_sentence_names_a_new_file() {
        let edits = parsed(
            "Create a helper in `handlers/util.py`:\n```python\nX = 1\n```\n",
            &["h.py"],
        );
        assert_eq!(edits[0].path(), "handlers/util.py");
    }

    #[test]
    fn headerless_diff_fence_targets_the_only_known_file() {
        let edits = parsed("```diff\n-x = 1\n+x = 2\n```\n", &["h.py"]);
        assert!(
            matches!(&edits[0], Edit::Patch { path, .. } if path == "h.py"),
            "{edits:?}"
        );
    }

    #[test]
    fn crlf_reply_is_read_like_lf() {
        let edits = parsed("```python path=x.py\r\nx = 1\r\n```\r\n", &[]);
        assert_eq!(
            edits,
            vec![Edit::WholeFile {
                path: "x.py".into(),
                content: "x = 1\n".into()
            }]
        );
    }

    #[test]
    fn oversized_reply_is_refused() {
        let reply = "x".repeat(MAX_REPLY_BYTES + 1);
        assert!(matches!(
            parse_reply(&reply, &[]),
            Err(ParseError::TooLarge { .. })
        ));
    }
}
