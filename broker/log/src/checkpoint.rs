//! Kafka's small text files, byte-compatible with Kafka: the dir-level offset checkpoints
//! (`recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`), the per-partition
//! `leader-epoch-checkpoint` and `partition.metadata`, plus the crash-safe way to replace them
//! (temp file, fsync, rename, fsync of the directory).
//!
//! It does not decide when to checkpoint; the log and the manager do.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::types::{Offset, TopicPartition};

/// Version written on the first line of every offset-style checkpoint.
const CHECKPOINT_VERSION: &str = "0";

/// A checkpoint file that could not be read, parsed or written.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The OS error is also in the message, so that every log line that shows this error
    /// says why (e.g. "No space left on device"); reports that walk the source chain leave out
    /// a cause its predecessor's message already contains.
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("malformed checkpoint {path} at line {line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> CheckpointError + 'a {
    move |source| CheckpointError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Replaces `path` with `contents` so that a crash leaves either the old or the new file:
/// writes `<path>.tmp`, fsyncs it, renames it over `path`, then fsyncs the directory.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), CheckpointError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(contents).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir).map_err(io_err("fsync directory", dir))?;
    }
    Ok(())
}

/// Fsyncs a directory so that renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a file, `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, CheckpointError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// Parses Kafka's `version\ncount\n<entry>\n...` layout, returning the entry lines split on
/// whitespace, each with exactly `fields` fields.
fn parse_entries<'a>(
    path: &Path,
    text: &'a str,
    fields: usize,
) -> Result<Vec<Vec<&'a str>>, CheckpointError> {
    let malformed = |line: usize, reason: String| CheckpointError::Malformed {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut lines = text.lines();
    let version = lines.next().unwrap_or("").trim();
    if version != CHECKPOINT_VERSION {
        return Err(malformed(1, format!("unsupported version {version:?}")));
    }
    let count: usize = lines
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .map_err(|_| malformed(2, "entry count is not a number".into()))?;
    let entries: Vec<Vec<&str>> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    if entries.len() != count {
        return Err(malformed(
            2,
            format!("expected {count} entries, found {}", entries.len()),
        ));
    }
    for (i, e) in entries.iter().enumerate() {
        if e.len() != fields {
            return Err(malformed(i + 3, format!("expected {fields} fields")));
        }
    }
    Ok(entries)
}

fn parse_num<T: std::str::FromStr>(
    path: &Path,
    line: usize,
    s: &str,
) -> Result<T, CheckpointError> {
    s.parse().map_err(|_| CheckpointError::Malformed {
        path: path.to_path_buf(),
        line,
        reason: format!("{s:?} is not a number"),
    })
}

/// Reads a dir-level `topic partition offset` checkpoint; a missing file is empty.
pub fn read_offset_checkpoint(
    path: &Path,
) -> Result<BTreeMap<TopicPartition, Offset>, CheckpointError> {
    let Some(text) = read_optional(path)? else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for (i, e) in parse_entries(path, &text, 3)?.into_iter().enumerate() {
        let partition = parse_num(path, i + 3, e[1])?;
        let offset = parse_num(path, i + 3, e[2])?;
        out.insert(TopicPartition::new(e[0], partition), Offset(offset));
    }
    Ok(out)
}

/// Writes a dir-level `topic partition offset` checkpoint atomically.
pub fn write_offset_checkpoint(
    path: &Path,
    entries: &BTreeMap<TopicPartition, Offset>,
) -> Result<(), CheckpointError> {
    write_atomically(path, offset_checkpoint_text(entries).as_bytes())
}

fn offset_checkpoint_text(entries: &BTreeMap<TopicPartition, Offset>) -> String {
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", entries.len());
    for (tp, offset) in entries {
        text.push_str(&format!("{} {} {}\n", tp.topic, tp.partition, offset.0));
    }
    text
}

/// What one writer last wrote to each of its checkpoint files, so that a checkpoint whose
/// text has not changed is not written again: the periodic pass would otherwise rewrite, fsync
/// and rename every file, with two fsyncs each, every 5 s on an idle broker.
#[derive(Debug, Default)]
pub struct LastWritten(HashMap<PathBuf, Vec<u8>>);

impl LastWritten {
    /// [`write_offset_checkpoint`], unless the file exists and holds exactly what this writer
    /// last wrote there. Returns whether it wrote.
    pub fn write_offset_checkpoint(
        &mut self,
        path: &Path,
        entries: &BTreeMap<TopicPartition, Offset>,
    ) -> Result<bool, CheckpointError> {
        let text = offset_checkpoint_text(entries).into_bytes();
        if self.0.get(path) == Some(&text) && path.exists() {
            return Ok(false);
        }
        // Forgotten first: after a failed write the file's content is not known.
        self.0.remove(path);
        write_atomically(path, &text)?;
        self.0.insert(path.to_path_buf(), text);
        Ok(true)
    }
}

/// Reads a `leader-epoch-checkpoint` (`epoch startOffset` lines); a missing file is empty.
pub fn read_epoch_checkpoint(path: &Path) -> Result<Vec<(i32, Offset)>, CheckpointError> {
    let Some(text) = read_optional(path)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, e) in parse_entries(path, &text, 2)?.into_iter().enumerate() {
        out.push((
            parse_num(path, i + 3, e[0])?,
            Offset(parse_num(path, i + 3, e[1])?),
        ));
    }
    Ok(out)
}

