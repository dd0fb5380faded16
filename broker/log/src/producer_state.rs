//! Idempotent-producer state of one partition: for every producer id, its epoch and the
//! sequence numbers and offsets of its last five batches (the most a producer keeps in
//! flight). The leader checks each produced batch against it: a retry of a batch already in
//! the log is answered with the original offsets instead of being appended again, a gap is
//! `OUT_OF_ORDER_SEQUENCE_NUMBER`, an older epoch is `INVALID_PRODUCER_EPOCH`.
//!
//! The state is derived from the batch headers, so it can always be rebuilt by scanning the
//! log. To make that cheap, it is written to `<offset>.snapshot` files (the state after every
//! batch below `offset`) when a segment rolls and when the log closes; opening loads the
//! newest snapshot at or below the log end and replays only the batch headers after it.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::batch::BatchHeader;
use crate::checkpoint::write_atomically;
use crate::error::{io_err, LogError};

/// File suffix of producer-state snapshots (Kafka's name).
pub(crate) const SNAPSHOT_SUFFIX: &str = "snapshot";
/// Batches remembered per producer: Kafka's `max.in.flight.requests.per.connection` bound
/// for idempotence.
pub const MAX_CACHED_BATCHES: usize = 5;
const SNAPSHOT_VERSION: u16 = 1;

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// What the log knows of one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first, at most [`MAX_CACHED_BATCHES`].
    batches: VecDeque<BatchMetadata>,
}

impl ProducerEntry {
    fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }

    fn last_timestamp(&self) -> i64 {
        self.batches.back().map_or(-1, |b| b.max_timestamp)
    }
}

/// The verdict on the producer batches of one leader append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Append it.
    Append,
    /// The (single) batch is already in the log at these offsets.
    Duplicate(BatchMetadata),
}

/// Kafka's sequence arithmetic: sequences wrap from `i32::MAX` to 0.
fn add_seq(seq: i32, delta: i32) -> i32 {
    if seq > i32::MAX - delta {
        delta - (i32::MAX - seq) - 1
    } else {
        seq + delta
    }
}

fn last_seq_of(h: &BatchHeader) -> i32 {
    add_seq(h.base_sequence, h.last_offset_delta)
}

