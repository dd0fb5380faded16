//! The sparse `.index` (4-byte relative offset, 4-byte position) and `.timeindex` (8-byte
//! timestamp, 4-byte relative offset) files of one segment, in Kafka's big-endian layout.
//!
//! Entries are kept in memory (lookups never touch the disk) and appended to the file as they
//! are added. Files are not preallocated, so there is nothing to trim on close. Deciding when
//! to add an entry is the segment's job; validating a loaded file is done here.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{io_err, LogError};

const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;

/// An index file on disk; the typed indexes below own the entries.
#[derive(Debug)]
struct IndexFile {
    path: PathBuf,
    /// Shared so that a flush can fsync it without the log's lock (`Log::rolled_flush`).
    file: Arc<File>,
}

impl IndexFile {
    fn open(path: &Path, truncate: bool) -> Result<IndexFile, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(truncate)
            .open(path)
            .map_err(io_err("open index", path))?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            file: Arc::new(file),
        })
    }

    fn read_all(&self) -> Result<Vec<u8>, LogError> {
        std::fs::read(&self.path).map_err(io_err("read index", &self.path))
    }

    fn write_at(&self, bytes: &[u8], at: usize) -> Result<(), LogError> {
        self.file
            .write_all_at(bytes, at as u64)
            .map_err(io_err("write index", &self.path))
    }

    fn sync(&self) -> Result<(), LogError> {
        self.file
            .sync_all()
            .map_err(io_err("fsync index", &self.path))
    }

    fn handle(&self) -> (PathBuf, Arc<File>) {
        (self.path.clone(), self.file.clone())
    }
}

/// Offset → file position, one entry per `index.interval.bytes` of batches.
///
/// Each entry is `(last offset of a batch, position of that batch)`, as Kafka writes it.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    file: IndexFile,
    base_offset: i64,
    entries: Vec<(i64, u32)>,
    max_entries: usize,
}

impl OffsetIndex {
    /// Creates (or empties) the index file.
    pub(crate) fn create(path: &Path, base_offset: i64, max_bytes: u64) -> Result<Self, LogError> {
        Ok(OffsetIndex {
            file: IndexFile::open(path, true)?,
            base_offset,
            entries: Vec::new(),
            max_entries: (max_bytes as usize / OFFSET_ENTRY).max(1),
        })
    }

    /// Loads an existing index. `Ok(Err(reason))` if it is missing or inconsistent with a log
    /// file of `log_size` bytes, so the caller rebuilds it.
    pub(crate) fn load(
        path: &Path,
        base_offset: i64,
        max_bytes: u64,
        log_size: u64,
    ) -> Result<Result<Self, String>, LogError> {
        if !path.exists() {
            return Ok(Err("index file is missing".into()));
        }
        let mut index = OffsetIndex::create_keep(path, base_offset, max_bytes)?;
        let bytes = index.file.read_all()?;
        if bytes.len() % OFFSET_ENTRY != 0 {
            return Ok(Err(format!(
                "index size {} is not a multiple of 8",
                bytes.len()
            )));
        }
        for chunk in bytes.chunks_exact(OFFSET_ENTRY) {
            let rel = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let pos = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            let offset = base_offset + i64::from(rel);
            if let Some(&(prev_off, prev_pos)) = index.entries.last() {
                if offset <= prev_off || pos <= prev_pos {
                    return Ok(Err(format!("entry ({offset}, {pos}) is not increasing")));
                }
            }
            if u64::from(pos) >= log_size {
                return Ok(Err(format!(
                    "entry position {pos} is past the log end {log_size}"
                )));
            }
            index.entries.push((offset, pos));
        }
        Ok(Ok(index))
    }

