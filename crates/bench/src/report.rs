//! Merges the JSON files of one run into a single results file and renders the table.
//!
//! The run directory holds `machine.json`, `throughput-<label>.json`, `latency.json` and
//! `rss-<label>.json`, as `bench/run.sh` writes them. The merged file adds the load at the
//! end of the run and the verdict on each target, so it can be read without the table.

use crate::latency::Latency;
use crate::machine::{self, Machine};
use crate::rss::Rss;
use crate::throughput::{HandlerKind, Level, Throughput};
use anyhow::Context;
use clap::Args;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The issue's throughput target for a Rust handler, in jobs per second.
pub const THROUGHPUT_TARGET: f64 = 25_000.0;

/// The issue's target for an idle `smartworker serve`, in MiB of resident memory.
pub const SERVE_RSS_TARGET_MIB: f64 = 30.0;

/// The label `bench/run.sh` gives the idle server's memory.
pub const SERVE_LABEL: &str = "smartworker-serve";

/// Arguments of `report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The directory holding the run's JSON files.
    #[arg(long)]
    pub dir: PathBuf,
    /// Where to write the merged JSON.
    #[arg(long)]
    pub out: PathBuf,
}

/// Everything one run measured.
#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    /// The machine when the run started.
    pub machine: Machine,
    /// The load averages when the run ended.
    pub load_at_end: [f64; 3],
    /// One entry per throughput series.
    pub throughput: Vec<Throughput>,
    /// The latency run, when it ran.
    pub latency: Option<Latency>,
    /// Idle memory of each process measured.
    pub memory: Vec<Rss>,
    /// Each target and whether it was met.
    pub targets: Vec<Target>,
}

/// One target of the issue and the measured value.
#[derive(Debug, Serialize, Deserialize)]
pub struct Target {
    /// What is asked, in words.
    pub goal: String,
    /// What was measured, in words.
    pub measured: String,
    /// Whether the measurement meets the goal; `None` when it was not measured.
    pub met: Option<bool>,
}

/// Merges `args.dir` into `args.out` and prints the table.
///
/// # Errors
/// When a file of the run is missing or malformed, or the output cannot be written.
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let results = collect(&args.dir)?;
    let text = serde_json::to_string_pretty(&results).context("cannot encode the results")?;
    std::fs::write(&args.out, text + "\n")
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    write!(std::io::stdout(), "{}", render(&results)).context("cannot write to stdout")
}

fn collect(dir: &Path) -> anyhow::Result<Results> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();

    let with_prefix = |prefix: &str| -> Vec<String> {
        let matching = names.iter().filter(|n| n.starts_with(prefix));
        matching.cloned().collect()
    };
    let throughput = read_all(dir, &with_prefix("throughput-"))?;
    let memory = read_all(dir, &with_prefix("rss-"))?;
    let latency = match names.iter().any(|n| n == "latency.json") {
        true => Some(read_json(&dir.join("latency.json"))?),
        false => None,
    };
    let mut results = Results {
        machine: read_json(&dir.join("machine.json"))?,
        load_at_end: machine::load()?,
        throughput,
        latency,
        memory,
        targets: Vec::new(),
    };
    results.targets = targets(&results);
    Ok(results)
}

fn read_all<T: DeserializeOwned>(dir: &Path, names: &[String]) -> anyhow::Result<Vec<T>> {
    names.iter().map(|n| read_json(&dir.join(n))).collect()
}

fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a result", path.display()))
}

fn targets(results: &Results) -> Vec<Target> {
    vec![throughput_target(results), serve_rss_target(results)]
}

fn throughput_target(results: &Results) -> Target {
    let goal = format!(
        "Rust handler at least {} jobs/s",
        thousands(THROUGHPUT_TARGET)
    );
    let best = results
        .throughput
        .iter()
        .filter(|t| t.kind == HandlerKind::Rust)
        .flat_map(|t| &t.levels)
        .max_by(|a, b| a.median_jobs_per_sec.total_cmp(&b.median_jobs_per_sec));
    let Some(best) = best else {
        return not_measured(goal);
    };
    Target {
        goal,
        measured: format!(
            "best median {} jobs/s (concurrency {})",
            thousands(best.median_jobs_per_sec),
            best.concurrency
        ),
        met: Some(best.median_jobs_per_sec >= THROUGHPUT_TARGET),
    }
}

fn serve_rss_target(results: &Results) -> Target {
    let goal = format!("idle smartworker serve under {SERVE_RSS_TARGET_MIB} MiB resident");
    let Some(serve) = results.memory.iter().find(|m| m.label == SERVE_LABEL) else {
        return not_measured(goal);
    };
    let mib = mib(serve.vm_rss_kib);
    Target {
        goal,
        measured: format!("{mib:.1} MiB"),
        met: Some(mib < SERVE_RSS_TARGET_MIB),
    }
}

