//! A throw-away copy of the project that proposed edits are applied to and a sandbox runs in.
//!
//! The copy never reaches outside the project: symlinks whose target leaves the project root
//! are left out (with a note), and in-project symlinks are rewritten as relative links so they
//! resolve inside the copy both on the host and in the sandbox.
//!
//! One workspace is one directory, `smartworker-ws-<pid>-<random>`, holding the copy
//! (`project/`) and the files the sandbox is built from beside it: the compiled seccomp
//! filters, the sandbox user's `passwd` and `group`, the job's stdin for a container, and the
//! mount points of read-only binds. Only `project/` is ever visible inside a sandbox, and only
//! read-only: each run copies it into a size-limited filesystem of its own, so nothing a run
//! writes reaches the host's disk or outlives the run.

use crate::error::SandboxError;
use crate::seccomp;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use tempfile::TempDir;

/// Directory names never copied: version control, our own state, build output, caches, and
/// the usual homes of credentials (SSH keys, cloud and registry logins).
pub const SKIPPED_DIRS: [&str; 9] = [
    ".git",
    ".smartworker",
    "target",
    "__pycache__",
    ".ssh",
    ".aws",
    ".docker",
    ".gnupg",
    ".kube",
];

/// File names that hold credentials by convention, compared without case.
const SECRET_NAMES: [&str; 15] = [
    ".netrc",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    ".secrets",
    "secrets.json",
    "credentials",
    "credentials.json",
    "master.key",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    ".htpasswd",
];

/// Extensions of private keys and key stores, compared without case.
const SECRET_EXTENSIONS: [&str; 4] = ["key", "p12", "pfx", "jks"];

/// Whether a file of this name is never copied, as it may hold secrets, whatever its case:
/// `.env` (SmartWorker's own: SMTP, database, model keys) and every name starting with it
/// (`.env.local`, `.env-prod`, `.env~`, direnv's `.envrc`), `*.env`, the usual credential
/// files (`.netrc`, `.pgpass`, `.npmrc`, `.pypirc`, `.git-credentials`, `master.key`,
/// `credentials.json`, SSH private keys...) and key stores (`*.key`, `*.p12`, `*.pfx`,
/// `*.jks`). Sandboxed code gets only the variables its queue passes on.
pub fn is_secret_file(name: &str) -> bool {
    let name = name.to_lowercase();
    let extension = name.rsplit_once('.').map(|(_, ext)| ext);
    name.starts_with(".env")
        || name.ends_with(".env")
        || SECRET_NAMES.contains(&name.as_str())
        || extension.is_some_and(|ext| SECRET_EXTENSIONS.contains(&ext))
}

/// How workspace directories are named, followed by the process id of the SmartWorker that
/// made them, so leftovers of a dead one can be found. Filter files of older versions, which
/// lay beside the workspaces, carry the second prefix.
const WORKSPACE_PREFIX: &str = "smartworker-ws-";
const SECCOMP_PREFIX: &str = "smartworker-seccomp-";

/// The name of the copy inside a workspace directory.
const PROJECT_DIR: &str = "project";

/// The size of a page of a tmpfs: every file takes whole pages of it.
const PAGE_BYTES: u64 = 4096;

