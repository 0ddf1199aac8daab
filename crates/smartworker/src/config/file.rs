//! Reading `smartworker.toml`: every key is checked against the known ones, so a typo is an
//! error naming the key and its line rather than a setting silently ignored.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use smartworker_core::{Backoff, HEAL_QUEUE, validate_queue_name};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::command_mode;
use super::value::{Origin, Raw, Scalar};
use super::{ConfigError, QueueConfig, SETTINGS};

/// What the toml file sets.
#[derive(Debug, Default)]
pub(crate) struct FileLayer {
    /// Settings that other layers may override, keyed by their toml path.
    pub scalars: Vec<(&'static str, Raw)>,
    /// `heal.check_command`.
    pub check_command: Option<Vec<String>>,
    /// `[queues.<name>]`.
    pub queues: BTreeMap<String, QueueConfig>,
}

/// Sections whose fields are all scalar settings from [`SETTINGS`] (plus extras handled here).
const SECTIONS: &[&str] = &[
    "server", "redis", "queue", "smtp", "db", "llm", "embed", "memory", "heal",
];

const QUEUE_KEYS: &[&str] = &[
    "command",
    "concurrency",
    "attempts",
    "backoff",
    "timeout_ms",
    "lock_ms",
    "autofix",
    "env",
    "mode",
    "processes",
    "dead_letter_queue",
    "sandbox",
    "sandbox_image",
];

/// The file being read, for positions in messages.
struct Doc<'a> {
    text: &'a str,
    path: &'a Path,
    shown: &'a str,
}

impl Doc<'_> {
    /// The 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn origin(&self, span: Range<usize>) -> Origin {
        Origin::File {
            path: self.path.to_owned(),
            shown: self.shown.to_owned(),
            line: self.line(span.start),
        }
    }

    fn raw(&self, key: String, value: &Spanned<DeValue<'_>>) -> Raw {
        Raw {
            key,
            value: Scalar::from_toml(value.get_ref()),
            origin: self.origin(value.span()),
        }
    }

    fn invalid(&self, span: Range<usize>, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin(span),
            key: key.to_owned(),
            message,
        }
    }

    fn unknown(&self, span: Range<usize>, key: &str, expected: &[&str]) -> ConfigError {
        let message = format!("unknown key; expected one of {}", expected.join(", "));
        self.invalid(span, key, message)
    }

    /// The value as a table, or an error naming `key`.
    fn table<'v, 'i>(
        &self,
        key: &str,
        value: &'v Spanned<DeValue<'i>>,
    ) -> Result<&'v DeTable<'i>, ConfigError> {
        match value.get_ref() {
            DeValue::Table(table) => Ok(table),
            _ => Err(self.raw(key.to_owned(), value).wrong_type("a table")),
        }
    }
}

/// Parses the file's text; `shown` is the file's name as messages show it.
pub(crate) fn parse(text: &str, path: &Path, shown: &str) -> Result<FileLayer, ConfigError> {
    let doc = Doc { text, path, shown };
    let root = DeTable::parse(text).map_err(|e| ConfigError::Syntax {
        shown: shown.to_owned(),
        line: doc.line(e.span().map_or(0, |span| span.start)),
        message: syntax_message(text, &e),
    })?;

    let mut layer = FileLayer::default();
    for (key, value) in root.get_ref() {
        let name = key.get_ref().as_ref();
        match name {
            "queues" => layer.queues = queues(&doc, value)?,
            _ if SECTIONS.contains(&name) => section(&doc, name, value, &mut layer)?,
            _ => match setting(name) {
                Some(path) => layer.scalars.push((path, doc.raw(name.to_owned(), value))),
                None => return Err(doc.unknown(key.span(), name, &top_level_keys())),
            },
        }
    }
    Ok(layer)
}

/// toml's message, with the key named when it is a duplicate.
fn syntax_message(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    let key = error.span().and_then(|span| text.get(span));
    match key {
        Some(key) if message == "duplicate key" => format!("duplicate key {:?}", key.trim()),
        _ => message.to_owned(),
    }
}

/// The keys allowed at the top of the file.
fn top_level_keys() -> Vec<&'static str> {
    let mut keys: Vec<&str> = SETTINGS
        .iter()
        .map(|s| s.path)
        .filter(|p| !p.contains('.'))
        .collect();
    keys.extend(SECTIONS);
    keys.push("queues");
    keys
}

/// The [`SETTINGS`] path equal to `path`, with its static lifetime.
fn setting(path: &str) -> Option<&'static str> {
    SETTINGS.iter().map(|s| s.path).find(|p| *p == path)
}

