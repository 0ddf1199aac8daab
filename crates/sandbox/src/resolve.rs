//! Finding the handler's program as the sandbox will see it.
//!
//! The sandbox sees only the system directories, so a program found on the host's PATH
//! elsewhere (a toolchain under `/opt`, pyenv's Pythons under `~/.pyenv`, a virtualenv) has its
//! install prefix bound read-only at the same path: the re-run that verifies a fix uses the very
//! interpreter, and the packages, that the job failed under. A version manager's shim (pyenv,
//! rbenv, nodenv) is first asked which program it would run in the handler's directory.

use crate::error::SandboxError;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Host directories every sandbox sees, read-only, at the same path.
pub(crate) const SYSTEM_DIRS: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
];

/// Version managers whose shims answer `<manager> which <program>`.
const MANAGERS: [&str; 3] = ["pyenv", "rbenv", "nodenv"];

/// Where the sandbox finds a program, and what must be bound for it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The program as the sandbox runs it.
    pub program: String,
    /// Install prefixes outside the system dirs to bind read-only at their own path.
    pub binds: Vec<PathBuf>,
}

/// Resolves `program` against `host_path` (the host's `PATH`); `cwd` is the handler's own
/// directory on the host, where a version manager reads which version the project uses.
///
/// A path with a slash that is relative, or inside `visible` (the project root and extra
/// binds), is kept as it is: the sandbox sees it at the same place.
pub(crate) fn resolve_program(
    program: &str,
    host_path: Option<&OsStr>,
    visible: &[&Path],
    cwd: &Path,
) -> Result<Resolved, SandboxError> {
    let found = if program.contains('/') {
        let path = Path::new(program);
        if path.is_relative() || is_visible(path, visible) {
            return Ok(kept(path));
        }
        path.to_owned()
    } else {
        search_path(program, host_path)
            .ok_or_else(|| SandboxError::ProgramNotFound(program.to_owned()))?
    };
    let found = manager_target(&found, cwd).unwrap_or(found);
    let found = with_canonical_dir(&found);
    let real = std::fs::canonicalize(&found).unwrap_or_else(|_| found.clone());
    let outside = |p: &Path| !is_visible(p, visible) && !is_system(p);
    if !outside(&found) && !outside(&real) {
        return Ok(kept(&found));
    }

    // A shim no manager explained (asdf, mise...) would need its manager's whole state: the
    // system's own copy of the program is the closest match.
    if is_unresolved_shim(&found)
        && let Some(twin) = system_twin(&found)
    {
        return Ok(kept(&twin));
    }
    let mut binds: Vec<PathBuf> = [&found, &real]
        .into_iter()
        .filter(|p| outside(p))
        .map(|p| install_prefix(p))
        .collect();
    binds.sort();
    binds.dedup_by(|later, earlier| later.starts_with(earlier));
    Ok(Resolved {
        program: found.to_string_lossy().into_owned(),
        binds,
    })
}

/// `path` with its directory made canonical (no `..`, no symlinked dirs), its own name kept:
/// a venv's `bin/python` is a symlink that must be run by its own name.
fn with_canonical_dir(path: &Path) -> PathBuf {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return path.to_owned();
    };
    std::fs::canonicalize(dir).map_or_else(|_| path.to_owned(), |dir| dir.join(name))
}

