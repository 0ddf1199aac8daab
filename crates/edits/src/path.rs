//! Checks that a path proposed by the model names a file inside the project root.
//!
//! A path is accepted only when it is relative, stays inside the root after `..` is resolved
//! lexically, avoids the `.git` directory, and every part of it that already exists on disk
//! (symlinks included) resolves inside the root.

use std::io;
use std::path::{Path, PathBuf};

/// The longest path accepted, in bytes.
const MAX_PATH_BYTES: usize = 4096;

/// The longest single path component accepted, in bytes.
const MAX_COMPONENT_BYTES: usize = 255;

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// Nothing is left once `.` and empty components are dropped.
    #[error("path {path:?} names no file")]
    Empty { path: String },
    /// NUL bytes cannot be in a file name and often hide a truncation trick.
    #[error("path {path:?} contains a NUL byte")]
    Nul { path: String },
    /// Newlines and other control characters have no place in a project's file names.
    #[error("path {path:?} contains a control character")]
    Control { path: String },
    /// The path starts at `/` or `~` instead of the project root.
    #[error("path {path:?} is absolute; paths must be relative to the project root")]
    Absolute { path: String },
    /// A drive letter (`C:\x`) or a network share (`\\server\x`).
    #[error("path {path:?} names a Windows drive or network share")]
    WindowsPrefix { path: String },
    /// Backslashes would be literal characters here, never separators.
    #[error("path {path:?} contains a backslash")]
    Backslash { path: String },
    /// Longer than the operating system or this crate accepts.
    #[error("path {path:?} is too long")]
    TooLong { path: String },
    /// `..` climbs above the project root.
    #[error("path {path:?} leaves the project root")]
    Escapes { path: String },
    /// The repository's own metadata is never edited.
    #[error("path {path:?} is inside the .git directory")]
    GitDir { path: String },
    /// An existing part of the path is a symlink that points outside the root (or into `.git`).
    #[error("path {path:?} goes through symlink {link:?}, which resolves outside the project root")]
    SymlinkEscape { path: String, link: PathBuf },
    /// An existing part of the path is a symlink whose target does not exist; writing through
    /// it would create a file wherever it points.
    #[error("path {path:?} goes through dangling symlink {link:?}")]
    DanglingSymlink { path: String, link: PathBuf },
    /// The root itself could not be resolved.
    #[error("project root {root:?} cannot be resolved: {source}")]
    Root { root: PathBuf, source: io::Error },
    /// An existing part of the path could not be inspected.
    #[error("cannot inspect {at:?} for path {path:?}: {source}")]
    Inspect {
        path: String,
        at: PathBuf,
        source: io::Error,
    },
}

/// Checks `path` (as the model wrote it) against `root` and returns where it lives on disk:
/// the resolved root joined with the normalised relative path, with no `..` left in it.
///
/// # Errors
///
/// Refuses empty, absolute, home-relative, Windows drive and UNC paths, backslashes, NUL and
/// control characters, `..` that leaves the root, anything under `.git`, and any existing
/// ancestor (or the path itself) that is a symlink resolving outside the root or nowhere.
pub fn check_path(root: &Path, path: &str) -> Result<PathBuf, PathError> {
    let relative = normalize(path)?;
    let root = root.canonicalize().map_err(|source| PathError::Root {
        root: root.to_path_buf(),
        source,
    })?;

    check_existing_parts(&root, path, &relative)?;
    Ok(root.join(relative))
}

/// Checks a path without touching the disk and returns it normalised: components joined by
/// `/`, with `.` dropped and `..` resolved.
pub(crate) fn normalize(path: &str) -> Result<String, PathError> {
    let owned = || path.to_owned();
    if path.contains('\0') {
        return Err(PathError::Nul { path: owned() });
    }
    if path.chars().any(char::is_control) {
        return Err(PathError::Control { path: owned() });
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong { path: owned() });
    }
    if has_windows_prefix(path) {
        return Err(PathError::WindowsPrefix { path: owned() });
    }
    if path.starts_with('/') || path.starts_with('~') {
        return Err(PathError::Absolute { path: owned() });
    }
    if path.contains('\\') {
        return Err(PathError::Backslash { path: owned() });
    }

    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PathError::Escapes { path: owned() });
                }
            }
            _ if part.len() > MAX_COMPONENT_BYTES => {
                return Err(PathError::TooLong { path: owned() });
            }
            _ => parts.push(part),
        }
    }

    if parts.is_empty() {
        return Err(PathError::Empty { path: owned() });
    }
    if parts.iter().any(|part| is_git_dir(part)) {
        return Err(PathError::GitDir { path: owned() });
    }
    Ok(parts.join("/"))
}

/// `C:\x`, `C:x`, `c:/x` and `\\server\share` (which also covers `\\?\` paths).
fn has_windows_prefix(path: &str) -> bool {
    let bytes = path.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    drive || path.starts_with("\\\\")
}

/// Case-insensitive, because the workspace may sit on a case-insensitive file system.
fn is_git_dir(part: &str) -> bool {
    part.eq_ignore_ascii_case(".git")
}