/// Reads one section such as `[server]`.
fn section(
    doc: &Doc<'_>,
    name: &str,
    value: &Spanned<DeValue<'_>>,
    layer: &mut FileLayer,
) -> Result<(), ConfigError> {
    let table = doc.table(name, value)?;
    for (key, value) in table {
        let path = format!("{name}.{}", key.get_ref());
        if path == "heal.check_command" {
            layer.check_command = Some(argv(doc, &path, value)?);
            continue;
        }
        let Some(setting) = setting(&path) else {
            let mut expected = section_keys(name);
            if name == "heal" {
                expected.push("check_command");
            }
            return Err(doc.unknown(key.span(), &path, &expected));
        };
        layer.scalars.push((setting, doc.raw(path, value)));
    }
    Ok(())
}

/// The field names of a section.
fn section_keys(name: &str) -> Vec<&'static str> {
    SETTINGS
        .iter()
        .filter_map(|s| s.path.strip_prefix(name)?.strip_prefix('.'))
        .collect()
}

/// Reads `[queues]`: one table per queue.
fn queues(
    doc: &Doc<'_>,
    value: &Spanned<DeValue<'_>>,
) -> Result<BTreeMap<String, QueueConfig>, ConfigError> {
    let mut queues = BTreeMap::new();
    let mut spans = Vec::new();
    for (name, value) in doc.table("queues", value)? {
        let key = format!("queues.{}", name.get_ref());
        if let Err(e) = validate_queue_name(name.get_ref()) {
            return Err(doc.invalid(name.span(), &key, e.to_string()));
        }
        if name.get_ref() == HEAL_QUEUE {
            let message = "this is SmartWorker's own healing queue; configure healing under \
                           [heal] (rounds, sandbox, check_command)";
            return Err(doc.invalid(name.span(), &key, message.to_owned()));
        }
        let queue = queue(doc, &key, name.span(), value)?;
        queues.insert(name.get_ref().to_string(), queue);
        spans.push((name.get_ref().to_string(), name.span()));
    }
    for (name, span) in spans {
        if let Some(message) = dead_letter_loop(&queues, &name) {
            let key = format!("queues.{name}.dead_letter_queue");
            return Err(doc.invalid(span, &key, message));
        }
    }
    Ok(queues)
}

/// Follows a queue's dead-letter queue, and that queue's when it has a handler here, and so on:
/// a chain that comes back to a queue already passed would dead-letter the same failures into
/// each other for ever.
fn dead_letter_loop(queues: &BTreeMap<String, QueueConfig>, start: &str) -> Option<String> {
    let dead_letter_of = |name: &str| {
        let queue = queues.get(name)?;
        Some(
            queue
                .dead_letter_queue
                .clone()
                .unwrap_or_else(|| format!("{name}-dlq")),
        )
    };
    let mut passed = vec![start.to_owned()];
    let mut current = start.to_owned();
    while let Some(next) = dead_letter_of(&current) {
        if passed.contains(&next) {
            passed.push(next);
            return Some(format!(
                "dead-lettered jobs would go round for ever: {}",
                passed.join(" -> ")
            ));
        }
        passed.push(next.clone());
        current = next;
    }
    None
}

/// Reads one `[queues.<name>]` table; `key` is `queues.<name>`.
fn queue(
    doc: &Doc<'_>,
    key: &str,
    name_span: Range<usize>,
    value: &Spanned<DeValue<'_>>,
) -> Result<QueueConfig, ConfigError> {
    let mut queue = QueueConfig::default();
    let mut command = None;
    let mut processes = None;
    for (field, value) in doc.table(key, value)? {
        let path = format!("{key}.{}", field.get_ref());
        let raw = doc.raw(path.clone(), value);
        match field.get_ref().as_ref() {
            "command" => command = Some(argv(doc, &path, value)?),
            "concurrency" => queue.concurrency = raw.positive_u32()?,
            "attempts" => queue.attempts = raw.positive_u32()?,
            "backoff" => queue.backoff = Some(backoff(doc, &path, value)?),
            "timeout_ms" => queue.timeout_ms = Some(raw.positive()?),
            "lock_ms" => queue.lock_ms = lock_ms(&raw)?,
            "autofix" => queue.autofix = raw.boolean()?,
            "env" => queue.env = env_names(doc, &path, value)?,
            "mode" => queue.mode = command_mode::mode(&raw)?,
            "processes" => {
                queue.processes = Some(raw.positive_u32()?);
                processes = Some(raw);
            }
            "dead_letter_queue" => queue.dead_letter_queue = Some(dead_letter_queue(&raw)?),
            other => match super::sandbox::queue_field(&mut queue, other, &raw) {
                Some(read) => read?,
                None => return Err(doc.unknown(field.span(), &path, QUEUE_KEYS)),
            },
        }
    }
    let Some(command) = command else {
        let message = "missing required key \"command\" (the handler's argv)".to_owned();
        return Err(doc.invalid(name_span, key, message));
    };
    queue.command = command;
    command_mode::check_processes(queue.mode, processes.as_ref())?;
    Ok(queue)
}