fn kept(path: &Path) -> Resolved {
    Resolved {
        program: path.to_string_lossy().into_owned(),
        binds: Vec::new(),
    }
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

/// The program a version manager's shim at `shim` would run from `cwd`, e.g. pyenv's
/// `~/.pyenv/shims/python3` → `~/.pyenv/versions/3.11.7/bin/python3`. `None` when `shim` is
/// not such a shim, or the manager cannot say.
fn manager_target(shim: &Path, cwd: &Path) -> Option<PathBuf> {
    let manager = shim_manager(&read_head(shim)?)?;
    let name = shim.file_name()?;
    // The manager reads the project's version file (.python-version...) from the directory it
    // runs in, and the version variables (PYENV_VERSION...) from the environment, as the shim
    // would on the host.
    let output = Command::new(&manager)
        .arg("which")
        .arg(name)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let target = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    (target.is_absolute() && is_executable(&target)).then_some(target)
}

/// The first few KiB of a file, when it is a script (`#!`).
fn read_head(path: &Path) -> Option<String> {
    let mut head = Vec::new();
    let file = std::fs::File::open(path).ok()?;
    file.take(8192).read_to_end(&mut head).ok()?;
    head.starts_with(b"#!")
        .then(|| String::from_utf8_lossy(&head).into_owned())
}

/// The manager a shim script hands over to: its line `exec "<root>/libexec/pyenv" exec ...`.
fn shim_manager(script: &str) -> Option<PathBuf> {
    script.lines().find_map(|line| {
        let quoted = line.trim().strip_prefix("exec \"")?;
        let (manager, rest) = quoted.split_once('"')?;
        let manager = Path::new(manager);
        let known = manager
            .file_name()
            .is_some_and(|n| MANAGERS.iter().any(|m| n == *m));
        let libexec = manager.parent()?.file_name()? == "libexec";
        (known && libexec && rest.trim_start().starts_with("exec ")).then(|| manager.to_owned())
    })
}

/// A script in a directory named `shims`, as every version manager keeps them.
fn is_unresolved_shim(path: &Path) -> bool {
    let in_shims = path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "shims");
    in_shims && read_head(path).is_some()
}

fn system_twin(path: &Path) -> Option<PathBuf> {
    let twin = Path::new("/usr/bin").join(path.file_name()?);
    is_executable(&twin).then_some(twin)
}

/// What to bind for a program at `real`: its install prefix when `real` is in the `bin` dir of
/// one (`/opt/node/bin/node` → `/opt/node`, which has `lib`), else its own directory, else the
/// program alone.
///
/// A home directory is never bound whole: `~/bin/tool` would hand every readable file of the
/// home (`~/.ssh`, notes, other projects) to the sandbox. Neither is `/` or a top-level
/// directory.
fn install_prefix(real: &Path) -> PathBuf {
    let dir = real.parent().unwrap_or(Path::new("/"));
    if dir.file_name().is_some_and(|n| n == "bin")
        && let Some(prefix) = dir.parent()
        && looks_installed(prefix)
        && !is_broad(prefix)
    {
        return prefix.to_owned();
    }
    if is_broad(dir) {
        real.to_owned()
    } else {
        dir.to_owned()
    }
}

/// Whether `prefix` holds an installation: libraries or headers beside its `bin`, or a
/// virtualenv's `pyvenv.cfg`.
fn looks_installed(prefix: &Path) -> bool {
    ["lib", "lib64", "include", "pyvenv.cfg"]
        .iter()
        .any(|part| prefix.join(part).exists())
}

