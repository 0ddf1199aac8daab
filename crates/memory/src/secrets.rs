//! Masking of secrets in text and payloads before they are stored or embedded.
//!
//! Configured secret values are replaced wherever they appear; on top of that, a few patterns
//! that are secrets by their shape (`password=…`, bearer tokens, credentials in URLs) are masked
//! even when nobody configured them. Masking only ever removes text; it never adds a value.

use regex::{Captures, Regex};
use serde_json::Value;
use std::sync::LazyLock;

/// What a masked value is replaced with.
pub const MASK: &str = "***";

/// Key names whose values are secrets, as part of a longer name too (`db_password`).
const SECRET_KEY: &str =
    r"password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?";

/// `password=hunter2`, `"api_key": "abc"`, `client_secret: xyz`: the key and separator stay.
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = format!(
        r#"(?i)(\b[\w-]*(?:{SECRET_KEY})[\w-]*["']?\s*[=:]\s*)("[^"\n]*"|'[^'\n]*'|[^\s"'&,;}}\]]+)"#
    );
    Regex::new(&pattern).expect("the key=value secret pattern compiles")
});

/// `Authorization: Bearer eyJ…`: the scheme stays, the token goes.
static BEARER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]+=*")
        .expect("the bearer token pattern compiles")
});

/// `postgres://user:pass@host`: the user stays, the password goes.
static URL_CREDENTIALS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^:/@\s]+:)[^@\s/]+@")
        .expect("the url credentials pattern compiles")
});

/// Tokens whose shape gives them away wherever they stand: GitHub (`ghp_…`, `github_pat_…`),
/// Stripe (`sk_live_…`, `rk_test_…`), Slack (`xoxb-…`), AWS access key ids (`AKIA…`), OpenAI-style
/// keys (`sk-…`), Google API keys (`AIza…`) and JSON Web Tokens (`eyJ….eyJ….…`).
static TOKEN_SHAPES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}",
        r"|[sr]k_(?:live|test)_[A-Za-z0-9]{10,}|xox[abprs]-[A-Za-z0-9-]{10,}",
        r"|(?:AKIA|ASIA)[A-Z0-9]{16}|sk-[A-Za-z0-9_-]{20,}|AIza[A-Za-z0-9_-]{30,}",
        r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+)"
    ))
    .expect("the token shape pattern compiles")
});

/// Key names whose whole value is masked in a JSON payload, whatever its type.
static SECRET_KEY_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("(?i){SECRET_KEY}")).expect("the secret key name pattern compiles")
});

/// Whole key names (without case, `-` and `_`) that hold secrets in a payload although no
/// secret word is part of them: short forms, session cookies, keys and card data.
const SECRET_KEYS_WHOLE: [&str; 16] = [
    "pass",
    "passphrase",
    "pin",
    "cookie",
    "cookies",
    "session",
    "sessionid",
    "auth",
    "authorization",
    "ssh",
    "sshkey",
    "card",
    "cardnumber",
    "cvv",
    "cvc",
    "ssn",
];

/// A PEM private key block, whatever its kind (`RSA`, `EC`, `OPENSSH`, none).
static PRIVATE_KEY_BLOCK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----")
        .expect("the private key pattern compiles")
});

/// A payment card number as people write it: 15 or 16 digits, alone or in groups of four
/// (Amex: 4-6-5), starting as card numbers do. [`mask_secrets`] masks it only when its Luhn
/// check holds, so most other long numbers are left alone.
static CARD_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[3-6]\d{3}(?:[ -]?\d{4}){3}\b|\b3[47]\d{2}[ -]?\d{6}[ -]?\d{5}\b")
        .expect("the card number pattern compiles")
});

