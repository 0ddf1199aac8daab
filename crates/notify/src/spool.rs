//! The spool: messages on their way to an SMTP server, one JSON file each, kept until the server
//! has accepted them. A file holds the finished message, so a retry sends the very same bytes
//! (same Message-ID, same Date) however late it happens.

use crate::error::NotifyError;
use crate::files;
use lettre::Message;
use lettre::address::Envelope;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The extension of spool files; anything else in the folder is ignored.
pub(crate) const SPOOL_EXTENSION: &str = "json";

/// One spooled message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SpoolEntry {
    /// The envelope sender.
    pub(crate) from: Option<String>,
    /// The envelope recipients.
    pub(crate) to: Vec<String>,
    /// The RFC 5322 message, exactly as it will be sent.
    pub(crate) message: String,
    /// How many sends have failed so far.
    pub(crate) attempts: u32,
    /// Why the last send failed.
    pub(crate) last_error: Option<String>,
}

impl SpoolEntry {
    /// An entry for a message that has not been tried yet.
    pub(crate) fn new(message: &Message) -> Self {
        let envelope = message.envelope();
        SpoolEntry {
            from: envelope.from().map(ToString::to_string),
            to: envelope.to().iter().map(ToString::to_string).collect(),
            // The builder encodes headers as ASCII and the body as UTF-8 at most.
            message: String::from_utf8_lossy(&message.formatted()).into_owned(),
            attempts: 0,
            last_error: None,
        }
    }

    /// The envelope to send with, rebuilt from the stored addresses.
    pub(crate) fn envelope(&self) -> Result<Envelope, String> {
        let from = match &self.from {
            Some(from) => Some(
                from.parse()
                    .map_err(|err| format!("sender {from:?}: {err}"))?,
            ),
            None => None,
        };
        let to = self
            .to
            .iter()
            .map(|to| to.parse().map_err(|err| format!("recipient {to:?}: {err}")))
            .collect::<Result<Vec<_>, _>>()?;
        Envelope::new(from, to).map_err(|err| err.to_string())
    }

    /// Writes the entry to `path`'s folder under `path`'s name, replacing any older version.
    pub(crate) async fn save(&self, path: &Path) -> Result<(), NotifyError> {
        let json = serde_json::to_vec_pretty(self).map_err(|err| {
            NotifyError::io("encode spool entry", path, std::io::Error::other(err))
        })?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            let err = std::io::Error::other("spool path has no folder or file name");
            return Err(NotifyError::io("write spool entry", path, err));
        };
        files::write_atomically(dir, &name.to_string_lossy(), &json).await?;
        Ok(())
    }

    /// Reads an entry; the error says why it cannot be used.
    pub(crate) async fn load(path: &Path) -> Result<Self, String> {
        let bytes = tokio::fs::read(path).await.map_err(|err| err.to_string())?;
        serde_json::from_slice(&bytes).map_err(|err| err.to_string())
    }
}

/// The spool files in `dir`, oldest first; a folder that does not exist holds none.
pub(crate) async fn list(dir: &Path) -> Result<Vec<PathBuf>, NotifyError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(NotifyError::io("list spool", dir, err)),
    };

    let mut paths = Vec::new();
    loop {
        let entry = entries
            .next_entry()
            .await
            .map_err(|err| NotifyError::io("list spool", dir, err))?;
        let Some(entry) = entry else { break };
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let is_spool = path.extension().is_some_and(|ext| ext == SPOOL_EXTENSION);
        if is_spool && !hidden {
            paths.push(path);
        }
    }
    // Names start with the creation time, so name order is age order.
    paths.sort();
    Ok(paths)
}
