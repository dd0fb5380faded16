//! One log directory (`log.dirs` entry): the partition directories in it, Kafka's dir-level
//! checkpoint files (`recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`) and the
//! `.kafka_cleanshutdown` marker.
//!
//! It opens logs lazily (the broker decides which partitions it hosts), runs retention and
//! flushing over them and deletes partitions. It does not schedule anything: the broker calls
//! `run_retention`, `flush_all` and `checkpoint` on its own timers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use crate::checkpoint::{read_offset_checkpoint, sync_dir, LastWritten};
use crate::config::LogConfig;
use crate::error::{io_err, LogError};
use crate::log::{CleanOutcome, Log, RetentionOutcome};
use crate::types::{Offset, TopicPartition};

pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
pub const CLEAN_SHUTDOWN_MARKER: &str = ".kafka_cleanshutdown";
/// Kafka's per-directory file of first dirty offsets of compacted logs.
pub const CLEANER_OFFSET_CHECKPOINT: &str = "cleaner-offset-checkpoint";
/// Suffix of a partition directory being deleted: `<topic>-<partition>.<hex id>-delete`.
pub const DELETE_DIR_SUFFIX: &str = "-delete";

/// A shared handle to one partition log.
pub type SharedLog = Arc<RwLock<Log>>;

/// The logs of one log directory.
///
/// Lock order: the manager's own lock, then a log's lock. Callers must not call manager
/// methods while holding a log's lock (`checkpoint`, `flush_all`, `shutdown`,
/// `run_retention` and `open_or_create` take log locks).
#[derive(Debug)]
pub struct LogManager {
    dir: PathBuf,
    clean_shutdown: bool,
    /// Guards the set of opened logs; held while a log is opened (recovery may take a while).
    state: Mutex<State>,
    /// Serialises the writers of the dir-level checkpoints, which write (and fsync) without
    /// holding `state`: taken before the values are read, so a later write never carries
    /// older values than an earlier one. It holds what was last written, so an unchanged
    /// checkpoint is not rewritten.
    checkpoint_writer: Mutex<LastWritten>,
}

#[derive(Debug, Default)]
struct State {
    logs: HashMap<TopicPartition, SharedLog>,
    /// Partition directories found at start and not opened yet.
    unopened: BTreeSet<TopicPartition>,
    recovery_points: BTreeMap<TopicPartition, Offset>,
    log_starts: BTreeMap<TopicPartition, Offset>,
    cleaner_offsets: BTreeMap<TopicPartition, Offset>,
}

fn read_log<'a>(
    tp: &TopicPartition,
    log: &'a SharedLog,
) -> Result<std::sync::RwLockReadGuard<'a, Log>, LogError> {
    log.read().map_err(|_| LogError::Poisoned {
        partition: tp.clone(),
    })
}

fn write_log<'a>(
    tp: &TopicPartition,
    log: &'a SharedLog,
) -> Result<std::sync::RwLockWriteGuard<'a, Log>, LogError> {
    log.write().map_err(|_| LogError::Poisoned {
        partition: tp.clone(),
    })
}