/// The Luhn check of the digits in `text`.
fn luhn(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| match (i % 2, d * 2) {
            (1, doubled) if doubled > 9 => doubled - 9,
            (1, doubled) => doubled,
            _ => *d,
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// Whether a payload key names a secret.
fn is_secret_key(key: &str) -> bool {
    let bare: String = key
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .collect::<String>()
        .to_lowercase();
    SECRET_KEY_NAME.is_match(key) || SECRET_KEYS_WHOLE.contains(&bare.as_str())
}

/// Replaces every configured secret value and every obvious secret pattern in `text` with
/// [`MASK`].
///
/// Empty entries in `secrets` are ignored. Longer secrets are replaced first, so a secret that
/// contains another one is masked whole.
pub fn mask_secrets(text: &str, secrets: &[String]) -> String {
    let mut masked = mask_configured(text, secrets);
    masked = URL_CREDENTIALS
        .replace_all(&masked, |c: &Captures| format!("{}{MASK}@", &c[1]))
        .into_owned();
    masked = BEARER
        .replace_all(&masked, |c: &Captures| format!("{}{MASK}", &c[1]))
        .into_owned();
    masked = TOKEN_SHAPES.replace_all(&masked, MASK).into_owned();
    masked = PRIVATE_KEY_BLOCK.replace_all(&masked, MASK).into_owned();
    masked = CARD_NUMBER
        .replace_all(&masked, |c: &Captures| match luhn(&c[0]) {
            true => MASK.to_owned(),
            false => c[0].to_owned(),
        })
        .into_owned();
    KEY_VALUE.replace_all(&masked, mask_key_value).into_owned()
}

/// Keeps the key, the separator and any quotes around the value; masks the value itself.
fn mask_key_value(c: &Captures) -> String {
    let value = &c[2];
    let quote = value.chars().next().filter(|q| matches!(q, '"' | '\''));
    match quote {
        Some(q) => format!("{}{q}{MASK}{q}", &c[1]),
        None => format!("{}{MASK}", &c[1]),
    }
}

/// Masks a JSON payload: values under secret-looking keys become [`MASK`] whatever their type,
/// and every string is passed through [`mask_secrets`].
pub fn mask_payload(payload: &Value, secrets: &[String]) -> Value {
    match payload {
        Value::String(s) => Value::String(mask_secrets(s, secrets)),
        Value::Array(items) => items.iter().map(|v| mask_payload(v, secrets)).collect(),
        Value::Object(map) => {
            let masked = map.iter().map(|(key, value)| {
                if is_secret_key(key) {
                    return (key.clone(), Value::String(MASK.to_owned()));
                }
                (key.clone(), mask_payload(value, secrets))
            });
            Value::Object(masked.collect())
        }
        other => other.clone(),
    }
}

fn mask_configured(text: &str, secrets: &[String]) -> String {
    let mut ordered: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    ordered.sort_by_key(|s| std::cmp::Reverse(s.len()));

    let mut masked = text.to_owned();
    for secret in ordered {
        masked = masked.replace(secret.as_str(), MASK);
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};
    use serde_json::json;

    fn check(input: &str, secrets: &[&str], expect: Expect) {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        expect.assert_eq(&mask_secrets(input, &secrets));
    }

    #[test]
    fn tokens_are_masked_by_their_shape_whatever_their_key() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl";
        let text = format!(
            "gh=ghp_1234567890abcdefghijABCDEFGHIJ stripe=sk_live_4eC39HqLyjWDarjtT1zdp7dc \
             note: AKIAIOSFODNN7EXAMPLE and {jwt}, not sk-short or eyJnotajwt"
        );
        check(
            &text,
            &[],
            expect![[r#"gh=*** stripe=*** note: *** and ***, not sk-short or eyJnotajwt"#]],
        );
    }

    #[test]
    fn configured_secret_values_are_masked_everywhere() {
        check(
            "login failed for key s3cr3t-KEY (retry with s3cr3t-KEY)",
            &["s3cr3t-KEY", ""],
            expect!["login failed for key *** (retry with ***)"],
        );
    }

    #[test]
    fn longer_secret_is_masked_whole_when_it_contains_a_shorter_one() {
        check("abc-def", &["abc", "abc-def"], expect!["***"]);
    }

    #[test]
    fn password_assignments_are_masked_but_keep_their_key() {
        check(
            "connect password=hunter2 user=bob; DB_PASSWORD: 'x y' client_secret=zz&a=1",
            &[],
            expect!["connect password=*** user=bob; DB_PASSWORD: '***' client_secret=***&a=1"],
        );
    }

    #[test]
    fn json_style_secrets_in_text_are_masked() {
        check(
            r#"body was {"api_key": "AKIA123", "name": "bob"}"#,
            &[],
            expect![[r#"body was {"api_key": "***", "name": "bob"}"#]],
        );
    }

    #[test]
    fn bearer_tokens_are_masked() {
        check(
            "Authorization: Bearer eyJhbGciOi.J9eyJzdWIi-Ox==\nnext line",
            &[],
            expect![[r#"
                Authorization: Bearer ***
                next line"#]],
        );
    }

    #[test]
    fn url_passwords_are_masked_but_not_the_user_or_host() {
        check(
            "cannot reach postgres://app:pa55@db.internal:5432/main or https://example.org/a:b@c",
            &[],
            expect![
                "cannot reach postgres://app:***@db.internal:5432/main or https://example.org/a:b@c"
            ],
        );
    }

    /// Reported: nested `pass`, a session cookie, a PEM key under `ssh` and a card number
    /// reached the model in clear.
    #[test]
    fn short_secret_keys_private_keys_and_card_numbers_are_masked() {
        let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----";
        let payload = json!({
            "nested": {"creds": {"pass": "NESTEDPASS"}},
            "Cookie": "session=COOKIESESS",
            "deploy": {"ssh": "x"},
            "note": format!("key:\n{pem}\npaid with 4111 1111 1111 1111"),
            "order_id": "4111111111111112",
            "created_ms": 1796423025118_u64,
            "compass": "north"
        });
        let masked = mask_payload(&payload, &[]);
        assert_eq!(
            masked,
            json!({
                "nested": {"creds": {"pass": "***"}},
                "Cookie": "***",
                "deploy": {"ssh": "***"},
                "note": "key:\n***\npaid with ***",
                "order_id": "4111111111111112",
                "created_ms": 1796423025118_u64,
                "compass": "north"
            })
        );
    }

    #[test]
    fn payload_values_under_secret_keys_are_masked_whatever_their_type() {
        let payload = json!({
            "email": "bob@example.org",
            "password": 1234,
            "nested": {"apiKey": {"id": 1}, "note": "token=abc and TOPSECRET"},
            "list": ["TOPSECRET", 5]
        });
        let masked = mask_payload(&payload, &["TOPSECRET".to_string()]);
        assert_eq!(
            masked,
            json!({
                "email": "bob@example.org",
                "password": "***",
                "nested": {"apiKey": "***", "note": "token=*** and ***"},
                "list": ["***", 5]
            })
        );
    }
}
