//! Triage: turns a stack trace, as pasted from any log, into a [`Trace`];
//! fingerprints it so runs of the same bug group together; and gathers the
//! source the in-app frames point at. It never touches the network, never
//! panics on input, and bounds its work (`MAX_INPUT_BYTES`, frame caps, and
//! regexes without backtracking).
//!
//! The flow of [`parse`]: `normalize` cleans the text into lines; each
//! language's `score` votes on who printed it; that language's parser splits
//! it into error blocks; `assemble` links the blocks into a chain and picks
//! the root cause; `classify` marks in-app frames.

mod block;
mod classify;
mod context;
mod dotnet;
mod elixir;
mod fingerprint;
mod flatten;
mod go;
mod java;
mod javascript;
mod model;
mod normalize;
mod php;
mod python;
mod record;
mod report;
mod ruby;
mod rust;

use std::collections::VecDeque;

pub use context::{
    ContextError, ContextOptions, Snippet, gather_context, read_snippet, resolve_in_root,
};
pub use fingerprint::{fingerprint, mask_message};
pub use model::{ChainedError, Frame, Language, ParseOptions, Trace};
pub use normalize::MAX_INPUT_BYTES;

use block::{Block, Link, Parsed};
use classify::{Origin, Rooted, classify};

/// Parses a stack trace pasted from anywhere (log prefixes, Markdown quotes,
/// JSON or HTML escaping, one flattened line, CRLF). Never panics: input that
/// no runtime printed gives a [`Language::Unknown`] trace with no frames and
/// a best-effort error line.
pub fn parse(text: &str, opts: &ParseOptions) -> Trace {
    let normalized = normalize::normalize(text);
    let lines = &normalized.lines;
    let language = detect(lines);
    let parsed = match language {
        Language::Python => python::parse(lines),
        Language::JavaScript => javascript::parse(lines),
        Language::Rust => rust::parse(lines),
        Language::Go => go::parse(lines),
        Language::Ruby => ruby::parse(lines),
        Language::Java => java::parse(lines),
        Language::DotNet => dotnet::parse(lines),
        Language::Php => php::parse(lines),
        Language::Elixir => elixir::parse(lines),
        Language::Unknown => Parsed::default(),
    };

    let (mut trace, shared) = assemble(language, parsed);
    let returned_error = language == Language::Rust && trace.error_type.is_empty();
    if language == Language::Unknown || returned_error {
        apply_listed_causes(&mut trace, lines);
    }
    trace.input_truncated = normalized.truncated;
    if trace.error_type.is_empty() {
        let error = match language {
            Language::Unknown => Some(report::best_effort_error(lines)),
            _ => report::markdown_error(lines),
        };
        if let Some(error) = error {
            trace.error_type = error.error_type;
            trace.message = error.message;
        }
    }
    mark_frames(&mut trace, opts, shared);
    trace
}

/// A returned error printed as `Error: outer` and a `Caused by:` list: the
/// last cause is the root, the `Error:` line the outermost wrapper (unless
/// it is empty, and the list starts with the outermost error).
fn apply_listed_causes(trace: &mut Trace, lines: &[String]) {
    let causes = report::listed_causes(lines);
    let Some(root) = causes.last() else {
        return;
    };
    let outer = report::best_effort_error(lines);
    trace.error_type = root.error_type.clone();
    trace.message = root.message.clone();
    let as_chained = |error: &block::ErrorLine| model::ChainedError {
        error_type: error.error_type.clone(),
        message: error.message.clone(),
        frames: Vec::new(),
    };
    let outer = (!outer.message.is_empty()).then_some(&outer);
    trace.chain = causes.iter().rev().chain(outer).map(as_chained).collect();
}

/// The language whose tell-tale lines are most numerous.
fn detect(lines: &[String]) -> Language {
    let scores = [
        (Language::Rust, rust::score(lines)),
        (Language::Go, go::score(lines)),
        (Language::Python, python::score(lines)),
        (Language::Java, java::score(lines)),
        (Language::Ruby, ruby::score(lines)),
        (Language::JavaScript, javascript::score(lines)),
        (Language::DotNet, dotnet::score(lines)),
        (Language::Php, php::score(lines)),
        (Language::Elixir, elixir::score(lines)),
    ];
    let mut best = (Language::Unknown, 0);
    for (language, score) in scores {
        if score > best.1 {
            best = (language, score);
        }
    }
    best.0
}

/// Groups linked blocks into chains (root cause first), picks the main chain,
/// and fills the trace from its root cause. Also returns the frames the root
/// cause's printout left out as shared with the errors it caused.
fn assemble(language: Language, parsed: Parsed) -> (Trace, Vec<Frame>) {
    let mut trace = Trace::empty(language);
    trace.thread = parsed.thread;
    trace.signal = parsed.signal;

    let mut groups = chains(parsed.blocks);
    let Some(main) = main_chain(&groups) else {
        return (trace, Vec::new());
    };
    let chain = groups.remove(main);
    let Some(root) = chain.first() else {
        return (trace, Vec::new());
    };
    trace.error_type = root.error.error_type.clone();
    trace.qualified_error_type = root.error.qualified.clone();
    trace.message = root.error.message.clone();
    // A cause whose frames were all elided (`... 5 more`) shares them with
    // the error it caused.
    let with_frames = chain.iter().position(|b| !b.frames.is_empty());
    let shared = with_frames.map_or_else(Vec::new, |at| shared_frames(&chain[at..]));
    trace.frames = with_frames
        .map(|at| chain[at].frames.clone())
        .unwrap_or_default();
    if chain.len() > 1 {
        trace.chain = chain.iter().map(chained).collect();
    }

    for group in &groups {
        let Some(other) = group.first() else {
            continue;
        };
        let duplicate = chain.iter().any(|b| same_error(b, other))
            || trace.secondary.iter().any(|s| {
                s.error_type == other.error.error_type && s.message == other.error.message
            });
        if !duplicate {
            trace.secondary.push(chained(other));
        }
    }
    (trace, shared)
}

