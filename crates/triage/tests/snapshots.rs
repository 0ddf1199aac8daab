//! Snapshots of whole parsed traces as JSON, the shape other crates consume.

use expect_test::{Expect, expect};
use serde_json::Value;
use smartworker_triage::{ParseOptions, parse};

fn case_trace(id: &str) -> String {
    include_str!("fixtures/traces.jsonl")
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("fixture line is JSON"))
        .find(|case| case["id"] == id)
        .and_then(|case| case["trace"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no case {id}"))
}

fn check(input: &str, expect: Expect) {
    let trace = parse(input, &ParseOptions::default());
    let json = serde_json::to_string_pretty(&trace).expect("trace serialises");
    expect.assert_eq(&json);
}

#[test]
fn bullmq_blob_with_follow_up_error_snapshot() {
    check(
        &case_trace("c13"),
        expect![[r#"
        {
          "language": "javascript",
          "error_type": "TypeError",
          "qualified_error_type": null,
          "message": "Cannot read properties of undefined (reading 'replaceAll')",
          "frames": [
            {
              "file": "/usr/src/app/dist/services/job.service.js",
              "line": 157,
              "column": 55,
              "function": "JobService.onJobStart",
              "in_app": true
            },
            {
              "file": "node:internal/process/task_queues",
              "line": 105,
              "column": 5,
              "function": "process.processTicksAndRejections",
              "in_app": false
            },
            {
              "file": "/usr/src/app/dist/repositories/event.repository.js",
              "line": 126,
              "column": 13,
              "function": "EventRepository.onEvent",
              "in_app": true
            },
            {
              "file": "/usr/src/app/node_modules/bullmq/dist/cjs/classes/worker.js",
              "line": 394,
              "column": 28,
              "function": "Worker.processJob",
              "in_app": false
            },
            {
              "file": "/usr/src/app/node_modules/bullmq/dist/cjs/classes/worker.js",
              "line": 581,
              "column": 24,
              "function": "Worker.retryIfFailed",
              "in_app": false
            }
          ],
          "chain": [],
          "secondary": [
            {
              "error_type": "Error",
              "message": "Missing lock for job 36. failed",
              "frames": [
                {
                  "file": "/usr/src/app/node_modules/bullmq/dist/cjs/classes/scripts.js",
                  "line": 272,
                  "column": 24,
                  "function": "Scripts.finishedErrors",
                  "in_app": false
                }
              ]
            }
          ],
          "root_frame": 0,
          "library_root": null,
          "thread": null,
          "signal": null,
          "input_truncated": false
        }"#]],
    );
}

#[test]
fn rust_2015_panic_in_markdown_quote_snapshot() {
    check(
        &case_trace("c24"),
        expect![[r#"
        {
          "language": "rust",
          "error_type": "panic",
          "qualified_error_type": null,
          "message": "Done queue is too large: {:?} tasks. Stop the sink!",
          "frames": [
            {
              "file": "src/manager.rs",
              "line": 432,
              "column": null,
              "function": null,
              "in_app": true
            }
          ],
          "chain": [],
          "secondary": [],
          "root_frame": 0,
          "library_root": null,
          "thread": "<unnamed>",
          "signal": null,
          "input_truncated": false
        }"#]],
    );
}
