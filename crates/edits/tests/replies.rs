//! Replies written the way a small coding model writes them, parsed and applied to a real
//! workspace on disk: one per accepted form, plus the replies that must be refused.

mod support;

use expect_test::{Expect, expect};
use smartworker_edits::{
    Edit, EditError, Limits, ParseError, apply, parse_reply, parse_reply_detailed,
};
use support::{SIGNUP_PY, known, read, workspace};

const SIGNUP: &str = "handlers/signup.py";

/// Parses `reply` with `handlers/signup.py` as the only known file, applies it to a fresh
/// workspace and compares the diff.
fn check(reply: &str, expect: Expect) {
    let ws = workspace();
    let edits = parse_reply(reply, &known(&[SIGNUP])).expect("reply parses");
    let applied = apply(ws.path(), &edits, &Limits::default()).expect("edits apply");
    assert_eq!(applied.files, vec![SIGNUP.to_owned()]);
    expect.assert_eq(&applied.diff);
}

/// The fixed `handle` function as every form below should leave it.
fn assert_handle_fixed(root: &std::path::Path) {
    let text = read(root, SIGNUP);
    assert!(
        text.contains("    user = data.get(\"user\") or {}\n"),
        "{text}"
    );
    assert!(
        text.contains("def validate(payload):"),
        "the rest of the file is kept: {text}"
    );
}

