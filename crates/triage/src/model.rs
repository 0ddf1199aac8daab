//! The parsed shape of a stack trace: the error, its frames and its chain.
//! Every type here is plain data and serialises to stable JSON.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The language (runtime family) that printed a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// CPython tracebacks, Python 2 and 3.
    Python,
    /// V8 (Node.js) and JavaScriptCore (Bun) stacks, TypeScript included.
    JavaScript,
    /// Rust panics, with or without a backtrace.
    Rust,
    /// Go panics and fatal errors.
    Go,
    /// Ruby backtraces, plain or rendered by an error tracker.
    Ruby,
    /// JVM stacks (Java, Kotlin, Scala).
    Java,
    /// .NET stacks (C#, F#, VB), as `Exception.ToString()` prints them.
    #[serde(rename = "dotnet")]
    DotNet,
    /// PHP stacks, plain or as Laravel logs them.
    Php,
    /// Elixir stacks, Erlang frames included.
    Elixir,
    /// Nothing recognisable; only a best-effort error line is filled in.
    Unknown,
}

/// How to parse a trace.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// The project root. When set, a frame is in-app when its file lies under
    /// this directory and outside vendored folders; when unset, a heuristic
    /// decides from the path and function names alone.
    pub root: Option<PathBuf>,
}

/// One stack frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// The file as printed in the trace; empty when the trace names none
    /// (a symbol-only Rust backtrace line, for example).
    pub file: String,
    /// The 1-based line number, when printed.
    pub line: Option<u32>,
    /// The 1-based column, when printed.
    pub column: Option<u32>,
    /// The function, method or symbol; `None` for anonymous frames.
    pub function: Option<String>,
    /// Whether the frame belongs to the application rather than to a
    /// library, the runtime or the job framework.
    pub in_app: bool,
}

/// One error of an exception chain (or of a blob holding several errors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainedError {
    /// The error's type as the trace names it.
    pub error_type: String,
    /// The error's message (first line).
    pub message: String,
    /// The error's own frames, innermost first.
    pub frames: Vec<Frame>,
}

/// A parsed stack trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// Which runtime printed the trace.
    pub language: Language,
    /// The root cause's error type: the exception class, `panic` for Rust and
    /// Go panics, `fatal error` for Go fatal errors.
    pub error_type: String,
    /// The fully qualified type when the trace printed a module path that
    /// `error_type` leaves out (Python's `requests.exceptions.X`).
    pub qualified_error_type: Option<String>,
    /// The root cause's message; empty when the error has none.
    pub message: String,
    /// The root cause's frames, innermost first.
    pub frames: Vec<Frame>,
    /// Every error of the chain, root cause first, then each error raised
    /// because of (or while handling) the one before it. Empty when the trace
    /// holds a single error.
    pub chain: Vec<ChainedError>,
    /// Unrelated errors printed in the same blob after the main one (a
    /// follow-up failure while failing the job, for example).
    pub secondary: Vec<ChainedError>,
    /// Index into `frames` of the frame most likely to hold the bug: the
    /// innermost in-app frame.
    pub root_frame: Option<usize>,
    /// Index into `frames` of the frame where the error surfaced when no
    /// in-app frame is visible: the innermost frame outside the runtime.
    pub library_root: Option<usize>,
    /// The thread that panicked (Rust), when printed.
    pub thread: Option<String>,
    /// The signal that killed the process (Go), when printed.
    pub signal: Option<String>,
    /// Whether the input was longer than the parser reads and was cut.
    pub input_truncated: bool,
}

impl Trace {
    /// A trace with nothing recognised yet.
    pub(crate) fn empty(language: Language) -> Self {
        Self {
            language,
            error_type: String::new(),
            qualified_error_type: None,
            message: String::new(),
            frames: Vec::new(),
            chain: Vec::new(),
            secondary: Vec::new(),
            root_frame: None,
            library_root: None,
            thread: None,
            signal: None,
            input_truncated: false,
        }
    }

    /// The in-app frames, innermost first.
    pub fn app_frames(&self) -> impl Iterator<Item = &Frame> {
        self.frames.iter().filter(|frame| frame.in_app)
    }
}
