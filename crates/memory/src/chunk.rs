//! The failure and fix inputs, and how they are cut into chunks for embedding.
//!
//! A payload is embedded by its shape only (keys and JSON types), never by its values, so two
//! sign-ups with different e-mail addresses look alike and no customer data reaches a vector.
//!
//! The summary chunk is what near-duplicate grouping compares: the error line and the innermost
//! project frames, with everything that changes between two runs of the same bug (ids,
//! timestamps, counts, line numbers) replaced by placeholders.

use crate::embed::is_volatile;
use crate::secrets::{mask_payload, mask_secrets};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::LazyLock;

/// The most frames that get a chunk each; deeper frames rarely say more about the failure.
const MAX_FRAME_CHUNKS: usize = 8;

/// The longest chunk text, in characters; longer texts are cut.
const MAX_CHUNK_CHARS: usize = 4_000;

/// How deep the payload shape goes before it writes `…`.
const MAX_SHAPE_DEPTH: usize = 6;

/// How many keys of one object the payload shape lists before it writes `…`.
const MAX_SHAPE_KEYS: usize = 48;

/// How many of the innermost project frames the summary names.
const SUMMARY_FRAMES: usize = 2;

/// One final failure of a job, as the heal pipeline hands it to memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailureInput {
    /// The failed job.
    pub job_id: String,
    /// Its queue.
    pub queue: String,
    /// Its name.
    pub job_name: String,
    /// The triage fingerprint; failures with the same one form a group.
    pub fingerprint: String,
    /// The error's type or class, such as `TypeError`.
    pub error_type: String,
    /// The error message.
    pub message: String,
    /// The whole stack trace as the handler printed it.
    pub stack: String,
    /// The project's own frames, innermost first.
    pub frames: Vec<FrameInput>,
    /// The job's payload.
    pub payload: Value,
}

impl FailureInput {
    /// The failure with configured secrets and obvious secret patterns masked in its message,
    /// stack and payload.
    pub fn masked(mut self, secrets: &[String]) -> FailureInput {
        self.message = mask_secrets(&self.message, secrets);
        self.stack = mask_secrets(&self.stack, secrets);
        self.payload = mask_payload(&self.payload, secrets);
        self
    }
}

/// One stack frame in the project's own code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameInput {
    /// The file, relative to the project root.
    pub file: String,
    /// The line, when the trace gives one.
    pub line: Option<u32>,
    /// The function, when the trace gives one.
    pub function: Option<String>,
    /// The source lines around `line`.
    pub code: Option<String>,
}

/// What part of a failure or fix a chunk comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkKind {
    /// The error line and innermost frames with volatile values masked; grouping compares it.
    Summary,
    /// `error_type: message`.
    Error,
    /// One project frame with its code.
    Frame,
    /// The payload's keys and types.
    PayloadShape,
    /// A fix's root cause.
    RootCause,
    /// A fix's diff.
    Diff,
}

impl ChunkKind {
    /// The snake_case name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkKind::Summary => "summary",
            ChunkKind::Error => "error",
            ChunkKind::Frame => "frame",
            ChunkKind::PayloadShape => "payload_shape",
            ChunkKind::RootCause => "root_cause",
            ChunkKind::Diff => "diff",
        }
    }

    /// Parses the name written by [`ChunkKind::as_str`].
    pub fn parse(name: &str) -> Option<ChunkKind> {
        let all = [
            ChunkKind::Summary,
            ChunkKind::Error,
            ChunkKind::Frame,
            ChunkKind::PayloadShape,
            ChunkKind::RootCause,
            ChunkKind::Diff,
        ];
        all.into_iter().find(|k| k.as_str() == name)
    }
}

/// A piece of text to embed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Where it comes from.
    pub kind: ChunkKind,
    /// The text.
    pub text: String,
}

impl Chunk {
    fn new(kind: ChunkKind, text: String) -> Self {
        Chunk {
            kind,
            text: truncate(text, MAX_CHUNK_CHARS),
        }
    }
}

/// The chunks of a failure: its summary, its error line, one per project frame (at most eight)
/// with its code, and the payload's shape.
pub fn chunks_for_failure(input: &FailureInput) -> Vec<Chunk> {
    let error = format!("{}: {}", input.error_type, input.message);
    let mut chunks = vec![
        Chunk::new(ChunkKind::Summary, summary_text(input)),
        Chunk::new(ChunkKind::Error, error),
    ];

    let frames = input.frames.iter().take(MAX_FRAME_CHUNKS);
    chunks.extend(frames.map(|f| Chunk::new(ChunkKind::Frame, frame_text(f))));

    chunks.push(Chunk::new(
        ChunkKind::PayloadShape,
        payload_shape(&input.payload),
    ));
    chunks
}

