//! Paths a fix may not change, even inside the project: what the sandbox copy leaves out (a
//! change there is never exercised by the re-run, yet `fixes apply` would write it), secrets
//! and SmartWorker's own configuration and state, and, when the project's checks judge a fix,
//! anything that could weaken them: a fix that rewrites the test meant to catch it would be
//! "verified". Under checks a fix may change only the files the model was shown (the code the
//! trace points at) and add new files outside tests and build configuration.
//!
//! Every rule applies to the path as written and to where it leads through symlinks inside
//! the project (`t/check.py` with `t -> tests`).

use smartworker_sandbox::{SKIPPED_DIRS, is_secret_file};
use std::path::{Component, Path, PathBuf};

/// SmartWorker's configuration file, at the project's root.
const CONFIG_FILE: &str = "smartworker.toml";

/// Directory names that hold a project's tests.
const TEST_DIRS: [&str; 5] = ["tests", "test", "spec", "specs", "__tests__"];

/// The extensions of JavaScript and TypeScript sources, for `*.test.*` and `*.spec.*`.
const SCRIPT_EXTENSIONS: [&str; 6] = ["js", "jsx", "ts", "tsx", "mjs", "cjs"];

/// Files that decide how a project's checks run (build and test runners' configuration).
const CHECK_CONFIG_FILES: [&str; 17] = [
    "Makefile",
    "makefile",
    "GNUmakefile",
    "pytest.ini",
    "tox.ini",
    "setup.cfg",
    "pyproject.toml",
    "noxfile.py",
    "tests.py",
    "test.py",
    "package.json",
    "Cargo.toml",
    "go.mod",
    "Rakefile",
    "Gemfile",
    "justfile",
    "Taskfile.yml",
];

/// Name prefixes of test runners' configuration files (`jest.config.js`, `.mocharc.yml`).
const CHECK_CONFIG_PREFIXES: [&str; 5] = [
    "jest.config.",
    "vitest.config.",
    ".mocharc",
    "karma.conf.",
    "playwright.config.",
];

/// What a fix may not touch in one project.
pub(crate) struct Protected<'a> {
    /// The project root, resolved.
    pub root: &'a Path,
    /// `heal.check_command`, when the project's checks judge fixes.
    pub checks: Option<&'a [String]>,
    /// Paths the workspace copy leaves out (SmartWorker's state and configuration).
    pub skipped: &'a [PathBuf],
    /// The files the model was shown, relative to the root: under checks, the only existing
    /// files a fix may change.
    pub shown: &'a [String],
}

impl Protected<'_> {
    /// Why a fix may not change `file` (an absolute path inside the root, as
    /// `smartworker_edits::check_path` returns it), or `None` when it may.
    pub(crate) fn refusal(&self, shown: &str, file: &Path) -> Option<String> {
        // Where the path leads says more than how it is spelled (`t/check.py` is a test).
        let real = resolved(file);
        self.refusal_of(shown, &real).or_else(|| {
            (real != file)
                .then(|| self.refusal_of(shown, file))
                .flatten()
        })
    }

    /// The rules, for one spelling of the path.
    fn refusal_of(&self, shown: &str, file: &Path) -> Option<String> {
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
        if is_secret_file(name) || name == CONFIG_FILE {
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
            return Some(format!(
                "path {shown:?} is SmartWorker's own state or configuration"
            ));
        }
        let checks = self.checks?;
        let named = checks
            .iter()
            .filter(|arg| !arg.starts_with('-') && !arg.starts_with('/'))
            .map(|arg| self.root.join(arg))
            .any(|named| named.exists() && file.starts_with(named));
        if named
            || parts.iter().any(|part| TEST_DIRS.contains(part))
            || is_test_file(name)
            || is_check_config(name)
        {
            return Some(format!(
                "path {shown:?} is one of the project's tests or checks, which judge the fix; \
                 a fix must pass them as they are"
            ));
        }
        let relative = parts.join("/");
        if file.exists() && !self.shown.contains(&relative) {
            return Some(format!(
                "path {shown:?} is not among the files the trace points at; while the \
                 project's checks judge fixes, a fix changes only those (or adds new files), so \
                 it cannot weaken what the checks rely on"
            ));
        }
        None
    }
}

/// `file` with every existing part resolved through symlinks (the rest appended as is).
fn resolved(file: &Path) -> PathBuf {
    let mut existing = file;
    let mut rest = Vec::new();
    while !existing.exists() {
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
            return file.to_owned();
        };
        rest.push(name);
        existing = parent;
    }
    let Ok(mut real) = existing.canonicalize() else {
        return file.to_owned();
    };
    for name in rest.iter().rev() {
        real.push(name);
    }
    real
}

fn is_check_config(name: &str) -> bool {
    CHECK_CONFIG_FILES.contains(&name) || CHECK_CONFIG_PREFIXES.iter().any(|p| name.starts_with(p))
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
        let shown = [
            "handlers/signup.py".to_owned(),
            "web/testimonials.ts".to_owned(),
        ];
        let protected = Protected {
            root,
            checks,
            skipped: &[],
            shown: &shown,
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
        // Under another directory too: a copy of the configuration is still one.
        assert!(refusal(None, "config/smartworker.toml").is_some());
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
            "Makefile",
            "pyproject.toml",
            "web/jest.config.js",
            "app/tests.py",
        ] {
            assert!(refusal(checks, path).is_some(), "{path}");
            assert_eq!(refusal(None, path), None, "{path} without checks");
        }
        assert_eq!(refusal(checks, "handlers/signup.py"), None);
        assert_eq!(refusal(checks, "web/testimonials.ts"), None);
        // New files may be added; these do not exist under /srv/app.
        assert_eq!(refusal(checks, "handlers/helpers.py"), None);
    }
}