/// Walks the existing prefix of `relative` below `root`, resolving each symlink met and
/// refusing any that lands outside `root` or inside its `.git`.
fn check_existing_parts(root: &Path, path: &str, relative: &str) -> Result<(), PathError> {
    let mut at = root.to_path_buf();
    for part in relative.split('/') {
        at.push(part);
        let meta = match at.symlink_metadata() {
            Ok(meta) => meta,
            // Nothing below a missing part exists either, so nothing more can escape.
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(inspect_error(path, &at, source)),
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        at = resolve_link(root, path, &at)?;
    }
    Ok(())
}

/// Resolves one symlink fully and checks where it ends up.
fn resolve_link(root: &Path, path: &str, link: &Path) -> Result<PathBuf, PathError> {
    let target = match link.canonicalize() {
        Ok(target) => target,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(PathError::DanglingSymlink {
                path: path.to_owned(),
                link: link.to_path_buf(),
            });
        }
        Err(source) => return Err(inspect_error(path, link, source)),
    };

    let escape = || PathError::SymlinkEscape {
        path: path.to_owned(),
        link: link.to_path_buf(),
    };
    let Ok(inside) = target.strip_prefix(root) else {
        return Err(escape());
    };
    if inside
        .iter()
        .any(|part| part.to_str().is_some_and(is_git_dir))
    {
        return Err(escape());
    }
    Ok(target)
}

fn inspect_error(path: &str, at: &Path, source: io::Error) -> PathError {
    PathError::Inspect {
        path: path.to_owned(),
        at: at.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn refused(path: &str) -> String {
        match normalize(path) {
            Ok(ok) => panic!("{path:?} was accepted as {ok:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn relative_paths_are_normalised() {
        assert_eq!(
            normalize("./handlers//signup.py").ok(),
            Some("handlers/signup.py".into())
        );
        assert_eq!(normalize("a/b/../c.py").ok(), Some("a/c.py".into()));
    }

    #[test]
    fn hostile_paths_are_refused_by_name() {
        assert_eq!(
            refused("../../etc/passwd"),
            r#"path "../../etc/passwd" leaves the project root"#
        );
        assert_eq!(
            refused("/etc/passwd"),
            r#"path "/etc/passwd" is absolute; paths must be relative to the project root"#
        );
        assert!(refused("C:\\x").contains("Windows drive"));
        assert!(refused("c:x").contains("Windows drive"));
        assert!(refused("\\\\server\\share\\x").contains("Windows drive"));
        assert!(refused("src\\x.py").contains("backslash"));
        assert!(refused("a\0b").contains("NUL"));
        assert!(refused("a\nb").contains("control"));
        assert!(refused("~/.ssh/id_rsa").contains("absolute"));
        assert!(refused("a/../../b").contains("leaves the project root"));
        assert!(refused(".git/hooks/pre-commit").contains(".git"));
        assert!(refused("sub/.GIT/config").contains(".git"));
        assert!(refused("./.").contains("names no file"));
        assert!(refused(&"a/".repeat(3000)).contains("too long"));
    }

    #[test]
    fn symlinked_dir_pointing_outside_is_refused() {
        let outside = tempfile::tempdir().expect("tempdir");
        let root = tempfile::tempdir().expect("tempdir");
        symlink(outside.path(), root.path().join("escape")).expect("symlink");

        let err = check_path(root.path(), "escape/x.py").expect_err("must refuse");
        assert!(matches!(err, PathError::SymlinkEscape { .. }), "{err}");
    }

    #[test]
    fn dangling_symlink_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        symlink("/nonexistent/smartworker-target", root.path().join("x.py")).expect("symlink");

        let err = check_path(root.path(), "x.py").expect_err("must refuse");
        assert!(matches!(err, PathError::DanglingSymlink { .. }), "{err}");
    }

    #[test]
    fn symlink_into_git_dir_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join(".git")).expect("mkdir");
        symlink(root.path().join(".git"), root.path().join("meta")).expect("symlink");

        let err = check_path(root.path(), "meta/config").expect_err("must refuse");
        assert!(matches!(err, PathError::SymlinkEscape { .. }), "{err}");
    }

    #[test]
    fn symlink_staying_inside_is_accepted() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join("src")).expect("mkdir");
        symlink(root.path().join("src"), root.path().join("lib")).expect("symlink");

        let resolved = check_path(root.path(), "lib/new.py").expect("inside");
        let canon = root.path().canonicalize().expect("canon");
        assert_eq!(resolved, canon.join("lib/new.py"));
    }

    #[test]
    fn dotdot_after_symlink_cannot_escape() {
        // The kernel would resolve `escape/..` to the link target's parent; the lexical
        // normalisation means the returned path never contains `..` at all.
        let outside = tempfile::tempdir().expect("tempdir");
        let root = tempfile::tempdir().expect("tempdir");
        symlink(outside.path(), root.path().join("escape")).expect("symlink");

        let resolved = check_path(root.path(), "escape/../x.py").expect("lexically inside");
        let canon = root.path().canonicalize().expect("canon");
        assert_eq!(resolved, canon.join("x.py"));
    }
}
