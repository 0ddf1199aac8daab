//! Applying edits inside a workspace: every path checked, every file's new text computed in
//! memory and held against the limits, and only then written, so that a refused edit leaves
//! the workspace as it was.
//!
//! Writes follow the order of the edits; if one fails, the files already written are put back
//! (or removed, when they were new) before the error is returned.

use crate::function::{self, FindMiss};
use crate::path::{self, PathError, check_path};
use crate::search::{self, SearchMiss};
use crate::{Edit, udiff};
use serde::{Deserialize, Serialize};
use similar::TextDiff;
use std::io;
use std::path::{Path, PathBuf};

/// A whole-file edit of a file at least this long must keep half its lines.
const SHRINK_MIN_LINES: usize = 10;

/// How much of the SEARCH text an error message quotes.
const PREVIEW_CHARS: usize = 80;

/// Bounds on what one set of edits may do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The most files one set of edits may change or create.
    pub max_files: usize,
    /// The largest a changed file may be afterwards, and the largest existing file that is
    /// read to be edited, in bytes.
    pub max_file_bytes: usize,
    /// The largest the changed files may be together afterwards, in bytes.
    pub max_total_bytes: usize,
}

impl Default for Limits {
    /// Sixteen files, 512 KiB each, 2 MiB in all: far more than a fix for one failing job.
    fn default() -> Self {
        Limits {
            max_files: 16,
            max_file_bytes: 512 * 1024,
            max_total_bytes: 2 * 1024 * 1024,
        }
    }
}

/// What [`apply`] changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The files written, relative to the workspace, normalised, in the order first edited.
    pub files: Vec<String>,
    /// Files that were edited but ended up as they were (not written).
    pub unchanged: Vec<String>,
    /// A git-style unified diff (`--- a/x` / `+++ b/x`, `/dev/null` for new files) of every
    /// written file.
    pub diff: String,
}

/// Why a set of edits was refused or could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The list of edits was empty.
    #[error("no edits to apply")]
    Empty,
    /// A path failed [`check_path`].
    #[error("refused {0}")]
    Path(#[from] PathError),
    /// More files than [`Limits::max_files`].
    #[error("the edits touch {count} files, more than the {max} allowed")]
    TooManyFiles { count: usize, max: usize },
    /// One edit carries more text than [`Limits::max_file_bytes`].
    #[error("the edit for {path} carries {size} bytes, more than the {max} allowed per file")]
    EditTooLarge {
        path: String,
        size: usize,
        max: usize,
    },
    /// A file, before or after editing, is larger than [`Limits::max_file_bytes`].
    #[error("{path} would be {size} bytes, more than the {max} allowed per file")]
    FileTooLarge {
        path: String,
        size: usize,
        max: usize,
    },
    /// The edits or changed files together exceed [`Limits::max_total_bytes`].
    #[error("the edits come to {size} bytes, more than the {max} allowed in all")]
    TotalTooLarge { size: usize, max: usize },
    /// An existing file could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    /// A file could not be written; files written before it were restored, except those
    /// listed in `unrestored`.
    #[error("cannot write {path}: {source}{}", unrestored_note(.unrestored))]
    Write {
        path: String,
        source: io::Error,
        unrestored: Vec<String>,
    },
    /// The path names a directory or a special file.
    #[error("{path} is not a regular file")]
    NotAFile { path: String },
    /// The file is not UTF-8 text.
    #[error("{path} is not UTF-8 text")]
    NotText { path: String },
    /// A search, patch or function edit names a file that does not exist.
    #[error("{path} does not exist, so this edit cannot apply to it")]
    Missing { path: String },
    /// The SEARCH text is not in the file, even ignoring whitespace.
    #[error("the SEARCH text is not in {path}: {search:?}")]
    SearchNotFound { path: String, search: String },
    /// The SEARCH text is in several places.
    #[error("the SEARCH text occurs {count} times in {path}, it must occur once: {search:?}")]
    SearchAmbiguous {
        path: String,
        count: usize,
        search: String,
    },
    /// An empty SEARCH names no place in a file that has content.
    #[error("an empty SEARCH cannot apply to {path}, which already has content")]
    EmptySearch { path: String },
    /// A hunk of a diff does not apply.
    #[error("hunk {hunk} does not apply to {path}: {reason}")]
    Hunk {
        path: String,
        hunk: usize,
        reason: String,
    },
    /// The function to replace is not defined in the file.
    #[error("function {name} is not defined in {path}")]
    FunctionNotFound { path: String, name: String },
    /// The function to replace is defined more than once.
    #[error("function {name} is defined {count} times in {path}")]
    FunctionAmbiguous {
        path: String,
        name: String,
        count: usize,
    },
    /// The function's end could not be found, or the language is not one whose functions
    /// this crate can delimit.
    #[error("cannot find where function {name} ends in {path}")]
    FunctionUnterminated { path: String, name: String },
    /// A whole-file edit would drop most of an existing file: almost always a model that sent
    /// part of the file.
    #[error(
        "the new {path} keeps {new_lines} of its {old_lines} lines; an edit that drops most of a file is taken as partial"
    )]
    Shrinks {
        path: String,
        old_lines: usize,
        new_lines: usize,
    },
    /// Applied, the edits would leave every file as it was.
    #[error("the edits change nothing")]
    NoChange,
}

