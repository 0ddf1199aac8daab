//! The machine a run measures on: cores, CPU model, memory and load, and the CPU time used
//! by this process, its children and everything else, so a run on a shared machine can say
//! how much of it other work took.

use anyhow::Context;
use nix::sys::resource::{Usage, UsageWho, getrusage};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The machine at one moment.
#[derive(Debug, Serialize, Deserialize)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// The first `model name` of `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `MemTotal` in KiB.
    pub mem_total_kib: u64,
    /// The 1, 5 and 15 minute load averages.
    pub load: [f64; 3],
    /// The kernel release.
    pub kernel: String,
    /// Seconds since the epoch when this was read.
    pub at_unix_secs: u64,
}

/// Reads the machine now.
///
/// # Errors
/// When `/proc` cannot be read.
pub fn describe() -> anyhow::Result<Machine> {
    let cpuinfo = read("/proc/cpuinfo")?;
    let meminfo = read("/proc/meminfo")?;
    Ok(Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: field(&cpuinfo, "model name")
            .unwrap_or("unknown")
            .to_owned(),
        mem_total_kib: field(&meminfo, "MemTotal")
            .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0),
        load: load()?,
        kernel: read("/proc/sys/kernel/osrelease")?.trim().to_owned(),
        at_unix_secs: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg`.
///
/// # Errors
/// When the file cannot be read.
pub fn load() -> anyhow::Result<[f64; 3]> {
    Ok(parse_load(&read("/proc/loadavg")?))
}

/// CPU time all processes of the machine have used since boot (`/proc/stat`, all cores).
///
/// # Errors
/// When `/proc/stat` cannot be read.
pub fn busy_cpu() -> anyhow::Result<Duration> {
    Ok(parse_busy(&read("/proc/stat")?))
}

/// The busy time of the `cpu` line: user, nice, system, irq, softirq and steal, in the
/// kernel's fixed 100 Hz `USER_HZ` ticks.
fn parse_busy(text: &str) -> Duration {
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return Duration::ZERO;
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
    // Fields: user nice system idle iowait irq softirq steal; idle and iowait are not busy.
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    Duration::from_millis(busy * 10)
}

/// CPU time used since it started: by this process, by the children it waited for, and by
/// the whole machine.
pub struct CpuClock {
    own: Duration,
    children: Duration,
    machine: Duration,
}

impl CpuClock {
    /// Starts counting now.
    ///
    /// # Errors
    /// When the CPU times cannot be read.
    pub fn start() -> anyhow::Result<CpuClock> {
        Ok(CpuClock {
            own: cpu_of(UsageWho::RUSAGE_SELF)?,
            children: cpu_of(UsageWho::RUSAGE_CHILDREN)?,
            machine: busy_cpu()?,
        })
    }

    /// µs of CPU used since `start`: by this process, its children, and the machine.
    ///
    /// # Errors
    /// When the CPU times cannot be read.
    pub fn used_us(&self) -> anyhow::Result<(f64, f64, f64)> {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let own = cpu_of(UsageWho::RUSAGE_SELF)?.saturating_sub(self.own);
        let children = cpu_of(UsageWho::RUSAGE_CHILDREN)?.saturating_sub(self.children);
        let machine = busy_cpu()?.saturating_sub(self.machine);
        Ok((us(own), us(children), us(machine)))
    }
}

fn cpu_of(who: UsageWho) -> anyhow::Result<Duration> {
    let usage: Usage = getrusage(who).context("cannot read the CPU time used")?;
    let total = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    Ok(total(usage.user_time()) + total(usage.system_time()))
}

/// Waits until the other processes of the machine keep fewer than `below` cores busy over a
/// two-second window, or `max_wait` passes; returns the last window's busy cores.
///
/// # Errors
/// When `/proc/stat` cannot be read.
pub async fn wait_quiet(below: f64, max_wait: Duration) -> anyhow::Result<f64> {
    let window = Duration::from_secs(2);
    let until = std::time::Instant::now() + max_wait;
    loop {
        let clock = CpuClock::start()?;
        tokio::time::sleep(window).await;
        let (own_us, _, machine_us) = clock.used_us()?;
        let busy = (machine_us - own_us).max(0.0) / 1e6 / window.as_secs_f64();
        if busy < below || std::time::Instant::now() >= until {
            return Ok(busy);
        }
    }
}

fn parse_load(text: &str) -> [f64; 3] {
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(0.0));
    let mut next = || fields.next().unwrap_or(0.0);
    [next(), next(), next()]
}

fn read(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
}

/// The value of the first `name : value` line.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_fields_are_found_by_name() {
        let text = "processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nmodel\t: 85\n";
        assert_eq!(field(text, "model name"), Some("Example CPU @ 2.0GHz"));
        assert_eq!(field(text, "model"), Some("85"));
        assert_eq!(field(text, "flags"), None);
    }

    #[test]
    fn busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 2 30 9000 50 4 6 8 0 0\ncpu0 50 1 15 4500 25 2 3 4 0 0\n";
        assert_eq!(parse_busy(stat), Duration::from_millis(1500));
        assert_eq!(parse_busy("intr 1 2 3\n"), Duration::ZERO);
    }

    #[test]
    fn loadavg_gives_three_averages() {
        assert_eq!(parse_load("1.50 0.75 0.25 2/300 4242\n"), [1.5, 0.75, 0.25]);
    }
}
