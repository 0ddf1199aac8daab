//! The notifier: delivers e-mails to the outbox or over SMTP, and never loses one. An SMTP
//! message is written to the spool before the first attempt and leaves it only once the server
//! has accepted it.

use crate::email::{Email, build_message};
use crate::error::NotifyError;
use crate::files;
use crate::spool::{self, SPOOL_EXTENSION, SpoolEntry};
use crate::transport::{Transport, smtp_transport};
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long one SMTP delivery may take, unless [`Notifier::with_timeout`] says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The shortest interval the retry loop accepts.
const MIN_RETRY_EVERY: Duration = Duration::from_millis(10);

/// What happened to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Written to the outbox as this `.eml` file.
    Written {
        /// The file.
        path: PathBuf,
    },
    /// Accepted by the SMTP server.
    Sent,
    /// Not accepted yet; it waits in the spool for [`Notifier::flush_spool`].
    Deferred {
        /// The spool file holding it.
        spool_path: PathBuf,
        /// Why the server did not take it.
        reason: String,
    },
}

/// What one pass over the spool did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Messages delivered and removed from the spool.
    pub sent: usize,
    /// Messages still in the spool after this pass.
    pub still_pending: usize,
    /// Spool files that could not be read; renamed to `*.corrupt` for an operator.
    pub unreadable: usize,
}

/// How one spooled message fared.
enum Attempt {
    Delivered,
    Failed { reason: String, permanent: bool },
}

/// Delivers e-mails through one transport.
pub struct Notifier {
    transport: Transport,
    spool_dir: PathBuf,
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    /// The longest one SMTP delivery may take; lettre's own timeout does not cover a server
    /// that accepts the connection and then stops answering.
    timeout: Duration,
    /// Spool files a task is sending right now, so a concurrent flush leaves them alone.
    in_flight: Mutex<HashSet<PathBuf>>,
}