/// One file's edits, worked out in memory.
struct Planned {
    relative: String,
    absolute: PathBuf,
    old: Option<String>,
    new: String,
}

/// Applies `edits` inside `workspace` and returns the diff of what changed.
///
/// Every edit is checked and computed before anything is written. Edits to the same file
/// apply in order, each to the result of the one before.
///
/// # Errors
///
/// Any refused path, exceeded limit, search or hunk that does not apply, or function that is
/// not found refuses the whole set with nothing written. [`EditError::NoChange`] when the
/// edits would change nothing. [`EditError::Write`] when writing fails; the files already
/// written are restored first.
pub fn apply(workspace: &Path, edits: &[Edit], limits: &Limits) -> Result<Applied, EditError> {
    if edits.is_empty() {
        return Err(EditError::Empty);
    }
    check_payload(edits, limits)?;
    let groups = group_by_file(workspace, edits, limits)?;

    let mut plans = Vec::new();
    for (relative, absolute, file_edits) in groups {
        plans.push(plan_file(relative, absolute, &file_edits, limits)?);
    }
    let (changed, unchanged): (Vec<Planned>, Vec<Planned>) = plans
        .into_iter()
        .partition(|plan| plan.old.as_deref() != Some(plan.new.as_str()));
    if changed.is_empty() {
        return Err(EditError::NoChange);
    }
    let total: usize = changed.iter().map(|plan| plan.new.len()).sum();
    if total > limits.max_total_bytes {
        return Err(EditError::TotalTooLarge {
            size: total,
            max: limits.max_total_bytes,
        });
    }

    write_all(&changed)?;
    Ok(Applied {
        files: changed.iter().map(|plan| plan.relative.clone()).collect(),
        unchanged: unchanged.into_iter().map(|plan| plan.relative).collect(),
        diff: changed.iter().map(diff_of).collect(),
    })
}

/// A git-style unified diff of one file (`--- a/path` / `+++ b/path`, three lines of
/// context); empty when `old` and `new` are equal.
pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    render_diff(&format!("a/{path}"), &format!("b/{path}"), old, new)
}

fn render_diff(from: &str, to: &str, old: &str, new: &str) -> String {
    let diff = TextDiff::from_lines(old, new);
    let mut unified = diff.unified_diff();
    unified.context_radius(3).header(from, to);
    unified.to_string()
}

fn diff_of(plan: &Planned) -> String {
    match &plan.old {
        Some(old) => unified_diff(&plan.relative, old, &plan.new),
        None => render_diff("/dev/null", &format!("b/{}", plan.relative), "", &plan.new),
    }
}

