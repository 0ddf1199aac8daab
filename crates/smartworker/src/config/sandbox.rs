//! The sandbox settings: which backend verifies fixes (globally and per queue), the Docker
//! image, the user id sandboxed code runs as, its memory and write limits, and where
//! workspaces are made.

use super::value::Raw;
use super::{ConfigError, Layers, QueueConfig, SandboxKind};
use std::path::{Path, PathBuf};

/// The user id sandboxed code runs as when `heal.sandbox_uid` is not set.
pub const DEFAULT_SANDBOX_UID: u32 = smartworker_sandbox::DEFAULT_SANDBOX_UID;

/// A sandbox's memory when `heal.sandbox_memory_mb` is not set, in MiB.
pub const DEFAULT_SANDBOX_MEMORY_MB: u64 = 2048;

/// A sandbox's room for writes in the workspace when `heal.sandbox_write_mb` is not set, in MiB.
pub const DEFAULT_SANDBOX_WRITE_MB: u64 = 256;

/// The sandbox part of `[heal]`.
pub(crate) struct HealSandbox {
    pub kind: SandboxKind,
    pub image: Option<String>,
    pub uid: u32,
    pub memory_mb: u64,
    pub write_mb: u64,
    pub workspace_dir: Option<PathBuf>,
}

/// Reads `heal.sandbox`, `heal.sandbox_image`, `heal.sandbox_uid`, `heal.sandbox_memory_mb`,
/// `heal.sandbox_write_mb` and `heal.workspace_dir` (relative to `cwd`, and never inside
/// `root`, the project the workspaces copy).
pub(crate) fn heal_sandbox(
    layers: &Layers,
    cwd: &Path,
    root: &Path,
) -> Result<HealSandbox, ConfigError> {
    let workspace_dir = match layers.get("heal.workspace_dir") {
        Some(raw) => Some(workspace_dir(raw, cwd, root)?),
        None => None,
    };
    Ok(HealSandbox {
        kind: layers.read("heal.sandbox", kind)?.unwrap_or_default(),
        image: layers.read("heal.sandbox_image", image)?,
        uid: layers
            .read("heal.sandbox_uid", sandbox_uid)?
            .unwrap_or(DEFAULT_SANDBOX_UID),
        memory_mb: layers
            .read("heal.sandbox_memory_mb", |r| mebibytes(r, 64))?
            .unwrap_or(DEFAULT_SANDBOX_MEMORY_MB),
        write_mb: layers
            .read("heal.sandbox_write_mb", |r| mebibytes(r, 1))?
            .unwrap_or(DEFAULT_SANDBOX_WRITE_MB),
        workspace_dir,
    })
}

/// A size in MiB from `least` up to 1 TiB, so that the byte count cannot overflow.
fn mebibytes(raw: &Raw, least: u64) -> Result<u64, ConfigError> {
    let mb = raw.positive()?;
    if !(least..=1 << 20).contains(&mb) {
        return Err(raw.invalid(format!(
            "{mb} MiB is out of range: expected {least} to {} MiB",
            1 << 20
        )));
    }
    Ok(mb)
}

/// An existing directory outside the project: workspaces are copies of the project, so one
/// made inside it would be copied into the next.
fn workspace_dir(raw: &Raw, cwd: &Path, root: &Path) -> Result<PathBuf, ConfigError> {
    let dir = raw.path(cwd)?;
    let Ok(real) = std::fs::canonicalize(&dir) else {
        return Err(raw.invalid(format!("{} does not exist", dir.display())));
    };
    if !real.is_dir() {
        return Err(raw.invalid(format!("{} is not a directory", dir.display())));
    }
    let real_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    if real.starts_with(&real_root) {
        return Err(raw.invalid(format!(
            "{} is inside the project root {}: workspaces are copies of the project",
            dir.display(),
            real_root.display()
        )));
    }
    Ok(real)
}

/// A user id the sandbox can run as: never root, and never a value the kernel reads as "leave
/// the id unchanged", which would keep this process's user (root) in the sandbox.
fn sandbox_uid(raw: &Raw) -> Result<u32, ConfigError> {
    let uid = raw.positive_u32()?;
    if !smartworker_sandbox::is_usable_sandbox_uid(uid) {
        return Err(raw.invalid(format!(
            "{uid} cannot be the sandbox user: the kernel reads it as \"leave the id unchanged\""
        )));
    }
    Ok(uid)
}

/// Reads a queue's own `sandbox` or `sandbox_image`; `None` when `field` is neither.
pub(crate) fn queue_field(
    queue: &mut QueueConfig,
    field: &str,
    raw: &Raw,
) -> Option<Result<(), ConfigError>> {
    let read = match field {
        "sandbox" => kind(raw).map(|k| queue.sandbox = Some(k)),
        "sandbox_image" => image(raw).map(|i| queue.sandbox_image = Some(i)),
        _ => return None,
    };
    Some(read)
}

/// `auto`, `bubblewrap` or `docker`.
fn kind(raw: &Raw) -> Result<SandboxKind, ConfigError> {
    Ok(match raw.choice(&["auto", "bubblewrap", "docker"])? {
        "bubblewrap" => SandboxKind::Bubblewrap,
        "docker" => SandboxKind::Docker,
        _ => SandboxKind::Auto,
    })
}

/// A local image reference: no spaces, not empty.
fn image(raw: &Raw) -> Result<String, ConfigError> {
    let name = raw.text()?;
    if name.trim().is_empty() || name.chars().any(char::is_whitespace) {
        return Err(raw.invalid(format!("{name:?} is not a docker image name")));
    }
    Ok(name)
}
