//! `meta.properties` in the log directory, as Kafka writes it: the cluster id (learnt from the
//! metadata quorum on the first start) and this node's id. A directory formatted for another
//! node is refused.

use std::path::{Path, PathBuf};

use crate::config::parse_properties;
use crate::fsutil::write_atomically;

/// Why `meta.properties` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MetaPropertiesError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} belongs to node {found}, not node {node_id}")]
    OtherNode {
        path: PathBuf,
        found: i32,
        node_id: i32,
    },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The cluster id stored in `meta.properties`, if the directory was formatted; refuses a
/// directory that belongs to another node, and a file that is not a complete
/// `meta.properties` (as a crash of another program, or a disk error, could leave it).
pub fn load(dir: &Path, node_id: i32) -> Result<Option<String>, MetaPropertiesError> {
    let path = dir.join("meta.properties");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(MetaPropertiesError::Corrupt {
                path,
                reason: "not a text file".to_owned(),
            })
        }
        Err(source) => return Err(MetaPropertiesError::Read { path, source }),
    };
    let props = parse_properties(&text);
    let corrupt = |reason: &str| MetaPropertiesError::Corrupt {
        path: path.clone(),
        reason: reason.to_owned(),
    };
    let found = props
        .get("node.id")
        .ok_or_else(|| corrupt("no node.id"))?
        .parse::<i32>()
        .map_err(|_| corrupt("node.id is not a number"))?;
    let cluster_id = props
        .get("cluster.id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| corrupt("no cluster.id"))?;
    if found != node_id {
        return Err(MetaPropertiesError::OtherNode {
            path,
            found,
            node_id,
        });
    }
    Ok(Some(cluster_id.clone()))
}

/// Writes `meta.properties` (atomically) with the cluster id the node belongs to.
pub fn store(dir: &Path, node_id: i32, cluster_id: &str) -> Result<(), MetaPropertiesError> {
    let text = format!("#\nversion=1\ncluster.id={cluster_id}\nnode.id={node_id}\n");
    let path = dir.join("meta.properties");
    write_atomically(&path, text.as_bytes())
        .map_err(|source| MetaPropertiesError::Write { path, source })
}

/// A new cluster id in Kafka's form.
pub fn new_cluster_id() -> String {
    base64_url(uuid::Uuid::new_v4().as_bytes())
}

/// Kafka's cluster-id form: URL-safe base64 of 16 bytes, no padding.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_id_is_stored_and_node_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(super::load(dir.path(), 1).expect("empty"), None);
        let a = super::new_cluster_id();
        assert_eq!(a.len(), 22);
        super::store(dir.path(), 1, &a).expect("store");
        assert_eq!(super::load(dir.path(), 1).expect("load"), Some(a));
        assert!(matches!(
            super::load(dir.path(), 2),
            Err(super::MetaPropertiesError::OtherNode { found: 1, .. })
        ));
    }

    #[test]
    fn a_corrupt_file_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.properties");
        for (content, reason) in [
            (&b"\xff\xfe\x00garbage"[..], "not a text file"),
            (b"version=1\nnode.id=1\n", "no cluster.id"),
            (b"cluster.id=abc\n", "no node.id"),
            (b"cluster.id=abc\nnode.id=one\n", "node.id is not a number"),
        ] {
            std::fs::write(&path, content).expect("write");
            let err = super::load(dir.path(), 1).expect_err("corrupt");
            assert_eq!(
                err.to_string(),
                format!("{} is corrupt: {reason}", path.display())
            );
        }
    }
}