/// Refuses oversized edits before any file is looked at.
fn check_payload(edits: &[Edit], limits: &Limits) -> Result<(), EditError> {
    let mut total = 0;
    for edit in edits {
        let size = payload_size(edit);
        if size > limits.max_file_bytes {
            return Err(EditError::EditTooLarge {
                path: edit.path().to_owned(),
                size,
                max: limits.max_file_bytes,
            });
        }
        total += size;
    }
    if total > limits.max_total_bytes {
        return Err(EditError::TotalTooLarge {
            size: total,
            max: limits.max_total_bytes,
        });
    }
    Ok(())
}

fn payload_size(edit: &Edit) -> usize {
    match edit {
        Edit::WholeFile { content, .. } | Edit::ReplaceFunction { content, .. } => content.len(),
        Edit::Replace {
            search, replace, ..
        } => search.len() + replace.len(),
        Edit::Patch { hunks, .. } => {
            let lines = hunks.iter().flat_map(|hunk| hunk.lines.iter());
            lines.map(|line| hunk_line_text(line).len() + 1).sum()
        }
    }
}

fn hunk_line_text(line: &crate::HunkLine) -> &str {
    match line {
        crate::HunkLine::Context(text)
        | crate::HunkLine::Remove(text)
        | crate::HunkLine::Add(text) => text,
    }
}

type Group<'e> = (String, PathBuf, Vec<&'e Edit>);

/// Checks every path and gathers the edits of each file, in order of first appearance.
fn group_by_file<'e>(
    workspace: &Path,
    edits: &'e [Edit],
    limits: &Limits,
) -> Result<Vec<Group<'e>>, EditError> {
    let mut groups: Vec<Group<'e>> = Vec::new();
    for edit in edits {
        let relative = path::normalize(edit.path())?;
        if let Some(group) = groups.iter_mut().find(|group| group.0 == relative) {
            group.2.push(edit);
            continue;
        }
        if groups.len() == limits.max_files {
            let count = count_files(edits);
            return Err(EditError::TooManyFiles {
                count,
                max: limits.max_files,
            });
        }
        let absolute = check_path(workspace, edit.path())?;
        groups.push((relative, absolute, vec![edit]));
    }
    Ok(groups)
}

/// How many distinct files the edits name, for the error message.
fn count_files(edits: &[Edit]) -> usize {
    let mut seen: Vec<String> = edits
        .iter()
        .filter_map(|e| path::normalize(e.path()).ok())
        .collect();
    seen.sort();
    seen.dedup();
    seen.len()
}

fn plan_file(
    relative: String,
    absolute: PathBuf,
    edits: &[&Edit],
    limits: &Limits,
) -> Result<Planned, EditError> {
    let old = read_existing(&absolute, &relative, limits)?;
    // Edits work on `\n` text; a CRLF file gets its line endings back when written.
    let crlf = old.as_deref().is_some_and(|text| text.contains("\r\n"));
    let old_lf = old.as_deref().map(|text| text.replace("\r\n", "\n"));

    let mut current = old_lf.clone();
    for edit in edits {
        current = Some(apply_one(
            current.as_deref(),
            old_lf.as_deref(),
            edit,
            &relative,
        )?);
    }
    let new_lf = current.unwrap_or_default();
    let new = if crlf {
        new_lf.replace('\n', "\r\n")
    } else {
        new_lf
    };
    if new.len() > limits.max_file_bytes {
        return Err(EditError::FileTooLarge {
            path: relative,
            size: new.len(),
            max: limits.max_file_bytes,
        });
    }
    Ok(Planned {
        relative,
        absolute,
        old,
        new,
    })
}

/// The file's text, or `None` when it does not exist yet.
fn read_existing(
    absolute: &Path,
    relative: &str,
    limits: &Limits,
) -> Result<Option<String>, EditError> {
    let read_error = |source| EditError::Read {
        path: relative.to_owned(),
        source,
    };
    let meta = match std::fs::metadata(absolute) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(read_error(err)),
    };
    if !meta.is_file() {
        return Err(EditError::NotAFile {
            path: relative.to_owned(),
        });
    }
    let size = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    if size > limits.max_file_bytes {
        return Err(EditError::FileTooLarge {
            path: relative.to_owned(),
            size,
            max: limits.max_file_bytes,
        });
    }
    let bytes = std::fs::read(absolute).map_err(read_error)?;
    let text = String::from_utf8(bytes).map_err(|_| EditError::NotText {
        path: relative.to_owned(),
    })?;
    Ok(Some(text))
}