fn not_measured(goal: String) -> Target {
    Target {
        goal,
        measured: "not measured".to_owned(),
        met: None,
    }
}

/// The table printed at the end of a run.
pub fn render(results: &Results) -> String {
    let mut out = String::new();
    render_machine(&mut out, results);
    render_throughput(&mut out, &results.throughput);
    render_cpu(&mut out, &results.throughput);
    if let Some(latency) = &results.latency {
        render_latency(&mut out, latency);
    }
    render_memory(&mut out, &results.memory);
    render_targets(&mut out, &results.targets);
    out
}

fn render_machine(out: &mut String, results: &Results) {
    let m = &results.machine;
    let [a, b, c] = m.load;
    let [x, y, z] = results.load_at_end;
    let _ = writeln!(
        out,
        "machine: {} cores, {}, {:.1} GiB memory, Linux {}",
        m.cores,
        m.cpu_model,
        mib(m.mem_total_kib) / 1024.0,
        m.kernel
    );
    let _ = writeln!(
        out,
        "load (1/5/15 min): {a:.2} {b:.2} {c:.2} at start, {x:.2} {y:.2} {z:.2} at end"
    );
}

fn render_throughput(out: &mut String, series: &[Throughput]) {
    if series.is_empty() {
        return;
    }
    let levels = levels_of(series);
    let _ = writeln!(
        out,
        "\nthroughput: no-op jobs/s, median of each level's runs (jobs added before the clock)"
    );
    let mut header = format!("  {:<10} {:>6}", "series", "jobs");
    for level in &levels {
        let _ = write!(header, " {:>9}", format!("c={level}"));
    }
    let _ = writeln!(out, "{header}  handler");
    for s in series {
        let mut row = format!("  {:<10} {:>6}", s.label, s.jobs);
        for level in &levels {
            let cell = s.levels.iter().find(|l| l.concurrency == *level);
            let text = cell.map_or_else(|| "-".to_owned(), |l| thousands(l.median_jobs_per_sec));
            let _ = write!(row, " {text:>9}");
        }
        let _ = writeln!(out, "{row}  {}", s.handler);
    }
}

fn render_cpu(out: &mut String, series: &[Throughput]) {
    if series.is_empty() {
        return;
    }
    let levels = levels_of(series);
    let _ = writeln!(
        out,
        "\nCPU per job in µs: this process + handler processes (cores other processes kept busy)"
    );
    let mut header = format!("  {:<10}", "series");
    for level in &levels {
        let _ = write!(header, " {:>18}", format!("c={level}"));
    }
    let _ = writeln!(out, "{header}");
    for s in series {
        let mut row = format!("  {:<10}", s.label);
        for level in &levels {
            let cell = s.levels.iter().find(|l| l.concurrency == *level);
            let text = cell.map_or_else(|| "-".to_owned(), cpu_cell);
            let _ = write!(row, " {text:>18}");
        }
        let _ = writeln!(out, "{row}");
    }
}

fn cpu_cell(level: &Level) -> String {
    let own = level.median_cpu_us_per_job;
    let children = level.median_child_cpu_us_per_job;
    let cpu = match children > 0.0 {
        true => format!("{own:.0}+{children:.0}"),
        false => format!("{own:.1}"),
    };
    format!("{cpu} ({:.2})", level.median_other_cores)
}

fn levels_of(series: &[Throughput]) -> BTreeSet<usize> {
    series
        .iter()
        .flat_map(|s| s.levels.iter().map(|l| l.concurrency))
        .collect()
}

pub(crate) fn render_latency(out: &mut String, l: &Latency) {
    let _ = writeln!(
        out,
        "\nenqueue-to-start latency: {} jobs/s asked, {:.1} kept, {} s, concurrency {}, {} jobs",
        l.target_rate, l.achieved_rate, l.secs, l.concurrency, l.jobs
    );
    let _ = writeln!(
        out,
        "  p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   max {:.2} ms   (one add: p50 {:.2} ms, p99 {:.2} ms)",
        l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.add_p50_ms, l.add_p99_ms
    );
    let _ = writeln!(
        out,
        "  CPU {:.1} µs per job; other processes kept {:.2} cores busy meanwhile",
        l.cpu_us_per_job, l.other_cores
    );
}

fn render_memory(out: &mut String, memory: &[Rss]) {
    if memory.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nidle resident memory (VmRSS; peak VmHWM)");
    for m in memory {
        let _ = writeln!(
            out,
            "  {:<20} {:>7.1} MiB  (peak {:.1} MiB)  {}",
            m.label,
            mib(m.vm_rss_kib),
            mib(m.vm_hwm_kib),
            m.what
        );
    }
}

