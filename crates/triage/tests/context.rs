//! Source context: resolving printed paths inside a project, reading the
//! files of in-app frames, and never reading outside the root.

use std::fs;
use std::path::{Path, PathBuf};

use smartworker_triage::{ContextOptions, ParseOptions, gather_context, parse, resolve_in_root};
use tempfile::TempDir;

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().expect("file has a parent")).expect("create dirs");
    fs::write(path, text).expect("write file");
}

fn numbered(lines: usize) -> String {
    (1..=lines)
        .map(|n| format!("line {n}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn project() -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "src/jobs/mail.py",
        "def send(payload):\n    return payload['to']\n",
    );
    write(dir.path(), "src/jobs/big.py", &numbered(500));
    write(
        dir.path(),
        ".venv/lib/python3.11/site-packages/requests/models.py",
        "def json(): ...\n",
    );
    dir
}

#[test]
fn container_windows_and_url_paths_resolve_by_longest_suffix() {
    let dir = project();
    let root = dir.path();
    let want = Some(PathBuf::from("src/jobs/mail.py"));
    assert_eq!(resolve_in_root("/app/src/jobs/mail.py", root), want);
    assert_eq!(
        resolve_in_root(r"C:\build\agent\src\jobs\mail.py", root),
        want
    );
    assert_eq!(
        resolve_in_root("webpack:///./src/jobs/mail.py?a1b2", root),
        want
    );
    assert_eq!(
        resolve_in_root("file:///home/ci/checkout/src/jobs/mail.py", root),
        want
    );
    assert_eq!(resolve_in_root("/elsewhere/jobs/mail.py", root), want);
    assert_eq!(resolve_in_root("/app/src/jobs/missing.py", root), None);
}

#[test]
fn ambiguous_basename_resolves_to_nothing() {
    let dir = project();
    write(dir.path(), "a/util.py", "");
    write(dir.path(), "b/util.py", "");
    assert_eq!(resolve_in_root("/srv/x/util.py", dir.path()), None);
    assert_eq!(
        resolve_in_root("/srv/b/util.py", dir.path()),
        Some(PathBuf::from("b/util.py"))
    );
}

#[test]
fn small_file_is_whole_and_large_file_is_a_window() {
    let dir = project();
    let trace = parse(
        "Traceback (most recent call last):\n  File \"/app/src/jobs/big.py\", line 300, in run\n    x()\n  \
         File \"/app/src/jobs/mail.py\", line 2, in send\n    return payload['to']\nKeyError: 'to'",
        &ParseOptions::default(),
    );
    let opts = ContextOptions {
        window: 5,
        ..ContextOptions::default()
    };
    let snippets = gather_context(&trace, dir.path(), &opts);
    let summary: Vec<(&str, Option<u32>, u32, u32, bool)> = snippets
        .iter()
        .map(|s| {
            (
                s.path.as_str(),
                s.line,
                s.start_line,
                s.end_line,
                s.whole_file,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("src/jobs/mail.py", Some(2), 1, 2, true),
            ("src/jobs/big.py", Some(300), 295, 305, false)
        ]
    );
    assert!(snippets[1].text.starts_with("line 295\n"));
    assert!(snippets[1].text.ends_with("line 305"));
}

#[cfg(unix)]
#[test]
fn symlink_out_of_the_root_is_never_read() {
    let outside = tempfile::tempdir().expect("temp dir");
    write(outside.path(), "secret.py", "API_KEY = 'do-not-read'\n");
    let dir = project();
    std::os::unix::fs::symlink(
        outside.path().join("secret.py"),
        dir.path().join("src/jobs/leak.py"),
    )
    .expect("symlink");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("src/linked")).expect("symlink");

    let trace = parse(
        "Traceback (most recent call last):\n  File \"/app/src/jobs/leak.py\", line 1, in run\n    x()\n  \
         File \"/app/src/linked/secret.py\", line 1, in load\n    x()\nKeyError: 'k'",
        &ParseOptions::default(),
    );
    assert_eq!(trace.app_frames().count(), 2);
    let snippets = gather_context(&trace, dir.path(), &ContextOptions::default());
    assert!(snippets.is_empty(), "read {snippets:?}");
    assert_eq!(resolve_in_root("/app/src/jobs/leak.py", dir.path()), None);
}

#[test]
fn root_option_keeps_a_virtualenv_inside_the_project_out_of_the_app() {
    let dir = project();
    let root = dir.path();
    let trace = parse(
        &format!(
            "Traceback (most recent call last):\n  File \"{0}/src/jobs/mail.py\", line 2, in send\n    x()\n  \
             File \"{0}/.venv/lib/python3.11/site-packages/requests/models.py\", line 1, in json\n    y()\n\
             ValueError: bad",
            root.display()
        ),
        &ParseOptions {
            root: Some(root.to_path_buf()),
        },
    );
    let in_app: Vec<bool> = trace.frames.iter().map(|f| f.in_app).collect();
    assert_eq!(in_app, vec![false, true]);
}

#[test]
fn node_fixture_project_gives_context_for_its_real_trace() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node_project");
    let trace = parse(
        include_str!("fixtures/node_cause.txt"),
        &ParseOptions {
            root: Some(root.clone()),
        },
    );
    let snippets = gather_context(&trace, &root, &ContextOptions::default());
    let paths: Vec<&str> = snippets.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, vec!["jobs/send_email.js", "worker.js"]);
    assert!(snippets[0].text.contains("user.profile.name"));
}

#[test]
fn jvm_frame_resolves_through_its_package() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/java_project");
    let trace = parse(
        include_str!("fixtures/java_cause.txt"),
        &ParseOptions::default(),
    );
    let snippets = gather_context(&trace, &root, &ContextOptions::default());
    let paths: Vec<&str> = snippets.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, vec!["src/main/java/com/acme/jobs/ReportJob.java"]);
    assert_eq!(snippets[0].line, Some(9));
}