/// Applies one edit to the file's current text (`None` when it does not exist yet); `original`
/// is the text before any edit, for the shrink check.
fn apply_one(
    current: Option<&str>,
    original: Option<&str>,
    edit: &Edit,
    path: &str,
) -> Result<String, EditError> {
    match edit {
        Edit::WholeFile { content, .. } => whole_file(current, original, content, path),
        Edit::Replace {
            search, replace, ..
        } => replace_text(current, search, replace, path),
        Edit::ReplaceFunction { name, content, .. } => {
            replace_function(current, name, content, path)
        }
        Edit::Patch { hunks, .. } => {
            let creates = hunks.iter().all(|hunk| hunk.old_lines().is_empty());
            let text = match current {
                Some(text) => text,
                None if creates => "",
                None => return Err(missing(path)),
            };
            udiff::apply(text, hunks).map_err(|miss| EditError::Hunk {
                path: path.to_owned(),
                hunk: miss.hunk,
                reason: miss.reason,
            })
        }
    }
}

fn missing(path: &str) -> EditError {
    EditError::Missing {
        path: path.to_owned(),
    }
}

fn whole_file(
    current: Option<&str>,
    original: Option<&str>,
    content: &str,
    path: &str,
) -> Result<String, EditError> {
    if let Some(original) = original {
        let old_lines = original.lines().count();
        let new_lines = content.lines().count();
        if old_lines >= SHRINK_MIN_LINES && new_lines * 2 < old_lines {
            return Err(EditError::Shrinks {
                path: path.to_owned(),
                old_lines,
                new_lines,
            });
        }
    }
    // Keep a file that had no final newline that way, so the diff shows only the fix.
    let lacks_newline = current.is_some_and(|text| !text.is_empty() && !text.ends_with('\n'));
    let content = match content.strip_suffix('\n') {
        Some(trimmed) if lacks_newline => trimmed,
        _ => content,
    };
    Ok(content.to_owned())
}

fn replace_text(
    current: Option<&str>,
    search: &str,
    replace: &str,
    path: &str,
) -> Result<String, EditError> {
    let creates = search.trim().is_empty();
    let text = match current {
        Some(text) => text,
        None if creates => "",
        None => return Err(missing(path)),
    };
    let preview = || preview(search);
    search::apply_replace(text, search, replace).map_err(|miss| match miss {
        SearchMiss::NotFound => EditError::SearchNotFound {
            path: path.to_owned(),
            search: preview(),
        },
        SearchMiss::Ambiguous(count) => EditError::SearchAmbiguous {
            path: path.to_owned(),
            count,
            search: preview(),
        },
        SearchMiss::EmptySearch => EditError::EmptySearch {
            path: path.to_owned(),
        },
    })
}

/// The first non-blank line of a search, shortened, for error messages.
fn preview(search: &str) -> String {
    let first = search
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default()
        .trim();
    first.chars().take(PREVIEW_CHARS).collect()
}

fn replace_function(
    current: Option<&str>,
    name: &str,
    content: &str,
    path: &str,
) -> Result<String, EditError> {
    // A function for a file that does not exist yet is the whole new file.
    let Some(text) = current else {
        return Ok(content.to_owned());
    };
    let unterminated = || EditError::FunctionUnterminated {
        path: path.to_owned(),
        name: name.to_owned(),
    };
    let style = function::style_for(path).ok_or_else(unterminated)?;
    function::replace(text, name, content, style).map_err(|miss| match miss {
        FindMiss::NotFound => EditError::FunctionNotFound {
            path: path.to_owned(),
            name: name.to_owned(),
        },
        FindMiss::Ambiguous(count) => EditError::FunctionAmbiguous {
            path: path.to_owned(),
            name: name.to_owned(),
            count,
        },
        FindMiss::Unterminated => unterminated(),
    })
}