#[test]
fn whole_file_after_bold_path_is_applied_and_diffed() {
    let reply = r#"The error happens because `payload` has no `"user"` key, so `data["user"]` raises a `KeyError`.

Here's the fixed code:

**handlers/signup.py**
```python
import json


def validate(payload):
    if "email" not in payload:
        raise ValueError("missing email")
    return payload


def handle(payload):
    data = validate(payload)
    user = data.get("user") or {}
    name = (user.get("name") or "").strip()
    return {"status": "ok", "name": name}


if __name__ == "__main__":
    print(json.dumps(handle(json.load(open(0)))))
```

### Explanation
- Used `.get()` so a missing user no longer crashes the job.
- Defaulted the name to an empty string.
"#;
    check(
        reply,
        expect![[r#"
            --- a/handlers/signup.py
            +++ b/handlers/signup.py
            @@ -9,8 +9,8 @@
             
             def handle(payload):
                 data = validate(payload)
            -    user = data["user"]
            -    name = user["name"].strip()
            +    user = data.get("user") or {}
            +    name = (user.get("name") or "").strip()
                 return {"status": "ok", "name": name}
             
             
        "#]],
    );
}

#[test]
fn whole_file_with_path_in_info_string() {
    let fixed = SIGNUP_PY.replace("data[\"user\"]", "data.get(\"user\") or {}");
    let reply = format!(
        "Sure! Here is the corrected file:\n\n```python path=handlers/signup.py\n{fixed}```\n\nThis should fix it."
    );
    let ws = workspace();
    let edits = parse_reply(&reply, &[]).expect("parses");
    apply(ws.path(), &edits, &Limits::default()).expect("applies");
    assert_handle_fixed(ws.path());
}

#[test]
fn whole_file_with_path_in_first_line_comment() {
    let fixed = SIGNUP_PY.replace("data[\"user\"]", "data.get(\"user\") or {}");
    let reply = format!("```python\n# handlers/signup.py\n{fixed}```\n");
    let ws = workspace();
    let edits = parse_reply(&reply, &known(&[SIGNUP, "handlers/send_email.js"])).expect("parses");
    apply(ws.path(), &edits, &Limits::default()).expect("applies");
    assert_eq!(
        read(ws.path(), SIGNUP),
        fixed,
        "the path comment is not written into the file"
    );
}

#[test]
fn lone_function_replaces_only_that_function() {
    let reply = r#"The problem is in the `handle` function. Here's the fixed code:

```python
def handle(payload):
    data = validate(payload)
    user = data.get("user") or {}
    name = user.get("name", "").strip()
    return {"status": "ok", "name": name}
```

Now the handler won't crash when `user` is missing."#;
    let edits = parse_reply(reply, &known(&[SIGNUP])).expect("parses");
    assert!(
        matches!(&edits[..], [Edit::ReplaceFunction { name, .. }] if name == "handle"),
        "{edits:?}"
    );

    let ws = workspace();
    apply(ws.path(), &edits, &Limits::default()).expect("applies");
    assert_handle_fixed(ws.path());
    assert!(read(ws.path(), SIGNUP).contains("if __name__ == \"__main__\":"));
}

#[test]
fn javascript_function_is_replaced_by_brace_matching() {
    let reply = r#"You need to guard against a missing user:

```javascript
async function sendWelcome(job) {
  const email = job.data?.user?.email;
  if (!email) {
    return { sent: false, reason: "no email" };
  }
  await send(email, "Welcome!");
  return { sent: true };
}
```"#;
    let ws = workspace();
    let edits = parse_reply(reply, &known(&["handlers/send_email.js"])).expect("parses");
    apply(ws.path(), &edits, &Limits::default()).expect("applies");
    let text = read(ws.path(), "handlers/send_email.js");
    assert!(
        text.starts_with("const { send } = require(\"./mailer\");\n"),
        "{text}"
    );
    assert!(text.contains("job.data?.user?.email"), "{text}");
    assert!(
        text.ends_with("module.exports = { sendWelcome };\n"),
        "{text}"
    );
}

#[test]
fn search_replace_block_in_aider_style() {
    let reply = r#"I'll make `handle` tolerate a missing user.

handlers/signup.py
```python
<<<<<<< SEARCH
    user = data["user"]
    name = user["name"].strip()
=======
    user = data.get("user") or {}
    name = (user.get("name") or "").strip()
>>>>>>> REPLACE
```
"#;
    check(
        reply,
        expect![[r#"
            --- a/handlers/signup.py
            +++ b/handlers/signup.py
            @@ -9,8 +9,8 @@
             
             def handle(payload):
                 data = validate(payload)
            -    user = data["user"]
            -    name = user["name"].strip()
            +    user = data.get("user") or {}
            +    name = (user.get("name") or "").strip()
                 return {"status": "ok", "name": name}
             
             
        "#]],
    );
}

#[test]
fn search_with_lost_indentation_still_applies() {
    // Small models often drop the leading indentation of the lines they quote.
    let reply = "```python\n<<<<<<< SEARCH\nuser = data[\"user\"]\n=======\nuser = data.get(\"user\") or {}\n>>>>>>> REPLACE\n```\n";
    let ws = workspace();
    let edits = parse_reply(reply, &known(&[SIGNUP])).expect("parses");
    apply(ws.path(), &edits, &Limits::default()).expect("applies");
    assert_handle_fixed(ws.path());
}

#[test]
fn unified_diff_with_wrong_line_numbers_and_no_prefixes() {
    let reply = r#"Apply this patch:

```diff
--- handlers/signup.py
+++ handlers/signup.py
@@ -40,7 +40,7 @@ def handle(payload):
 def handle(payload):
     data = validate(payload)
-    user = data["user"]
+    user = data.get("user") or {}
     name = user["name"].strip()
```
"#;
    let ws = workspace();
    let edits = parse_reply(reply, &known(&[SIGNUP])).expect("parses");
    assert!(
        matches!(&edits[..], [Edit::Patch { path, .. }] if path == SIGNUP),
        "{edits:?}"
    );
    apply(ws.path(), &edits, &Limits::default()).expect("applies");
    assert_handle_fixed(ws.path());
}

#[test]
fn bare_unified_diff_outside_a_fence() {
    let reply = r#"Here is the diff:

--- a/handlers/signup.py
+++ b/handlers/signup.py
@@ -11,3 +11,3 @@
     data = validate(payload)
-    user = data["user"]
+    user = data.get("user") or {}
     name = user["name"].strip()

- This avoids the KeyError.
"#;
    let ws = workspace();
    let edits = parse_reply(reply, &[]).expect("parses");
    apply(ws.path(), &edits, &Limits::default()).expect("applies");
    assert_handle_fixed(ws.path());
}

#[test]
fn reply_with_two_files() {
    let reply = r#"We need a helper and a change in the handler.

`handlers/util.py`:
```python
def get_user(data):
    return data.get("user") or {}
```

**handlers/signup.py**
```python
<<<<<<< SEARCH
import json
=======
import json

from handlers.util import get_user
>>>>>>> REPLACE
<<<<<<< SEARCH
    user = data["user"]
=======
    user = get_user(data)
>>>>>>> REPLACE
```
"#;
    let ws = workspace();
    let edits = parse_reply(reply, &known(&[SIGNUP])).expect("parses");
    let applied = apply(ws.path(), &edits, &Limits::default()).expect("applies");
    assert_eq!(
        applied.files,
        vec!["handlers/util.py".to_owned(), SIGNUP.to_owned()]
    );
    assert!(
        applied
            .diff
            .contains("--- /dev/null\n+++ b/handlers/util.py\n"),
        "{}",
        applied.diff
    );
    assert!(read(ws.path(), SIGNUP).contains("    user = get_user(data)\n"));
}

#[test]
fn prose_only_reply_has_no_edits() {
    let reply = "The error is a KeyError because the payload has no user. You should check that \
                 the producer sends a user object, or use `.get()` when reading it.";
    let err = parse_reply(reply, &known(&[SIGNUP])).expect_err("no edits");
    assert_eq!(
        err.to_string(),
        "no usable edit in the reply: it has no fenced code block, SEARCH/REPLACE block or diff"
    );
}

#[test]
fn shell_command_fence_has_no_edits() {
    let reply = "Make sure the dependency is installed:\n\n```bash\npip install requests\n```\n";
    let err = parse_reply(reply, &known(&[SIGNUP])).expect_err("no edits");
    assert!(matches!(err, ParseError::NoEdits { .. }), "{err}");
    assert!(err.to_string().contains("block 1:"), "{err}");
}

#[test]
fn truncated_fence_is_refused_as_partial() {
    // The reply hit the token limit mid-file: applying it would cut the file short.
    let reply = "Here's the fixed code:\n\n```python\nimport json\n\n\ndef validate(payload):\n    if \"email\" not in";
    let err = parse_reply(reply, &known(&[SIGNUP])).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "no usable edit in the reply: block 1: the block is cut off before its closing fence; \
         a partial file is not applied"
    );
}

#[test]
fn truncated_fence_keeps_its_finished_search_replace_blocks() {
    let reply = "```python\n<<<<<<< SEARCH\n    user = data[\"user\"]\n=======\n    user = data.get(\"user\") or {}\n>>>>>>> REPLACE\n<<<<<<< SEARCH\n    name = user[";
    let parsed = parse_reply_detailed(reply, &known(&[SIGNUP])).expect("first block is usable");
    assert_eq!(parsed.edits.len(), 1);
    assert_eq!(
        parsed.skipped[0].reason,
        "the SEARCH/REPLACE block for handlers/signup.py is cut off before its end"
    );
}

#[test]
fn search_that_matches_nothing_names_the_file() {
    let reply = "handlers/signup.py\n```python\n<<<<<<< SEARCH\n    user = payload['user']\n=======\n    user = payload.get('user')\n>>>>>>> REPLACE\n```\n";
    let ws = workspace();
    let edits = parse_reply(reply, &[]).expect("parses");
    let err = apply(ws.path(), &edits, &Limits::default()).expect_err("refused");
    assert!(matches!(err, EditError::SearchNotFound { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "the SEARCH text is not in handlers/signup.py: \"user = payload['user']\""
    );
    assert_eq!(read(ws.path(), SIGNUP), SIGNUP_PY);
}

#[test]
fn edit_that_changes_nothing_is_refused() {
    let reply = format!("```python\n{SIGNUP_PY}```\n");
    let ws = workspace();
    let edits = parse_reply(&reply, &known(&[SIGNUP])).expect("parses");
    let err = apply(ws.path(), &edits, &Limits::default()).expect_err("refused");
    assert!(matches!(err, EditError::NoChange), "{err}");
}

#[test]
fn edits_serialise_with_a_kind_tag() {
    let edits = parse_reply(
        "```diff\n--- a/x.py\n+++ b/x.py\n@@ -3 +3 @@\n-a\n+b\n```\n",
        &[],
    )
    .expect("parses");
    let json = serde_json::to_string_pretty(&edits).expect("serialise");
    expect![[r#"
        [
          {
            "kind": "patch",
            "path": "x.py",
            "hunks": [
              {
                "old_start": 3,
                "lines": [
                  {
                    "op": "remove",
                    "text": "a"
                  },
                  {
                    "op": "add",
                    "text": "b"
                  }
                ]
              }
            ]
          }
        ]"#]]
    .assert_eq(&json);
    let back: Vec<Edit> = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, edits);
}

#[test]
fn drafts_inside_a_think_block_never_become_edits() {
    // Reasoning models draft in <think>; here the draft short-circuits the handler, and only
    // the answer after the block may be applied.
    let reply = r#"<think>
Maybe just skip the work:
```python path=handlers/signup.py
def handle(payload):
    return {}
```
No, that hides the bug. Fix the lookup instead.
</think>
Use `.get` so a payload without a user is handled:

<<<<<<< SEARCH
    user = data["user"]
=======
    user = data.get("user") or {}
>>>>>>> REPLACE
"#;
    let edits = parse_reply(reply, &known(&[SIGNUP])).expect("the answer parses");
    assert_eq!(edits.len(), 1, "{edits:?}");
    assert!(matches!(edits[0], Edit::Replace { .. }), "{edits:?}");

    let unclosed = "<think>\n```python path=handlers/signup.py\nprint('{}')\n```\n";
    assert!(matches!(
        parse_reply(unclosed, &known(&[SIGNUP])),
        Err(ParseError::NoEdits { .. })
    ));
}