/// Removes the workspaces (and filter files) in `parent` (the system's temp dir when `None`)
/// that a SmartWorker no longer running left behind, e.g. when it was killed mid-run. Meant for
/// start-up. Returns what was removed; an entry that cannot be removed is skipped.
pub fn remove_stale_workspaces(parent: Option<&Path>) -> Vec<PathBuf> {
    let parent = parent.map_or_else(std::env::temp_dir, Path::to_owned);
    let Ok(entries) = fs::read_dir(&parent) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        if Path::new("/proc").join(owner.to_string()).exists() {
            continue;
        }
        let path = entry.path();
        let gone = match entry.file_type() {
            Ok(kind) if kind.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        if gone.is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// The process id in a workspace or filter file name, e.g. `smartworker-ws-123-abc` → 123.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix(WORKSPACE_PREFIX)
        .or_else(|| name.strip_prefix(SECCOMP_PREFIX))?;
    rest.split('-').next()?.parse().ok()
}

/// Limits and placement of a workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceOptions {
    /// The most files (and symlinks) copied; a larger project is refused.
    pub max_files: u64,
    /// The most bytes copied; a larger project is refused.
    pub max_bytes: u64,
    /// Where the temporary directory is made; the system's temp dir when `None`.
    pub parent_dir: Option<PathBuf>,
    /// Paths left out of the copy wherever they are, such as SmartWorker's state directory
    /// and queue file when they live inside the project (they hold other jobs' payloads).
    pub skip: Vec<PathBuf>,
}

impl Default for WorkspaceOptions {
    fn default() -> Self {
        WorkspaceOptions {
            max_files: 200_000,
            max_bytes: 2 << 30,
            parent_dir: None,
            skip: Vec::new(),
        }
    }
}

/// A copy of a project in a fresh temporary directory, removed on drop.
#[derive(Debug)]
pub struct Workspace {
    dir: TempDir,
    /// `dir/project`: the copy itself.
    copy: PathBuf,
    project_root: PathBuf,
    notes: Vec<String>,
    /// The compiled seccomp filters (`EPERM` and `clone3`), written beside the copy on first
    /// use.
    seccomp: OnceLock<(PathBuf, PathBuf)>,
}

impl Workspace {
    /// Copies `project_root` into a new temporary directory.
    ///
    /// Files are reflinked (copy-on-write) where the filesystem can, else copied. The
    /// directories in [`SKIPPED_DIRS`] are skipped at any depth; `node_modules` is kept, as
    /// JavaScript handlers need it. Files that may hold secrets ([`is_secret_file`]) and the paths in
    /// [`WorkspaceOptions::skip`] are left out with a note. Symlinks leaving the project, and sockets or FIFOs, are
    /// left out and described in [`Workspace::notes`].
    ///
    /// # Errors
    /// The project root is unusable, the project exceeds a limit, or a copy fails.
    pub fn create(project_root: &Path, opts: &WorkspaceOptions) -> Result<Workspace, SandboxError> {
        let root = canonical_dir(project_root)?;
        let parent = opts.parent_dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{WORKSPACE_PREFIX}{}-", std::process::id()))
            .tempdir_in(&parent)
            .map_err(|source| SandboxError::Copy {
                path: parent,
                source,
            })?;
        let copy_dir = dir.path().join(PROJECT_DIR);
        let meta = fs::metadata(&root).map_err(|e| copy_err(&root, e))?;
        fs::create_dir(&copy_dir).map_err(|e| copy_err(&root, e))?;
        fs::set_permissions(&copy_dir, meta.permissions()).map_err(|e| copy_err(&root, e))?;

        let mut copy = TreeCopy {
            root: &root,
            opts,
            skip: opts
                .skip
                .iter()
                .filter_map(|p| fs::canonicalize(p).ok())
                .collect(),
            secret_inodes: std::collections::HashSet::new(),
            linked: Vec::new(),
            files: 0,
            bytes: 0,
            notes: Vec::new(),
        };
        copy.dir(&root, &copy_dir)?;
        copy.drop_links_to_secrets()?;
        let notes = copy.notes;
        Ok(Workspace {
            dir,
            copy: copy_dir,
            project_root: root,
            notes,
            seccomp: OnceLock::new(),
        })
    }

    /// The root of the copy.
    pub fn path(&self) -> &Path {
        &self.copy
    }

    /// The bytes a filesystem needs to hold the copy as it is now (edits included): every
    /// file and symlink rounded up to whole pages, as a tmpfs stores them.
    ///
    /// # Errors
    /// [`SandboxError::Copy`] naming an entry that cannot be read.
    pub fn disk_bytes(&self) -> Result<u64, SandboxError> {
        tree_bytes(&self.copy)
    }