/// `/`, a top-level directory (`/home`, `/root`, `/tmp`, `/opt`), a directory right under
/// `/home`, or this process's `$HOME`: too much to show a sandbox for one program.
fn is_broad(dir: &Path) -> bool {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let parent = dir.parent();
    parent.is_none()
        || parent == Some(Path::new("/"))
        || parent == Some(Path::new("/home"))
        || home.is_some_and(|home| home == dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn executable(dir: &Path, name: &str, text: &str) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn resolve(program: &str, path: &Path, cwd: &Path) -> Resolved {
        resolve_program(program, Some(path.as_os_str()), &[], cwd).unwrap()
    }

    /// Reported: a handler program at `~/bin/runpy` had the whole home bound into the sandbox.
    #[test]
    fn a_bin_dir_without_an_installation_beside_it_is_bound_alone() {
        let home = tempfile::tempdir().unwrap();
        let bin = home.path().join("bin");
        executable(&bin, "runpy", "#!/bin/sh\nexec python3 \"$@\"\n");
        fs::write(home.path().join("notes.txt"), "private").unwrap();
        let resolved = resolve("runpy", &bin, home.path());
        assert_eq!(resolved.binds, [fs::canonicalize(&bin).unwrap()]);

        fs::create_dir(home.path().join("lib")).unwrap();
        let resolved = resolve("runpy", &bin, home.path());
        assert_eq!(resolved.binds, [fs::canonicalize(home.path()).unwrap()]);
    }

    #[test]
    fn homes_and_top_level_dirs_are_never_bound_whole() {
        for dir in ["/", "/home", "/root", "/tmp", "/home/ada"] {
            assert!(is_broad(Path::new(dir)), "{dir}");
        }
        assert_eq!(
            install_prefix(Path::new("/home/ada/run.sh")),
            Path::new("/home/ada/run.sh")
        );
        assert_eq!(
            install_prefix(Path::new("/root/bin/tool")),
            Path::new("/root/bin")
        );
        assert!(!is_broad(Path::new("/opt/node")));
    }

    #[test]
    fn shim_no_manager_explains_is_replaced_by_usr_bin() {
        let home = tempfile::tempdir().unwrap();
        let shims = home.path().join("shims");
        executable(
            &shims,
            "python3",
            "#!/bin/sh\nexec asdf exec python3 \"$@\"\n",
        );
        let resolved = resolve("python3", &shims, home.path());
        assert_eq!(resolved, kept(Path::new("/usr/bin/python3")));
    }

    /// Reported: on a pyenv host the job failed under Python 3.11.7 and its fix was verified
    /// under the system's 3.11.2.
    #[test]
    fn version_manager_shim_runs_the_version_the_project_uses() {
        let home = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(home.path()).unwrap().join("pyenv");
        // A manager that answers like pyenv: the version named in the directory it runs in.
        let manager = "#!/bin/sh\n[ \"$1\" = which ] || exit 2\n\
                       echo \"$(dirname \"$0\")/../versions/$(cat .python-version)/bin/$2\"\n";
        executable(&root.join("libexec"), "pyenv", manager);
        let shim = format!(
            "#!/usr/bin/env bash\nprogram=\"${{0##*/}}\"\nexec \"{}/libexec/pyenv\" exec \"$program\" \"$@\"\n",
            root.display()
        );
        executable(&root.join("shims"), "python3", &shim);
        for version in ["3.11.7", "3.12.1"] {
            executable(
                &root.join(format!("versions/{version}/bin")),
                "python3",
                "#!/bin/sh\n",
            );
            fs::create_dir(root.join(format!("versions/{version}/lib"))).unwrap();
        }
        let project = home.path().join("project");
        fs::create_dir(&project).unwrap();
        fs::write(project.join(".python-version"), "3.12.1").unwrap();

        let resolved = resolve("python3", &root.join("shims"), &project);

        let prefix = root.join("versions/3.12.1");
        assert_eq!(
            resolved.program,
            prefix.join("bin/python3").to_string_lossy()
        );
        assert_eq!(resolved.binds, vec![prefix]);
    }

    #[test]
    fn install_outside_system_dirs_binds_its_prefix() {
        let prefix = tempfile::tempdir().unwrap();
        let bin = prefix.path().join("bin");
        let tool = executable(&bin, "smartworker-test-tool", "#!/bin/sh\n");
        fs::create_dir(prefix.path().join("lib")).unwrap();
        let resolved = resolve("smartworker-test-tool", &bin, prefix.path());
        let real_prefix = fs::canonicalize(prefix.path()).unwrap();
        assert_eq!(resolved.binds, vec![real_prefix]);
        assert_eq!(
            resolved.program,
            fs::canonicalize(tool).unwrap().to_string_lossy()
        );
    }

    #[test]
    fn virtualenv_outside_the_project_is_bound_around_the_system_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let venv = fs::canonicalize(dir.path()).unwrap().join("venv");
        fs::create_dir_all(venv.join("bin")).unwrap();
        fs::write(venv.join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        std::os::unix::fs::symlink("/usr/bin/python3", venv.join("bin/python")).unwrap();

        let resolved = resolve("python", &venv.join("bin"), dir.path());

        // Run by the venv's own path, so the interpreter finds pyvenv.cfg and its packages.
        assert_eq!(resolved.program, venv.join("bin/python").to_string_lossy());
        assert_eq!(resolved.binds, vec![venv]);
    }

    #[test]
    fn system_and_project_programs_are_kept() {
        let sh = resolve("sh", Path::new("/usr/bin"), Path::new("/"));
        assert_eq!(sh, kept(Path::new("/usr/bin/sh")));
        let root = Path::new("/srv/app");
        let own = resolve_program("/srv/app/bin/run", None, &[root], root).unwrap();
        assert_eq!(own.program, "/srv/app/bin/run");
        let relative = resolve_program("./run.sh", None, &[], root).unwrap();
        assert_eq!(relative.program, "./run.sh");
    }

    #[test]
    fn missing_program_is_named() {
        let err = resolve_program(
            "no-such-handler",
            Some(OsStr::new("/usr/bin")),
            &[],
            Path::new("/"),
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "program \"no-such-handler\" is not on PATH"
        );
    }
}
