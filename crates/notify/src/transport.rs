//! Where messages go: an outbox folder of `.eml` files, or an SMTP server.

use crate::error::NotifyError;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use std::path::PathBuf;
use std::time::Duration;

/// How long one SMTP conversation may take before the message is deferred.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text; only sensible for a server on this machine.
    None,
    /// Plain connection upgraded with STARTTLS, which the server must offer.
    StartTls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

impl TlsMode {
    /// `None` for a loopback host, `StartTls` for any other.
    pub fn default_for(host: &str) -> TlsMode {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback =
            host.eq_ignore_ascii_case("localhost") || host == "::1" || host.starts_with("127.");
        if loopback {
            TlsMode::None
        } else {
            TlsMode::StartTls
        }
    }
}

/// Where a notifier delivers messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Each message becomes an `.eml` file in this folder.
    Outbox {
        /// The outbox folder; created when missing.
        dir: PathBuf,
    },
    /// Messages go to an SMTP server, through the spool.
    Smtp {
        /// The server's host name or address.
        host: String,
        /// The server's port.
        port: u16,
        /// The user to authenticate as; no AUTH when `None`.
        user: Option<String>,
        /// The password for `user`.
        password: Option<String>,
        /// How the connection is protected.
        tls: TlsMode,
    },
}

impl Transport {
    /// SMTP without authentication, with the TLS mode [`TlsMode::default_for`] picks for `host`.
    pub fn smtp(host: impl Into<String>, port: u16) -> Transport {
        let host = host.into();
        Transport::Smtp {
            tls: TlsMode::default_for(&host),
            host,
            port,
            user: None,
            password: None,
        }
    }
}

/// The lettre transport for SMTP settings.
pub(crate) fn smtp_transport(
    host: &str,
    port: u16,
    user: Option<&str>,
    password: Option<&str>,
    tls: TlsMode,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, NotifyError> {
    let setup_error = |err: lettre::transport::smtp::Error| NotifyError::SmtpSetup {
        host: host.to_owned(),
        reason: err.to_string(),
    };
    let builder = match tls {
        TlsMode::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        TlsMode::StartTls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(setup_error)?
        }
        TlsMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(setup_error)?,
    };
    let builder = builder.port(port).timeout(Some(SMTP_TIMEOUT));
    let builder = match user {
        Some(user) => builder.credentials(Credentials::new(
            user.to_owned(),
            password.unwrap_or_default().to_owned(),
        )),
        None => builder,
    };
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_defaults_to_none_only_on_loopback() {
        assert_eq!(TlsMode::default_for("localhost"), TlsMode::None);
        assert_eq!(TlsMode::default_for("127.0.0.1"), TlsMode::None);
        assert_eq!(TlsMode::default_for("[::1]"), TlsMode::None);
        assert_eq!(TlsMode::default_for("mail.example.test"), TlsMode::StartTls);
        assert_eq!(TlsMode::default_for("10.0.0.5"), TlsMode::StartTls);
    }
}
