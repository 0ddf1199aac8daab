//! The e-mail a notifier sends, and its checked conversion into an RFC 5322 message.

use crate::error::NotifyError;
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};

/// Headers the message builder sets itself; an extra header may not replace them.
const RESERVED_HEADERS: [&str; 11] = [
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// A plain-text e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Email {
    /// The sender, `name@host` or `Name <name@host>`.
    pub from: String,
    /// The recipients, in the same forms; at least one.
    pub to: Vec<String>,
    /// The subject line.
    pub subject: String,
    /// The body, sent as UTF-8 plain text.
    pub text: String,
    /// Extra headers such as `X-SmartWorker-Fix`, in order.
    pub headers: Vec<(String, String)>,
}

/// Checks every field and builds the message, with a Date and a Message-ID.
pub(crate) fn build_message(email: &Email) -> Result<Message, NotifyError> {
    if email.to.is_empty() {
        return Err(NotifyError::NoRecipients {
            subject: email.subject.clone(),
        });
    }

    let mut builder = Message::builder()
        .from(parse_mailbox(&email.from)?)
        .subject(email.subject.as_str())
        .date_now()
        .message_id(None)
        .header(ContentType::TEXT_PLAIN);
    for to in &email.to {
        builder = builder.to(parse_mailbox(to)?);
    }
    for (name, value) in &email.headers {
        builder = builder.raw_header(header_value(name, value)?);
    }

    builder
        .body(email.text.clone())
        .map_err(|err| NotifyError::Build {
            subject: email.subject.clone(),
            reason: err.to_string(),
        })
}

fn parse_mailbox(address: &str) -> Result<Mailbox, NotifyError> {
    address
        .trim()
        .parse()
        .map_err(
            |err: lettre::address::AddressError| NotifyError::InvalidAddress {
                address: address.to_owned(),
                reason: err.to_string(),
            },
        )
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue, NotifyError> {
    let invalid = |reason: &str| NotifyError::InvalidHeader {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(invalid("it is set from the e-mail's own fields"));
    }
    // A line break in a value would let it start a header of its own.
    if value.contains(['\r', '\n']) {
        return Err(invalid("the value contains a line break"));
    }
    let header_name = HeaderName::new_from_ascii(name.to_owned())
        .map_err(|_| invalid("the name must be printable ASCII without spaces or colons"))?;
    Ok(HeaderValue::new(header_name, value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email {
            from: "SmartWorker <smartworker@localhost>".to_owned(),
            to: vec!["reviewer@example.test".to_owned()],
            subject: "fix verified".to_owned(),
            text: "body".to_owned(),
            headers: vec![("X-SmartWorker-Fix".to_owned(), "42".to_owned())],
        }
    }

    fn build_err(email: &Email) -> String {
        match build_message(email) {
            Ok(_) => panic!("expected an error for {email:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn message_carries_extra_headers() {
        let message = build_message(&email()).expect("valid email");
        let text = String::from_utf8(message.formatted()).expect("utf-8");
        assert!(text.contains("X-SmartWorker-Fix: 42\r\n"), "{text}");
        assert!(text.contains("Subject: fix verified\r\n"), "{text}");
    }

    #[test]
    fn bad_emails_are_refused_with_the_offending_value() {
        let mut no_rcpt = email();
        no_rcpt.to.clear();
        assert_eq!(
            build_err(&no_rcpt),
            "e-mail \"fix verified\" has no recipients"
        );

        let mut bad_to = email();
        bad_to.to = vec!["not an address".to_owned()];
        assert!(build_err(&bad_to).starts_with("invalid e-mail address \"not an address\": "));

        let mut injected = email();
        injected.headers = vec![(
            "X-Note".to_owned(),
            "a\r\nBcc: evil@example.test".to_owned(),
        )];
        assert_eq!(
            build_err(&injected),
            "invalid e-mail header \"X-Note\": the value contains a line break"
        );

        let mut reserved = email();
        reserved.headers = vec![("from".to_owned(), "other@example.test".to_owned())];
        assert_eq!(
            build_err(&reserved),
            "invalid e-mail header \"from\": it is set from the e-mail's own fields"
        );

        let mut bad_name = email();
        bad_name.headers = vec![("X Bad".to_owned(), "1".to_owned())];
        assert_eq!(
            build_err(&bad_name),
            "invalid e-mail header \"X Bad\": the name must be printable ASCII without spaces \
             or colons"
        );
    }
}
