//! The report of `bench/redis.sh`: no-op jobs per second on one Redis through a SmartWorker
//! Rust handler, a persistent command handler and Node BullMQ's `Worker` at the same
//! concurrency, their ratios against the targets, and the latency run.
//!
//! The run directory holds `machine.json`, `latency.json` and one `series-*.json` per run of
//! a series (`smartworker-bench throughput` or `bench/node/redis-throughput.mjs` output);
//! runs of the same label are merged, so the script can interleave the three series and let
//! them share whatever else the machine is doing.

use crate::latency::Latency;
use crate::machine::{self, Machine};
use crate::report::{Target, render_latency, thousands};
use crate::stats::median;
use anyhow::{Context, bail};
use clap::Args;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The series labels the script writes.
const RUST: &str = "rust";
const PERSISTENT: &str = "persistent";
const NODE: &str = "node-bullmq";

/// The targets: how many times Node BullMQ's rate each series must reach.
const RUST_TARGET: f64 = 1.5;
const PERSISTENT_TARGET: f64 = 1.0;

/// Arguments of `redis-report`.
#[derive(Args, Debug)]
pub struct RedisReportArgs {
    /// The directory holding the run's JSON files.
    #[arg(long)]
    pub dir: PathBuf,
    /// Where to write the merged JSON.
    #[arg(long)]
    pub out: PathBuf,
}

/// One series: the runs of one handler at each concurrency level.
#[derive(Debug, Serialize, Deserialize)]
pub struct Series {
    /// `rust`, `persistent` or `node-bullmq`.
    pub label: String,
    /// What ran each job, in words.
    pub handler: String,
    /// Jobs per run.
    pub jobs: usize,
    /// One entry per concurrency level.
    pub levels: Vec<SeriesLevel>,
}

/// The runs of a series at one concurrency.
#[derive(Debug, Serialize, Deserialize)]
pub struct SeriesLevel {
    /// The worker's concurrency.
    pub concurrency: usize,
    /// Jobs per second of each run, in the order they ran.
    pub jobs_per_sec: Vec<f64>,
    /// Their median.
    pub median_jobs_per_sec: f64,
}

/// The ratios at one concurrency.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ratio {
    /// The concurrency of all three series.
    pub concurrency: usize,
    /// Rust handler jobs/s over Node BullMQ jobs/s (medians).
    pub rust_over_node: f64,
    /// Persistent command handler jobs/s over Node BullMQ jobs/s (medians).
    pub persistent_over_node: f64,
}

/// Everything one `bench/redis.sh` run measured.
#[derive(Debug, Serialize)]
pub struct RedisResults {
    /// The machine when the run started.
    pub machine: Machine,
    /// The load averages when the run ended.
    pub load_at_end: [f64; 3],
    /// The three series, runs merged.
    pub series: Vec<Series>,
    /// Their ratios per concurrency.
    pub ratios: Vec<Ratio>,
    /// Enqueue-to-start latency of the Rust handler on the same Redis.
    pub latency: Option<Latency>,
    /// Each target and whether it was met.
    pub targets: Vec<Target>,
}

/// Merges `args.dir` into `args.out` and prints the table.
///
/// # Errors
/// When a file is missing or malformed, a series is missing, or the output cannot be written.
pub fn run(args: &RedisReportArgs) -> anyhow::Result<()> {
    let results = collect(&args.dir)?;
    let text = serde_json::to_string_pretty(&results).context("cannot encode the results")?;
    std::fs::write(&args.out, text + "\n")
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    write!(std::io::stdout(), "{}", render(&results)).context("cannot write to stdout")
}

fn collect(dir: &Path) -> anyhow::Result<RedisResults> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("series-") && name.ends_with(".json"))
        .collect();
    names.sort();
    let runs: Vec<Series> = names
        .iter()
        .map(|n| read_json(&dir.join(n)))
        .collect::<anyhow::Result<_>>()?;
    let series = merge(runs);
    let ratios = ratios(&series)?;
    let latency_file = dir.join("latency.json");
    let latency = match latency_file.exists() {
        true => Some(read_json(&latency_file)?),
        false => None,
    };
    let targets = targets(&ratios);
    Ok(RedisResults {
        machine: read_json(&dir.join("machine.json"))?,
        load_at_end: machine::load()?,
        series,
        ratios,
        latency,
        targets,
    })
}

fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a result", path.display()))
}

/// One series per label, each level holding the runs of every file of that label.
fn merge(runs: Vec<Series>) -> Vec<Series> {
    let mut merged: BTreeMap<String, Series> = BTreeMap::new();
    for run in runs {
        let Some(series) = merged.get_mut(&run.label) else {
            merged.insert(run.label.clone(), run);
            continue;
        };
        for level in run.levels {
            match series
                .levels
                .iter_mut()
                .find(|l| l.concurrency == level.concurrency)
            {
                Some(known) => known.jobs_per_sec.extend(level.jobs_per_sec),
                None => series.levels.push(level),
            }
        }
    }
    let mut series: Vec<Series> = merged.into_values().collect();
    for s in &mut series {
        s.levels.sort_by_key(|l| l.concurrency);
        for level in &mut s.levels {
            level.median_jobs_per_sec = median(&level.jobs_per_sec);
        }
    }
    series
}