/// The shortest job lock, in milliseconds. A lock is renewed at half its length, so a shorter
/// one would keep the store busy with renewals and let a slow renewal hand a running job to a
/// second worker.
const MIN_LOCK_MS: u64 = 1000;

fn lock_ms(raw: &Raw) -> Result<u64, ConfigError> {
    let ms = raw.positive()?;
    if ms < MIN_LOCK_MS {
        return Err(raw.invalid(format!(
            "{ms} ms is too short: a lock is renewed at half its length; use at least \
             {MIN_LOCK_MS}"
        )));
    }
    Ok(ms)
}

/// A dead-letter queue: any queue name but the healing queue's, whose jobs are heal orders.
fn dead_letter_queue(raw: &Raw) -> Result<String, ConfigError> {
    let name = queue_name(raw)?;
    if name == HEAL_QUEUE {
        return Err(raw.invalid(format!(
            "{name:?} is SmartWorker's own healing queue; a failed job copied there would be \
             run as a heal order"
        )));
    }
    Ok(name)
}

/// A queue name, such as a dead-letter queue's.
fn queue_name(raw: &Raw) -> Result<String, ConfigError> {
    let name = raw.text()?;
    validate_queue_name(&name).map_err(|e| raw.invalid(e.to_string()))?;
    Ok(name)
}

/// Reads `{ type = "exponential" | "fixed", delay = <ms> }`.
fn backoff(doc: &Doc<'_>, key: &str, value: &Spanned<DeValue<'_>>) -> Result<Backoff, ConfigError> {
    let mut kind = None;
    let mut delay = None;
    for (field, value) in doc.table(key, value)? {
        let path = format!("{key}.{}", field.get_ref());
        let raw = doc.raw(path.clone(), value);
        match field.get_ref().as_ref() {
            "type" => kind = Some(raw.choice(&["exponential", "fixed"])?),
            "delay" => delay = Some(raw.non_negative()?),
            _ => return Err(doc.unknown(field.span(), &path, &["type", "delay"])),
        }
    }
    let missing =
        |field: &str| doc.invalid(value.span(), key, format!("missing required key {field:?}"));
    let kind = kind.ok_or_else(|| missing("type"))?;
    let delay = delay.ok_or_else(|| missing("delay"))?;
    Ok(match kind {
        "fixed" => Backoff::Fixed { delay },
        _ => Backoff::Exponential { delay },
    })
}

/// Reads a non-empty array of strings whose first element (the program) is not empty.
fn argv(
    doc: &Doc<'_>,
    key: &str,
    value: &Spanned<DeValue<'_>>,
) -> Result<Vec<String>, ConfigError> {
    let argv = strings(
        doc,
        key,
        value,
        "an array of strings such as [\"python3\", \"job.py\"]",
    )?;
    if argv.first().is_none_or(String::is_empty) {
        let message = "the command is empty; give at least the program to run".to_owned();
        return Err(doc.invalid(value.span(), key, message));
    }
    Ok(argv)
}

/// Reads a list of environment variable names.
fn env_names(
    doc: &Doc<'_>,
    key: &str,
    value: &Spanned<DeValue<'_>>,
) -> Result<Vec<String>, ConfigError> {
    let names = strings(doc, key, value, "an array of variable names")?;
    let valid = |name: &str| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match names.iter().find(|name| !valid(name)) {
        Some(bad) => Err(doc.invalid(value.span(), key, format!("{bad:?} is not a variable name"))),
        None => Ok(names),
    }
}

/// Reads an array whose items are all strings.
fn strings(
    doc: &Doc<'_>,
    key: &str,
    value: &Spanned<DeValue<'_>>,
    expected: &str,
) -> Result<Vec<String>, ConfigError> {
    let DeValue::Array(items) = value.get_ref() else {
        return Err(doc.raw(key.to_owned(), value).wrong_type(expected));
    };
    items
        .iter()
        .map(|item| match item.get_ref() {
            DeValue::String(s) => Ok(s.to_string()),
            _ => Err(doc.raw(key.to_owned(), item).wrong_type(expected)),
        })
        .collect()
}
