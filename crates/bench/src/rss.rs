//! Resident memory of a running process, read from `/proc/<pid>/status`.

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Arguments of `rss`.
#[derive(Args, Debug)]
pub struct RssArgs {
    /// The process to measure.
    #[arg(long)]
    pub pid: u32,
    /// A name for it in the results, such as `smartworker-serve`.
    #[arg(long)]
    pub label: String,
    /// What the process is, in words.
    #[arg(long, default_value = "")]
    pub what: String,
    /// Where to write the JSON.
    #[arg(long)]
    pub out: PathBuf,
}

/// The memory of one process.
#[derive(Debug, Serialize, Deserialize)]
pub struct Rss {
    /// The process' name in the results.
    pub label: String,
    /// What it is.
    pub what: String,
    /// Its id when measured.
    pub pid: u32,
    /// Resident memory now, in KiB (`VmRSS`).
    pub vm_rss_kib: u64,
    /// The most resident memory it ever had, in KiB (`VmHWM`).
    pub vm_hwm_kib: u64,
}

/// Reads the memory of `args.pid`.
///
/// # Errors
/// When the process does not exist or its status has no `VmRSS` (a zombie).
pub fn measure(args: &RssArgs) -> anyhow::Result<Rss> {
    let path = format!("/proc/{}/status", args.pid);
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let Some(vm_rss_kib) = status_kib(&status, "VmRSS") else {
        bail!(
            "{path} has no VmRSS line; is process {} a zombie?",
            args.pid
        );
    };
    Ok(Rss {
        label: args.label.clone(),
        what: args.what.clone(),
        pid: args.pid,
        vm_rss_kib,
        vm_hwm_kib: status_kib(&status, "VmHWM").unwrap_or(vm_rss_kib),
    })
}

/// The value of a `Name:   1234 kB` line of a status file.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_in_kib() {
        let status = "Name:\tnode\nVmHWM:\t   61234 kB\nVmRSS:\t   58000 kB\nVmRSSx:\t1 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(58_000));
        assert_eq!(status_kib(status, "VmHWM"), Some(61_234));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn own_process_has_resident_memory() {
        let args = RssArgs {
            pid: std::process::id(),
            label: "self".to_owned(),
            what: String::new(),
            out: PathBuf::new(),
        };
        let rss = measure(&args).unwrap();
        assert!(rss.vm_rss_kib > 0 && rss.vm_hwm_kib >= rss.vm_rss_kib);
    }
}
