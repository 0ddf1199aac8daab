//! The real failure cases in `fixtures/traces.jsonl`, one test each: every
//! test checks the error, the in-app frames innermost first, the root frame
//! (or the library frame when no app frame is visible) and the extra facts a
//! case carries.

use serde_json::Value;
use smartworker_triage::{Frame, ParseOptions, Trace, parse};

const FIXTURES: &str = include_str!("fixtures/traces.jsonl");

fn case(id: &str) -> Value {
    FIXTURES
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str::<Value>(line).expect("fixture line is JSON"))
        .find(|case| case["id"] == id)
        .unwrap_or_else(|| panic!("no case {id} in the fixture"))
}

/// A frame as the fixture writes it: file, line, col, function.
type Expected = (String, Option<u64>, Option<u64>, Option<String>);

fn expected_frame(value: &Value) -> Expected {
    (
        value["file"].as_str().unwrap_or("").to_owned(),
        value["line"].as_u64(),
        value["col"].as_u64(),
        value["function"].as_str().map(str::to_owned),
    )
}

fn actual_frame(frame: &Frame) -> Expected {
    (
        frame.file.clone(),
        frame.line.map(u64::from),
        frame.column.map(u64::from),
        frame.function.clone(),
    )
}

fn check_case(id: &str) {
    let case = case(id);
    let expected = &case["expected"];
    let trace = parse(
        case["trace"].as_str().expect("trace is text"),
        &ParseOptions::default(),
    );

    assert_eq!(
        trace.error_type,
        expected["error_type"].as_str().unwrap_or(""),
        "{id}: error type"
    );
    assert_eq!(
        trace.message,
        expected["message"].as_str().unwrap_or(""),
        "{id}: message"
    );

    let want: Vec<Expected> = expected["app_frames"]
        .as_array()
        .expect("app_frames")
        .iter()
        .map(expected_frame)
        .collect();
    let got: Vec<Expected> = trace.app_frames().map(actual_frame).collect();
    assert_eq!(got, want, "{id}: in-app frames, innermost first");

    check_root(id, &trace, expected);
    check_extra_facts(id, &trace, expected);
}

fn check_root(id: &str, trace: &Trace, expected: &Value) {
    let app_index = trace
        .root_frame
        .map(|root| trace.frames[..root].iter().filter(|f| f.in_app).count());
    assert_eq!(
        app_index,
        expected["root_frame_index"].as_u64().map(|i| i as usize),
        "{id}: root frame"
    );
    if let Some(library_root) = expected.get("library_root") {
        let got = trace
            .library_root
            .map(|index| actual_frame(&trace.frames[index]));
        assert_eq!(
            got,
            Some(expected_frame(library_root)),
            "{id}: library root"
        );
    }
}