    /// Writes a file named `name` beside the copy (never inside it), readable by the sandbox
    /// user, and returns its path: the sandbox user's `passwd`, a job's stdin.
    pub(crate) fn write_beside(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, SandboxError> {
        let path = self.dir.path().join(name);
        fs::write(&path, bytes).map_err(|e| copy_err(&path, e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
            .map_err(|e| copy_err(&path, e))?;
        Ok(path)
    }

    /// An empty directory beside the copy for a read-only bind to be mounted on.
    pub(crate) fn mount_point(&self, index: usize) -> Result<PathBuf, SandboxError> {
        let path = self.dir.path().join(format!("bind-{index}"));
        match fs::create_dir(&path) {
            Ok(()) => Ok(path),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(path),
            Err(err) => Err(copy_err(&path, err)),
        }
    }

    /// The canonical path of the project this is a copy of.
    pub fn project_root(&self) -> &Path {
        &self.project_root
    }

    /// What was left out of the copy and why, one line each.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The seccomp filter files for a sandbox over this copy: the `EPERM` filter and the
    /// `clone3` one. Written once, beside the copy, so the sandbox cannot see or change them;
    /// removed with the workspace.
    pub(crate) fn seccomp_files(&self) -> Result<(PathBuf, PathBuf), SandboxError> {
        if let Some(files) = self.seccomp.get() {
            return Ok(files.clone());
        }
        let bytes = seccomp::compile()?;
        let files = (
            filter_file(self.dir.path(), "seccomp-deny.bpf", &bytes.deny)?,
            filter_file(self.dir.path(), "seccomp-clone3.bpf", &bytes.clone3)?,
        );
        // A concurrent first call may have won; either set of files is the same filter.
        let _ = self.seccomp.set(files);
        self.seccomp
            .get()
            .cloned()
            .ok_or_else(|| SandboxError::Seccomp("filter files vanished".into()))
    }

    /// Gives the workspace directory and every entry of the copy to `uid`:`gid`, so a sandbox
    /// running as that user can read the copy, whatever modes its files have. Entries added
    /// after an earlier call (proposed edits) are covered too. The filter files stay this
    /// process's.
    ///
    /// # Errors
    /// [`SandboxError::Ownership`] naming the first entry that could not be changed.
    pub fn hand_over(&self, uid: u32, gid: u32) -> Result<(), SandboxError> {
        let dir = self.dir.path();
        lchown(dir, Some(uid), Some(gid)).map_err(|source| SandboxError::Ownership {
            path: dir.to_owned(),
            source,
        })?;
        chown_tree(self.path(), uid, gid)
    }

    /// Removes the copy now, reporting what `Drop` would silently ignore.
    ///
    /// # Errors
    /// [`SandboxError::Destroy`] when the directory could not be removed.
    pub fn destroy(self) -> Result<(), SandboxError> {
        let path = self.dir.path().to_owned();
        self.dir
            .close()
            .map_err(|source| SandboxError::Destroy { path, source })
    }
}

/// Writes a filter file readable by this process only: the shell that hands it to bubblewrap
/// opens it before the sandbox user is taken on.
fn filter_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, SandboxError> {
    let path = dir.join(name);
    let err = |e: std::io::Error| SandboxError::Seccomp(format!("{}: {e}", path.display()));
    fs::write(&path, bytes).map_err(err)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(path)
}

/// What `path`'s files and symlinks take on a tmpfs, in whole pages.
fn tree_bytes(path: &Path) -> Result<u64, SandboxError> {
    let meta = fs::symlink_metadata(path).map_err(|e| copy_err(path, e))?;
    if !meta.is_dir() {
        return Ok(meta.size().div_ceil(PAGE_BYTES).max(1) * PAGE_BYTES);
    }
    let mut total = 0u64;
    for entry in read_dir(path)? {
        total = total.saturating_add(tree_bytes(&entry)?);
    }
    Ok(total)
}

fn canonical_dir(path: &Path) -> Result<PathBuf, SandboxError> {
    let err = |source| SandboxError::ProjectRoot {
        path: path.to_owned(),
        source,
    };
    let root = fs::canonicalize(path).map_err(err)?;
    if !root.is_dir() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        )));
    }
    Ok(root)
}

