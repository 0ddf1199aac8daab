//! Structured log records (a JSON object per line, as Docker, pino, structlog
//! or Sidekiq write them; a pretty-printed object; several records joined on
//! one line) replaced by the text a runtime printed: their message, error and
//! stack fields, and the failure hashes job systems store. Bounded: a fixed
//! number of layers, a fixed nesting depth, one pass over each record.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::normalize::re;

/// The longest text before a record's `{` that is taken for a log prefix.
const MAX_PREFIX_LEN: usize = 120;

/// How many layers of JSON are unwrapped: a record logged as the message of
/// another record, itself behind a log prefix.
const MAX_JSON_LAYERS: usize = 4;

/// How deep inside one record text is looked for.
const MAX_DEPTH: usize = 4;

/// Keys whose values hold a record's text, in output order. Keys are
/// compared by `key_is`, so `stackTrace`, `stack_trace` and `StackTrace`
/// are all `stacktrace`, and ECS's flat `error.stack_trace` is
/// `errorstacktrace`.
const TEXT_KEYS: [&str; 16] = [
    "msg",
    "message",
    "log",
    "event",
    "error",
    "err",
    "exception",
    // Bull and BullMQ keep a failed job's message beside its `stacktrace`.
    "failedreason",
    "excinfo",
    "exctext",
    "stack",
    "stacktrace",
    "traceback",
    "backtrace",
    "errorbacktrace",
    "errorstacktrace",
];

/// Keys whose value, when it is text or a list, is the whole trace of the
/// error object holding it. (Sidekiq's `backtrace` option holds a number.)
const STACK_KEYS: [&str; 8] = [
    "stack",
    "stacktrace",
    "traceback",
    "backtrace",
    "errorbacktrace",
    "errorstack",
    "errorstacktrace",
    "exceptionstacktrace",
];

/// Pairs of keys that failure records (Resque, Sidekiq, JobRunr, ECS) use
/// for an error's class and its message.
const TYPED_KEYS: [(&str, &str); 5] = [
    ("exception", "error"),
    ("exceptionclass", "exceptionmessage"),
    ("errorclass", "errormessage"),
    ("exceptiontype", "exceptionmessage"),
    ("errortype", "errormessage"),
];

/// A class name as failure records store it (`NoMethodError`, `Foo::Bar`).
static TYPE_NAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?:[A-Za-z_][\w$]*(?:\.|::))*[A-Z][\w$]*$"));

static DIGITS: LazyLock<Regex> = LazyLock::new(|| re(r"\d+"));

/// Replaces the records in `text` by their text, layer by layer until no
/// record is left.
pub(crate) fn expand_records(text: &str) -> String {
    let mut current = text.to_owned();
    for _ in 0..MAX_JSON_LAYERS {
        let Some(next) = expand_layer(&current) else {
            break;
        };
        current = next;
    }
    current
}

/// One layer of records replaced by their text, or `None` when there is none.
fn expand_layer(text: &str) -> Option<String> {
    if let Some(expanded) = whole_record(text).or_else(|| prefixed_record(text)) {
        return Some(expanded);
    }
    if !text.contains("{\"") {
        return None;
    }
    let mut changed = false;
    let lines: Vec<String> = text
        .split('\n')
        .map(|line| match line_records(line) {
            Some(expanded) => {
                changed = true;
                expanded
            }
            None => line.to_owned(),
        })
        .collect();
    changed.then(|| lines.join("\n"))
}

/// The text of `text` when all of it is one JSON object.
fn whole_record(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let is_record = trimmed.starts_with('{') && trimmed.ends_with('}');
    is_record.then(|| records_text(trimmed)).flatten()
}

/// The text of one (pretty-printed) record whose every line carries the
/// prefix its first line has before the `{` (a compose service, a Markdown
/// quote), digits aside.
fn prefixed_record(text: &str) -> Option<String> {
    let first = text.lines().find(|line| !line.trim().is_empty())?;
    let brace = first.find('{')?;
    let prefix = first[..brace].trim_end();
    if prefix.is_empty() || brace > MAX_PREFIX_LEN {
        return None;
    }
    let shape = Regex::new(&format!("^{}", digit_shape(prefix))).ok()?;
    let mut body = String::with_capacity(text.len());
    for line in text.lines() {
        if !line.trim().is_empty() {
            let found = shape.find(line)?;
            body.push_str(&line[found.end()..]);
        }
        body.push('\n');
    }
    whole_record(&body)
}

