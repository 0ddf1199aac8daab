//! The example project, carried inside the binary so `demo` works from any directory.

use anyhow::Context;
use include_dir::{Dir, include_dir};
use std::path::Path;

static PROJECT: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../examples/project");

/// Writes the example project into `dir` (created when missing).
///
/// # Errors
/// When a file cannot be written.
pub fn extract(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    PROJECT
        .extract(dir)
        .with_context(|| format!("writing the example project to {}", dir.display()))
}
