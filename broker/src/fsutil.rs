//! Small file-system helpers with stated durability.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` atomically: writes a temp file beside it, fsyncs it, renames it
/// over `path` and fsyncs the directory. Returns only after the new content is durable.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// [`write_atomically`] on the blocking pool, for async code: the fsyncs never hold up a
/// runtime thread (and the other tasks queued on it).
pub async fn write_atomically_off_runtime(path: PathBuf, bytes: Vec<u8>) -> std::io::Result<()> {
    off_runtime(move || write_atomically(&path, &bytes)).await
}

/// Runs blocking file work on the blocking pool and waits for it.
pub async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}
