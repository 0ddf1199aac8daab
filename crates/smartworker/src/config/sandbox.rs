//! The sandbox settings: which backend verifies fixes (globally and per queue), the Docker
//! image, and the user id sandboxed code runs as.

use super::value::Raw;
use super::{ConfigError, Layers, QueueConfig, SandboxKind};

/// The user id sandboxed code runs as when `heal.sandbox_uid` is not set.
pub const DEFAULT_SANDBOX_UID: u32 = smartworker_sandbox::DEFAULT_SANDBOX_UID;

/// The sandbox part of `[heal]`.
pub(crate) struct HealSandbox {
    pub kind: SandboxKind,
    pub image: Option<String>,
    pub uid: u32,
}

/// Reads `heal.sandbox`, `heal.sandbox_image` and `heal.sandbox_uid`.
pub(crate) fn heal_sandbox(layers: &Layers) -> Result<HealSandbox, ConfigError> {
    Ok(HealSandbox {
        kind: layers.read("heal.sandbox", kind)?.unwrap_or_default(),
        image: layers.read("heal.sandbox_image", image)?,
        uid: layers
            .read("heal.sandbox_uid", sandbox_uid)?
            .unwrap_or(DEFAULT_SANDBOX_UID),
    })
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
