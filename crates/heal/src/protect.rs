//! Paths a fix may not change, even inside the project: what the sandbox copy leaves out (a
//! change there is never exercised by the re-run, yet `fixes apply` would write it), secrets
//! and SmartWorker's own configuration and state, and, when the project's checks judge a fix,
//! the checks themselves: a fix that rewrites the test meant to catch it would be "verified".

use smartworker_sandbox::{SKIPPED_DIRS, is_secret_file};
use std::path::{Component, Path, PathBuf};

/// SmartWorker's configuration file, at the project's root.
const CONFIG_FILE: &str = "smartworker.toml";

/// Directory names that hold a project's tests.
const TEST_DIRS: [&str; 5] = ["tests", "test", "spec", "specs", "__tests__"];

/// The extensions of JavaScript and TypeScript sources, for `*.test.*` and `*.spec.*`.
const SCRIPT_EXTENSIONS: [&str; 6] = ["js", "jsx", "ts", "tsx", "mjs", "cjs"];

/// What a fix may not touch in one project.
pub(crate) struct Protected<'a> {
    /// The project root, resolved.
    pub root: &'a Path,
    /// `heal.check_command`, when the project's checks judge fixes.
    pub checks: Option<&'a [String]>,
    /// Paths the workspace copy leaves out (SmartWorker's state inside the project).
    pub skipped: &'a [PathBuf],
}

impl Protected<'_> {
    /// Why a fix may not change `file` (an absolute path inside the root, as
    /// `smartworker_edits::check_path` returns it), or `None` when it may.
    pub(crate) fn refusal(&self, shown: &str, file: &Path) -> Option<String> {
        let relative = file.strip_prefix(self.root).unwrap_or(file);
        let parts: Vec<&str> = relative
            .components()
            .filter_map(|c| match c {
                Component::Normal(part) => part.to_str(),
                _ => None,
            })
            .collect();
        let name = parts.last().copied().unwrap_or_default();
        if let Some(dir) = parts[..parts.len().saturating_sub(1)]
            .iter()
            .find(|part| SKIPPED_DIRS.contains(part))
        {
            return Some(format!(
                "path {shown:?} is under {dir}/, which the sandbox copy leaves out, so the \
                 re-run could never exercise the change"
            ));
        }
        if is_secret_file(name) || relative == Path::new(CONFIG_FILE) {
            return Some(format!(
                "path {shown:?} holds secrets or SmartWorker's configuration; a fix changes \
                 only the project's code"
            ));
        }
        if self
            .skipped
            .iter()
            .filter_map(|p| p.canonicalize().ok())
            .any(|skipped| file.starts_with(skipped))
        {
            return Some(format!("path {shown:?} is SmartWorker's state"));
        }
        let checks = self.checks?;
        let named = checks
            .iter()
            .filter(|arg| !arg.starts_with('-') && !arg.starts_with('/'))
            .map(|arg| self.root.join(arg))
            .any(|named| named.exists() && file.starts_with(named));
        if named || parts.iter().any(|part| TEST_DIRS.contains(part)) || is_test_file(name) {
            return Some(format!(
                "path {shown:?} is one of the project's tests or checks, which judge the fix; \
                 a fix must pass them as they are"
            ));
        }
        None
    }
}

/// `test_x.py`, `x_test.py`, `conftest.py`, `x_test.go`, `x.test.ts`, `x.spec.js`,
/// `x_spec.rb`.
fn is_test_file(name: &str) -> bool {
    let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
    let script_suffix = stem
        .rsplit_once('.')
        .is_some_and(|(_, kind)| kind == "test" || kind == "spec");
    match extension {
        "py" => stem.starts_with("test_") || stem.ends_with("_test") || stem == "conftest",
        "go" => stem.ends_with("_test"),
        "rb" => stem.ends_with("_spec") || stem.ends_with("_test"),
        ext if SCRIPT_EXTENSIONS.contains(&ext) => script_suffix,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(checks: Option<&[String]>, path: &str) -> Option<String> {
        let root = Path::new("/srv/app");
        let protected = Protected {
            root,
            checks,
            skipped: &[],
        };
        protected.refusal(path, &root.join(path))
    }

    #[test]
    fn code_may_change_but_secrets_state_and_configuration_may_not() {
        for path in ["handlers/signup.py", "src/env.py", "lib/testing_utils.py"] {
            assert_eq!(refusal(None, path), None, "{path}");
        }
        for path in [
            ".env",
            "config/.env.local",
            "smartworker.toml",
            ".smartworker/fixes/fix-1.patch",
            "app/__pycache__/x.pyc",
            "target/debug/build.rs",
        ] {
            assert!(refusal(None, path).is_some(), "{path}");
        }
        // A file of that name below the root is the project's own.
        assert_eq!(refusal(None, "docs/smartworker.toml"), None);
    }

    #[test]
    fn with_checks_the_tests_are_protected_too() {
        let checks = ["python3".to_owned(), "tools/check.py".to_owned()];
        let checks = Some(&checks[..]);
        for path in [
            "tests/test_signup.py",
            "handlers/test_signup.py",
            "pkg/conftest.py",
            "web/cart.test.ts",
            "web/cart.spec.js",
            "spec/models/user_spec.rb",
            "pkg/sum_test.go",
        ] {
            assert!(refusal(checks, path).is_some(), "{path}");
            assert_eq!(refusal(None, path), None, "{path} without checks");
        }
        assert_eq!(refusal(checks, "handlers/signup.py"), None);
        assert_eq!(refusal(checks, "web/testimonials.ts"), None);
    }
}