impl LogManager {
    /// Opens (creating if missing) a log directory: reads both checkpoints, notes and removes
    /// the clean-shutdown marker, lists partition directories and removes `-delete` ones.
    /// Logs are not opened here.
    pub fn open(dir: &Path) -> Result<LogManager, LogError> {
        fs::create_dir_all(dir).map_err(io_err("create log directory", dir))?;
        let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
        let clean_shutdown = marker.exists();
        if clean_shutdown {
            fs::remove_file(&marker).map_err(io_err("remove clean-shutdown marker", &marker))?;
        }
        let mut state = State {
            recovery_points: read_offset_checkpoint(&dir.join(RECOVERY_POINT_CHECKPOINT))?,
            log_starts: read_offset_checkpoint(&dir.join(LOG_START_OFFSET_CHECKPOINT))?,
            cleaner_offsets: read_offset_checkpoint(&dir.join(CLEANER_OFFSET_CHECKPOINT))?,
            ..State::default()
        };
        for entry in fs::read_dir(dir).map_err(io_err("list log directory", dir))? {
            let entry = entry.map_err(io_err("list log directory", dir))?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(DELETE_DIR_SUFFIX) {
                info!(dir = %path.display(), "removing partition directory marked for deletion");
                fs::remove_dir_all(&path).map_err(io_err("remove deleted partition", &path))?;
            } else if let Ok(tp) = TopicPartition::parse_dir_name(&name) {
                state.unopened.insert(tp);
            }
        }
        info!(dir = %dir.display(), clean_shutdown, partitions = state.unopened.len(), "opened log directory");
        Ok(LogManager {
            dir: dir.to_path_buf(),
            clean_shutdown,
            state: Mutex::new(state),
            checkpoint_writer: Mutex::new(LastWritten::default()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the previous run left the clean-shutdown marker.
    pub fn was_clean_shutdown(&self) -> bool {
        self.clean_shutdown
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The map stays consistent even if a holder panicked: every update is one insert/remove.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Partitions present in this directory, opened or not.
    pub fn existing(&self) -> Vec<TopicPartition> {
        let state = self.state();
        let mut all: BTreeSet<TopicPartition> = state.unopened.clone();
        all.extend(state.logs.keys().cloned());
        all.into_iter().collect()
    }

    /// The topic id a partition's directory was created for (`partition.metadata`), without
    /// opening its log; `None` when the directory has none.
    pub fn stored_topic_id(&self, tp: &TopicPartition) -> Result<Option<[u8; 16]>, LogError> {
        if let Some(log) = self.get(tp) {
            return Ok(Some(read_log(tp, &log)?.topic_id()));
        }
        let path = self.dir.join(tp.to_string()).join("partition.metadata");
        Ok(crate::checkpoint::read_partition_metadata(&path)?)
    }

    /// The open log of a partition.
    pub fn get(&self, tp: &TopicPartition) -> Option<SharedLog> {
        self.state().logs.get(tp).cloned()
    }

    /// Returns the open log, opens an existing directory (recovering from the checkpointed
    /// recovery point, restoring the checkpointed log start) or creates the partition.
    /// An existing directory with a different (non-zero) topic id is `InconsistentTopicId`.
    pub fn open_or_create(
        &self,
        tp: &TopicPartition,
        topic_id: [u8; 16],
        config: LogConfig,
    ) -> Result<SharedLog, LogError> {
        let mut state = self.state();
        if let Some(log) = state.logs.get(tp) {
            let found = read_log(tp, log)?.topic_id();
            check_topic_id(&self.dir.join(tp.to_string()), topic_id, found)?;
            return Ok(log.clone());
        }
        let path = self.dir.join(tp.to_string());
        let log = if path.is_dir() {
            let recovery_point = state.recovery_points.get(tp).copied().unwrap_or(Offset(0));
            let mut log = Log::open(&path, config, recovery_point, self.clean_shutdown)?;
            check_topic_id(&path, topic_id, log.topic_id())?;
            if let Some(start) = state.log_starts.get(tp) {
                log.restore_log_start_offset(*start)?;
            }
            if let Some(dirty) = state.cleaner_offsets.get(tp) {
                log.restore_first_dirty_offset(*dirty);
            }
            log
        } else {
            Log::create(&self.dir, tp, topic_id, config)?
        };
        state.unopened.remove(tp);
        let shared = Arc::new(RwLock::new(log));
        state.logs.insert(tp.clone(), shared.clone());
        Ok(shared)
    }

    /// Deletes a partition: renames its directory to `<topic>-<p>.<hex>-delete`, then removes
    /// it. Handles still held elsewhere keep working on unlinked files until dropped.
    pub fn delete(&self, tp: &TopicPartition) -> Result<(), LogError> {
        let mut state = self.state();
        let path = self.dir.join(tp.to_string());
        if state.logs.remove(tp).is_none() && !state.unopened.remove(tp) && !path.is_dir() {
            return Err(LogError::UnknownPartition {
                partition: tp.clone(),
            });
        }
        state.recovery_points.remove(tp);
        state.log_starts.remove(tp);
        state.cleaner_offsets.remove(tp);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let target = self
            .dir
            .join(format!("{tp}.{nanos:032x}{DELETE_DIR_SUFFIX}"));
        fs::rename(&path, &target).map_err(io_err("rename for deletion", &path))?;
        // The renamed directory is no partition any more (a leftover is removed on open):
        // freeing its blocks does not need the manager's lock.
        drop(state);
        sync_dir(&self.dir).map_err(io_err("fsync directory", &self.dir))?;
        fs::remove_dir_all(&target).map_err(io_err("remove partition directory", &target))?;
        info!(partition = %tp, "deleted partition log");
        Ok(())
    }

    /// Writes the dir-level checkpoints (temp file, fsync, rename) from the open logs, keeping
    /// the entries of partitions not opened yet. The values are read under the manager's lock;
    /// the files are written after it is released, so opening or deleting a partition (topic
    /// creation and deletion) does not wait for the fsyncs.
    pub fn checkpoint(&self) -> Result<(), LogError> {
        let mut written = self.writer();
        let (recovery_points, log_starts, cleaner_offsets) = {
            let mut state = self.state();
            let logs: Vec<(TopicPartition, SharedLog)> = state
                .logs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (tp, log) in logs {
                let log = read_log(&tp, &log)?;
                state
                    .recovery_points
                    .insert(tp.clone(), log.recovery_point());
                state.log_starts.insert(tp.clone(), log.log_start_offset());
                if log.config().compact {
                    state.cleaner_offsets.insert(tp, log.first_dirty_offset());
                }
            }
            (
                state.recovery_points.clone(),
                state.log_starts.clone(),
                state.cleaner_offsets.clone(),
            )
        };
        written
            .write_offset_checkpoint(&self.dir.join(RECOVERY_POINT_CHECKPOINT), &recovery_points)?;
        written
            .write_offset_checkpoint(&self.dir.join(LOG_START_OFFSET_CHECKPOINT), &log_starts)?;
        written
            .write_offset_checkpoint(&self.dir.join(CLEANER_OFFSET_CHECKPOINT), &cleaner_offsets)?;
        Ok(())
    }

    fn writer(&self) -> MutexGuard<'_, LastWritten> {
        self.checkpoint_writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Cleans one compacted log if due (see [`Log::plan_clean`]), below `upper` (the high
    /// watermark). The cleaned segments are built under the log's read lock, so appends and
    /// reads go on meanwhile; only the swap takes the write lock (and is abandoned if the
    /// section changed). On success the cleaner checkpoint is written at once, so a restart
    /// does not clean the same section again.
    pub fn clean(
        &self,
        tp: &TopicPartition,
        log: &SharedLog,
        now_ms: i64,
        upper: Offset,
    ) -> Result<Option<CleanOutcome>, LogError> {
        let built = {
            let guard = read_log(tp, log)?;
            let Some(plan) = guard.plan_clean(now_ms, upper) else {
                return Ok(None);
            };
            guard.build_clean(plan)?
        };
        let outcome = write_log(tp, log)?.install_clean(built)?;
        if let Some(o) = &outcome {
            let mut written = self.writer();
            let offsets = {
                let mut state = self.state();
                state
                    .cleaner_offsets
                    .insert(tp.clone(), o.first_dirty_offset);
                state.cleaner_offsets.clone()
            };
            written.write_offset_checkpoint(&self.dir.join(CLEANER_OFFSET_CHECKPOINT), &offsets)?;
        }
        Ok(outcome)
    }

    /// Cleans every open compacted log that is due; `upper` gives each partition's bound
    /// (`None` skips it). A failing log is logged and skipped.
    pub fn run_cleaner(
        &self,
        now_ms: i64,
        upper: impl Fn(&TopicPartition) -> Option<Offset>,
    ) -> Vec<(TopicPartition, CleanOutcome)> {
        let mut out = Vec::new();
        for (tp, log) in self.all_logs() {
            let compact = read_log(&tp, &log).is_ok_and(|l| l.config().compact);
            let Some(bound) = upper(&tp).filter(|_| compact) else {
                continue;
            };
            match self.clean(&tp, &log, now_ms, bound) {
                Ok(Some(o)) => out.push((tp, o)),
                Ok(None) => {}
                Err(e) => warn!(partition = %tp, error = %e, "cleaning failed"),
            }
        }
        out
    }

    fn all_logs(&self) -> Vec<(TopicPartition, SharedLog)> {
        let mut logs: Vec<_> = self
            .state()
            .logs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        logs.sort_by(|a, b| a.0.cmp(&b.0));
        logs
    }

    /// Fsyncs the segments that rolled since the last flush, in every open log, without
    /// holding a log's lock across the fsyncs (appends go on meanwhile), and moves their
    /// recovery points. Returns how many logs moved. A failing log is logged and skipped.
    pub fn flush_rolled(&self) -> usize {
        let mut moved = 0;
        for (tp, log) in self.all_logs() {
            let Some(flush) = read_log(&tp, &log).ok().and_then(|l| l.rolled_flush()) else {
                continue;
            };
            if let Err(e) = flush.sync() {
                warn!(partition = %tp, error = %e, "flushing rolled segments failed");
                continue;
            }
            if write_log(&tp, &log).is_ok_and(|mut l| l.flushed_to(&flush)) {
                moved += 1;
            }
        }
        moved
    }

    /// Flushes every open log (advancing their recovery points).
    pub fn flush_all(&self) -> Result<(), LogError> {
        for (tp, log) in self.all_logs() {
            write_log(&tp, &log)?.flush()?;
        }
        Ok(())
    }

    /// Closes every log, writes the checkpoints, then the clean-shutdown marker.
    pub fn shutdown(&self) -> Result<(), LogError> {
        for (tp, log) in self.all_logs() {
            write_log(&tp, &log)?.close()?;
        }
        self.checkpoint()?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_MARKER);
        fs::write(&marker, b"").map_err(io_err("write clean-shutdown marker", &marker))?;
        sync_dir(&self.dir).map_err(io_err("fsync directory", &self.dir))?;
        info!(dir = %self.dir.display(), "log directory shut down cleanly");
        Ok(())
    }

    /// Applies retention to every open log; returns what changed. A failing log is logged
    /// and skipped so one bad partition does not stop retention elsewhere.
    pub fn run_retention(&self, now_ms: i64) -> Vec<(TopicPartition, RetentionOutcome)> {
        let mut out = Vec::new();
        for (tp, log) in self.all_logs() {
            // The dropped segments' files are removed after the write lock is released: appends
            // never wait for the file system to free a segment's blocks.
            let result = write_log(&tp, &log).map(|mut l| {
                let outcome = l.enforce_retention(now_ms);
                (outcome, l.take_deleted_files())
            });
            let result = result.and_then(|(outcome, files)| {
                if let Err(e) = files.remove() {
                    warn!(partition = %tp, error = %e, "removing deleted segment files failed");
                }
                outcome
            });
            match result {
                Ok(o) if o.deleted_segments > 0 => out.push((tp, o)),
                Ok(_) => {}
                Err(e) => warn!(partition = %tp, error = %e, "retention failed"),
            }
        }
        out
    }

    /// Forgets, in every log, idempotent producers whose last batch is older than
    /// `expiration_ms`. Returns how many producer states were removed in all.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.all_logs()
            .iter()
            .filter_map(|(tp, log)| write_log(tp, log).ok())
            .map(|mut l| l.expire_producers(now_ms, expiration_ms))
            .sum()
    }

    /// Total bytes of all open logs.
    pub fn total_size_bytes(&self) -> u64 {
        self.all_logs()
            .iter()
            .filter_map(|(tp, log)| read_log(tp, log).ok().map(|l| l.size_bytes()))
            .sum()
    }
}

fn check_topic_id(path: &Path, expected: [u8; 16], found: [u8; 16]) -> Result<(), LogError> {
    if found != [0; 16] && found != expected {
        return Err(LogError::InconsistentTopicId {
            path: path.to_path_buf(),
            expected,
            found,
        });
    }
    Ok(())
}