fn render_targets(out: &mut String, targets: &[Target]) {
    let _ = writeln!(out, "\ntargets");
    for t in targets {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "not measured",
        };
        let _ = writeln!(out, "  {:<46} {:<13} {}", t.goal, verdict, t.measured);
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `value` rounded to a whole number with thousands separated by commas.
pub(crate) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut grouped = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    fn level(concurrency: usize, median: f64, children: f64) -> Level {
        Level {
            concurrency,
            jobs_per_sec: vec![median],
            median_jobs_per_sec: median,
            median_bulk_add_per_sec: 100_000.0,
            median_cpu_us_per_job: 2_000_000.0 / median,
            median_child_cpu_us_per_job: children,
            median_other_cores: 0.25,
            load_after: 1.25,
        }
    }

    fn sample() -> Results {
        let throughput = vec![
            Throughput {
                label: "rust".to_owned(),
                kind: HandlerKind::Rust,
                handler: "handler_fn returning null".to_owned(),
                backend: "sqlite".to_owned(),
                jobs: 50_000,
                levels: vec![level(16, 21_000.4, 0.0), level(64, 26_500.0, 0.0)],
            },
            Throughput {
                label: "bin-true".to_owned(),
                kind: HandlerKind::Command,
                handler: "CommandHandler: /bin/true".to_owned(),
                backend: "sqlite".to_owned(),
                jobs: 2_000,
                levels: vec![level(16, 950.0, 812.0)],
            },
        ];
        let memory = vec![Rss {
            label: SERVE_LABEL.to_owned(),
            what: "idle server".to_owned(),
            pid: 1,
            vm_rss_kib: 35 * 1024,
            vm_hwm_kib: 36 * 1024,
        }];
        let mut results = Results {
            machine: Machine {
                cores: 2,
                cpu_model: "Example CPU".to_owned(),
                mem_total_kib: 24 * 1024 * 1024,
                load: [0.5, 0.25, 0.1],
                kernel: "6.1.0".to_owned(),
                at_unix_secs: 0,
            },
            load_at_end: [1.0, 0.5, 0.2],
            throughput,
            latency: Some(Latency {
                target_rate: 500,
                achieved_rate: 499.9,
                secs: 10,
                concurrency: 64,
                jobs: 5000,
                p50_ms: 0.8,
                p90_ms: 1.5,
                p99_ms: 4.25,
                max_ms: 12.0,
                add_p50_ms: 0.3,
                add_p99_ms: 1.1,
                cpu_us_per_job: 40.0,
                other_cores: 0.5,
            }),
            memory,
            targets: Vec::new(),
        };
        results.targets = targets(&results);
        results
    }

    fn check(results: &Results, expect: Expect) {
        expect.assert_eq(&render(results));
    }

    #[test]
    fn table_shows_every_series_level_and_target_verdict() {
        check(
            &sample(),
            expect![[r#"
                machine: 2 cores, Example CPU, 24.0 GiB memory, Linux 6.1.0
                load (1/5/15 min): 0.50 0.25 0.10 at start, 1.00 0.50 0.20 at end

                throughput: no-op jobs/s, median of each level's runs (jobs added before the clock)
                  series       jobs      c=16      c=64  handler
                  rust        50000    21,000    26,500  handler_fn returning null
                  bin-true     2000       950         -  CommandHandler: /bin/true

                CPU per job in µs: this process + handler processes (cores other processes kept busy)
                  series                   c=16               c=64
                  rust              95.2 (0.25)        75.5 (0.25)
                  bin-true      2105+812 (0.25)                  -

                enqueue-to-start latency: 500 jobs/s asked, 499.9 kept, 10 s, concurrency 64, 5000 jobs
                  p50 0.80 ms   p90 1.50 ms   p99 4.25 ms   max 12.00 ms   (one add: p50 0.30 ms, p99 1.10 ms)
                  CPU 40.0 µs per job; other processes kept 0.50 cores busy meanwhile

                idle resident memory (VmRSS; peak VmHWM)
                  smartworker-serve       35.0 MiB  (peak 36.0 MiB)  idle server

                targets
                  Rust handler at least 25,000 jobs/s            met           best median 26,500 jobs/s (concurrency 64)
                  idle smartworker serve under 30 MiB resident   NOT MET       35.0 MiB
            "#]],
        );
    }

    #[test]
    fn missing_measurements_are_reported_as_not_measured() {
        let mut results = sample();
        results.throughput.retain(|t| t.kind != HandlerKind::Rust);
        results.memory.clear();
        let verdicts: Vec<Option<bool>> = targets(&results).iter().map(|t| t.met).collect();
        assert_eq!(verdicts, [None, None]);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.6), "1,000");
        assert_eq!(thousands(12.0), "12");
    }
}
