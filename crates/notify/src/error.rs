//! The errors of the notify crate. A message that could not be sent yet is not an error: it is
//! a [`crate::Delivery::Deferred`]; these are for messages that cannot be built or stored.

use std::path::PathBuf;

/// Why a message could not be built, written or queued.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// An address in `from` or `to` does not parse.
    #[error("invalid e-mail address \"{address}\": {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What the parser said.
        reason: String,
    },

    /// The message names nobody to send it to.
    #[error("e-mail \"{subject}\" has no recipients")]
    NoRecipients {
        /// The subject, to tell which message it was.
        subject: String,
    },

    /// An extra header has a bad name, a line break in its value, or replaces one we set.
    #[error("invalid e-mail header \"{name}\": {reason}")]
    InvalidHeader {
        /// The header name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The message builder refused the message.
    #[error("cannot build e-mail \"{subject}\": {reason}")]
    Build {
        /// The subject, to tell which message it was.
        subject: String,
        /// What the builder said.
        reason: String,
    },

    /// The SMTP settings cannot make a transport (for example TLS set up for an empty host).
    #[error("cannot set up SMTP to \"{host}\": {reason}")]
    SmtpSetup {
        /// The configured host.
        host: String,
        /// What went wrong.
        reason: String,
    },

    /// Reading or writing the outbox or the spool failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being attempted, as a verb phrase.
        action: &'static str,
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl NotifyError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        NotifyError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}