/// The chunks of a fix: its root cause and its diff (each left out when empty).
pub fn chunks_for_fix(root_cause: &str, diff: &str) -> Vec<Chunk> {
    let parts = [(ChunkKind::RootCause, root_cause), (ChunkKind::Diff, diff)];
    parts
        .into_iter()
        .filter(|(_, text)| !text.trim().is_empty())
        .map(|(kind, text)| Chunk::new(kind, text.to_owned()))
        .collect()
}

/// `KeyError: 'email'` then `in create_user (app/users.py)` for the innermost project frames,
/// with ids, numbers and timestamps masked, so two runs of one bug read the same.
pub fn summary_text(input: &FailureInput) -> String {
    let mut text = format!("{}: {}", input.error_type, mask_volatile(&input.message));
    for frame in input.frames.iter().take(SUMMARY_FRAMES) {
        let file = mask_volatile(&frame.file);
        match &frame.function {
            Some(function) => text.push_str(&format!("\nin {} ({file})", mask_volatile(function))),
            None => text.push_str(&format!("\nin {file}")),
        }
    }
    text
}

static UUID: LazyLock<Regex> = LazyLock::new(|| {
    let hex = |n: usize| format!("[0-9a-fA-F]{{{n}}}");
    let pattern = format!("{}-{}-{}-{}-{}", hex(8), hex(4), hex(4), hex(4), hex(12));
    Regex::new(&pattern).expect("the uuid pattern compiles")
});
static WORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9A-Za-z_]+").expect("the word pattern compiles"));
static DIGITS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9]+").expect("the digits pattern compiles"));

/// The text with UUIDs, hex ids and `0x…` as `<id>` and every digit run as `<n>`.
pub fn mask_volatile(text: &str) -> String {
    let text = UUID.replace_all(text, "<id>");
    let text = WORD.replace_all(&text, |caps: &regex::Captures<'_>| {
        let word = &caps[0];
        if is_volatile(word) {
            return "<id>".to_owned();
        }
        DIGITS.replace_all(word, "<n>").into_owned()
    });
    text.into_owned()
}

/// `src/user.py:12 in create_user` followed by the code, when there is some.
fn frame_text(frame: &FrameInput) -> String {
    let mut text = frame.file.clone();
    if let Some(line) = frame.line {
        text.push_str(&format!(":{line}"));
    }
    if let Some(function) = &frame.function {
        text.push_str(&format!(" in {function}"));
    }
    if let Some(code) = &frame.code {
        text.push('\n');
        text.push_str(code);
    }
    text
}

/// The payload's keys and JSON types, never its values: `{"age": number, "email": string}`.
///
/// Keys are sorted. Array elements are described by the set of their shapes. Keys that look
/// like data rather than names (an e-mail address used as a key, an id) are written `<key>`.
pub fn payload_shape(payload: &Value) -> String {
    shape(payload, 0)
}

fn shape(value: &Value, depth: usize) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "boolean".to_owned(),
        Value::Number(_) => "number".to_owned(),
        Value::String(_) => "string".to_owned(),
        Value::Array(_) | Value::Object(_) if depth >= MAX_SHAPE_DEPTH => "…".to_owned(),
        Value::Array(items) => array_shape(items, depth),
        Value::Object(map) => object_shape(map, depth),
    }
}

fn array_shape(items: &[Value], depth: usize) -> String {
    let shapes: BTreeSet<String> = items.iter().map(|v| shape(v, depth + 1)).collect();
    let joined: Vec<String> = shapes.into_iter().collect();
    format!("[{}]", joined.join(" | "))
}

fn object_shape(map: &serde_json::Map<String, Value>, depth: usize) -> String {
    let mut fields: Vec<(String, String)> = map
        .iter()
        .map(|(k, v)| (shape_key(k), shape(v, depth + 1)))
        .collect();
    fields.sort();
    fields.dedup();

    let mut parts: Vec<String> = fields
        .iter()
        .take(MAX_SHAPE_KEYS)
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    if fields.len() > MAX_SHAPE_KEYS {
        parts.push("…".to_owned());
    }
    format!("{{{}}}", parts.join(", "))
}

/// A key quoted as JSON when it looks like a field name, `<key>` when it looks like data.
fn shape_key(key: &str) -> String {
    let mut chars = key.chars();
    let starts_like_a_name = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_like_a_name = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let has_long_digit_run = key
        .split(|c: char| !c.is_ascii_digit())
        .any(|run| run.len() >= 4);
    if starts_like_a_name && rest_like_a_name && key.len() <= 64 && !has_long_digit_run {
        return format!("{key:?}");
    }
    "<key>".to_owned()
}