/// Writes a `leader-epoch-checkpoint` atomically.
pub fn write_epoch_checkpoint(
    path: &Path,
    entries: &[(i32, Offset)],
) -> Result<(), CheckpointError> {
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", entries.len());
    for (epoch, offset) in entries {
        text.push_str(&format!("{epoch} {}\n", offset.0));
    }
    write_atomically(path, text.as_bytes())
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Kafka's `Uuid.toString()`: URL-safe base64 without padding (22 characters).
pub fn topic_id_to_string(id: &[u8; 16]) -> String {
    let mut out = String::with_capacity(22);
    for chunk in id.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Inverse of [`topic_id_to_string`]; `None` unless it is 22 valid characters.
pub fn topic_id_from_string(s: &str) -> Option<[u8; 16]> {
    let s = s.as_bytes();
    if s.len() != 22 {
        return None;
    }
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = Vec::with_capacity(16);
    for c in s {
        let v = B64.iter().position(|b| b == c)? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    // The last character carries 4 padding bits that must be zero in canonical form.
    if bits != 0 {
        return None;
    }
    out.try_into().ok()
}

/// Writes `partition.metadata` (`version: 0`, `topic_id: <base64>`) atomically.
pub fn write_partition_metadata(path: &Path, topic_id: &[u8; 16]) -> Result<(), CheckpointError> {
    let text = format!("version: 0\ntopic_id: {}\n", topic_id_to_string(topic_id));
    write_atomically(path, text.as_bytes())
}

/// Reads the topic id from `partition.metadata`; `None` if the file does not exist.
pub fn read_partition_metadata(path: &Path) -> Result<Option<[u8; 16]>, CheckpointError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let malformed = |line: usize, reason: &str| CheckpointError::Malformed {
        path: path.to_path_buf(),
        line,
        reason: reason.to_string(),
    };
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("version: 0") {
        return Err(malformed(1, "expected \"version: 0\""));
    }
    let id = lines
        .next()
        .and_then(|l| l.trim().strip_prefix("topic_id:"))
        .ok_or_else(|| malformed(2, "expected \"topic_id: <id>\""))?;
    topic_id_from_string(id.trim())
        .map(Some)
        .ok_or_else(|| malformed(2, "topic id is not 22 base64url characters"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_offset_checkpoint_is_not_written_again() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replication-offset-checkpoint");
        let inode = || fs::metadata(&path).unwrap().ino();
        let mut entries = BTreeMap::new();
        entries.insert(TopicPartition::new("t", 0), Offset(5));
        let mut written = LastWritten::default();
        assert!(written.write_offset_checkpoint(&path, &entries).unwrap());
        let first = inode();
        // Same entries: no new file (every write renames a new one into place).
        assert!(!written.write_offset_checkpoint(&path, &entries).unwrap());
        assert_eq!(inode(), first);
        // A changed offset is written.
        entries.insert(TopicPartition::new("t", 0), Offset(6));
        assert!(written.write_offset_checkpoint(&path, &entries).unwrap());
        assert_eq!(read_offset_checkpoint(&path).unwrap(), entries);
        // A file removed behind the writer's back is written again.
        fs::remove_file(&path).unwrap();
        assert!(written.write_offset_checkpoint(&path, &entries).unwrap());
        assert_eq!(read_offset_checkpoint(&path).unwrap(), entries);
        // Another writer's memory is its own: a fresh one writes.
        assert!(LastWritten::default()
            .write_offset_checkpoint(&path, &entries)
            .unwrap());
    }

    #[test]
    fn offset_checkpoint_round_trips_in_kafka_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recovery-point-offset-checkpoint");
        assert!(read_offset_checkpoint(&path).unwrap().is_empty());
        let mut entries = BTreeMap::new();
        entries.insert(TopicPartition::new("a-b", 0), Offset(42));
        entries.insert(TopicPartition::new("c", 3), Offset(7));
        write_offset_checkpoint(&path, &entries).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, "0\n2\na-b 0 42\nc 3 7\n");
        assert_eq!(read_offset_checkpoint(&path).unwrap(), entries);
        assert!(!dir
            .path()
            .join("recovery-point-offset-checkpoint.tmp")
            .exists());
    }

    #[test]
    fn malformed_checkpoints_are_reported_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        for (text, line) in [("1\n0\n", 1), ("0\n2\nt 0 1\n", 2), ("0\n1\nt x 1\n", 3)] {
            fs::write(&path, text).unwrap();
            match read_offset_checkpoint(&path) {
                Err(CheckpointError::Malformed { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn epoch_checkpoint_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leader-epoch-checkpoint");
        let entries = vec![(0, Offset(0)), (3, Offset(120))];
        write_epoch_checkpoint(&path, &entries).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "0\n2\n0 0\n3 120\n");
        assert_eq!(read_epoch_checkpoint(&path).unwrap(), entries);
    }

    #[test]
    fn topic_id_matches_kafka_base64url() {
        // Kafka's Uuid.toString for 0x00..0x0f is Java's URL-safe base64 without padding.
        let id: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(topic_id_to_string(&id), "AAECAwQFBgcICQoLDA0ODw");
        assert_eq!(topic_id_to_string(&[0xff; 16]), "_____________________w");
        assert_eq!(topic_id_from_string("AAECAwQFBgcICQoLDA0ODw"), Some(id));
        assert_eq!(
            topic_id_from_string("_____________________w"),
            Some([0xff; 16])
        );
        assert_eq!(topic_id_from_string("short"), None);
        assert_eq!(topic_id_from_string("_____________________x"), None);
    }

    #[test]
    fn partition_metadata_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partition.metadata");
        assert_eq!(read_partition_metadata(&path).unwrap(), None);
        let id = [7u8; 16];
        write_partition_metadata(&path, &id).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!("version: 0\ntopic_id: {}\n", topic_id_to_string(&id))
        );
        assert_eq!(read_partition_metadata(&path).unwrap(), Some(id));
    }
}