/// Per-partition producer state. Not thread-safe on its own: it lives inside the `Log`.
#[derive(Debug, Default)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerState {
    /// Checks the producer batches of a leader append, in order, without changing anything.
    /// Only batches with a producer id take part. A duplicate is only recognised when it is
    /// the append's only batch (idempotent producers send one batch per partition and request,
    /// as Kafka requires from Produce v3 on).
    pub(crate) fn check(&self, headers: &[BatchHeader]) -> Result<Check, LogError> {
        // Producer id -> (epoch, last sequence) as it would be after the earlier batches.
        let mut staged: HashMap<i64, (i16, Option<i32>)> = HashMap::new();
        for h in headers.iter().filter(|h| h.producer_id >= 0) {
            let pid = h.producer_id;
            if h.base_sequence < 0 {
                return Err(LogError::InvalidRecord {
                    position: 0,
                    reason: format!("batch of producer {pid} has no sequence number"),
                });
            }
            let entry = self.producers.get(&pid);
            let (epoch, last_seq) = staged
                .get(&pid)
                .copied()
                .unwrap_or_else(|| entry.map_or((i16::MIN, None), |e| (e.epoch, e.last_seq())));
            if h.producer_epoch < epoch {
                return Err(LogError::InvalidProducerEpoch {
                    producer_id: pid,
                    epoch: h.producer_epoch,
                    current: epoch,
                });
            }
            if h.producer_epoch == epoch {
                if let Some(dup) = entry.filter(|_| !staged.contains_key(&pid)).and_then(|e| {
                    e.batches
                        .iter()
                        .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq_of(h))
                }) {
                    if headers.len() == 1 {
                        return Ok(Check::Duplicate(*dup));
                    }
                    return Err(LogError::InvalidRecord {
                        position: 0,
                        reason: format!(
                            "duplicate batch of producer {pid} in an append of several batches"
                        ),
                    });
                }
                if let Some(last) = last_seq {
                    if h.base_sequence != add_seq(last, 1) {
                        return Err(LogError::OutOfOrderSequence {
                            producer_id: pid,
                            epoch: h.producer_epoch,
                            expected: add_seq(last, 1),
                            got: h.base_sequence,
                        });
                    }
                }
            } else if epoch != i16::MIN && h.base_sequence != 0 {
                // A bumped epoch starts again at sequence 0. An unknown producer (its state
                // expired or was removed with old segments) may continue at any sequence.
                return Err(LogError::OutOfOrderSequence {
                    producer_id: pid,
                    epoch: h.producer_epoch,
                    expected: 0,
                    got: h.base_sequence,
                });
            }
            staged.insert(pid, (h.producer_epoch, Some(last_seq_of(h))));
        }
        Ok(Check::Append)
    }

    /// Records a batch written to the log (leader, follower or replay): a newer epoch resets
    /// the producer's batches; an older one is ignored.
    pub(crate) fn update(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
            });
        if h.producer_epoch < entry.epoch {
            return;
        }
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == MAX_CACHED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: h.base_sequence,
            last_seq: last_seq_of(h),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp,
        });
    }

    /// Forgets producers whose last batch is older than `now_ms - expiration_ms`
    /// (`producer.id.expiration.ms`). Returns how many were removed.
    pub(crate) fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp()) <= expiration_ms);
        before - self.producers.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    pub(crate) fn clear(&mut self) {
        self.producers.clear();
    }

    /// Epoch and last batch of a producer, for tests and diagnostics.
    pub(crate) fn last_batch(&self, producer_id: i64) -> Option<(i16, BatchMetadata)> {
        let e = self.producers.get(&producer_id)?;
        Some((e.epoch, *e.batches.back()?))
    }

    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(4 + self.producers.len() * 64);
        body.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.producers[&id];
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&b.max_timestamp.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(body.len() + 6);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn decode(buf: &[u8]) -> Result<ProducerState, String> {
        let mut r = Reader { buf, pos: 0 };
        let version = u16::from_be_bytes(r.take::<2>()?);
        if version != SNAPSHOT_VERSION {
            return Err(format!("unknown snapshot version {version}"));
        }
        let crc = u32::from_be_bytes(r.take::<4>()?);
        let computed = crc32c::crc32c(&buf[r.pos..]);
        if crc != computed {
            return Err(format!(
                "crc mismatch: file says {crc:#010x}, computed {computed:#010x}"
            ));
        }
        let count = u32::from_be_bytes(r.take::<4>()?);
        let mut producers = HashMap::new();
        for _ in 0..count {
            let id = i64::from_be_bytes(r.take::<8>()?);
            let epoch = i16::from_be_bytes(r.take::<2>()?);
            let n = r.take::<1>()?[0] as usize;
            if n > MAX_CACHED_BATCHES {
                return Err(format!("producer {id} has {n} batches"));
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    first_seq: i32::from_be_bytes(r.take::<4>()?),
                    last_seq: i32::from_be_bytes(r.take::<4>()?),
                    first_offset: i64::from_be_bytes(r.take::<8>()?),
                    last_offset: i64::from_be_bytes(r.take::<8>()?),
                    max_timestamp: i64::from_be_bytes(r.take::<8>()?),
                });
            }
            producers.insert(id, ProducerEntry { epoch, batches });
        }
        if r.pos != buf.len() {
            return Err(format!("{} trailing bytes", buf.len() - r.pos));
        }
        Ok(ProducerState { producers })
    }

    /// Writes the state as the snapshot at `offset` (temp file, fsync, rename).
    pub(crate) fn write_snapshot(&self, dir: &Path, offset: i64) -> Result<(), LogError> {
        write_atomically(&snapshot_path(dir, offset), &self.encode())?;
        Ok(())
    }

    /// Writes the snapshot for `offset` without fsyncing it, for a roll, which must not wait for
    /// the disk under the log's lock: a crash can leave it torn, and [`Self::load_latest`]
    /// discards a torn snapshot (CRC) and replays instead. Returns its path for a later fsync.
    pub(crate) fn write_snapshot_unsynced(
        &self,
        dir: &Path,
        offset: i64,
    ) -> Result<PathBuf, LogError> {
        let path = snapshot_path(dir, offset);
        fs::write(&path, self.encode()).map_err(io_err("write producer snapshot", &path))?;
        Ok(path)
    }

    /// Loads the newest readable snapshot at or below `max_offset`, deleting snapshots above
    /// it and unreadable ones. Returns the state and the offset to replay from (`None` when no
    /// snapshot could be used: replay from the log start).
    pub(crate) fn load_latest(
        dir: &Path,
        max_offset: i64,
    ) -> Result<(ProducerState, Option<i64>), LogError> {
        let mut offsets = list_snapshots(dir)?;
        offsets.sort_unstable();
        for &off in offsets.iter().filter(|o| **o > max_offset) {
            remove(&snapshot_path(dir, off))?;
        }
        for &off in offsets.iter().rev().filter(|o| **o <= max_offset) {
            let path = snapshot_path(dir, off);
            let bytes = fs::read(&path).map_err(io_err("read producer snapshot", &path))?;
            match ProducerState::decode(&bytes) {
                Ok(state) => return Ok((state, Some(off))),
                Err(reason) => {
                    warn!(file = %path.display(), %reason, "discarding unreadable producer snapshot");
                    remove(&path)?;
                }
            }
        }
        Ok((ProducerState::default(), None))
    }
}

