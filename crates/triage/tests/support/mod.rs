//! Helpers shared by the fixture-driven case tests: each case's error, in-app
//! frames, root frame and extra facts, and the wrappings every case survives.

use serde_json::Value;
use smartworker_triage::{Frame, ParseOptions, Trace, parse};

/// One test per case: `name => "id",` checks case `id` of the file's `FIXTURES` with
/// [`check_case`].
macro_rules! cases {
    ($($name:ident => $id:literal,)*) => {
        $(
            #[test]
            fn $name() {
                support::check_case(FIXTURES, $id);
            }
        )*
    };
}
pub(crate) use cases;

fn case(fixtures: &str, id: &str) -> Value {
    fixtures
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

/// Parses one case of `fixtures` and checks it against its expectations.
pub fn check_case(fixtures: &str, id: &str) {
    let case = case(fixtures, id);
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

/// Panics when a case of `fixtures` has no `=> "id"` line in `tests`.
pub fn check_every_case_tested(fixtures: &str, tested: &str) {
    let ids: Vec<String> = fixtures
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str::<Value>(line).expect("fixture line is JSON")["id"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
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
/// `known_gaps` lists `"id how"` wrappings that do not parse the same yet;
/// each must still fail, so a fixed gap is noticed and removed.
pub fn check_variants(fixtures: &str, known_gaps: &[&str]) {
    let mut failures = Vec::new();
    for line in fixtures.lines().filter(|line| !line.trim().is_empty()) {
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
            let name = format!("{id} {how}");
            let known = known_gaps.contains(&name.as_str());
            if got != want && !known {
                failures.push(format!("{name}:\n  got  {got:?}\n  want {want:?}"));
            }
            if got == want && known {
                failures.push(format!(
                    "{name}: parses the same now; drop it from the known gaps"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
