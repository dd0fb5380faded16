//! `meta.properties` in the log directory, as Kafka writes it: the cluster id (generated on the
//! first start) and this node's id. A directory formatted for another node is refused.

use std::path::Path;

use crate::config::parse_properties;
use crate::fsutil::write_atomically;

/// Returns the cluster id, creating `meta.properties` on first start.
pub fn load_or_create(dir: &Path, node_id: i32) -> std::io::Result<String> {
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
            props.get("cluster.id").cloned().ok_or_else(|| {
                std::io::Error::other(format!("{} has no cluster.id", path.display()))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = base64_url(uuid::Uuid::new_v4().as_bytes());
            let text = format!("#\nversion=1\ncluster.id={id}\nnode.id={node_id}\n");
            write_atomically(&path, text.as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
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
    fn cluster_id_is_stable_and_node_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = super::load_or_create(dir.path(), 1).expect("create");
        assert_eq!(a.len(), 22);
        assert_eq!(super::load_or_create(dir.path(), 1).expect("load"), a);
        assert!(super::load_or_create(dir.path(), 2).is_err());
    }
}