fn check_extra_facts(id: &str, trace: &Trace, expected: &Value) {
    if let Some(qualified) = expected.get("qualified_error_type") {
        assert_eq!(
            trace.qualified_error_type.as_deref(),
            qualified.as_str(),
            "{id}: qualified type"
        );
    }
    if let Some(thread) = expected.get("thread") {
        assert_eq!(trace.thread.as_deref(), thread.as_str(), "{id}: thread");
    }
    if let Some(signal) = expected.get("signal") {
        assert_eq!(trace.signal.as_deref(), signal.as_str(), "{id}: signal");
    }
    if let Some(chain) = expected["chain"].as_array() {
        assert_eq!(trace.chain.len(), chain.len(), "{id}: chain length");
    }
    if let Some(wrapper) = expected.get("wrapper_error") {
        let outer = trace
            .chain
            .last()
            .map(|e| (e.error_type.as_str(), e.message.as_str()));
        let want = (
            wrapper["error_type"].as_str().unwrap_or(""),
            wrapper["message"].as_str().unwrap_or(""),
        );
        assert_eq!(outer, Some(want), "{id}: wrapper error");
    }
    if let Some(secondary) = expected["secondary_errors"].as_array() {
        let got: Vec<(&str, &str)> = trace
            .secondary
            .iter()
            .map(|e| (e.error_type.as_str(), e.message.as_str()))
            .collect();
        let want: Vec<(&str, &str)> = secondary
            .iter()
            .map(|e| {
                (
                    e["error_type"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(got, want, "{id}: secondary errors");
    }
    if let Some(raise_site) = expected.get("raise_site") {
        assert_eq!(
            trace.frames.first().map(actual_frame),
            Some(expected_frame(raise_site)),
            "{id}: raise site"
        );
        assert!(
            !trace.frames[0].in_app,
            "{id}: the raise site is library code"
        );
    }
}

macro_rules! cases {
    ($($name:ident => $id:literal,)*) => {
        $(
            #[test]
            fn $name() {
                check_case($id);
            }
        )*
    };
}

cases! {
    c01_celery_keyerror_behind_compose_prefix => "c01",
    c03_rq_job_in_site_packages_behind_honcho_prefix => "c03",
    c05_dramatiq_keyerror_raised_inside_third_party_library => "c05",
    c07_headerless_fragment_with_project_virtualenv => "c07",
    c09_celery_remote_traceback_chain_on_windows_without_app_frames => "c09",
    c10_bull_compiled_typescript_with_old_node_internals => "c10",
    c11_bullmq_async_frames_behind_nest_log_prefix => "c11",
    c13_bullmq_second_error_stays_secondary => "c13",
    c16_pkg_bundled_windows_unhandled_rejection => "c16",
    c18_bun_error_with_source_gutter_and_no_app_frames => "c18",
    c19_bun_compiled_bundle_frames => "c19",
    c21_rust_old_panic_format_with_short_backtrace => "c21",
    c22_rust_new_panic_format_with_symbolless_backtrace => "c22",
    c24_rust_2015_panic_in_markdown_quote_between_log_lines => "c24",
    c27_go_created_by_in_goroutine_without_tab_indent => "c27",
    c29_go16_panic_frame_in_gopath_layout => "c29",
    c31_airbrake_markdown_ruby_backtrace => "c31",
    c33_bugsnag_html_escaped_ruby_frame => "c33",
    c35_quartz_npe_logged_twice_as_cause => "c35",
}

#[test]
fn fixture_has_a_test_for_every_case() {
    let ids: Vec<String> = FIXTURES
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str::<Value>(line).expect("fixture line is JSON")["id"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    let tested = include_str!("cases.rs");
    for id in ids {
        assert!(
            tested.contains(&format!("=> \"{id}\"")),
            "case {id} has no test"
        );
    }
}

/// What must not change when a case is wrapped differently.
fn essence(trace: &Trace) -> (String, String, Vec<Expected>, Option<usize>) {
    let app = trace.app_frames().map(actual_frame).collect();
    (
        trace.error_type.clone(),
        trace.message.clone(),
        app,
        trace.root_frame,
    )
}

/// Every case parses the same with CRLF endings, behind another compose
/// prefix, quoted in Markdown, inside a JSON log record and flattened onto
/// one line; error-tracker reports (already Markdown) only take CRLF.
#[test]
fn every_case_survives_crlf_prefixes_quotes_json_records_and_flattening() {
    for line in FIXTURES.lines().filter(|line| !line.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).expect("fixture line is JSON");
        let id = case["id"].as_str().unwrap_or("");
        let text = case["trace"].as_str().expect("trace is text");
        let want = essence(&parse(text, &ParseOptions::default()));

        let mut variants = vec![("crlf", text.replace('\n', "\r\n"))];
        if !text.contains("**") {
            let prefix = |p: &str| {
                text.lines()
                    .map(|l| format!("{p}{l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            variants.push(("compose prefix", prefix("jobs-worker-3  | ")));
            variants.push(("markdown quote", prefix("> ")));
            let record = serde_json::json!({"level": "error", "msg": text}).to_string();
            variants.push(("json record", record));
            // Flattening Bun's source gutter and property block into the
            // message line is lossy; every other kind of case must survive.
            let gutter = |l: &str| {
                l.split_once(" |")
                    .is_some_and(|(n, _)| n.trim().parse::<u32>().is_ok())
            };
            if !text.lines().any(gutter) {
                let flat = text.lines().map(str::trim).collect::<Vec<_>>().join(" ");
                variants.push(("flattened", flat));
            }
        }
        for (how, variant) in variants {
            let got = essence(&parse(&variant, &ParseOptions::default()));
            assert_eq!(got, want, "{id} {how}");
        }
    }
}
