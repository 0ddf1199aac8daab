//! The notifier against real destinations: an outbox folder, and a real SMTP server
//! (aiosmtpd, through `smtp_sink.py`) that is up, down, then up again.

use mailparse::MailHeaderMap;
use smartworker_notify::{Delivery, Email, FlushReport, Notifier, NotifyError, TlsMode, Transport};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const DIFF: &str = "--- a/handlers/lib/users.py\n+++ b/handlers/lib/users.py\n@@ -9,3 +9,3 @@\n\
-    email = data[\"user\"][\"email\"]\n+    email = data[\"email\"]\n";

fn review_email() -> Email {
    Email {
        from: "SmartWorker <smartworker@localhost>".to_owned(),
        to: vec!["reviewer@example.test".to_owned()],
        subject: "Verified fix for signup job 17".to_owned(),
        text: format!("The fix below made job 17 succeed in the sandbox.\n\n{DIFF}"),
        headers: vec![("X-SmartWorker-Fix".to_owned(), "fix-17".to_owned())],
    }
}

/// A running `smtp_sink.py`; killed when dropped.
struct SmtpSink {
    port: u16,
    _child: Child,
}

impl SmtpSink {
    /// Starts the sink on `port` (0 for any free one), saving messages into `dir`.
    async fn start(dir: &Path, port: u16, auth: Option<(&str, &str)>) -> SmtpSink {
        require_aiosmtpd().await;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .arg("--dir")
            .arg(dir)
            .arg("--port")
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some((user, password)) = auth {
            command.args(["--user", user, "--password", password]);
        }
        let mut child = command.spawn().expect("python3 runs smtp_sink.py");

        // The sink prints its port once it accepts connections.
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("smtp_sink.py starts within 20 s")
            .expect("read smtp_sink.py stdout")
            .expect("smtp_sink.py printed its port");
        let port = first.trim().parse().expect("port number");
        SmtpSink {
            port,
            _child: child,
        }
    }
}

/// The SMTP tests need aiosmtpd; its absence is a failure of the test setup, not a skip.
async fn require_aiosmtpd() {
    let status = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .await
        .expect("python3 is installed");
    assert!(
        status.success(),
        "the SMTP tests need aiosmtpd for python3: run `pip install aiosmtpd`"
    );
}

fn smtp(port: u16) -> Transport {
    Transport::smtp("127.0.0.1", port)
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn files_in(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    paths.sort();
    paths
}

/// The messages the sink saved, waiting up to ten seconds for `count` of them.
async fn received(dir: &Path, count: usize) -> Vec<Vec<u8>> {
    for _ in 0..100 {
        let paths = files_in(dir, "eml");
        if paths.len() >= count {
            return paths
                .iter()
                .map(|p| std::fs::read(p).expect("read"))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the SMTP sink did not receive {count} message(s) in 10 s");
}

/// Parses a message as a mail reader would and returns (subject, decoded body).
fn subject_and_body(raw: &[u8]) -> (String, String) {
    let parsed = mailparse::parse_mail(raw).expect("an RFC 5322 message");
    let subject = parsed
        .headers
        .get_first_value("Subject")
        .expect("a subject");
    let body = parsed.get_body().expect("a decodable body");
    (subject, body.replace("\r\n", "\n"))
}

#[tokio::test]
async fn outbox_gets_a_parseable_eml_with_subject_and_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = dir.path().join("outbox");
    let notifier = Notifier::new(
        Transport::Outbox {
            dir: outbox.clone(),
        },
        dir.path().join("spool"),
    )
    .expect("notifier");

    let delivery = notifier.send(&review_email()).await.expect("written");

    let Delivery::Written { path } = delivery else {
        panic!("expected the outbox, got {delivery:?}");
    };
    assert_eq!(files_in(&outbox, "eml"), vec![path.clone()]);
    let raw = std::fs::read(&path).expect("read eml");
    let (subject, body) = subject_and_body(&raw);
    assert_eq!(subject, "Verified fix for signup job 17");
    assert!(body.contains(DIFF), "{body}");
    let parsed = mailparse::parse_mail(&raw).expect("parse");
    let header = |name| parsed.headers.get_first_value(name);
    assert_eq!(header("X-SmartWorker-Fix").as_deref(), Some("fix-17"));
    assert_eq!(header("To").as_deref(), Some("reviewer@example.test"));
    assert!(header("Message-ID").is_some());
    assert!(files_in(&dir.path().join("spool"), "json").is_empty());
}

#[tokio::test]
async fn invalid_email_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = dir.path().join("outbox");
    let notifier = Notifier::new(
        Transport::Outbox {
            dir: outbox.clone(),
        },
        dir.path().into(),
    )
    .expect("notifier");
    let email = Email {
        from: "nobody".to_owned(),
        ..review_email()
    };

    let err = notifier.send(&email).await.expect_err("bad sender");

    assert!(matches!(err, NotifyError::InvalidAddress { ref address, .. } if address == "nobody"));
    assert!(!outbox.exists());
}

#[tokio::test]
async fn smtp_delivers_the_diff_and_leaves_the_spool_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    let spool = dir.path().join("spool");
    let sink = SmtpSink::start(&inbox, 0, None).await;
    let notifier = Notifier::new(smtp(sink.port), spool.clone()).expect("notifier");

    let delivery = notifier.send(&review_email()).await.expect("delivered");

    assert_eq!(delivery, Delivery::Sent);
    let messages = received(&inbox, 1).await;
    let (subject, body) = subject_and_body(&messages[0]);
    assert_eq!(subject, "Verified fix for signup job 17");
    assert!(body.contains(DIFF), "{body}");
    assert!(files_in(&spool, "json").is_empty());
}

