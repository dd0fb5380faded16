//! Pure builders of the Kubernetes objects a `ValidatedCluster` needs: per-pool ConfigMap,
//! headless Service, StatefulSet and PodDisruptionBudget, plus one bootstrap Service. This module
//! owns object names, labels and owner references; it never talks to the API server.

pub mod configmap;
pub mod pdb;
pub mod service;
pub mod statefulset;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::validate::{Pool, ValidatedCluster};

/// Label carrying the owning cluster's name; the operator lists owned objects by it.
pub const CLUSTER_LABEL: &str = "kafka.tributary.dev/cluster";
/// Label carrying the pool's role suffix (`controller`, `broker`, `node`).
pub const ROLE_LABEL: &str = "kafka.tributary.dev/role";
/// Pod annotation with the hash of the rendered config and pod template.
pub const CONFIG_HASH_ANNOTATION: &str = "kafka.tributary.dev/config-hash";
/// A restart asked for by hand. On the `KafkaCluster`: any value, changed (e.g. to the current
/// time) to roll every pod, behind the usual gates; it becomes the pod template's
/// `RESTART_TOKEN_ANNOTATION`. On one pod: `"true"` restarts that pod, behind the gates.
pub const RESTART_ANNOTATION: &str = "kafka.tributary.dev/restart";
/// Pod template annotation carrying the `KafkaCluster`'s `RESTART_ANNOTATION` (hashed with the
/// template, so a new value makes every pod outdated).
pub const RESTART_TOKEN_ANNOTATION: &str = "kafka.tributary.dev/restart-token";
/// Pod annotation naming the dynamic broker configs (`configmap::DYNAMIC_BROKER_CONFIGS`) that
/// the pod's properties set when it started, comma-separated (broker pools only).
pub const DYNAMIC_CONFIGS_ANNOTATION: &str = "kafka.tributary.dev/dynamic-configs";
/// Value of `app.kubernetes.io/managed-by` on every object.
pub const MANAGED_BY: &str = "tributary-operator";
/// Port of the KRaft controller listener.
pub const CONTROLLER_PORT: i32 = 9093;
/// Port of the broker's HTTP endpoint (`/metrics`, `/livez`, `/readyz`).
pub const HTTP_PORT: i32 = 9644;

/// What a pod of a pool must have started from to be up to date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredPod {
    /// Its `CONFIG_HASH_ANNOTATION`.
    pub hash: String,
    /// The dynamic broker configs the pool's properties set now.
    pub dynamic_configs: BTreeSet<String>,
}

impl DesiredPod {
    /// Whether a pod with these annotations is up to date: the same hash (which leaves the
    /// dynamic broker configs out), and no dynamic config in the properties it started from that
    /// the spec has dropped since (its process keeps that value as a static property). A dynamic
    /// config added since needs no restart: the operator applies it as a cluster-wide default.
    /// A pod annotated `RESTART_ANNOTATION: "true"` is not up to date either.
    pub fn run_by(&self, annotations: &BTreeMap<String, String>) -> bool {
        annotations.get(CONFIG_HASH_ANNOTATION) == Some(&self.hash)
            && dynamic_configs_of(annotations).is_subset(&self.dynamic_configs)
            && annotations.get(RESTART_ANNOTATION).map(String::as_str) != Some("true")
    }
}