impl Notifier {
    /// A notifier for `transport`, spooling SMTP messages in `spool_dir` (created when needed).
    ///
    /// # Errors
    /// [`NotifyError::SmtpSetup`] when the SMTP settings cannot make a transport.
    pub fn new(transport: Transport, spool_dir: PathBuf) -> Result<Self, NotifyError> {
        let smtp = match &transport {
            Transport::Outbox { .. } => None,
            Transport::Smtp {
                host,
                port,
                user,
                password,
                tls,
            } => Some(smtp_transport(
                host,
                *port,
                user.as_deref(),
                password.as_deref(),
                *tls,
            )?),
        };
        Ok(Notifier {
            transport,
            spool_dir,
            smtp,
            timeout: DEFAULT_TIMEOUT,
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// The same notifier with a different limit on one SMTP delivery (30 s by default).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The transport this notifier delivers through.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The spool folder.
    pub fn spool_dir(&self) -> &Path {
        &self.spool_dir
    }

    /// Delivers one e-mail.
    ///
    /// # Errors
    /// A [`NotifyError`] when the e-mail is invalid or cannot be written to the outbox or the
    /// spool. A server that is down or refuses the message is not an error: the result is
    /// [`Delivery::Deferred`] and the message stays in the spool.
    pub async fn send(&self, email: &Email) -> Result<Delivery, NotifyError> {
        let message = build_message(email)?;
        let Some(smtp) = &self.smtp else {
            let path = self.write_to_outbox(&message.formatted()).await?;
            tracing::debug!(path = %path.display(), "e-mail written to the outbox");
            return Ok(Delivery::Written { path });
        };

        // Spool first: from here on a crash or a dead server cannot lose the message.
        let mut entry = SpoolEntry::new(&message);
        let spool_path = self.spool_dir.join(files::unique_name(SPOOL_EXTENSION));
        let _claim = self.claim(&spool_path);
        entry.save(&spool_path).await?;

        match self
            .send_smtp(smtp, message.envelope(), &message.formatted())
            .await
        {
            Attempt::Delivered => {
                self.forget(&spool_path).await;
                Ok(Delivery::Sent)
            }
            Attempt::Failed { reason, .. } => {
                tracing::warn!(error = %reason, spool = %spool_path.display(), "e-mail deferred");
                self.record_failure(&mut entry, &spool_path, &reason).await;
                Ok(Delivery::Deferred { spool_path, reason })
            }
        }
    }

    /// Tries every spooled message once, oldest first.
    ///
    /// A failure that is not about one message (the server is down, the connection broke)
    /// ends the pass early: the rest would fail the same way, each after its own timeout.
    ///
    /// # Errors
    /// [`NotifyError::Io`] when the spool folder cannot be listed.
    pub async fn flush_spool(&self) -> Result<FlushReport, NotifyError> {
        let paths = spool::list(&self.spool_dir).await?;
        let mut report = FlushReport::default();
        let mut server_down = false;
        for path in paths {
            let Some(_claim) = self.claim(&path) else {
                continue;
            };
            if server_down {
                report.still_pending += 1;
                continue;
            }
            let mut entry = match SpoolEntry::load(&path).await {
                Ok(entry) => entry,
                Err(reason) => {
                    self.set_aside(&path, &reason).await;
                    report.unreadable += 1;
                    continue;
                }
            };
            match self.deliver(&entry).await {
                Attempt::Delivered => {
                    self.forget(&path).await;
                    report.sent += 1;
                }
                Attempt::Failed { reason, permanent } => {
                    self.record_failure(&mut entry, &path, &reason).await;
                    report.still_pending += 1;
                    server_down = !permanent;
                }
            }
        }
        Ok(report)
    }

    /// Flushes the spool now and then every `every`, until the handle is aborted.
    pub fn spawn_retry_loop(self: Arc<Self>, every: Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every.max(MIN_RETRY_EVERY));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match self.flush_spool().await {
                    Ok(report) if report.sent > 0 => {
                        tracing::info!(
                            sent = report.sent,
                            still_pending = report.still_pending,
                            "spooled e-mails delivered"
                        );
                    }
                    Ok(report) => tracing::debug!(pending = report.still_pending, "spool flushed"),
                    Err(err) => tracing::warn!(error = %err, "cannot flush the e-mail spool"),
                }
            }
        })
    }

    /// Sends one spooled message through the configured transport. With an outbox, spooled
    /// messages (left from an earlier SMTP configuration) are written there instead.
    async fn deliver(&self, entry: &SpoolEntry) -> Attempt {
        let Some(smtp) = &self.smtp else {
            return match self.write_to_outbox(entry.message.as_bytes()).await {
                Ok(_) => Attempt::Delivered,
                Err(err) => Attempt::Failed {
                    reason: err.to_string(),
                    permanent: false,
                },
            };
        };
        let envelope: Envelope = match entry.envelope() {
            Ok(envelope) => envelope,
            Err(reason) => {
                let reason = format!("spooled envelope is invalid: {reason}");
                return Attempt::Failed {
                    reason,
                    permanent: true,
                };
            }
        };
        self.send_smtp(smtp, &envelope, entry.message.as_bytes())
            .await
    }

    /// One SMTP delivery, bounded by the notifier's timeout.
    async fn send_smtp(
        &self,
        smtp: &AsyncSmtpTransport<Tokio1Executor>,
        envelope: &Envelope,
        message: &[u8],
    ) -> Attempt {
        let sent = tokio::time::timeout(self.timeout, smtp.send_raw(envelope, message)).await;
        match sent {
            Ok(Ok(_)) => Attempt::Delivered,
            Ok(Err(err)) => Attempt::Failed {
                reason: smtp_reason(&err),
                permanent: err.is_permanent(),
            },
            Err(_) => Attempt::Failed {
                reason: format!("smtp server did not finish within {:?}", self.timeout),
                permanent: false,
            },
        }
    }

    async fn write_to_outbox(&self, message: &[u8]) -> Result<PathBuf, NotifyError> {
        let Transport::Outbox { dir } = &self.transport else {
            let err = std::io::Error::other("transport is not an outbox");
            return Err(NotifyError::io("write outbox", &self.spool_dir, err));
        };
        files::write_atomically(dir, &files::unique_name("eml"), message).await
    }

    /// Keeps the failure count and reason with the spooled message, for the operator.
    async fn record_failure(&self, entry: &mut SpoolEntry, path: &Path, reason: &str) {
        entry.attempts = entry.attempts.saturating_add(1);
        entry.last_error = Some(reason.to_owned());
        if let Err(err) = entry.save(path).await {
            // The older copy is still in the spool, so the message itself is safe.
            tracing::warn!(error = %err, "cannot record the failure in the spool");
        }
    }

    /// Removes a delivered message from the spool.
    async fn forget(&self, path: &Path) {
        if let Err(err) = tokio::fs::remove_file(path).await {
            // The message went out but will go out again on the next flush.
            tracing::error!(
                error = %err,
                spool = %path.display(),
                "e-mail sent but still in the spool; remove the file to avoid a duplicate"
            );
        }
    }

    /// Renames a spool file that cannot be read, so it stops being retried but is kept.
    async fn set_aside(&self, path: &Path, reason: &str) {
        let aside = path.with_extension("corrupt");
        tracing::error!(
            reason,
            spool = %path.display(),
            "unreadable spool file set aside; inspect it and send it by hand"
        );
        if let Err(err) = tokio::fs::rename(path, &aside).await {
            tracing::error!(error = %err, spool = %path.display(), "cannot set spool file aside");
        }
    }

    /// Marks a spool file as being sent by this task; `None` when another task has it.
    fn claim(&self, path: &Path) -> Option<Claim<'_>> {
        let inserted = lock(&self.in_flight).insert(path.to_owned());
        inserted.then(|| Claim {
            in_flight: &self.in_flight,
            path: path.to_owned(),
        })
    }
}

/// Releases a spool file claimed by [`Notifier::claim`] when dropped.
struct Claim<'a> {
    in_flight: &'a Mutex<HashSet<PathBuf>>,
    path: PathBuf,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(self.in_flight).remove(&self.path);
    }
}

/// A poisoned set only means a task panicked while holding it; the set itself is intact.
fn lock(set: &Mutex<HashSet<PathBuf>>) -> MutexGuard<'_, HashSet<PathBuf>> {
    set.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// lettre's error with its causes; its own message alone often omits the reason.
fn smtp_reason(err: &lettre::transport::smtp::Error) -> String {
    let mut reason = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}
