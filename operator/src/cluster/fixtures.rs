//! Test helpers: load `KafkaCluster` fixtures from `operator/tests/fixtures/`.

use crate::crd::cluster::KafkaCluster;

/// Parses the fixture file `name`; panics with the file name when it is missing or invalid.
pub(crate) fn cluster(name: &str) -> KafkaCluster {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}
