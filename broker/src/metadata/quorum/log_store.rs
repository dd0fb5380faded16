//! Durable Raft log storage for the metadata quorum (openraft's `RaftLogStorage`).
//!
//! Entries live in memory and in one append-only file, `raft.log`, of frames
//! `[u32 length][u32 crc32c][json entry]`; the vote and the committed log id live in small JSON
//! files written by temp file + fsync + rename. `append` returns (through openraft's callback)
//! only after the frames are fsynced. Truncation and purging rewrite the file atomically: the
//! metadata log is small, so simplicity wins over an in-place design. A torn or corrupt tail
//! (crash during append) is cut off on open.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};

use super::state_machine::{NodeId, TypeConfig};
use crate::fsutil::{off_runtime, write_atomically, write_atomically_off_runtime};

const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "vote.json";
const COMMITTED_FILE: &str = "committed.json";
const PURGED_FILE: &str = "purged.json";

type Entries = Arc<Mutex<BTreeMap<u64, Entry<TypeConfig>>>>;

/// The metadata quorum's Raft log on disk.
pub struct LogStore {
    dir: PathBuf,
    /// Shared with the blocking-pool task that appends and fsyncs (never a runtime thread).
    file: Arc<File>,
    entries: Entries,
    last_purged: Option<LogId<NodeId>>,
}

/// A reader over the same entries, for openraft's replication tasks.
#[derive(Clone)]
pub struct LogReader {
    entries: Entries,
}

fn io_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(openraft::AnyError::new(&e)).into()
}

fn encode_frame(entry: &Entry<TypeConfig>, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let body = serde_json::to_vec(entry)?;
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Decodes frames until the end or the first torn/corrupt frame; returns the entries and the
/// length of the valid prefix.
fn decode_frames(buf: &[u8]) -> (Vec<Entry<TypeConfig>>, usize) {
    let mut entries = Vec::new();
    let mut pos = 0;
    while buf.len() - pos >= 8 {
        let len = u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        let crc = u32::from_be_bytes([buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]]);
        let Some(body) = buf.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            break;
        }
        match serde_json::from_slice(body) {
            Ok(e) => entries.push(e),
            Err(_) => break,
        }
        pos += 8 + len;
    }
    (entries, pos)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `value` as JSON atomically (temp file, fsync, rename) on the blocking pool.
async fn write_json<T: serde::Serialize>(path: PathBuf, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    write_atomically_off_runtime(path, bytes).await
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting off a torn tail.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let (decoded, valid) = decode_frames(&buf);
        if valid < buf.len() {
            tracing::warn!(path = %path.display(), valid, len = buf.len(), "truncating torn tail of metadata log");
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        let entries = decoded.into_iter().map(|e| (e.log_id.index, e)).collect();
        Ok(LogStore {
            dir: dir.to_path_buf(),
            file: Arc::new(file),
            entries: Arc::new(Mutex::new(entries)),
            last_purged: read_json(&dir.join(PURGED_FILE))?,
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry<TypeConfig>>> {
        self.entries.lock().expect("raft log lock poisoned")
    }

    /// Rewrites the whole file from memory (after truncate/purge), on the blocking pool.
    async fn rewrite(&mut self) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for e in self.entries().values() {
            encode_frame(e, &mut buf).map_err(std::io::Error::other)?;
        }
        let path = self.dir.join(LOG_FILE);
        let file = off_runtime(move || {
            write_atomically(&path, &buf)?;
            OpenOptions::new().read(true).append(true).open(&path)
        })
        .await?;
        self.file = Arc::new(file);
        Ok(())
    }
}

fn read_range<RB: RangeBounds<u64>>(entries: &Entries, range: RB) -> Vec<Entry<TypeConfig>> {
    let map = entries.lock().expect("raft log lock poisoned");
    map.range(range).map(|(_, e)| e.clone()).collect()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(read_range(&self.entries, range))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(read_range(&self.entries, range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last = self.entries().values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: self.last_purged,
            last_log_id: last.or(self.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            entries: self.entries.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        write_json(self.dir.join(VOTE_FILE), vote)
            .await
            .map_err(|e| StorageIOError::write_vote(openraft::AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        read_json(&self.dir.join(VOTE_FILE))
            .map_err(|e| StorageIOError::read_vote(openraft::AnyError::new(&e)).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        write_json(self.dir.join(COMMITTED_FILE), &committed)
            .await
            .map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(
            read_json::<Option<LogId<NodeId>>>(&self.dir.join(COMMITTED_FILE))
                .map_err(io_err)?
                .flatten(),
        )
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut buf = Vec::new();
        let mut new = Vec::new();
        for e in entries {
            encode_frame(&e, &mut buf).map_err(io_err)?;
            new.push(e);
        }
        // Written and fsynced on the blocking pool: openraft awaits its storage in order, so
        // appends stay ordered, and no runtime thread waits for the disk.
        let file = self.file.clone();
        let res = off_runtime(move || {
            (&*file).write_all(&buf)?;
            file.sync_data()
        })
        .await;
        if res.is_ok() {
            let mut map = self.entries();
            for e in new {
                map.insert(e.log_id.index, e);
            }
        }
        let failed = res
            .as_ref()
            .err()
            .map(|e| std::io::Error::new(e.kind(), e.to_string()));
        callback.log_io_completed(res);
        match failed {
            Some(e) => Err(io_err(e)),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.entries().retain(|&i, _| i < log_id.index);
        self.rewrite().await.map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        write_json(self.dir.join(PURGED_FILE), &log_id)
            .await
            .map_err(io_err)?;
        self.last_purged = Some(log_id);
        self.entries().retain(|&i, _| i > log_id.index);
        self.rewrite().await.map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn torn_tail_is_cut_and_good_frames_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut buf = Vec::new();
        for i in 1..=3 {
            encode_frame(&entry(i), &mut buf).expect("encode");
        }
        let full = buf.len();
        buf.extend_from_slice(&[0, 0, 0, 50, 1, 2]); // a frame header cut short
        std::fs::write(dir.path().join(LOG_FILE), &buf).expect("write");
        let store = LogStore::open(dir.path()).expect("open");
        assert_eq!(
            store.entries().keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        let len = std::fs::metadata(dir.path().join(LOG_FILE))
            .expect("meta")
            .len();
        assert_eq!(len as usize, full);
    }

    #[test]
    fn corrupt_frame_ends_the_log() {
        let mut buf = Vec::new();
        for i in 1..=3 {
            encode_frame(&entry(i), &mut buf).expect("encode");
        }
        let second = buf.len() / 3 + 10;
        buf[second] ^= 0xff;
        let (entries, _) = decode_frames(&buf);
        assert_eq!(entries.len(), 1);
    }
}
