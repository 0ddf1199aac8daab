//! Turns a language model's reply into file edits, checks that every path stays inside the
//! project root, applies the edits inside a throw-away workspace and produces the diff.
//!
//! The reply is untrusted input: nothing here panics on it, runs it, or writes outside the
//! workspace. The flow is [`parse_reply`] (text to [`Edit`]s, no I/O), then [`apply`] (every
//! path through [`check_path`], every edit computed in memory, limits checked, then written).

mod apply;
mod function;
mod hints;
mod matching;
mod parse;
mod path;
mod scan;
mod search;
mod udiff;

use serde::{Deserialize, Serialize};

pub use apply::{Applied, EditError, Limits, apply, unified_diff};
pub use parse::{ParseError, Parsed, Skipped, parse_reply, parse_reply_detailed};
pub use path::{PathError, check_path};

/// One change to one file, as the model proposed it. `path` is relative to the project root
/// and not yet checked: [`apply`] checks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Edit {
    /// The file's whole new content; creates the file when it does not exist.
    WholeFile {
        /// The file, relative to the project root.
        path: String,
        /// The new content.
        content: String,
    },
    /// Replace the one place where `search` occurs; an empty `search` creates a new file.
    Replace {
        /// The file, relative to the project root.
        path: String,
        /// The text to find, which must occur exactly once.
        search: String,
        /// The text to put in its place.
        replace: String,
    },
    /// Replace the definition of the function `name`, which must occur exactly once.
    ReplaceFunction {
        /// The file, relative to the project root.
        path: String,
        /// The function's name, as written after `def`, `fn`, `function` or `const`.
        name: String,
        /// The new definition, decorators and doc comments included.
        content: String,
    },
    /// Apply the hunks of a unified diff, found by their context lines.
    Patch {
        /// The file, relative to the project root.
        path: String,
        /// The hunks, in file order.
        hunks: Vec<Hunk>,
    },
}

impl Edit {
    /// The file this edit changes, relative to the project root, as the model wrote it.
    pub fn path(&self) -> &str {
        match self {
            Edit::WholeFile { path, .. }
            | Edit::Replace { path, .. }
            | Edit::ReplaceFunction { path, .. }
            | Edit::Patch { path, .. } => path,
        }
    }
}

/// One hunk of a unified diff. Line numbers from models are often wrong, so `old_start` is
/// only a hint for choosing between several places that match the context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hunk {
    /// The 1-based line the hunk claims to start at in the old file, when the header had one.
    pub old_start: Option<usize>,
    /// The hunk's lines, without their line endings.
    pub lines: Vec<HunkLine>,
}

/// One line of a hunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", content = "text", rename_all = "snake_case")]
pub enum HunkLine {
    /// A line kept as it is (a leading space in the diff).
    Context(String),
    /// A line taken out (a leading `-`).
    Remove(String),
    /// A line put in (a leading `+`).
    Add(String),
}

impl Hunk {
    /// The lines the hunk expects to find: context and removed lines, in order.
    pub fn old_lines(&self) -> Vec<&str> {
        let old = self.lines.iter().filter_map(|line| match line {
            HunkLine::Context(text) | HunkLine::Remove(text) => Some(text.as_str()),
            HunkLine::Add(_) => None,
        });
        old.collect()
    }

    /// The lines the hunk leaves in their place: context and added lines, in order.
    pub fn new_lines(&self) -> Vec<&str> {
        let new = self.lines.iter().filter_map(|line| match line {
            HunkLine::Context(text) | HunkLine::Add(text) => Some(text.as_str()),
            HunkLine::Remove(_) => None,
        });
        new.collect()
    }
}
