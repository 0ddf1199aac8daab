//! How fast triage reads stack traces: every case in the triage fixtures, parsed many times,
//! and hostile inputs (2 MB of near-frames, one 2 MB line) parsed a few times.
//!
//! Triage runs once per dead-lettered job, so its cost matters less than its worst case: a
//! trace a user pasted, or a log a job printed, must never stall the healer.

use crate::stats::percentile;
use serde::Serialize;
use smartworker_triage::{ParseOptions, parse};
use std::path::PathBuf;
use std::time::Instant;

/// The triage test fixtures: real traces and traces modelled on public reports.
const FIXTURES: [&str; 3] = [
    include_str!("../../triage/tests/fixtures/traces.jsonl"),
    include_str!("../../triage/tests/fixtures/more_traces.jsonl"),
    include_str!("../../triage/tests/fixtures/other_runtimes.jsonl"),
];

/// Options of `smartworker-bench triage`.
#[derive(clap::Args, Debug)]
pub struct TriageArgs {
    /// How many times each fixture trace is parsed.
    #[arg(long, default_value_t = 200)]
    pub rounds: usize,
    /// How many times each hostile input is parsed.
    #[arg(long, default_value_t = 5)]
    pub hostile_rounds: usize,
    /// Where to write the JSON.
    #[arg(long)]
    pub out: PathBuf,
}

/// The timings of one kind of input, in microseconds per parse.
#[derive(Debug, Serialize)]
pub struct Timing {
    /// What was parsed.
    pub input: String,
    /// Parses timed.
    pub parses: usize,
    /// Bytes of one input (the mean for the fixtures).
    pub bytes: usize,
    /// Median microseconds per parse.
    pub p50_us: u64,
    /// 99th percentile microseconds per parse.
    pub p99_us: u64,
    /// The slowest parse, in microseconds.
    pub max_us: u64,
}

/// Everything `smartworker-bench triage` measured.
#[derive(Debug, Serialize)]
pub struct TriageResult {
    /// One row per kind of input.
    pub timings: Vec<Timing>,
}

/// Parses the fixtures and the hostile inputs and times each parse.
///
/// # Errors
/// A fixture line that is not JSON with a `trace` string.
pub fn run(args: &TriageArgs) -> anyhow::Result<TriageResult> {
    let traces = fixture_traces()?;
    let bytes = traces.iter().map(String::len).sum::<usize>() / traces.len().max(1);
    let mut timings = vec![time("fixture traces", &traces, args.rounds, bytes)];
    for (name, text) in hostile_inputs() {
        let len = text.len();
        timings.push(time(name, &[text], args.hostile_rounds, len));
    }
    for t in &timings {
        eprintln!(
            "{:<40} {:>7} parses  {:>9} B  p50 {:>8} us  p99 {:>8} us  max {:>8} us",
            t.input, t.parses, t.bytes, t.p50_us, t.p99_us, t.max_us
        );
    }
    Ok(TriageResult { timings })
}

fn fixture_traces() -> anyhow::Result<Vec<String>> {
    let mut traces = Vec::new();
    for line in FIXTURES.iter().flat_map(|f| f.lines()) {
        if line.trim().is_empty() {
            continue;
        }
        let case: serde_json::Value = serde_json::from_str(line)?;
        let Some(trace) = case["trace"].as_str() else {
            anyhow::bail!("a fixture case has no trace");
        };
        traces.push(trace.to_owned());
    }
    Ok(traces)
}

/// Inputs built to be slow: many lines that almost look like frames, and one huge line.
fn hostile_inputs() -> Vec<(&'static str, String)> {
    let near_frames = "x".repeat(1000) + " at foo (/a.js:1:1) File \"/a.py\", line 1, in f\n";
    let open_parens = "(".repeat(1 << 20) + &"at x (".repeat(200_000);
    let prefixed =
        "worker-1  |     at run (/app/a.js:1:2) worker-1  | \tfrom /app/job.rb:3:in `x' "
            .repeat(25_000);
    vec![
        ("2 MB of near-frame lines", near_frames.repeat(2100)),
        ("2 MB single line of '(' and 'at x ('", open_parens),
        ("2 MB flattened prefixed frames", prefixed),
    ]
}

fn time(input: &str, texts: &[String], rounds: usize, bytes: usize) -> Timing {
    let opts = ParseOptions::default();
    let mut micros = Vec::with_capacity(texts.len() * rounds);
    for _ in 0..rounds {
        for text in texts {
            let started = Instant::now();
            let trace = parse(text, &opts);
            micros.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            std::hint::black_box(trace);
        }
    }
    micros.sort_unstable();
    Timing {
        input: input.to_owned(),
        parses: micros.len(),
        bytes,
        p50_us: percentile(&micros, 50.0),
        p99_us: percentile(&micros, 99.0),
        max_us: micros.last().copied().unwrap_or(0),
    }
}