    fn create_keep(path: &Path, base_offset: i64, max_bytes: u64) -> Result<Self, LogError> {
        Ok(OffsetIndex {
            file: IndexFile::open(path, false)?,
            base_offset,
            entries: Vec::new(),
            max_entries: (max_bytes as usize / OFFSET_ENTRY).max(1),
        })
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    /// Adds an entry; the offset must be above the last one.
    pub(crate) fn append(&mut self, offset: i64, position: u32) -> Result<(), LogError> {
        if self.entries.last().is_some_and(|(o, _)| *o >= offset) || self.is_full() {
            return Ok(());
        }
        let rel = (offset - self.base_offset) as u32;
        let mut bytes = [0u8; OFFSET_ENTRY];
        bytes[..4].copy_from_slice(&rel.to_be_bytes());
        bytes[4..].copy_from_slice(&position.to_be_bytes());
        self.file
            .write_at(&bytes, self.entries.len() * OFFSET_ENTRY)?;
        self.entries.push((offset, position));
        Ok(())
    }

    /// Position to start scanning from for `target`: the largest entry with offset ≤ target.
    pub(crate) fn lookup(&self, target: i64) -> u32 {
        let idx = self.entries.partition_point(|(o, _)| *o <= target);
        if idx == 0 {
            0
        } else {
            self.entries[idx - 1].1
        }
    }

    /// Position of the last entry (0 if empty): where a tail scan can start.
    pub(crate) fn last_position(&self) -> u32 {
        self.entries.last().map_or(0, |(_, p)| *p)
    }

    pub(crate) fn sync(&self) -> Result<(), LogError> {
        self.file.sync()
    }

    /// The file, to fsync without the log's lock.
    pub(crate) fn handle(&self) -> (PathBuf, Arc<File>) {
        self.file.handle()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Timestamp → offset, monotonic in timestamp.
///
/// Each entry is `(max timestamp so far, offset of the batch that reached it)`.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    file: IndexFile,
    base_offset: i64,
    entries: Vec<(i64, i64)>,
    max_entries: usize,
}

impl TimeIndex {
    pub(crate) fn create(path: &Path, base_offset: i64, max_bytes: u64) -> Result<Self, LogError> {
        Ok(TimeIndex {
            file: IndexFile::open(path, true)?,
            base_offset,
            entries: Vec::new(),
            max_entries: (max_bytes as usize / TIME_ENTRY).max(1),
        })
    }

    /// Loads an existing time index; `Ok(Err(reason))` if missing or not monotonic, or if it
    /// names offsets at or past `next_offset`.
    pub(crate) fn load(
        path: &Path,
        base_offset: i64,
        max_bytes: u64,
        next_offset: i64,
    ) -> Result<Result<Self, String>, LogError> {
        if !path.exists() {
            return Ok(Err("time index file is missing".into()));
        }
        let mut index = TimeIndex {
            file: IndexFile::open(path, false)?,
            base_offset,
            entries: Vec::new(),
            max_entries: (max_bytes as usize / TIME_ENTRY).max(1),
        };
        let bytes = index.file.read_all()?;
        if bytes.len() % TIME_ENTRY != 0 {
            return Ok(Err(format!(
                "time index size {} is not a multiple of 12",
                bytes.len()
            )));
        }
        for chunk in bytes.chunks_exact(TIME_ENTRY) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&chunk[..8]);
            let ts = i64::from_be_bytes(ts);
            let rel = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            let offset = base_offset + i64::from(rel);
            if let Some(&(prev_ts, prev_off)) = index.entries.last() {
                if ts <= prev_ts || offset < prev_off {
                    return Ok(Err(format!("entry ({ts}, {offset}) is not increasing")));
                }
            }
            if offset >= next_offset {
                return Ok(Err(format!(
                    "entry offset {offset} is past the log end {next_offset}"
                )));
            }
            index.entries.push((ts, offset));
        }
        Ok(Ok(index))
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    /// Adds an entry if `timestamp` is above the last one.
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) -> Result<(), LogError> {
        if self.entries.last().is_some_and(|(t, _)| *t >= timestamp) || self.is_full() {
            return Ok(());
        }
        let rel = (offset - self.base_offset) as u32;
        let mut bytes = [0u8; TIME_ENTRY];
        bytes[..8].copy_from_slice(&timestamp.to_be_bytes());
        bytes[8..].copy_from_slice(&rel.to_be_bytes());
        self.file
            .write_at(&bytes, self.entries.len() * TIME_ENTRY)?;
        self.entries.push((timestamp, offset));
        Ok(())
    }

    /// An offset from which scanning finds the first batch with max timestamp ≥ `timestamp`:
    /// the offset of the largest entry with a timestamp strictly below it (every batch before
    /// that offset has a smaller max timestamp), else the segment's base offset.
    pub(crate) fn lookup(&self, timestamp: i64) -> i64 {
        let idx = self.entries.partition_point(|(t, _)| *t < timestamp);
        if idx == 0 {
            self.base_offset
        } else {
            self.entries[idx - 1].1
        }
    }

    /// The last entry: the segment's max timestamp and its offset, as far as indexed.
    pub(crate) fn last_entry(&self) -> Option<(i64, i64)> {
        self.entries.last().copied()
    }

    pub(crate) fn sync(&self) -> Result<(), LogError> {
        self.file.sync()
    }

    /// The file, to fsync without the log's lock.
    pub(crate) fn handle(&self) -> (PathBuf, Arc<File>) {
        self.file.handle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::create(&path, 100, 1024).unwrap();
        idx.append(104, 0).unwrap();
        idx.append(109, 500).unwrap();
        idx.append(109, 900).unwrap(); // not increasing: ignored
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        assert_eq!(idx.lookup(99), 0);
        assert_eq!(idx.lookup(108), 0);
        assert_eq!(idx.lookup(109), 500);
        assert_eq!(idx.lookup(1_000), 500);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[8..16], &[0, 0, 0, 9, 0, 0, 1, 244]);
        let loaded = OffsetIndex::load(&path, 100, 1024, 1000).unwrap().unwrap();
        assert_eq!(loaded.entries, vec![(104, 0), (109, 500)]);
        // A log shorter than an entry's position makes the index invalid.
        assert!(OffsetIndex::load(&path, 100, 1024, 400).unwrap().is_err());
        std::fs::write(&path, [0u8; 7]).unwrap();
        assert!(OffsetIndex::load(&path, 100, 1024, 1000).unwrap().is_err());
    }

    #[test]
    fn offset_index_stops_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut idx = OffsetIndex::create(&path, 0, 24).unwrap();
        for i in 0..5 {
            idx.append(i * 10, (i * 100) as u32).unwrap();
        }
        assert!(idx.is_full());
        assert_eq!(idx.len(), 3);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
    }

    #[test]
    fn time_index_is_monotonic_and_looks_up_below_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.timeindex");
        let mut idx = TimeIndex::create(&path, 0, 1200).unwrap();
        idx.maybe_append(1_000, 4).unwrap();
        idx.maybe_append(900, 9).unwrap(); // older timestamp: ignored
        idx.maybe_append(2_000, 14).unwrap();
        assert_eq!(idx.lookup(500), 0);
        assert_eq!(idx.lookup(1_000), 0);
        assert_eq!(idx.lookup(1_001), 4);
        assert_eq!(idx.lookup(5_000), 14);
        assert_eq!(idx.last_entry(), Some((2_000, 14)));
        let loaded = TimeIndex::load(&path, 0, 1200, 20).unwrap().unwrap();
        assert_eq!(loaded.entries, vec![(1_000, 4), (2_000, 14)]);
        assert!(TimeIndex::load(&path, 0, 1200, 10).unwrap().is_err());
    }
}
