//! Finding the handler's program as the sandbox will see it.
//!
//! The sandbox sees only the system directories, so a program found on the host's PATH under,
//! say, `/root/.pyenv` is replaced by the same name in `/usr/bin`, or its install prefix is
//! bound read-only when there is no such replacement.

use crate::error::SandboxError;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Host directories every sandbox sees, read-only, at the same path.
pub(crate) const SYSTEM_DIRS: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
];

/// Where the sandbox finds a program, and what must be bound for it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The program as the sandbox runs it.
    pub program: String,
    /// An install prefix to bind read-only, when the program lives outside the system dirs.
    pub bind: Option<PathBuf>,
}

/// Resolves `program` against `host_path` (the host's `PATH`).
///
/// A path with a slash that is relative, or inside `visible` (the project root and extra
/// binds), is kept as it is: the sandbox sees it at the same place.
pub(crate) fn resolve_program(
    program: &str,
    host_path: Option<&OsStr>,
    visible: &[&Path],
) -> Result<Resolved, SandboxError> {
    let kept = || Resolved {
        program: program.to_owned(),
        bind: None,
    };
    let found = if program.contains('/') {
        let path = Path::new(program);
        if path.is_relative() || is_visible(path, visible) {
            return Ok(kept());
        }
        path.to_owned()
    } else {
        search_path(program, host_path)
            .ok_or_else(|| SandboxError::ProgramNotFound(program.to_owned()))?
    };

    let real = std::fs::canonicalize(&found).unwrap_or_else(|_| found.clone());
    if is_visible(&real, visible) || is_system(&real) {
        return Ok(Resolved {
            program: found.to_string_lossy().into_owned(),
            bind: None,
        });
    }

    // A shim or an install outside the system dirs: the system's own copy is the closest match.
    if let Some(name) = found.file_name() {
        let system = Path::new("/usr/bin").join(name);
        if is_executable(&system) {
            return Ok(Resolved {
                program: system.to_string_lossy().into_owned(),
                bind: None,
            });
        }
    }
    Ok(Resolved {
        program: real.to_string_lossy().into_owned(),
        bind: Some(install_prefix(&real)),
    })
}

fn search_path(name: &str, host_path: Option<&OsStr>) -> Option<PathBuf> {
    let dirs = std::env::split_paths(host_path?);
    dirs.map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn is_system(path: &Path) -> bool {
    SYSTEM_DIRS.iter().any(|dir| path.starts_with(dir))
}

fn is_visible(path: &Path, visible: &[&Path]) -> bool {
    visible.iter().any(|dir| path.starts_with(dir))
}

// FIXME: when the sandbox drops root, bubblewrap binds as that user, so a prefix it cannot
// read (a toolchain under /root) fails the run; such installs need a world-readable prefix.
/// `/opt/node/bin/node` → `/opt/node`; a program not in a `bin` dir → its own directory.
fn install_prefix(real: &Path) -> PathBuf {
    let dir = real.parent().unwrap_or(Path::new("/"));
    if dir.file_name().is_some_and(|n| n == "bin") {
        return dir.parent().unwrap_or(dir).to_owned();
    }
    dir.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn executable(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn shim_outside_system_dirs_is_replaced_by_usr_bin() {
        let shims = tempfile::tempdir().unwrap();
        executable(shims.path(), "python3");
        let resolved = resolve_program("python3", Some(shims.path().as_os_str()), &[]).unwrap();
        assert_eq!(
            resolved,
            Resolved {
                program: "/usr/bin/python3".into(),
                bind: None
            }
        );
    }

    #[test]
    fn install_without_a_system_twin_binds_its_prefix() {
        let prefix = tempfile::tempdir().unwrap();
        let bin = prefix.path().join("bin");
        fs::create_dir(&bin).unwrap();
        let tool = executable(&bin, "smartworker-test-tool");
        let resolved =
            resolve_program("smartworker-test-tool", Some(bin.as_os_str()), &[]).unwrap();
        let real_prefix = fs::canonicalize(prefix.path()).unwrap();
        assert_eq!(resolved.bind, Some(real_prefix));
        assert_eq!(
            resolved.program,
            fs::canonicalize(tool).unwrap().to_string_lossy()
        );
    }

    #[test]
    fn system_and_project_programs_are_kept() {
        let sh = resolve_program("sh", Some(OsStr::new("/usr/bin")), &[]).unwrap();
        assert_eq!(
            sh,
            Resolved {
                program: "/usr/bin/sh".into(),
                bind: None
            }
        );
        let root = Path::new("/srv/app");
        let own = resolve_program("/srv/app/bin/run", None, &[root]).unwrap();
        assert_eq!(own.program, "/srv/app/bin/run");
        let relative = resolve_program("./run.sh", None, &[]).unwrap();
        assert_eq!(relative.program, "./run.sh");
    }

    #[test]
    fn missing_program_is_named() {
        let err = resolve_program("no-such-handler", Some(OsStr::new("/usr/bin")), &[]);
        assert_eq!(
            err.unwrap_err().to_string(),
            "program \"no-such-handler\" is not on PATH"
        );
    }
}