/// The state of one copy: what has been copied so far and what was left out.
struct TreeCopy<'a> {
    root: &'a Path,
    opts: &'a WorkspaceOptions,
    /// [`WorkspaceOptions::skip`], resolved as the walk sees paths.
    skip: Vec<PathBuf>,
    files: u64,
    bytes: u64,
    notes: Vec<String>,
    /// The (device, inode) of every secret file left out.
    secret_inodes: std::collections::HashSet<(u64, u64)>,
    /// Copied files with more than one name: (device, inode), source, copy.
    linked: Vec<((u64, u64), PathBuf, PathBuf)>,
}

impl TreeCopy<'_> {
    /// Removes the copies of files that are other names (hard links) of a secret file left
    /// out: `config/settings.txt` linked to `.env` holds the same secrets.
    fn drop_links_to_secrets(&mut self) -> Result<(), SandboxError> {
        let linked = std::mem::take(&mut self.linked);
        for (inode, from, to) in linked {
            if self.secret_inodes.contains(&inode) {
                fs::remove_file(&to).map_err(|e| copy_err(&from, e))?;
                self.note(&from, "is a hard link to a file that may hold secrets");
            }
        }
        Ok(())
    }

    fn dir(&mut self, from: &Path, to: &Path) -> Result<(), SandboxError> {
        let mut entries: Vec<_> = read_dir(from)?;
        // A sorted walk makes the notes and a limit error the same on every run.
        entries.sort();
        for path in entries {
            let Some(name) = path.file_name() else {
                continue;
            };
            self.entry(&path, &to.join(name))?;
        }
        Ok(())
    }

    fn entry(&mut self, from: &Path, to: &Path) -> Result<(), SandboxError> {
        if self.skip.iter().any(|skip| skip == from) {
            self.note(from, "is SmartWorker's own state or configuration");
            return Ok(());
        }
        let meta = fs::symlink_metadata(from).map_err(|e| copy_err(from, e))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            if is_skipped(from) {
                return Ok(());
            }
            fs::create_dir(to).map_err(|e| copy_err(from, e))?;
            fs::set_permissions(to, meta.permissions()).map_err(|e| copy_err(from, e))?;
            return self.dir(from, to);
        }
        if kind.is_symlink() {
            return self.symlink(from, to);
        }
        if is_skipped_file(from) {
            self.secret_inodes.insert((meta.dev(), meta.ino()));
            self.note(
                from,
                "may hold secrets; the sandbox gets only the queue's env",
            );
            return Ok(());
        }
        if kind.is_socket() || kind.is_fifo() || kind.is_block_device() || kind.is_char_device() {
            self.note(from, "is not a regular file");
            return Ok(());
        }
        self.count(meta.len())?;
        reflink_copy::reflink_or_copy(from, to).map_err(|e| copy_err(from, e))?;
        if meta.nlink() > 1 {
            self.linked
                .push(((meta.dev(), meta.ino()), from.to_owned(), to.to_owned()));
        }
        Ok(())
    }

    fn symlink(&mut self, from: &Path, to: &Path) -> Result<(), SandboxError> {
        let Ok(target) = fs::canonicalize(from) else {
            self.note(from, "is a dangling symlink");
            return Ok(());
        };
        if !target.starts_with(self.root) {
            self.note(
                from,
                &format!("is a symlink to {} outside the project", target.display()),
            );
            return Ok(());
        }
        self.count(0)?;
        let link_dir = from.parent().unwrap_or(self.root);
        let relative = relative_path(link_dir, &target);
        symlink(&relative, to).map_err(|e| copy_err(from, e))
    }

    fn count(&mut self, bytes: u64) -> Result<(), SandboxError> {
        self.files += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        if self.files > self.opts.max_files {
            return Err(self.too_large(self.opts.max_files, "files"));
        }
        if self.bytes > self.opts.max_bytes {
            return Err(self.too_large(self.opts.max_bytes, "bytes"));
        }
        Ok(())
    }

    fn too_large(&self, limit: u64, unit: &'static str) -> SandboxError {
        SandboxError::TooLarge {
            path: self.root.to_owned(),
            limit,
            unit,
        }
    }

    fn note(&mut self, path: &Path, why: &str) {
        let shown = path.strip_prefix(self.root).unwrap_or(path);
        self.notes
            .push(format!("left out {}: it {why}", shown.display()));
    }
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let entries = fs::read_dir(dir).map_err(|e| copy_err(dir, e))?;
    entries
        .map(|entry| entry.map(|e| e.path()).map_err(|e| copy_err(dir, e)))
        .collect()
}

