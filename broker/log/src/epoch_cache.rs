//! The leader-epoch cache of one partition: which leader epoch started at which offset, kept in
//! memory and checkpointed to `leader-epoch-checkpoint` (Kafka's `LeaderEpochFileCache`).
//!
//! It answers OffsetForLeaderEpoch; it does not know the log end offset, which callers pass in.

use std::path::{Path, PathBuf};

use tracing::warn;

use crate::checkpoint::{read_epoch_checkpoint, write_epoch_checkpoint, CheckpointError};
use crate::types::Offset;

/// File name of the checkpoint inside the partition directory.
pub(crate) const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

/// `(epoch, start offset)` entries, strictly increasing in both.
#[derive(Debug)]
pub(crate) struct EpochCache {
    path: PathBuf,
    entries: Vec<(i32, Offset)>,
}

impl EpochCache {
    /// Loads the cache from `dir`, empty if the checkpoint does not exist.
    pub(crate) fn load(dir: &Path) -> Result<EpochCache, CheckpointError> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let mut entries = read_epoch_checkpoint(&path)?;
        // Drop anything not strictly increasing, as a hand-edited or odd file could hold.
        let mut clean: Vec<(i32, Offset)> = Vec::with_capacity(entries.len());
        for (epoch, offset) in entries.drain(..) {
            if clean.last().is_none_or(|(e, o)| epoch > *e && offset >= *o) {
                clean.push((epoch, offset));
            } else {
                warn!(path = %path.display(), epoch, offset = %offset, "ignoring out-of-order leader epoch entry");
            }
        }
        Ok(EpochCache {
            path,
            entries: clean,
        })
    }

    pub(crate) fn entries(&self) -> &[(i32, Offset)] {
        &self.entries
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|(e, _)| *e)
    }

    /// Records that `epoch` starts at `start`, if it is newer than the latest epoch; an entry with
    /// the same start offset as the latest one replaces it (that epoch wrote nothing).
    /// Returns whether the cache changed (and was checkpointed).
    pub(crate) fn assign(&mut self, epoch: i32, start: Offset) -> Result<bool, CheckpointError> {
        if epoch < 0 {
            return Ok(false);
        }
        if let Some(&(last_epoch, last_start)) = self.entries.last() {
            if epoch <= last_epoch {
                return Ok(false);
            }
            if start < last_start {
                warn!(path = %self.path.display(), epoch, start = %start, last_start = %last_start,
                    "leader epoch start offset goes backwards, truncating the epoch cache");
                self.entries.retain(|(_, o)| *o < start);
            } else if start == last_start {
                self.entries.pop();
            }
        }
        self.entries.push((epoch, start));
        self.checkpoint()?;
        Ok(true)
    }

    /// Kafka's `endOffsetFor`: for the requested epoch, the largest epoch ≤ it and the start
    /// offset of the next higher epoch (or the log end if it is the latest epoch).
    /// `None` is Kafka's `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end: Offset) -> Option<(i32, Offset)> {
        if requested < 0 {
            return None;
        }
        if self.latest_epoch() == Some(requested) {
            return Some((requested, log_end));
        }
        let higher = self.entries.iter().find(|(e, _)| *e > requested)?;
        match self.entries.iter().rev().find(|(e, _)| *e <= requested) {
            Some((floor, _)) => Some((*floor, higher.1)),
            None => Some((requested, higher.1)),
        }
    }

    /// Removes entries starting at or after `end` (the log was truncated to `end`).
    pub(crate) fn truncate_from_end(&mut self, end: Offset) -> Result<(), CheckpointError> {
        let before = self.entries.len();
        self.entries.retain(|(_, o)| *o < end);
        if self.entries.len() != before {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Drops entries wholly below the new log start: the latest entry starting at or before
    /// `start` is kept and moved to `start` (Kafka's `truncateFromStart`).
    pub(crate) fn truncate_from_start(&mut self, start: Offset) -> Result<(), CheckpointError> {
        let Some(idx) = self.entries.iter().rposition(|(_, o)| *o <= start) else {
            return Ok(());
        };
        if idx == 0 && self.entries[0].1 == start {
            return Ok(());
        }
        self.entries.drain(..idx);
        self.entries[0].1 = start;
        self.checkpoint()
    }

    /// Empties the cache (the log was emptied).
    pub(crate) fn clear(&mut self) -> Result<(), CheckpointError> {
        self.entries.clear();
        self.checkpoint()
    }

    fn checkpoint(&self) -> Result<(), CheckpointError> {
        write_epoch_checkpoint(&self.path, &self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_with(dir: &Path, entries: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache::load(dir).unwrap();
        for (e, o) in entries {
            c.assign(*e, Offset(*o)).unwrap();
        }
        c
    }

    #[test]
    fn end_offset_for_follows_kafka_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache_with(dir.path(), &[(1, 0), (3, 10), (6, 25)]);
        let leo = Offset(40);
        assert_eq!(c.end_offset_for(6, leo), Some((6, leo)));
        assert_eq!(c.end_offset_for(3, leo), Some((3, Offset(25))));
        // Unknown epoch between known ones: floor epoch, start of the next one.
        assert_eq!(c.end_offset_for(4, leo), Some((3, Offset(25))));
        // Below every known epoch: the requested epoch, start of the first one.
        assert_eq!(c.end_offset_for(0, leo), Some((0, Offset(0))));
        // Above every known epoch, or undefined.
        assert_eq!(c.end_offset_for(7, leo), None);
        assert_eq!(c.end_offset_for(-1, leo), None);
    }

    #[test]
    fn assign_ignores_old_epochs_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cache_with(dir.path(), &[(1, 0), (2, 5)]);
        assert!(!c.assign(1, Offset(9)).unwrap());
        assert!(!c.assign(2, Offset(9)).unwrap());
        assert!(c.assign(4, Offset(9)).unwrap());
        let reloaded = EpochCache::load(dir.path()).unwrap();
        assert_eq!(
            reloaded.entries(),
            &[(1, Offset(0)), (2, Offset(5)), (4, Offset(9))]
        );
    }

    #[test]
    fn truncation_from_either_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cache_with(dir.path(), &[(1, 0), (3, 10), (6, 25)]);
        c.truncate_from_end(Offset(25)).unwrap();
        assert_eq!(c.entries(), &[(1, Offset(0)), (3, Offset(10))]);
        c.truncate_from_start(Offset(12)).unwrap();
        assert_eq!(c.entries(), &[(3, Offset(12))]);
        assert_eq!(
            EpochCache::load(dir.path()).unwrap().entries(),
            &[(3, Offset(12))]
        );
    }
}
