//! Maps the paths a trace prints to files of the project, and reads the source
//! around in-app frames. Nothing outside the root is ever read: every path is
//! canonicalised and checked, and symlinks are not followed out of the root.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Frame, Trace};

/// Files visited at most when searching the project for a path suffix.
const MAX_INDEXED_FILES: usize = 100_000;

/// Directory depth visited at most when searching the project.
const MAX_DEPTH: usize = 32;

/// Folders never searched for a frame's file: dependencies, build output,
/// and hidden folders (`.git`).
const SKIPPED_DIRS: [&str; 8] = [
    "node_modules",
    "site-packages",
    "dist-packages",
    "venv",
    "target",
    "vendor",
    "__pycache__",
    "build",
];

/// How much source to gather.
#[derive(Debug, Clone)]
pub struct ContextOptions {
    /// The most files returned.
    pub max_files: usize,
    /// Files with at most this many lines are returned whole.
    pub whole_file_max_lines: usize,
    /// Lines kept before and after the frame's line in a larger file.
    pub window: usize,
    /// Files larger than this many bytes are skipped.
    pub max_file_bytes: u64,
}

impl Default for ContextOptions {
    fn default() -> Self {
        Self {
            max_files: 5,
            whole_file_max_lines: 200,
            window: 20,
            max_file_bytes: 2 << 20,
        }
    }
}

/// Source text around one in-app frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snippet {
    /// The file, relative to the root, with `/` separators.
    pub path: String,
    /// The frame's line, when the trace printed one.
    pub line: Option<u32>,
    /// The first line of `text` (1-based).
    pub start_line: u32,
    /// The last line of `text` (1-based, inclusive).
    pub end_line: u32,
    /// The source lines, joined with `\n`.
    pub text: String,
    /// Whether `text` is the whole file.
    pub whole_file: bool,
}