fn ratios(series: &[Series]) -> anyhow::Result<Vec<Ratio>> {
    let find = |label: &str| {
        series
            .iter()
            .find(|s| s.label == label)
            .with_context(|| format!("no {label} series in the run"))
    };
    let (rust, persistent, node) = (find(RUST)?, find(PERSISTENT)?, find(NODE)?);
    let rate = |s: &Series, c: usize| {
        s.levels
            .iter()
            .find(|l| l.concurrency == c)
            .map(|l| l.median_jobs_per_sec)
    };
    let mut out = Vec::new();
    for level in &node.levels {
        let c = level.concurrency;
        let (Some(r), Some(p)) = (rate(rust, c), rate(persistent, c)) else {
            bail!("concurrency {c} was measured for node but not for every series");
        };
        out.push(Ratio {
            concurrency: c,
            rust_over_node: r / level.median_jobs_per_sec,
            persistent_over_node: p / level.median_jobs_per_sec,
        });
    }
    Ok(out)
}

fn targets(ratios: &[Ratio]) -> Vec<Target> {
    let mut out = Vec::new();
    for r in ratios {
        out.push(Target {
            goal: format!(
                "Rust handler ≥ {RUST_TARGET}× Node BullMQ at c={}",
                r.concurrency
            ),
            measured: format!("{:.2}×", r.rust_over_node),
            met: Some(r.rust_over_node >= RUST_TARGET),
        });
        out.push(Target {
            goal: format!(
                "persistent handler ≥ {PERSISTENT_TARGET}× Node BullMQ at c={}",
                r.concurrency
            ),
            measured: format!("{:.2}×", r.persistent_over_node),
            met: Some(r.persistent_over_node >= PERSISTENT_TARGET),
        });
    }
    out
}

/// The table printed at the end of a run.
pub fn render(results: &RedisResults) -> String {
    let mut out = String::new();
    let m = &results.machine;
    let [a, b, c] = m.load;
    let [x, y, z] = results.load_at_end;
    let _ = writeln!(
        out,
        "machine: {} cores, {}, Linux {}",
        m.cores, m.cpu_model, m.kernel
    );
    let _ = writeln!(
        out,
        "load (1/5/15 min): {a:.2} {b:.2} {c:.2} at start, {x:.2} {y:.2} {z:.2} at end"
    );
    let _ = writeln!(
        out,
        "\nno-op jobs/s on one Redis (median of the runs; jobs added before the clock)"
    );
    for s in &results.series {
        let _ = writeln!(
            out,
            "  {:<11} {} jobs per run: {}",
            s.label, s.jobs, s.handler
        );
        for l in &s.levels {
            let runs: Vec<String> = l.jobs_per_sec.iter().map(|r| thousands(*r)).collect();
            let _ = writeln!(
                out,
                "    c={:<4} {:>8} jobs/s   runs: {}",
                l.concurrency,
                thousands(l.median_jobs_per_sec),
                runs.join(", ")
            );
        }
    }
    let _ = writeln!(out, "\nratios against Node BullMQ");
    for r in &results.ratios {
        let _ = writeln!(
            out,
            "  c={:<4} rust {:.2}×   persistent {:.2}×",
            r.concurrency, r.rust_over_node, r.persistent_over_node
        );
    }
    if let Some(latency) = &results.latency {
        render_latency(&mut out, latency);
    }
    let _ = writeln!(out, "\ntargets");
    for t in &results.targets {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "not measured",
        };
        let _ = writeln!(out, "  {:<44} {:<8} {}", t.goal, verdict, t.measured);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, rates: &[(usize, f64)]) -> Series {
        Series {
            label: label.to_owned(),
            handler: String::new(),
            jobs: 10,
            levels: rates
                .iter()
                .map(|(c, r)| SeriesLevel {
                    concurrency: *c,
                    jobs_per_sec: vec![*r],
                    median_jobs_per_sec: *r,
                })
                .collect(),
        }
    }

    #[test]
    fn runs_of_one_label_merge_and_ratios_compare_medians() {
        let runs = vec![
            series(RUST, &[(16, 3000.0)]),
            series(NODE, &[(16, 1000.0)]),
            series(RUST, &[(16, 5000.0)]),
            series(PERSISTENT, &[(16, 900.0)]),
            series(RUST, &[(16, 4000.0)]),
            series(NODE, &[(16, 1000.0)]),
        ];
        let merged = merge(runs);
        let rust = merged.iter().find(|s| s.label == RUST).unwrap();
        assert_eq!(rust.levels[0].jobs_per_sec, [3000.0, 5000.0, 4000.0]);
        let ratios = ratios(&merged).unwrap();
        assert_eq!(ratios[0].rust_over_node, 4.0);
        let verdicts: Vec<_> = targets(&ratios).iter().map(|t| t.met).collect();
        assert_eq!(verdicts, [Some(true), Some(false)]);
    }

    #[test]
    fn a_missing_series_is_an_error() {
        let err = ratios(&merge(vec![series(RUST, &[(16, 1.0)])])).unwrap_err();
        assert_eq!(err.to_string(), "no persistent series in the run");
    }
}