/// The frames `chain[0]` did not print because the error it caused ends with
/// them (`... N more`), rebuilt from the outermost error inwards.
fn shared_frames(chain: &[Block]) -> Vec<Frame> {
    let mut whole: Vec<Frame> = Vec::new();
    for block in chain.iter().rev() {
        let shared = block.elided.min(whole.len());
        let tail = whole.split_off(whole.len() - shared);
        whole = block.frames.iter().cloned().chain(tail).collect();
    }
    let printed = chain.first().map_or(0, |b| b.frames.len());
    whole.split_off(printed.min(whole.len()))
}

/// Splits blocks into chains at each unrelated error, root cause first.
fn chains(blocks: Vec<Block>) -> Vec<Vec<Block>> {
    let mut groups: Vec<VecDeque<Block>> = Vec::new();
    for block in blocks {
        match (block.link, groups.last_mut()) {
            (Link::AfterCause, Some(group)) => group.push_back(block),
            (Link::CauseOfPrevious, Some(group)) => group.push_front(block),
            _ => groups.push(VecDeque::from([block])),
        }
    }
    groups.into_iter().map(Vec::from).collect()
}

/// The first chain with frames; a later chain that repeats its root cause
/// with more context (the same exception logged again, wrapped) wins.
fn main_chain(groups: &[Vec<Block>]) -> Option<usize> {
    let has_frames = |group: &Vec<Block>| group.iter().any(|b| !b.frames.is_empty());
    let first = groups
        .iter()
        .position(has_frames)
        .or((!groups.is_empty()).then_some(0))?;
    let root = groups[first].first()?;
    let longer = groups
        .iter()
        .enumerate()
        .skip(first + 1)
        .filter(|(_, group)| group.len() > groups[first].len())
        .find(|(_, group)| group.first().is_some_and(|other| same_error(root, other)));
    Some(longer.map_or(first, |(index, _)| index))
}

fn reaches_app(error: &model::ChainedError) -> bool {
    error.frames.iter().any(|frame| frame.in_app)
}

fn same_error(a: &Block, b: &Block) -> bool {
    a.error.error_type == b.error.error_type && a.error.message == b.error.message
}

fn chained(block: &Block) -> model::ChainedError {
    model::ChainedError {
        error_type: block.error.error_type.clone(),
        message: block.error.message.clone(),
        frames: block.frames.clone(),
    }
}

/// The innermost in-app frame below the last runtime `panic` frame: frames
/// above it (Go) belong to the deferred handler that recovered and
/// re-panicked or logged, not to the code that failed.
fn root_frame(frames: &[Frame]) -> Option<usize> {
    let below_panic = frames
        .iter()
        .rposition(|frame| frame.function.as_deref() == Some("panic"))
        .map_or(0, |at| at + 1);
    let in_app = |frame: &Frame| frame.in_app;
    frames[below_panic..]
        .iter()
        .position(in_app)
        .map(|index| index + below_panic)
        .or_else(|| frames.iter().position(in_app))
}

/// Marks in-app frames everywhere and points at the root and library frames.
///
/// A root cause whose printed frames are all outside the application gets
/// the `shared` frames it left out: the call from the application is there.
/// Failing that, it gets the frames of the nearest error it caused that
/// reaches the application: a cause's own stack stops where it was caught
/// (Python's `from`, Node's `[cause]:` of an I/O error), and the way there
/// is printed with the error that wrapped it.
fn mark_frames(trace: &mut Trace, opts: &ParseOptions, shared: Vec<Frame>) {
    let mut rooted = opts.root.as_deref().and_then(Rooted::new);
    let language = trace.language;
    let mut origins = classify(language, &mut trace.frames, rooted.as_mut());
    for error in trace.chain.iter_mut().chain(trace.secondary.iter_mut()) {
        classify(language, &mut error.frames, rooted.as_mut());
    }
    if !origins.contains(&Origin::App) && !shared.is_empty() {
        trace.frames.extend(shared);
        origins = classify(language, &mut trace.frames, rooted.as_mut());
    }
    if !origins.contains(&Origin::App)
        && let Some(wrapper) = trace.chain.iter().skip(1).find(|e| reaches_app(e))
    {
        trace.frames.extend(wrapper.frames.iter().cloned());
        origins = classify(language, &mut trace.frames, rooted.as_mut());
    }

    trace.root_frame = root_frame(&trace.frames);
    if trace.root_frame.is_none() && !trace.frames.is_empty() {
        let outside_runtime = origins.iter().position(|origin| *origin != Origin::Runtime);
        trace.library_root = Some(outside_runtime.unwrap_or(0));
    }
}