/// Why one file could not be read for context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The path leads outside the root (through `..` or a symlink).
    #[error("path {0:?} leads outside the project root")]
    OutsideRoot(PathBuf),
    /// The file is larger than `ContextOptions::max_file_bytes`.
    #[error("file {path:?} has {size} bytes, more than the {limit} allowed")]
    TooLarge {
        /// The offending file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit it exceeds.
        limit: u64,
    },
    /// The file could not be opened or read.
    #[error("cannot read {path:?}")]
    Io {
        /// The offending file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Maps a path printed in a trace (absolute on another machine or in a
/// container, Windows, `webpack:///`, `file://`) to a file under `root`, and
/// returns it relative to `root`. The longest path suffix that names a file
/// wins; a tie between different files is ambiguous and yields `None`.
pub fn resolve_in_root(frame_file: &str, root: &Path) -> Option<PathBuf> {
    let root = root.canonicalize().ok()?;
    let mut index = ProjectIndex::new(&root);
    index.resolve(frame_file)
}

/// Reads the source of the in-app frames, innermost first, one snippet per
/// file. Files that cannot be resolved or read are skipped.
pub fn gather_context(trace: &Trace, root: &Path, opts: &ContextOptions) -> Vec<Snippet> {
    let Ok(root) = root.canonicalize() else {
        return Vec::new();
    };
    let mut index = ProjectIndex::new(&root);
    let mut seen = HashSet::new();
    let mut snippets = Vec::new();
    for frame in trace.frames.iter().filter(|frame| frame.in_app) {
        if snippets.len() >= opts.max_files {
            break;
        }
        let Some(relative) = resolve_frame(&mut index, frame) else {
            continue;
        };
        if !seen.insert(relative.clone()) {
            continue;
        }
        if let Ok(snippet) = read_snippet(&root, &relative, frame.line, opts) {
            snippets.push(snippet);
        }
    }
    snippets
}

/// A JVM frame prints only a file name; its package gives the folders.
pub(crate) fn resolve_frame(index: &mut ProjectIndex, frame: &Frame) -> Option<PathBuf> {
    if let Some(package_path) = jvm_package_path(frame)
        && let Some(found) = index.resolve(&package_path)
    {
        return Some(found);
    }
    index.resolve(&frame.file)
}

/// `com.acme.Job.run` in `Job.java` gives `com/acme/Job.java`.
fn jvm_package_path(frame: &Frame) -> Option<String> {
    if frame.file.contains(['/', '\\']) {
        return None;
    }
    let extension = Path::new(&frame.file).extension()?.to_str()?;
    if !matches!(extension, "java" | "kt" | "scala" | "groovy") {
        return None;
    }
    let function = frame.function.as_deref()?;
    let mut parts: Vec<&str> = function.split('.').collect();
    // Drop the method and the class; what is left is the package.
    parts.truncate(parts.len().checked_sub(2)?);
    if parts.is_empty() {
        return None;
    }
    Some(format!("{}/{}", parts.join("/"), frame.file))
}

/// Reads one file under `root` for context.
///
/// # Errors
///
/// Fails when the path leads outside `root` (after resolving symlinks), when
/// the file is larger than `opts.max_file_bytes`, or when it cannot be read.
pub fn read_snippet(
    root: &Path,
    relative: &Path,
    line: Option<u32>,
    opts: &ContextOptions,
) -> Result<Snippet, ContextError> {
    let full = checked_path(root, relative)?;
    let text = read_limited(&full, opts.max_file_bytes)?;
    let lines: Vec<&str> = text.lines().collect();
    let path = slash_path(relative);

    if lines.len() <= opts.whole_file_max_lines {
        let end_line = u32::try_from(lines.len()).unwrap_or(u32::MAX);
        return Ok(Snippet {
            path,
            line,
            start_line: 1,
            end_line,
            text: lines.join("\n"),
            whole_file: true,
        });
    }
    let center = line.map_or(1, |l| l.max(1) as usize).min(lines.len());
    let start = center.saturating_sub(opts.window).max(1);
    let end = (center + opts.window).min(lines.len());
    Ok(Snippet {
        path,
        line,
        start_line: u32::try_from(start).unwrap_or(u32::MAX),
        end_line: u32::try_from(end).unwrap_or(u32::MAX),
        text: lines[start - 1..end].join("\n"),
        whole_file: false,
    })
}

/// Joins and canonicalises, refusing anything that ends up outside `root`.
fn checked_path(root: &Path, relative: &Path) -> Result<PathBuf, ContextError> {
    let outside = || ContextError::OutsideRoot(relative.to_path_buf());
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(outside());
    }
    let root = root.canonicalize().map_err(|source| ContextError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let full = root.join(relative);
    let canonical = full.canonicalize().map_err(|source| ContextError::Io {
        path: full.clone(),
        source,
    })?;
    if !canonical.starts_with(&root) {
        return Err(outside());
    }
    Ok(canonical)
}

fn read_limited(path: &Path, limit: u64) -> Result<String, ContextError> {
    let io = |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = fs::metadata(path).map_err(io)?.len();
    if size > limit {
        return Err(ContextError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        });
    }
    let mut bytes = Vec::new();
    fs::File::open(path)
        .map_err(io)?
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn slash_path(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// The components of a printed path, without scheme, drive, query or `.`.
fn path_components(frame_file: &str) -> Vec<String> {
    let mut path = frame_file.trim();
    for scheme in ["webpack-internal:///", "webpack:///", "file:///", "file://"] {
        if let Some(rest) = path.strip_prefix(scheme) {
            path = rest;
        }
    }
    let path = path.split(['?', '#']).next().unwrap_or(path);
    path.split(['/', '\\'])
        .filter(|part| !part.is_empty() && *part != "." && !part.ends_with(':'))
        .filter(|part| !(part.starts_with('[') && part.ends_with(']')))
        .map(str::to_owned)
        .collect()
}

/// The project's files, listed once on first need.
pub(crate) struct ProjectIndex {
    root: PathBuf,
    files: Option<Vec<Vec<String>>>,
}

impl ProjectIndex {
    /// An index of `root`, which must already be canonical.
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            files: None,
        }
    }

    /// The canonical root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// See [`resolve_in_root`].
    pub(crate) fn resolve(&mut self, frame_file: &str) -> Option<PathBuf> {
        let parts = path_components(frame_file);
        if parts.is_empty() || parts.iter().any(|p| p == "..") {
            return None;
        }
        // Cheap first: each suffix of the printed path, longest first.
        for start in 0..parts.len() {
            let relative: PathBuf = parts[start..].iter().collect();
            if checked_path(&self.root, &relative).is_ok_and(|full| full.is_file()) {
                return Some(relative);
            }
        }
        self.search(&parts)
    }

    /// The indexed file sharing the longest trailing components with `parts`.
    fn search(&mut self, parts: &[String]) -> Option<PathBuf> {
        let root = self.root.clone();
        let files = self.files.get_or_insert_with(|| list_files(&root));
        let mut best: Option<(usize, &Vec<String>)> = None;
        let mut tied = false;
        for file in files.iter() {
            let shared = file
                .iter()
                .rev()
                .zip(parts.iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            if shared == 0 {
                continue;
            }
            match best {
                Some((score, _)) if shared < score => {}
                Some((score, _)) if shared == score => tied = true,
                _ => {
                    best = Some((shared, file));
                    tied = false;
                }
            }
        }
        let (_, file) = best.filter(|_| !tied)?;
        let relative: PathBuf = file.iter().collect();
        checked_path(&self.root, &relative).ok()?;
        Some(relative)
    }
}

/// Lists regular files under `root`, without following symlinks and without
/// entering dependency, build or hidden folders.
fn list_files(root: &Path) -> Vec<Vec<String>> {
    let mut files = Vec::new();
    let mut stack: Vec<(PathBuf, Vec<String>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if files.len() >= MAX_INDEXED_FILES {
                return files;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut path = prefix.clone();
            path.push(name.clone());
            if kind.is_file() {
                files.push(path);
            } else if kind.is_dir() && !skipped_dir(&name) && path.len() < MAX_DEPTH {
                stack.push((entry.path(), path));
            }
        }
    }
    files
}

fn skipped_dir(name: &str) -> bool {
    name.starts_with('.') || SKIPPED_DIRS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_paths_lose_scheme_drive_and_placeholders() {
        assert_eq!(
            path_components("webpack:///./src/a.ts?abc"),
            vec!["src", "a.ts"]
        );
        assert_eq!(
            path_components(r"C:\snapshot\app\dist\e.js"),
            vec!["snapshot", "app", "dist", "e.js"]
        );
        assert_eq!(
            path_components("[PROJECT_ROOT]/app/models/list.rb"),
            vec!["app", "models", "list.rb"]
        );
    }

    #[test]
    fn jvm_frame_gives_its_package_folders() {
        let frame = crate::block::frame("Job.java", Some(3), None, Some("com.acme.jobs.Job.run"));
        assert_eq!(
            jvm_package_path(&frame).as_deref(),
            Some("com/acme/jobs/Job.java")
        );
    }
}
