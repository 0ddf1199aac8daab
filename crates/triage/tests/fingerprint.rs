//! Fingerprints group runs of the same bug and keep different bugs apart.

use smartworker_triage::{ParseOptions, fingerprint, parse};

fn python(prefix: &str, line: u32, key: &str, error: &str, function: &str) -> String {
    format!(
        "Traceback (most recent call last):\n  File \"{prefix}/site-packages/rq/job.py\", line 1365, in _execute\n    \
         x()\n  File \"{prefix}/app/jobs/sync.py\", line {line}, in {function}\n    return users[{key}]\n\
         {error}: '{key}'"
    )
}

fn print(text: &str) -> String {
    fingerprint(&parse(text, &ParseOptions::default()))
}

#[test]
fn same_bug_with_other_ids_lines_and_checkout_gives_the_same_fingerprint() {
    let first = print(&python("/srv", 12, "user:123", "KeyError", "sync_user"));
    let second = print(&python(
        "/home/ci/build",
        14,
        "user:987",
        "KeyError",
        "sync_user",
    ));
    assert_eq!(first, second);
}

#[test]
fn other_error_in_the_same_file_gives_another_fingerprint() {
    let key_error = print(&python("/srv", 12, "user:1", "KeyError", "sync_user"));
    let lookup_error = print(&python("/srv", 12, "user:1", "LookupError", "sync_user"));
    let other_function = print(&python("/srv", 12, "user:1", "KeyError", "sync_team"));
    assert_ne!(key_error, lookup_error);
    assert_ne!(key_error, other_function);
}

#[test]
fn job_ids_and_timestamps_in_the_message_are_ignored() {
    let trace = |id: u32, at: &str| {
        format!(
            "Error: Missing lock for job {id} at {at} (token 5f0c1e2a-93b1-4a43-8c52-0d0e3f1e2a11)\n    \
             at Scripts.finishedErrors (/usr/src/app/node_modules/bullmq/dist/cjs/classes/scripts.js:272:24)\n    \
             at Worker.moveToFailed (/usr/src/app/dist/worker.js:{id}:5)"
        )
    };
    assert_eq!(
        print(&trace(36, "2024-11-24T18:26:57Z")),
        print(&trace(4071, "2025-01-02T03:04:05Z"))
    );
}

#[test]
fn different_messages_of_one_type_in_one_function_stay_apart() {
    let trace = |message: &str| format!("TypeError: {message}\n    at run (/app/jobs/mail.js:3:9)");
    assert_ne!(print(&trace("fetch failed")), print(&trace("Invalid URL")));
}

#[test]
fn fingerprint_is_hex_sha256() {
    let fingerprint = print("KeyError: 'x'");
    assert_eq!(fingerprint.len(), 64);
    assert!(fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
}