fn truncate(mut text: String, max_chars: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};
    use serde_json::json;

    fn check_shape(payload: Value, expect: Expect) {
        expect.assert_eq(&payload_shape(&payload));
    }

    fn failure(payload: Value) -> FailureInput {
        FailureInput {
            job_id: "7".into(),
            queue: "signup".into(),
            job_name: "welcome".into(),
            fingerprint: "fp".into(),
            error_type: "KeyError".into(),
            message: "'email'".into(),
            stack: "Traceback ...".into(),
            frames: vec![
                FrameInput {
                    file: "app/users.py".into(),
                    line: Some(12),
                    function: Some("create_user".into()),
                    code: Some("    email = data['email']".into()),
                },
                FrameInput {
                    file: "app/main.py".into(),
                    line: None,
                    function: None,
                    code: None,
                },
            ],
            payload,
        }
    }

    #[test]
    fn payload_shape_lists_keys_and_types_but_no_values() {
        let payload = json!({
            "email": "bob@example.org", "age": 41, "admin": false, "nick": null,
            "tags": ["vip", "beta"], "address": {"city": "Lyon", "zip": "69001"},
            "mixed": [1, "two", {"k": 3}], "empty": []
        });
        check_shape(
            payload.clone(),
            expect![[
                r#"{"address": {"city": string, "zip": string}, "admin": boolean, "age": number, "email": string, "empty": [], "mixed": [number | string | {"k": number}], "nick": null, "tags": [string]}"#
            ]],
        );
        let shape = payload_shape(&payload);
        for value in ["bob@example.org", "41", "vip", "Lyon", "69001", "two"] {
            assert!(!shape.contains(value), "{value} leaked into {shape}");
        }
    }

    #[test]
    fn keys_that_look_like_data_are_not_written() {
        check_shape(
            json!({"bob@example.org": 1, "user_12345": true, "ok-key": "x"}),
            expect![[r#"{"ok-key": string, <key>: boolean, <key>: number}"#]],
        );
    }

    #[test]
    fn deep_payloads_are_cut() {
        check_shape(
            json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}),
            expect![[r#"{"a": {"b": {"c": {"d": {"e": {"f": …}}}}}}"#]],
        );
    }

    #[test]
    fn failure_chunks_are_error_frames_and_payload_shape() {
        let chunks = chunks_for_failure(&failure(json!({"email": "bob@example.org"})));
        expect![[r#"
            [
                Chunk {
                    kind: Summary,
                    text: "KeyError: 'email'\nin create_user (app/users.py)\nin app/main.py",
                },
                Chunk {
                    kind: Error,
                    text: "KeyError: 'email'",
                },
                Chunk {
                    kind: Frame,
                    text: "app/users.py:12 in create_user\n    email = data['email']",
                },
                Chunk {
                    kind: Frame,
                    text: "app/main.py",
                },
                Chunk {
                    kind: PayloadShape,
                    text: "{\"email\": string}",
                },
            ]
        "#]]
        .assert_debug_eq(&chunks);
    }

    #[test]
    fn summary_masks_ids_numbers_and_timestamps_but_keeps_names() {
        let mut input = failure(json!(null));
        input.message = "user 4821 (5f0c2a9e-1b7d-4c3e-9a8f-0123456789ab) not found at \
                         2026-03-01T10:12:01Z, request deadbeef42 via 0x7f3a"
            .into();
        expect![[r#"
            KeyError: user <n> (<id>) not found at <n>-<n>-<n>T<n>:<n>:<n>Z, request <id> via <id>
            in create_user (app/users.py)
            in app/main.py"#]]
        .assert_eq(&summary_text(&input));
    }

    #[test]
    fn two_runs_of_one_bug_have_the_same_summary() {
        let mut first = failure(json!({"email": "a@example.org"}));
        let mut second = failure(json!({"email": "b@example.org"}));
        first.message = "order 1182 has no customer (at 09:14:02)".into();
        second.message = "order 77 has no customer (at 23:59:59)".into();
        second.frames[0].line = Some(48);
        assert_eq!(summary_text(&first), summary_text(&second));
    }

    #[test]
    fn fix_chunks_skip_empty_parts() {
        let chunks = chunks_for_fix("email may be missing", "  \n");
        assert_eq!(
            chunks,
            [Chunk {
                kind: ChunkKind::RootCause,
                text: "email may be missing".into()
            }]
        );
        assert_eq!(chunks_for_fix("a", "b").len(), 2);
    }

    #[test]
    fn long_chunks_are_cut_on_a_character_boundary() {
        let mut input = failure(json!(null));
        input.message = "é".repeat(MAX_CHUNK_CHARS + 10);
        let error = &chunks_for_failure(&input)[0];
        assert_eq!(error.text.chars().count(), MAX_CHUNK_CHARS);
    }

    #[test]
    fn chunk_kind_names_round_trip() {
        for kind in [ChunkKind::Error, ChunkKind::PayloadShape, ChunkKind::Diff] {
            assert_eq!(ChunkKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ChunkKind::parse("nope"), None);
    }
}
