//! E-mail for reviewers: `.eml` files in an outbox folder, or SMTP behind a durable spool so a
//! message survives a server that is down and a process that restarts.

mod email;
mod error;
mod files;
mod notifier;
mod spool;
mod transport;

pub use email::Email;
pub use error::NotifyError;
pub use notifier::{Delivery, FlushReport, Notifier};
pub use transport::{TlsMode, Transport};
