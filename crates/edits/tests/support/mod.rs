//! A small project to heal, laid out in a temporary workspace, shared by the integration tests.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the support module"
)]

use std::path::Path;
use tempfile::TempDir;

/// The failing handler: `data["user"]` raises KeyError when the payload has no user.
pub const SIGNUP_PY: &str = r#"import json


def validate(payload):
    if "email" not in payload:
        raise ValueError("missing email")
    return payload


def handle(payload):
    data = validate(payload)
    user = data["user"]
    name = user["name"].strip()
    return {"status": "ok", "name": name}


if __name__ == "__main__":
    print(json.dumps(handle(json.load(open(0)))))
"#;

/// A Node handler whose `sendWelcome` reads `job.data.user.email` without checking.
pub const SEND_EMAIL_JS: &str = r#"const { send } = require("./mailer");

async function sendWelcome(job) {
  const email = job.data.user.email;
  await send(email, "Welcome!");
  return { sent: true };
}

module.exports = { sendWelcome };
"#;

/// A workspace holding `handlers/signup.py` and `handlers/send_email.js`.
pub fn workspace() -> TempDir {
    let dir = tempfile::tempdir().expect("create workspace");
    write(dir.path(), "handlers/signup.py", SIGNUP_PY);
    write(dir.path(), "handlers/send_email.js", SEND_EMAIL_JS);
    dir
}

pub fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create dirs");
    }
    std::fs::write(path, text).expect("write fixture");
}

pub fn read(root: &Path, relative: &str) -> String {
    std::fs::read_to_string(root.join(relative)).expect("read file")
}

pub fn known(files: &[&str]) -> Vec<String> {
    files.iter().map(|file| (*file).to_owned()).collect()
}