/// The text of the records that fill a line, or follow a short log prefix on
/// it (the prefix is dropped like any log prefix). A line may hold several
/// records when a log shipper joined them, each behind its copy of the
/// prefix.
fn line_records(line: &str) -> Option<String> {
    let candidate = line.trim();
    if !candidate.ends_with('}') {
        return None;
    }
    let brace = candidate.find('{')?;
    if brace > MAX_PREFIX_LEN {
        return None;
    }
    let prefix = candidate[..brace].trim();
    records_between(&candidate[brace..], prefix)
}

/// The length of the start of `text` that has the shape of `prefix`: the
/// same characters, and a run of digits wherever `prefix` has one. `None`
/// for an empty prefix or another start.
fn shape_prefix_len(text: &str, prefix: &str) -> Option<usize> {
    let mut text_chars = text.char_indices().peekable();
    let mut prefix_chars = prefix.chars().peekable();
    prefix_chars.peek()?;
    while let Some(want) = prefix_chars.next() {
        let (_, got) = text_chars.next()?;
        if !want.is_ascii_digit() {
            if got != want {
                return None;
            }
            continue;
        }
        if !got.is_ascii_digit() {
            return None;
        }
        while prefix_chars.next_if(char::is_ascii_digit).is_some() {}
        while text_chars.next_if(|(_, c)| c.is_ascii_digit()).is_some() {}
    }
    Some(text_chars.peek().map_or(text.len(), |&(at, _)| at))
}

/// A pattern matching `text` with any digits where it has digits.
fn digit_shape(text: &str) -> String {
    DIGITS
        .split(text)
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(r"\d+")
}

/// The text of the JSON records that make up all of `candidate`, or `None`
/// when it is not only records or they hold no text.
fn records_text(candidate: &str) -> Option<String> {
    records_between(candidate, "")
}

/// The text of the JSON records that make up all of `candidate`, with
/// nothing but whitespace or a copy of `prefix` (digits may vary) between
/// them.
fn records_between(candidate: &str, prefix: &str) -> Option<String> {
    let mut parts = Vec::new();
    let mut rest = candidate.trim_start();
    while !rest.is_empty() {
        if let Some(len) = shape_prefix_len(rest, prefix) {
            rest = rest[len..].trim_start();
        }
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        let value = stream.next()?.ok()?;
        if !value.is_object() {
            return None;
        }
        collect_text(&value, &mut parts, 0);
        rest = rest[stream.byte_offset()..].trim_start();
    }
    (!parts.is_empty()).then(|| parts.join("\n"))
}

fn collect_text(value: &Value, parts: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::String(text) => parts.push(text.trim_end_matches(['\n', '\r']).to_owned()),
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_text(item, parts, depth + 1)),
        Value::Object(map) => collect_object(map, parts, depth),
        _ => {}
    }
}

/// An object's text: in an error object (below the top), its typed error
/// line and its stack; else its typed line, its text fields, and the failure
/// objects it holds under other keys (Sidekiq's `job`).
fn collect_object(map: &Map<String, Value>, parts: &mut Vec<String>, depth: usize) {
    let stack = stack_field(map);
    let typed = typed_message(map).filter(|typed| !stack.is_some_and(|s| names(s, &typed.0)));
    let mut used: Vec<&str> = Vec::new();
    if let Some((_, line, type_key, message_key)) = &typed {
        parts.push(line.clone());
        used.extend([*type_key, *message_key]);
    }
    if depth > 0
        && let Some(stack) = stack
    {
        collect_text(stack, parts, depth + 1);
        return;
    }
    for key in TEXT_KEYS.iter().filter(|key| !used.contains(key)) {
        if let Some(field) = field(map, key) {
            collect_text(field, parts, depth + 1);
        }
    }
    for (key, value) in map {
        let is_text_key = TEXT_KEYS.iter().any(|name| key_is(key, name));
        if !is_text_key && value.as_object().is_some_and(holds_failure) {
            collect_text(value, parts, depth + 1);
        }
    }
}

/// Whether an object nested in a record is a failure: it names an error
/// type and message, or holds a stack.
fn holds_failure(map: &Map<String, Value>) -> bool {
    typed_message(map).is_some() || stack_field(map).is_some()
}

/// The first of `STACK_KEYS` that holds text or a list.
fn stack_field(map: &Map<String, Value>) -> Option<&Value> {
    STACK_KEYS.iter().find_map(|key| {
        field(map, key).filter(|value| matches!(value, Value::String(_) | Value::Array(_)))
    })
}