/// The names in a `DYNAMIC_CONFIGS_ANNOTATION` (none when absent).
pub fn dynamic_configs_of(annotations: &BTreeMap<String, String>) -> BTreeSet<String> {
    annotations
        .get(DYNAMIC_CONFIGS_ANNOTATION)
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Every object the cluster should have.
#[derive(Debug, Clone, Default)]
pub struct DesiredObjects {
    pub config_maps: Vec<ConfigMap>,
    pub services: Vec<Service>,
    pub stateful_sets: Vec<StatefulSet>,
    pub pdbs: Vec<PodDisruptionBudget>,
}

/// Builds every desired object, in the order they should be applied.
pub fn build_all(vc: &ValidatedCluster) -> DesiredObjects {
    let mut out = DesiredObjects::default();
    for pool in &vc.pools {
        let cm = configmap::build_configmap(vc, pool);
        let hash = configmap::config_hash(vc, pool);
        out.config_maps.push(cm);
        out.services.push(service::build_headless_service(vc, pool));
        out.stateful_sets
            .push(statefulset::build_statefulset(vc, pool, &hash));
        out.pdbs.push(pdb::build_pdb(vc, pool));
    }
    out.services.push(service::build_bootstrap_service(vc));
    out
}

/// `<cluster>-<role>`: the StatefulSet, its headless Service and PDB.
pub fn pool_name(vc: &ValidatedCluster, pool: &Pool) -> String {
    format!("{}-{}", vc.name, pool.role.suffix())
}

/// The pod name of `ordinal` in `pool`.
pub fn pod_name(vc: &ValidatedCluster, pool: &Pool, ordinal: i32) -> String {
    format!("{}-{ordinal}", pool_name(vc, pool))
}

/// The stable DNS name of a pod through its pool's headless Service.
pub fn pod_dns(vc: &ValidatedCluster, pool: &Pool, ordinal: i32) -> String {
    format!(
        "{}.{}.{}.svc",
        pod_name(vc, pool, ordinal),
        pool_name(vc, pool),
        vc.namespace
    )
}

/// Name of the client bootstrap Service.
pub fn bootstrap_name(vc: &ValidatedCluster) -> String {
    format!("{}-bootstrap", vc.name)
}

/// `host:port` clients use to bootstrap.
pub fn bootstrap_address(vc: &ValidatedCluster) -> String {
    format!(
        "{}.{}.svc:{}",
        bootstrap_name(vc),
        vc.namespace,
        vc.client_port
    )
}

/// Labels shared by every object of the cluster.
pub fn cluster_labels(vc: &ValidatedCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "tributary".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), vc.name.clone()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGED_BY.to_owned(),
        ),
        (CLUSTER_LABEL.to_owned(), vc.name.clone()),
    ])
}

/// Labels selecting a pool's pods (stable: they are in StatefulSet selectors, which are immutable).
pub fn selector_labels(vc: &ValidatedCluster, pool: &Pool) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CLUSTER_LABEL.to_owned(), vc.name.clone()),
        (ROLE_LABEL.to_owned(), pool.role.suffix().to_owned()),
    ])
}

/// Labels of a pool's objects.
pub fn pool_labels(vc: &ValidatedCluster, pool: &Pool) -> BTreeMap<String, String> {
    let mut labels = cluster_labels(vc);
    labels.extend(selector_labels(vc, pool));
    labels.insert(
        "app.kubernetes.io/component".to_owned(),
        pool.role.suffix().to_owned(),
    );
    labels
}

/// The owner reference that makes Kubernetes garbage-collect an object with its cluster.
pub fn owner_reference(vc: &ValidatedCluster) -> Option<OwnerReference> {
    vc.uid.as_ref().map(|uid| OwnerReference {
        api_version: "kafka.tributary.dev/v1alpha1".to_owned(),
        kind: "KafkaCluster".to_owned(),
        name: vc.name.clone(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Metadata for an object named `name` with `labels`, owned by the cluster.
pub fn object_meta(
    vc: &ValidatedCluster,
    name: String,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(vc.namespace.clone()),
        labels: Some(labels),
        owner_references: owner_reference(vc).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::fixtures::cluster;
    use crate::cluster::validate::validate;

    #[test]
    fn every_object_is_owned_labelled_and_namespaced() {
        let vc = validate(&cluster("basic.yaml")).expect("valid");
        let objs = build_all(&vc);
        let metas: Vec<&ObjectMeta> = objs
            .config_maps
            .iter()
            .map(|o| &o.metadata)
            .chain(objs.services.iter().map(|o| &o.metadata))
            .chain(objs.stateful_sets.iter().map(|o| &o.metadata))
            .chain(objs.pdbs.iter().map(|o| &o.metadata))
            .collect();
        assert_eq!(metas.len(), 2 + 3 + 2 + 2);
        for m in metas {
            assert_eq!(m.namespace.as_deref(), Some("kafka"));
            let labels = m.labels.as_ref().expect("labels");
            assert_eq!(labels[CLUSTER_LABEL], "demo");
            let owner = &m.owner_references.as_ref().expect("owned")[0];
            assert_eq!(owner.uid, "6f1c2a0e-0000-4000-8000-000000000001");
            assert_eq!(owner.controller, Some(true));
        }
        assert_eq!(bootstrap_address(&vc), "demo-bootstrap.kafka.svc:9092");
    }
}
