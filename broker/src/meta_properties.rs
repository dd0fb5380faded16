//! `meta.properties` in the log directory, as Kafka writes it: the cluster id (learnt from the
//! metadata quorum on the first start) and this node's id. A directory formatted for another
//! node is refused.

use std::path::Path;

use crate::config::parse_properties;
use crate::fsutil::write_atomically;

/// The cluster id stored in `meta.properties`, if the directory was formatted; refuses a
/// directory that belongs to another node.
pub fn load(dir: &Path, node_id: i32) -> std::io::Result<Option<String>> {
    let path = dir.join("meta.properties");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let props = parse_properties(&text);
            if let Some(id) = props.get("node.id") {
                if id.parse::<i32>().ok() != Some(node_id) {
                    return Err(std::io::Error::other(format!(
                        "{} belongs to node {id}, not node {node_id}",
                        path.display()
                    )));
                }
            }
            Ok(props.get("cluster.id").cloned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `meta.properties` (atomically) with the cluster id the node belongs to.
pub fn store(dir: &Path, node_id: i32, cluster_id: &str) -> std::io::Result<()> {
    let text = format!("#\nversion=1\ncluster.id={cluster_id}\nnode.id={node_id}\n");
    write_atomically(&dir.join("meta.properties"), text.as_bytes())
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
        assert!(super::load(dir.path(), 2).is_err());
    }
}