#[tokio::test]
async fn smtp_down_defers_into_the_spool_and_flush_delivers_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    let spool = dir.path().join("spool");
    let port = free_port();
    let notifier = Notifier::new(smtp(port), spool.clone()).expect("notifier");

    let delivery = notifier
        .send(&review_email())
        .await
        .expect("deferred, not an error");

    let Delivery::Deferred { spool_path, reason } = delivery else {
        panic!("expected a deferral, got {delivery:?}");
    };
    assert!(!reason.is_empty());
    assert_eq!(files_in(&spool, "json"), vec![spool_path]);
    let still_down = notifier.flush_spool().await.expect("flush");
    assert_eq!(
        still_down,
        FlushReport {
            sent: 0,
            still_pending: 1,
            unreadable: 0
        }
    );

    let _sink = SmtpSink::start(&inbox, port, None).await;
    let report = notifier.flush_spool().await.expect("flush");

    assert_eq!(
        report,
        FlushReport {
            sent: 1,
            still_pending: 0,
            unreadable: 0
        }
    );
    assert!(files_in(&spool, "json").is_empty());
    let messages = received(&inbox, 1).await;
    assert!(subject_and_body(&messages[0]).1.contains(DIFF));
}

#[tokio::test]
async fn retry_loop_delivers_spooled_messages_once_the_server_is_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    let spool = dir.path().join("spool");
    let port = free_port();
    let notifier = std::sync::Arc::new(Notifier::new(smtp(port), spool.clone()).expect("notifier"));
    for _ in 0..2 {
        let delivery = notifier.send(&review_email()).await.expect("deferred");
        assert!(
            matches!(delivery, Delivery::Deferred { .. }),
            "{delivery:?}"
        );
    }

    let _sink = SmtpSink::start(&inbox, port, None).await;
    let retry = notifier
        .clone()
        .spawn_retry_loop(Duration::from_millis(100));
    let mut spool_empty = false;
    for _ in 0..100 {
        spool_empty = files_in(&spool, "json").is_empty();
        if spool_empty {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    retry.abort();

    assert!(
        spool_empty,
        "spool still holds {:?}",
        files_in(&spool, "json")
    );
    assert_eq!(received(&inbox, 2).await.len(), 2);
}

#[tokio::test]
async fn unreadable_spool_file_is_set_aside_not_retried_forever() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).expect("mkdir");
    std::fs::write(spool.join("0000000000001-broken.json"), "{not json").expect("write");
    let notifier = Notifier::new(smtp(free_port()), spool.clone()).expect("notifier");

    let report = notifier.flush_spool().await.expect("flush");

    assert_eq!(report.unreadable, 1);
    assert!(files_in(&spool, "json").is_empty());
    assert_eq!(files_in(&spool, "corrupt").len(), 1);
}

#[tokio::test]
async fn smtp_auth_with_the_right_password_is_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    let sink = SmtpSink::start(&inbox, 0, Some(("mailer", "s3cret"))).await;
    let transport = Transport::Smtp {
        host: "127.0.0.1".to_owned(),
        port: sink.port,
        user: Some("mailer".to_owned()),
        password: Some("s3cret".to_owned()),
        tls: TlsMode::None,
    };
    let notifier = Notifier::new(transport, dir.path().join("spool")).expect("notifier");

    let delivery = notifier.send(&review_email()).await.expect("sent");

    assert_eq!(delivery, Delivery::Sent);
    let meta = std::fs::read_to_string(files_in(&inbox, "json").remove(0)).expect("meta");
    let meta: serde_json::Value = serde_json::from_str(&meta).expect("json");
    assert_eq!(meta["authenticated"], true);
    assert_eq!(
        meta["rcpt_tos"],
        serde_json::json!(["reviewer@example.test"])
    );
}

#[tokio::test]
async fn smtp_auth_with_a_wrong_password_is_deferred_not_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    let spool = dir.path().join("spool");
    let sink = SmtpSink::start(&inbox, 0, Some(("mailer", "s3cret"))).await;
    let transport = Transport::Smtp {
        host: "127.0.0.1".to_owned(),
        port: sink.port,
        user: Some("mailer".to_owned()),
        password: Some("wrong".to_owned()),
        tls: TlsMode::None,
    };
    let notifier = Notifier::new(transport, spool.clone()).expect("notifier");

    let delivery = notifier.send(&review_email()).await.expect("deferred");

    assert!(
        matches!(delivery, Delivery::Deferred { .. }),
        "{delivery:?}"
    );
    assert_eq!(files_in(&spool, "json").len(), 1);
    assert!(files_in(&inbox, "eml").is_empty());
}

#[tokio::test]
async fn smtp_server_that_never_answers_is_deferred_after_the_timeout() {
    // Accepts connections and says nothing, not even the greeting.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    let notifier = Notifier::new(smtp(port), spool.clone())
        .expect("notifier")
        .with_timeout(Duration::from_millis(500));

    let started = std::time::Instant::now();
    let delivery = notifier.send(&review_email()).await.expect("deferred");

    assert!(started.elapsed() < Duration::from_secs(10));
    let Delivery::Deferred { reason, .. } = delivery else {
        panic!("expected a deferral, got {delivery:?}");
    };
    assert_eq!(reason, "smtp server did not finish within 500ms");
    assert_eq!(files_in(&spool, "json").len(), 1);
    silent.abort();
}
