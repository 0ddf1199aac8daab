//! Fingerprints that group failures of the same bug. They ignore everything
//! that changes from one run of a bug to the next (line numbers, ids,
//! timestamps, quoted values, machine-specific path prefixes) and keep what
//! tells bugs apart (error type, masked message, in-app files and functions).

use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;
use sha2::{Digest, Sha256};

use crate::model::{Frame, Trace};
use crate::normalize::re;

/// In-app frames that take part in a fingerprint.
const FINGERPRINT_FRAMES: usize = 3;

/// Trailing path components kept from a frame's file.
const PATH_TAIL: usize = 2;

/// Masks applied to the message, in order; later masks see earlier tokens.
static MASKS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    vec![
        (
            re(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
            "<uuid>",
        ),
        (re(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+"), "<url>"),
        (re(r#""[^"]*"|'[^']*'|`[^`]*`"#), "<str>"),
        (
            re(r"(?:\b[A-Za-z]:)?(?:[\\/][\w.\-@$]+){2,}[\\/]?"),
            "<path>",
        ),
        (re(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
        (
            re(
                r"\b[0-9a-fA-F]*[0-9][0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\b|\b[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*[0-9][0-9a-fA-F]*\b",
            ),
            "<hex>",
        ),
        (re(r"\d+(?:\.\d+)?"), "<n>"),
        (re(r"\s+"), " "),
    ]
});
static RUST_HASH: LazyLock<Regex> = LazyLock::new(|| re(r"::h[0-9a-f]{16}$"));

/// A hex SHA-256 of the error type, the masked message and the top in-app
/// frames' file tails and functions (no line numbers). When no frame is
/// in-app, the top frames stand in for them.
pub fn fingerprint(trace: &Trace) -> String {
    let mut material = String::new();
    let _ = writeln!(material, "type:{}", trace.error_type);
    let _ = writeln!(material, "message:{}", mask_message(&trace.message));

    let app: Vec<&Frame> = trace.app_frames().take(FINGERPRINT_FRAMES).collect();
    let frames = if app.is_empty() {
        trace.frames.iter().take(FINGERPRINT_FRAMES).collect()
    } else {
        app
    };
    for frame in frames {
        let function = frame
            .function
            .as_deref()
            .map(|f| RUST_HASH.replace(f, ""))
            .unwrap_or_default();
        let _ = writeln!(material, "frame:{}:{}", file_tail(&frame.file), function);
    }

    let digest = Sha256::digest(material.as_bytes());
    digest
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// The message with volatile values replaced by placeholders.
pub fn mask_message(message: &str) -> String {
    let mut masked = message.trim().to_owned();
    for (pattern, replacement) in MASKS.iter() {
        masked = pattern.replace_all(&masked, *replacement).into_owned();
    }
    masked.trim().to_owned()
}

/// The last components of a path, so the same file checked out in different
/// places (or printed with Windows separators) compares equal.
fn file_tail(file: &str) -> String {
    let parts: Vec<&str> = file.split(['/', '\\']).filter(|p| !p.is_empty()).collect();
    let start = parts.len().saturating_sub(PATH_TAIL);
    parts[start..].join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_masks_volatile_values() {
        assert_eq!(
            mask_message(
                "job 36 (id 930b0da8-028e-45c0-9e9e-ccf8c9c446e6) failed at 0x10 reading 'name' in /srv/app/x.py, sha deadbeef12"
            ),
            "job <n> (id <uuid>) failed at <hex> reading <str> in <path>, sha <hex>"
        );
    }

    #[test]
    fn windows_and_posix_checkouts_share_a_file_tail() {
        assert_eq!(
            file_tail(r"C:\work\app\services\events.js"),
            file_tail("/srv/app/services/events.js")
        );
    }
}
