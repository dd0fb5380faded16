//! The one line a fatal start-up error prints: what failed with its causes, each once
//! (`failed to bind kafka listener on 127.0.0.1:9092: Address in use (os error 98)`), then
//! what to do about it, naming the setting or path involved.
//!
//! Pure: it reads the error chain and returns text; `main` prints it and exits non-zero.
//! Deliberately not here: backtraces (`main` adds the full chain with its backtrace only when
//! `RUST_BACKTRACE` asks for it).

use std::error::Error;
use std::io::ErrorKind;

use crate::broker::BrokerError;
use crate::config::ConfigError;
use crate::meta_properties::MetaPropertiesError;

/// The line for `err`: `error: <what failed>: <cause>...; <what to do>`.
pub fn explain(err: &(dyn Error + 'static)) -> String {
    let mut line = format!("error: {}", causes(err));
    if let Some(advice) = advice(err) {
        line.push_str("; ");
        line.push_str(&advice);
    }
    line.replace('\n', " ")
}

/// Every message of the chain joined with ": ", leaving out one that its predecessor already
/// contains (transparent wrappers, causes repeated by a message).
fn causes(err: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let msg = e.to_string();
        if !msg.is_empty() && !parts.last().is_some_and(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// What the operator should do, from the most specific error in the chain.
fn advice(err: &(dyn Error + 'static)) -> Option<String> {
    for e in chain(err) {
        if let Some(c) = e.downcast_ref::<ConfigError>() {
            return config_advice(c);
        }
        if let Some(m) = e.downcast_ref::<MetaPropertiesError>() {
            return meta_properties_advice(m);
        }
        match e.downcast_ref::<BrokerError>() {
            // Transparent: its source is the inner error's source, so match it here.
            Some(BrokerError::MetaProperties(m)) => return meta_properties_advice(m),
            Some(BrokerError::Bind { what, addr, source }) => {
                return Some(bind_advice(what, *addr, source.kind()))
            }
            Some(BrokerError::ClusterId(_)) => return None, // the message says what to do
            Some(BrokerError::Register(_)) => {
                return Some(
                    "check that no other running process uses this node.id and that \
                     controller.quorum.voters names this cluster's controllers"
                        .to_owned(),
                )
            }
            _ => {}
        }
    }
    chain(err)
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .and_then(|io| storage_advice(io.kind()))
}

/// `err` and its sources, outermost first.
fn chain<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |e| (*e).source())
}

fn config_advice(err: &ConfigError) -> Option<String> {
    match err {
        ConfigError::Read { .. } => Some("check the path given to --config".to_owned()),
        ConfigError::Invalid { name, .. } => Some(format!(
            "fix {name} in the properties file, the environment (TRIBUTARY_{}) or --override",
            name.to_uppercase().replace('.', "_")
        )),
        ConfigError::Usage(_) => None, // the message carries the usage
    }
}

fn meta_properties_advice(err: &MetaPropertiesError) -> Option<String> {
    match err {
        MetaPropertiesError::Corrupt { .. } => Some(
            "restore it from a backup, or write it again as the lines version=1, \
             cluster.id=<this cluster's id> (another node's meta.properties has it) and \
             node.id=<this node's id>"
                .to_owned(),
        ),
        MetaPropertiesError::OtherNode { found, .. } => Some(format!(
            "this log directory was formatted for node {found}: set node.id={found}, \
             or set log.dirs to this node's own directory"
        )),
        MetaPropertiesError::Read { source, .. } | MetaPropertiesError::Write { source, .. } => {
            storage_advice(source.kind())
        }
    }
}

fn bind_advice(what: &str, addr: std::net::SocketAddr, kind: ErrorKind) -> String {
    let setting = match what {
        "http listener" => "http.listener",
        "controller listener" => "the CONTROLLER entry of listeners (or controller.quorum.voters)",
        _ => "listeners",
    };
    match kind {
        ErrorKind::AddrInUse => format!(
            "another process is listening on port {}: stop it, or set {setting} to a free port",
            addr.port()
        ),
        ErrorKind::AddrNotAvailable => {
            format!(
                "{} is not an address of this machine: fix {setting}",
                addr.ip()
            )
        }
        ErrorKind::PermissionDenied => {
            format!("ports below 1024 need privileges: set {setting} to a port above 1023")
        }
        _ => format!("check {setting}"),
    }
}

/// Advice for a failed file operation in the log directory.
fn storage_advice(kind: ErrorKind) -> Option<String> {
    let advice = match kind {
        ErrorKind::StorageFull => {
            "the log directory's filesystem is full: free space or grow the volume, then start \
             the broker again (acknowledged data is kept)"
        }
        ErrorKind::PermissionDenied => {
            "the broker's user cannot write there: give it the directory (chown/chmod) or set \
             log.dirs to a writable directory"
        }
        ErrorKind::ReadOnlyFilesystem => {
            "the filesystem is read-only: mount it read-write or set log.dirs to a writable \
             directory"
        }
        ErrorKind::NotADirectory | ErrorKind::AlreadyExists => {
            "a file is in the way: set log.dirs to a directory (or a path that does not exist yet)"
        }
        ErrorKind::InvalidData => {
            "a file in the log directory is damaged: restore it, or move it away if its data \
             may be lost"
        }
        _ => return None,
    };
    Some(advice.to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn io(kind: ErrorKind, msg: &str) -> std::io::Error {
        std::io::Error::new(kind, msg)
    }

    #[test]
    fn an_invalid_setting_names_it_and_where_to_fix_it() {
        let err = ConfigError::Invalid {
            name: "node.id".into(),
            value: "x".into(),
            reason: "invalid digit found in string".into(),
        };
        assert_eq!(
            explain(&err),
            "error: invalid value \"x\" for node.id: invalid digit found in string; fix node.id \
             in the properties file, the environment (TRIBUTARY_NODE_ID) or --override"
        );
    }

    #[test]
    fn a_port_in_use_names_the_port_and_the_setting() {
        let err = BrokerError::Bind {
            what: "kafka listener",
            addr: "127.0.0.1:9092".parse().expect("addr"),
            source: io(ErrorKind::AddrInUse, "Address in use"),
        };
        assert_eq!(
            explain(&err),
            "error: failed to bind kafka listener on 127.0.0.1:9092: Address in use; another \
             process is listening on port 9092: stop it, or set listeners to a free port"
        );
        let err = BrokerError::Bind {
            what: "http listener",
            addr: "127.0.0.1:9644".parse().expect("addr"),
            source: io(ErrorKind::AddrInUse, "Address in use"),
        };
        assert!(explain(&err).ends_with("set http.listener to a free port"));
    }

    #[test]
    fn an_unwritable_or_full_log_directory_says_what_to_do() {
        let err = BrokerError::LogDir {
            path: PathBuf::from("/var/lib/tributary"),
            source: io(ErrorKind::PermissionDenied, "Permission denied"),
        };
        assert_eq!(
            explain(&err),
            "error: failed to prepare log directory /var/lib/tributary: Permission denied; the \
             broker's user cannot write there: give it the directory (chown/chmod) or set \
             log.dirs to a writable directory"
        );
        let err = BrokerError::Logs(tributary_log::LogError::Io {
            action: "write",
            path: PathBuf::from("/data/t-0/00000000000000000000.log"),
            source: io(ErrorKind::StorageFull, "No space left on device"),
        });
        let line = explain(&err);
        assert!(
            line.starts_with(
                "error: failed to open the logs: failed to write \
                 /data/t-0/00000000000000000000.log: No space left on device; the log \
                 directory's filesystem is full"
            ),
            "{line}"
        );
    }

    #[test]
    fn a_corrupt_or_foreign_meta_properties_says_how_to_repair_it() {
        let err = BrokerError::MetaProperties(MetaPropertiesError::Corrupt {
            path: PathBuf::from("/d/meta.properties"),
            reason: "no cluster.id".into(),
        });
        let line = explain(&err);
        assert!(
            line.starts_with(
                "error: /d/meta.properties is corrupt: no cluster.id; restore it from a backup"
            ),
            "{line}"
        );
        let err = BrokerError::MetaProperties(MetaPropertiesError::OtherNode {
            path: PathBuf::from("/d/meta.properties"),
            found: 2,
            node_id: 1,
        });
        assert_eq!(
            explain(&err),
            "error: /d/meta.properties belongs to node 2, not node 1; this log directory was \
             formatted for node 2: set node.id=2, or set log.dirs to this node's own directory"
        );
    }

    #[test]
    fn a_full_disk_at_start_says_to_free_space() {
        let err = BrokerError::MetaProperties(MetaPropertiesError::Write {
            path: PathBuf::from("/d/meta.properties"),
            source: io(ErrorKind::StorageFull, "No space left on device"),
        });
        assert_eq!(
            explain(&err),
            "error: failed to write /d/meta.properties: No space left on device; the log \
             directory's filesystem is full: free space or grow the volume, then start the \
             broker again (acknowledged data is kept)"
        );
    }

    #[test]
    fn a_cluster_id_mismatch_is_one_line_with_its_own_advice() {
        let err = BrokerError::ClusterId(
            "cluster.id is set to A, but /d/meta.properties belongs to cluster B; set \
             cluster.id=B (or remove it), or give this node an empty log directory"
                .into(),
        );
        let line = explain(&err);
        assert_eq!(line.matches("; ").count(), 1, "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn causes_are_not_repeated_and_empty_ones_are_skipped() {
        #[derive(Debug, thiserror::Error)]
        #[error("")]
        struct Empty(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] Empty);
        let err = Outer(Empty(io(ErrorKind::Other, "disk on fire")));
        assert_eq!(explain(&err), "error: outer: disk on fire");
    }
}