/// Deletes snapshots below `offset` (data below the first segment is gone, so they can no
/// longer be replayed from), keeping the newest of them if no snapshot is at or above it.
pub(crate) fn delete_snapshots_below(dir: &Path, offset: i64) -> Result<(), LogError> {
    let mut offsets = list_snapshots(dir)?;
    offsets.sort_unstable();
    for off in offsets.into_iter().filter(|o| *o < offset) {
        remove(&snapshot_path(dir, off))?;
    }
    Ok(())
}

/// Deletes every snapshot above `offset` (after a truncation).
pub(crate) fn delete_snapshots_above(dir: &Path, offset: i64) -> Result<(), LogError> {
    for off in list_snapshots(dir)?.into_iter().filter(|o| *o > offset) {
        remove(&snapshot_path(dir, off))?;
    }
    Ok(())
}

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{SNAPSHOT_SUFFIX}"))
}

fn list_snapshots(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list partition directory", dir))? {
        let entry = entry.map_err(io_err("list partition directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".snapshot") {
            if stem.len() == 20 {
                if let Ok(off) = stem.parse::<i64>() {
                    out.push(off);
                }
            }
        }
    }
    Ok(out)
}

fn remove(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_err("remove producer snapshot", path)(e))
        }
        _ => Ok(()),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.pos + N;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| "snapshot ends early".to_string())?;
        self.pos = end;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 1000,
            max_timestamp: 1000 + base_offset,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(&[header(7, 0, 0, 3, 0)]).unwrap(), Check::Append);
        s.update(&header(7, 0, 0, 3, 10));
        s.update(&header(7, 0, 3, 2, 13));
        let Check::Duplicate(d) = s.check(&[header(7, 0, 0, 3, 0)]).unwrap() else {
            panic!("retry of the first batch must be a duplicate");
        };
        assert_eq!((d.first_offset, d.last_offset), (10, 12));
        assert_eq!(s.check(&[header(7, 0, 5, 1, 0)]).unwrap(), Check::Append);
    }

    #[test]
    fn gaps_and_overlaps_are_out_of_order() {
        let mut s = ProducerState::default();
        s.update(&header(7, 0, 0, 3, 0));
        for seq in [4, 2, 1] {
            assert!(matches!(
                s.check(&[header(7, 0, seq, 1, 0)]),
                Err(LogError::OutOfOrderSequence { expected: 3, .. })
            ));
        }
    }

    #[test]
    fn old_epochs_are_fenced_and_new_epochs_start_at_zero() {
        let mut s = ProducerState::default();
        s.update(&header(7, 2, 0, 3, 0));
        assert!(matches!(
            s.check(&[header(7, 1, 3, 1, 0)]),
            Err(LogError::InvalidProducerEpoch { current: 2, .. })
        ));
        assert!(matches!(
            s.check(&[header(7, 3, 5, 1, 0)]),
            Err(LogError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(s.check(&[header(7, 3, 0, 1, 0)]).unwrap(), Check::Append);
        s.update(&header(7, 3, 0, 1, 3));
        assert_eq!(s.last_batch(7).unwrap().0, 3);
    }

    #[test]
    fn unknown_producers_may_start_anywhere() {
        let s = ProducerState::default();
        assert_eq!(s.check(&[header(9, 0, 42, 1, 0)]).unwrap(), Check::Append);
    }

    #[test]
    fn several_batches_in_one_append_are_checked_in_order() {
        let mut s = ProducerState::default();
        s.update(&header(7, 0, 0, 2, 0));
        let ok = [header(7, 0, 2, 2, 0), header(7, 0, 4, 1, 0)];
        assert_eq!(s.check(&ok).unwrap(), Check::Append);
        let gap = [header(7, 0, 2, 2, 0), header(7, 0, 5, 1, 0)];
        assert!(s.check(&gap).is_err());
        let dup = [header(7, 0, 0, 2, 0), header(7, 0, 2, 1, 0)];
        assert!(matches!(s.check(&dup), Err(LogError::InvalidRecord { .. })));
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut s = ProducerState::default();
        for i in 0..6 {
            s.update(&header(7, 0, i, 1, i64::from(i)));
        }
        // The first batch fell out: its retry looks like a sequence from the past.
        assert!(s.check(&[header(7, 0, 0, 1, 0)]).is_err());
        assert!(matches!(
            s.check(&[header(7, 0, 1, 1, 0)]).unwrap(),
            Check::Duplicate(_)
        ));
    }

    #[test]
    fn sequences_wrap() {
        assert_eq!(add_seq(i32::MAX, 1), 0);
        assert_eq!(add_seq(i32::MAX - 1, 3), 1);
        let mut s = ProducerState::default();
        s.update(&header(7, 0, i32::MAX - 1, 2, 0));
        assert_eq!(s.check(&[header(7, 0, 0, 1, 0)]).unwrap(), Check::Append);
    }

    #[test]
    fn snapshots_round_trip_and_reject_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.update(&header(i64::from(i % 3), 1, i, 1, i64::from(i)));
        }
        s.write_snapshot(dir.path(), 7).unwrap();
        ProducerState::default()
            .write_snapshot(dir.path(), 20)
            .unwrap();
        let (loaded, from) = ProducerState::load_latest(dir.path(), 10).unwrap();
        assert_eq!(from, Some(7));
        assert_eq!(loaded.producers, s.producers);
        assert!(!snapshot_path(dir.path(), 20).exists(), "above the log end");

        let path = snapshot_path(dir.path(), 7);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        let (loaded, from) = ProducerState::load_latest(dir.path(), 10).unwrap();
        assert_eq!((loaded.len(), from), (0, None));
        assert!(!path.exists(), "corrupt snapshots are removed");
    }

    #[test]
    fn expiry_forgets_idle_producers() {
        let mut s = ProducerState::default();
        s.update(&header(1, 0, 0, 1, 0)); // max timestamp 1000
        s.update(&header(2, 0, 0, 1, 5000)); // max timestamp 6000
        assert_eq!(s.expire(7000, 2000), 1);
        assert!(s.last_batch(1).is_none() && s.last_batch(2).is_some());
    }
}
