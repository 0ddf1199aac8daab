//! Raw setting values as a layer wrote them, and their conversion into typed settings.
//!
//! Every conversion error names the key as the layer spelled it (`server.port` in the toml,
//! `APP_PORT` in a `.env` file or the environment) and the place it was written.
//! A value of the wrong TOML type reads "expected X, found Y"; a value of the right type whose
//! content is wrong reads "Y is not X". Values of secret keys are never repeated in errors.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::DeValue;

use super::{ConfigError, Secret};

/// Where a value was written, as error messages show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A line of the toml file or of a `.env` file.
    File {
        /// The file, as read.
        path: PathBuf,
        /// The file's name as messages show it (relative to the working directory if inside it).
        shown: String,
        /// The 1-based line number.
        line: usize,
    },
    /// The process environment.
    Environment,
}

impl Origin {
    /// The directory that relative paths written here are resolved against.
    pub(crate) fn base_dir<'a>(&'a self, cwd: &'a Path) -> &'a Path {
        match self {
            Origin::File { path, .. } => path.parent().unwrap_or(cwd),
            Origin::Environment => cwd,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { shown, line, .. } => write!(f, "{shown}:{line}"),
            Origin::Environment => f.write_str("environment"),
        }
    }
}

/// A value before conversion: toml values are typed, environment values are untyped text that
/// each setting parses its own way.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar {
    /// Text from a `.env` file or the environment.
    Text(String),
    /// A toml string.
    Str(String),
    Int(i64),
    Bool(bool),
    /// Any other toml value, with the text that describes it in a message (`3.5`, `an array`).
    Other(String),
}

impl Scalar {
    /// Converts a toml value; nested tables and arrays only keep their kind.
    pub(crate) fn from_toml(value: &DeValue<'_>) -> Scalar {
        match value {
            DeValue::String(s) => Scalar::Str(s.to_string()),
            DeValue::Integer(n) => match i64::from_str_radix(n.as_str(), n.radix()) {
                Ok(n) => Scalar::Int(n),
                Err(_) => Scalar::Other(n.to_string()),
            },
            DeValue::Boolean(b) => Scalar::Bool(*b),
            DeValue::Float(x) => Scalar::Other(x.to_string()),
            DeValue::Datetime(d) => Scalar::Other(d.to_string()),
            DeValue::Array(_) => Scalar::Other("an array".to_owned()),
            DeValue::Table(_) => Scalar::Other("a table".to_owned()),
        }
    }

    /// How a message shows the value: strings quoted, others as written.
    fn shown(&self) -> String {
        match self {
            Scalar::Text(s) | Scalar::Str(s) => format!("{s:?}"),
            Scalar::Int(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Other(text) => text.clone(),
        }
    }

    /// How a message names the value's type, for secrets whose value must not be shown.
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Text(_) | Scalar::Str(_) => "a string",
            Scalar::Int(_) => "an integer",
            Scalar::Bool(_) => "a boolean",
            Scalar::Other(_) => "another kind of value",
        }
    }
}

/// One value of one layer, with the key as that layer spells it and where it was written.
#[derive(Clone, Debug)]
pub(crate) struct Raw {
    pub key: String,
    pub value: Scalar,
    pub origin: Origin,
}