/// Whether a stack's first line already names `error_type`, so the typed
/// line would only repeat it.
fn names(stack: &Value, error_type: &str) -> bool {
    let first = match stack {
        Value::String(text) => text.lines().next(),
        Value::Array(items) => items.first().and_then(Value::as_str),
        _ => None,
    };
    first.is_some_and(|line| line.contains(error_type))
}

/// `Class: message` when a record keeps the two apart, so the parsers see
/// the error line a runtime would print: the type, that line, and the two
/// keys it used.
fn typed_message(map: &Map<String, Value>) -> Option<(String, String, &'static str, &'static str)> {
    TYPED_KEYS.iter().find_map(|&(type_key, message_key)| {
        let error_type = field(map, type_key)?.as_str()?;
        let message = field(map, message_key)?.as_str()?;
        let line = format!("{error_type}: {message}");
        TYPE_NAME
            .is_match(error_type)
            .then(|| (error_type.to_owned(), line, type_key, message_key))
    })
}

/// The value of the key that `key_is` `name`.
fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(key, _)| key_is(key, name))
            .map(|(_, value)| value)
    })
}

/// Whether `key` is `name` (lower case, no separators) once lower-cased
/// and stripped of `_`, `-` and `.`; compared without allocating, since a
/// record may hold many keys.
fn key_is(key: &str, name: &str) -> bool {
    let mut wanted = name.chars();
    let same = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .all(|c| wanted.next() == Some(c));
    same && wanted.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_hash_nested_under_another_key_gives_its_error_and_backtrace() {
        let text = r#"{"context":"Job raised exception","job":{"class":"SyncJob","backtrace":20,"error_class":"KeyError","error_message":"key not found: :id","error_backtrace":["/app/a.rb:1:in `x'"]}}"#;
        assert_eq!(
            expand_records(text),
            "KeyError: key not found: :id\n/app/a.rb:1:in `x'"
        );
    }

    #[test]
    fn camel_case_keys_are_read_and_a_repeated_error_line_is_dropped() {
        let text = r#"{"message":"job failed","exceptionType":"java.lang.IllegalStateException","exceptionMessage":"x","stackTrace":"java.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)"}"#;
        assert_eq!(
            expand_records(text),
            "job failed\njava.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)"
        );
    }

    #[test]
    fn a_bull_job_without_a_stack_keeps_its_failed_reason() {
        let text = r#"{"id":"42","name":"sync","attemptsMade":3,"failedReason":"job stalled more than allowable limit","stacktrace":[]}"#;
        assert_eq!(
            expand_records(text),
            "job stalled more than allowable limit"
        );
    }

    #[test]
    fn ecs_dotted_error_keys_are_read() {
        let text = r#"{"message":"job failed","error.type":"java.lang.X","error.message":"y","error.stack_trace":"java.lang.X: y\n\tat a.B.c(B.java:1)"}"#;
        assert_eq!(
            expand_records(text),
            "job failed\njava.lang.X: y\n\tat a.B.c(B.java:1)"
        );
    }

    #[test]
    fn records_joined_on_one_line_are_all_read() {
        let text = r#"{"msg":"Error: boom"} {"msg":"    at run (/app/a.js:1:2)"}"#;
        assert_eq!(
            expand_records(text),
            "Error: boom\n    at run (/app/a.js:1:2)"
        );
    }

    #[test]
    fn records_joined_on_one_line_behind_their_prefixes_are_all_read() {
        let text =
            r#"web-1  | {"msg":"Error: boom"} web-1  | {"msg":"    at run (/app/a.js:1:2)"}"#;
        assert_eq!(
            expand_records(text),
            "Error: boom\n    at run (/app/a.js:1:2)"
        );
    }

    #[test]
    fn keys_compare_without_case_or_separators() {
        assert!(key_is("error.stack_trace", "errorstacktrace"));
        assert!(key_is("StackTrace", "stacktrace"));
        assert!(!key_is("stack", "stacktrace"));
        assert!(!key_is("stacktraces", "stacktrace"));
    }

    #[test]
    fn prefix_shapes_allow_other_digits() {
        assert_eq!(
            shape_prefix_len("12:00:01 web.1 | {}", "9:59:59 web.2 |"),
            Some(16)
        );
        assert_eq!(shape_prefix_len("web-1 | {}", "web-1  |"), None);
        assert_eq!(shape_prefix_len("{}", ""), None);
    }

    #[test]
    fn text_after_the_last_record_is_not_a_record() {
        let text = r#"{"msg":"a"} trailing {"msg":"b"}"#;
        assert_eq!(expand_records(text), text);
    }
}