/// Writes every changed file; on a failure, puts back the files already written.
fn write_all(plans: &[Planned]) -> Result<(), EditError> {
    for (done, plan) in plans.iter().enumerate() {
        if let Err(source) = write_one(plan) {
            return Err(EditError::Write {
                path: plan.relative.clone(),
                source,
                unrestored: roll_back(&plans[..done]),
            });
        }
    }
    Ok(())
}

fn write_one(plan: &Planned) -> io::Result<()> {
    if let Some(parent) = plan.absolute.parent() {
        std::fs::create_dir_all(parent)?;
    }
    replace_file(&plan.absolute, plan.new.as_bytes())
}

/// Writes `path` as a new file renamed over the old one, with the old one's mode and owner.
///
/// Writing in place would also change every other name of the file: a hard link into a
/// directory outside the project (pnpm's store, a shared checkout) would carry the edit
/// there. An in-project symlink keeps pointing at the file it names, which is replaced.
fn replace_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::MetadataExt as _;

    let target = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(path)?,
        _ => path.to_path_buf(),
    };
    let dir = target.parent().unwrap_or_else(|| Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".smartworker-edit-")
        .tempfile_in(dir)?;
    file.write_all(contents)?;
    match std::fs::metadata(&target) {
        Ok(old) => {
            file.as_file().set_permissions(old.permissions())?;
            // Only root may give a file away; for anyone else the new file is theirs already.
            let _ = std::os::unix::fs::fchown(file.as_file(), Some(old.uid()), Some(old.gid()));
        }
        // A temporary file is private (0600); a new source file is readable as usual.
        Err(_) => {
            use std::os::unix::fs::PermissionsExt as _;
            file.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
    }
    file.persist(&target).map_err(|e| e.error)?;
    Ok(())
}

/// Puts back files already written; returns those that could not be put back. A workspace
/// left half-applied must be thrown away, and the error says so.
fn roll_back(written: &[Planned]) -> Vec<String> {
    let failed = written.iter().filter(|plan| {
        let restored = match &plan.old {
            Some(old) => replace_file(&plan.absolute, old.as_bytes()),
            None => std::fs::remove_file(&plan.absolute),
        };
        restored.is_err()
    });
    failed.map(|plan| plan.relative.clone()).collect()
}

fn unrestored_note(unrestored: &[String]) -> String {
    if unrestored.is_empty() {
        return String::new();
    }
    format!(" (and {} could not be restored)", unrestored.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn diff_of_equal_texts_is_empty() {
        assert_eq!(unified_diff("x.py", "a\n", "a\n"), "");
    }

    #[test]
    fn diff_has_git_headers() {
        let diff = unified_diff("src/x.py", "a\nb\n", "a\nc\n");
        expect![[r#"
            --- a/src/x.py
            +++ b/src/x.py
            @@ -1,2 +1,2 @@
             a
            -b
            +c
        "#]]
        .assert_eq(&diff);
    }

    #[test]
    fn missing_final_newline_is_marked() {
        let diff = unified_diff("x", "a", "b");
        assert!(diff.contains("\\ No newline at end of file"), "{diff}");
    }

    #[test]
    fn whole_file_keeps_a_missing_final_newline() {
        assert_eq!(
            whole_file(Some("a"), Some("a"), "b\n", "x").ok(),
            Some("b".into())
        );
        assert_eq!(
            whole_file(Some("a\n"), Some("a\n"), "b\n", "x").ok(),
            Some("b\n".into())
        );
    }

    #[test]
    fn whole_file_that_drops_most_lines_is_refused() {
        let original = "line\n".repeat(40);
        let err =
            whole_file(Some(&original), Some(&original), "line\n", "h.py").expect_err("refused");
        assert_eq!(
            err.to_string(),
            "the new h.py keeps 1 of its 40 lines; an edit that drops most of a file is taken as partial"
        );
    }
}