impl Raw {
    /// An error about this value.
    pub(crate) fn invalid(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.clone(),
            key: self.key.clone(),
            message,
        }
    }

    /// An error for a value of the wrong type.
    pub(crate) fn wrong_type(&self, expected: &str) -> ConfigError {
        self.invalid(format!("expected {expected}, found {}", self.value.shown()))
    }

    /// A string value, as written.
    pub(crate) fn text(&self) -> Result<String, ConfigError> {
        match &self.value {
            Scalar::Text(s) | Scalar::Str(s) => Ok(s.clone()),
            _ => Err(self.wrong_type("a string")),
        }
    }

    /// A secret string; a wrong value is described by its type only.
    pub(crate) fn secret(&self) -> Result<Secret, ConfigError> {
        match &self.value {
            Scalar::Text(s) | Scalar::Str(s) => Ok(Secret::new(s.clone())),
            other => Err(self.invalid(format!("expected a string, found {}", other.kind()))),
        }
    }

    /// A TCP port, 1 to 65535.
    pub(crate) fn port(&self) -> Result<u16, ConfigError> {
        let not_a_port = || self.invalid(format!("{} is not a port number", self.value.shown()));
        let number = match &self.value {
            Scalar::Text(s) => s.trim().parse::<i64>().map_err(|_| not_a_port())?,
            Scalar::Int(n) => *n,
            _ => return Err(self.wrong_type("a port number")),
        };
        match u16::try_from(number) {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(not_a_port()),
        }
    }

    /// An integer of at least 1.
    pub(crate) fn positive(&self) -> Result<u64, ConfigError> {
        let not_positive =
            || self.invalid(format!("{} is not a positive integer", self.value.shown()));
        let number = match &self.value {
            Scalar::Text(s) => s.trim().parse::<i64>().map_err(|_| not_positive())?,
            Scalar::Int(n) => *n,
            _ => return Err(self.wrong_type("a positive integer")),
        };
        match u64::try_from(number) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(not_positive()),
        }
    }

    /// An integer of at least 1 that fits in 32 bits.
    pub(crate) fn positive_u32(&self) -> Result<u32, ConfigError> {
        let n = self.positive()?;
        u32::try_from(n)
            .map_err(|_| self.invalid(format!("{n} is too large; the limit is {}", u32::MAX)))
    }

    /// An integer of at least 0.
    pub(crate) fn non_negative(&self) -> Result<u64, ConfigError> {
        match &self.value {
            Scalar::Int(n) => u64::try_from(*n)
                .map_err(|_| self.invalid(format!("{n} is not a non-negative integer"))),
            _ => Err(self.wrong_type("a non-negative integer")),
        }
    }

    /// `true` or `false`.
    pub(crate) fn boolean(&self) -> Result<bool, ConfigError> {
        match &self.value {
            Scalar::Bool(b) => Ok(*b),
            Scalar::Text(s) if s == "true" => Ok(true),
            Scalar::Text(s) if s == "false" => Ok(false),
            Scalar::Text(s) => Err(self.invalid(format!("{s:?} is not true or false"))),
            _ => Err(self.wrong_type("true or false")),
        }
    }

    /// One of a fixed set of words.
    pub(crate) fn choice(&self, allowed: &[&'static str]) -> Result<&'static str, ConfigError> {
        let list = allowed.join(", ");
        let (Scalar::Text(s) | Scalar::Str(s)) = &self.value else {
            return Err(self.wrong_type(&format!("one of {list}")));
        };
        match allowed.iter().find(|word| **word == s.as_str()) {
            Some(word) => Ok(word),
            None => Err(self.invalid(format!("{s:?} is not one of {list}"))),
        }
    }

    /// An `http://` or `https://` URL, without a trailing slash.
    pub(crate) fn http_url(&self) -> Result<String, ConfigError> {
        let url = self.text()?;
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        let valid =
            rest.is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
        if !valid {
            return Err(self.invalid(format!("{url:?} is not an http or https URL")));
        }
        Ok(url.trim_end_matches('/').to_owned())
    }

    /// A host name or address: no scheme, no path, no spaces.
    pub(crate) fn host(&self) -> Result<String, ConfigError> {
        let host = self.text()?;
        if host.contains(['/', ' ', '\t']) {
            return Err(self.invalid(format!("{host:?} is not a host name")));
        }
        Ok(host)
    }

    /// A path; a relative one is resolved against the directory of the file that wrote it, or
    /// against the working directory when it came from the environment.
    pub(crate) fn path(&self, cwd: &Path) -> Result<PathBuf, ConfigError> {
        let text = self.text()?;
        Ok(resolve(self.origin.base_dir(cwd), Path::new(&text)))
    }
}

/// Joins `path` to `base` unless it is absolute, dropping `.` components.
pub(crate) fn resolve(base: &Path, path: &Path) -> PathBuf {
    base.join(path)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}
