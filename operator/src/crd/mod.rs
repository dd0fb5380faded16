//! Custom resource definitions: `KafkaCluster` and `KafkaTopic` in `kafka.tributary.dev/v1alpha1`.
//! The YAML in `crds/` is generated from these types by the `crdgen` binary.

pub mod cluster;
pub mod common;
pub mod topic;

pub use cluster::{KafkaCluster, KafkaClusterSpec, KafkaClusterStatus};
pub use common::Condition;
pub use topic::{KafkaTopic, KafkaTopicSpec, KafkaTopicStatus};

use kube::CustomResourceExt;

/// Every CRD as one multi-document YAML stream, in a stable order.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in [KafkaCluster::crd(), KafkaTopic::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
