//! A description of the machine a run measured: cores, CPU model, memory and load.

use anyhow::Context;
use serde::{Deserialize, Serialize};

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
    fn loadavg_gives_three_averages() {
        assert_eq!(parse_load("1.50 0.75 0.25 2/300 4242\n"), [1.5, 0.75, 0.25]);
    }
}
