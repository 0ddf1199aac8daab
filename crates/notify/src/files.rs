//! Durable files for the outbox and the spool: every file appears whole under its final name
//! or not at all, because it is written under a hidden temporary name, synced, then renamed.

use crate::error::NotifyError;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;

/// A file name that sorts by creation time and cannot collide: `<millis>-<uuid>.<extension>`.
pub(crate) fn unique_name(extension: &str) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    format!("{millis:013}-{}.{extension}", uuid::Uuid::new_v4().simple())
}

/// Writes `contents` to `dir/name` atomically and durably, creating `dir` when needed.
pub(crate) async fn write_atomically(
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> Result<PathBuf, NotifyError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|err| NotifyError::io("create folder", dir, err))?;

    // The leading dot and the suffix keep readers of the folder from taking a half-written
    // file for a message.
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    write_synced(&tmp, contents).await?;
    if let Err(err) = tokio::fs::rename(&tmp, &path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(NotifyError::io("rename into place", &path, err));
    }

    // The rename is only durable once the folder itself is synced.
    sync_dir(dir).await?;
    Ok(path)
}

async fn write_synced(path: &Path, contents: &[u8]) -> Result<(), NotifyError> {
    let write = async {
        let mut file = tokio::fs::File::create(path).await?;
        file.write_all(contents).await?;
        file.sync_all().await
    };
    if let Err(err) = write.await {
        let _ = tokio::fs::remove_file(path).await;
        return Err(NotifyError::io("write", path, err));
    }
    Ok(())
}

async fn sync_dir(dir: &Path) -> Result<(), NotifyError> {
    let sync = async { tokio::fs::File::open(dir).await?.sync_all().await };
    sync.await
        .map_err(|err| NotifyError::io("sync folder", dir, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_appears_whole_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("outbox");

        let path = write_atomically(&nested, "a.eml", b"hello")
            .await
            .expect("write");

        assert_eq!(std::fs::read(&path).expect("read"), b"hello");
        let names: Vec<_> = std::fs::read_dir(&nested)
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.eml")]);
    }

    #[test]
    fn unique_names_sort_by_time_and_differ() {
        let first = unique_name("eml");
        let second = unique_name("eml");
        assert_ne!(first, second);
        assert!(first.ends_with(".eml"));
        assert_eq!(first.find('-'), Some(13));
    }
}
