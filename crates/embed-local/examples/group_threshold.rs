//! Measures how well a grouping threshold separates two runs of one bug from two bugs in one
//! file, with the real all-MiniLM-L6-v2, over the labelled pairs in
//! `tests/fixtures/failure_pairs.json`; `bench/GROUPING.md` reports a run.
//!
//! ```sh
//! cargo run --release -p smartworker-embed-local --example group_threshold -- \
//!     "$(bash scripts/setup/minilm.sh)" crates/embed-local/tests/fixtures/failure_pairs.json
//! ```
#![allow(clippy::print_stdout, reason = "a measuring tool prints its report")]

use serde::Deserialize;
use smartworker_embed_local::LocalEmbedder;
use smartworker_memory::{FailureInput, FrameInput, cosine, summary_text};
use std::path::PathBuf;

#[derive(Deserialize)]
struct Pairs {
    pairs: Vec<Pair>,
}

#[derive(Deserialize)]
struct Pair {
    label: String,
    bug: String,
    a: Failure,
    b: Failure,
}

#[derive(Deserialize)]
struct Failure {
    error_type: String,
    message: String,
    frames: Vec<Frame>,
}

#[derive(Deserialize)]
struct Frame {
    file: String,
    line: u32,
    function: String,
}

fn input(f: &Failure) -> FailureInput {
    FailureInput {
        job_id: "1".into(),
        queue: "q".into(),
        job_name: "q".into(),
        fingerprint: String::new(),
        error_type: f.error_type.clone(),
        message: f.message.clone(),
        stack: String::new(),
        frames: f
            .frames
            .iter()
            .map(|fr| FrameInput {
                file: fr.file.clone(),
                line: Some(fr.line),
                function: Some(fr.function.clone()),
                code: None,
            })
            .collect(),
        payload: serde_json::Value::Null,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(pairs)) = (args.next(), args.next()) else {
        return Err("usage: group_threshold MODEL_DIR PAIRS_JSON".into());
    };
    let model = LocalEmbedder::load(&PathBuf::from(dir))?;
    let pairs: Pairs = serde_json::from_str(&std::fs::read_to_string(pairs)?)?;

    let mut scored: Vec<(bool, f32, String)> = Vec::new();
    for pair in &pairs.pairs {
        let texts = [summary_text(&input(&pair.a)), summary_text(&input(&pair.b))];
        let vectors = model.embed_blocking(&texts)?;
        let score = cosine(&vectors[0], &vectors[1]);
        scored.push((pair.label == "same", score, pair.bug.clone()));
    }
    scored.sort_by(|a, b| a.1.total_cmp(&b.1));
    println!("| label | cosine | bug |\n| --- | --- | --- |");
    for (same, score, bug) in &scored {
        let label = if *same { "same" } else { "different" };
        println!("| {label} | {score:.3} | {bug} |");
    }

    let min_same = scored
        .iter()
        .filter(|s| s.0)
        .map(|s| s.1)
        .fold(f32::MAX, f32::min);
    let max_different = scored
        .iter()
        .filter(|s| !s.0)
        .map(|s| s.1)
        .fold(f32::MIN, f32::max);
    println!(
        "\nlowest same-bug cosine {min_same:.3}, highest different-bug cosine {max_different:.3}"
    );
    println!("\n| threshold | same joined | different kept apart |\n| --- | --- | --- |");
    let same_total = scored.iter().filter(|s| s.0).count();
    let different_total = scored.len() - same_total;
    for step in 70..=99 {
        let threshold = step as f32 / 100.0;
        let joined = scored.iter().filter(|s| s.0 && s.1 >= threshold).count();
        let apart = scored.iter().filter(|s| !s.0 && s.1 < threshold).count();
        println!("| {threshold:.2} | {joined}/{same_total} | {apart}/{different_total} |");
    }
    Ok(())
}