fn is_skipped(dir: &Path) -> bool {
    dir.file_name()
        .is_some_and(|name| SKIPPED_DIRS.iter().any(|s| name == *s))
}

fn is_skipped_file(file: &Path) -> bool {
    file.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(is_secret_file)
}

fn copy_err(path: &Path, source: std::io::Error) -> SandboxError {
    SandboxError::Copy {
        path: path.to_owned(),
        source,
    }
}

/// The path from directory `from` to `to`, both absolute and canonical: `../b/c`.
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    let shared = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path: PathBuf = from[shared..]
        .iter()
        .map(|_| Component::ParentDir)
        .collect();
    path.extend(&to[shared..]);
    if path.as_os_str().is_empty() {
        path.push(".");
    }
    path
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), SandboxError> {
    let err = |source| SandboxError::Ownership {
        path: path.to_owned(),
        source,
    };
    lchown(path, Some(uid), Some(gid)).map_err(err)?;
    let meta = fs::symlink_metadata(path).map_err(err)?;
    if !meta.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(path).map_err(err)? {
        chown_tree(&entry.map_err(err)?.path(), uid, gid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_is_read_from_workspace_and_filter_names_only() {
        assert_eq!(owner_pid("smartworker-ws-4242-AbC123"), Some(4242));
        assert_eq!(owner_pid("smartworker-seccomp-7-xYz.bpf"), Some(7));
        // Names from before the pid was part of them, and other programs' files, are left alone.
        assert_eq!(owner_pid("smartworker-ws-AbC123"), None);
        assert_eq!(owner_pid("other-ws-12-a"), None);
    }

    #[test]
    fn stale_workspaces_of_dead_processes_are_removed_and_live_ones_kept() {
        let parent = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = parent.path().join(format!("smartworker-ws-{dead}-abc"));
        let live = parent
            .path()
            .join(format!("smartworker-ws-{}-def", std::process::id()));
        let filter = parent
            .path()
            .join(format!("smartworker-seccomp-{dead}-x.bpf"));
        fs::create_dir_all(stale.join("handlers")).unwrap();
        fs::create_dir_all(&live).unwrap();
        fs::write(&filter, b"bpf").unwrap();

        let mut removed = remove_stale_workspaces(Some(parent.path()));
        removed.sort();

        let mut expected = vec![stale.clone(), filter.clone()];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(!stale.exists() && !filter.exists() && live.exists());
    }

    #[test]
    fn relative_path_climbs_to_the_shared_ancestor() {
        let rel = |a: &str, b: &str| relative_path(Path::new(a), Path::new(b));
        assert_eq!(rel("/p/a/b", "/p/c/d.txt"), Path::new("../../c/d.txt"));
        assert_eq!(rel("/p", "/p/x"), Path::new("x"));
        assert_eq!(rel("/p/a", "/p"), Path::new(".."));
        assert_eq!(rel("/p", "/p"), Path::new("."));
    }
}
