//! Renders each node's broker properties (Kafka names) into its pool's ConfigMap, one key per pod
//! (`<pod>.properties`), named by a hash of its content (one ConfigMap per revision, so running
//! pods never see a change that needs a restart), and hashes what every pod of the pool shares
//! so a changed config can be detected on running pods. The broker configs Kafka changes without
//! a restart (`DYNAMIC_BROKER_CONFIGS`) are left out of the pods' hash: a new value or a new key
//! is applied through the admin API as a cluster-wide default (`cluster::dynamic`) and written
//! into a revision for pods that start later (the same one for a value, a new one for a key), so
//! no pod restarts for it; a key removed restarts the pods that started with it
//! (`DesiredPod::run_by`, from the pods' `DYNAMIC_CONFIGS_ANNOTATION`). Node ids and advertised hosts
//! are computed here, from ordinals.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::{object_meta, pod_dns, pod_name, pool_labels, pool_name, CONTROLLER_PORT, HTTP_PORT};
use crate::cluster::validate::{Pool, ValidatedCluster};

/// Where the data volume is mounted; `log.dirs` points below it.
pub const DATA_MOUNT: &str = "/var/lib/tributary";
/// Where the ConfigMap is mounted.
pub const CONFIG_MOUNT: &str = "/etc/tributary";

/// Broker configs that change cluster-wide without a restart: the defaults of topic configs,
/// which Kafka (and our broker) take as dynamic cluster-wide broker configs. A spec that adds one
/// or changes its value is applied with IncrementalAlterConfigs on the broker-defaults resource;
/// removing one restarts the brokers that started with it (a removed value must leave the
/// running processes' static properties too). The replication throttles, also dynamic, are
/// left to the day-2 moves that set them.
pub const DYNAMIC_BROKER_CONFIGS: &[&str] = &[
    "compression.type",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.max.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleanup.policy",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.index.interval.bytes",
    "log.index.size.max.bytes",
    "log.message.timestamp.type",
    "log.retention.bytes",
    "log.retention.ms",
    "log.roll.ms",
    "log.segment.bytes",
    "log.segment.delete.delay.ms",
    "message.max.bytes",
    "min.insync.replicas",
    "unclean.leader.election.enable",
];

/// The dynamic broker configs (`DYNAMIC_BROKER_CONFIGS`) `pool`'s config sets.
fn dynamic_configs(pool: &Pool) -> impl Iterator<Item = (&String, &String)> {
    pool.config
        .iter()
        .filter(|(k, _)| DYNAMIC_BROKER_CONFIGS.contains(&k.as_str()))
}

/// The dynamic broker configs the spec sets for the broker pool, as the cluster-wide defaults
/// the operator keeps in sync.
pub fn dynamic_broker_configs(vc: &ValidatedCluster) -> BTreeMap<String, String> {
    dynamic_configs(vc.broker_pool())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The names of the dynamic broker configs `pool`'s properties set, for its pods'
/// `DYNAMIC_CONFIGS_ANNOTATION` (comma-separated, sorted).
pub fn dynamic_config_names(pool: &Pool) -> String {
    dynamic_configs(pool)
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// `props` without the dynamic broker configs, for a pool's config hash (a controller-only node
/// does not use them at all).
fn restart_relevant(mut props: BTreeMap<String, String>) -> BTreeMap<String, String> {
    props.retain(|k, _| !DYNAMIC_BROKER_CONFIGS.contains(&k.as_str()));
    props
}

/// `props` with the dynamic broker configs' values masked, for a revision's name: a dynamic
/// config added or removed makes a new revision (the pod template that names it also carries
/// `DYNAMIC_CONFIGS_ANNOTATION`, so a pod's file and its annotation always agree), a new value
/// is written into the same one.
fn revision_relevant(mut props: BTreeMap<String, String>) -> BTreeMap<String, String> {
    for (k, v) in props.iter_mut() {
        if DYNAMIC_BROKER_CONFIGS.contains(&k.as_str()) {
            *v = "(dynamic)".to_owned();
        }
    }
    props
}

/// Name of a pool's current ConfigMap revision: `<cluster>-<role>-config-<hash of its data>`.
/// Every change of the rendered properties makes a new ConfigMap instead of editing the one the
/// running pods mount (which the kubelet would update under them): a pod moves to a new revision
/// only when it is restarted, from the StatefulSet's template that names it.
pub fn configmap_name(vc: &ValidatedCluster, pool: &Pool) -> String {
    let relevant = configmap_data(vc, pool, revision_relevant);
    format!("{}-config-{}", pool_name(vc, pool), data_hash(&relevant))
}

/// The pool's ConfigMap data: one `<pod>.properties` key per ordinal, each pod's properties
/// passed through `view` first.
fn configmap_data(
    vc: &ValidatedCluster,
    pool: &Pool,
    view: impl Fn(BTreeMap<String, String>) -> BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    (0..pool.replicas)
        .map(|o| {
            (
                format!("{}.properties", pod_name(vc, pool, o)),
                render_properties(&view(node_properties(vc, pool, o))),
            )
        })
        .collect()
}

/// Hash of ConfigMap data (keys and values), 10 hex digits.
fn data_hash(data: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in data {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize()[..5])
}

/// `controller.quorum.voters`: every voter's node id at its stable pod DNS name.
pub fn quorum_voters(vc: &ValidatedCluster) -> String {
    let voters = vc.voter_pool();
    (0..voters.replicas)
        .map(|o| {
            format!(
                "{}@{}:{CONTROLLER_PORT}",
                voters.role.node_id(o),
                pod_dns(vc, voters, o)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Properties every node of the pool shares (everything but node.id and advertised.listeners).
pub fn shared_properties(vc: &ValidatedCluster, pool: &Pool) -> BTreeMap<String, String> {
    let mut p = pool.config.clone();
    let role = pool.role;
    let mut listeners = Vec::new();
    if role.is_broker() {
        listeners.push(format!("PLAINTEXT://0.0.0.0:{}", vc.client_port));
    }
    if role.is_controller() {
        listeners.push(format!("CONTROLLER://0.0.0.0:{CONTROLLER_PORT}"));
    }
    let set = |p: &mut BTreeMap<String, String>, k: &str, v: String| {
        p.insert(k.to_owned(), v);
    };
    set(&mut p, "process.roles", role.process_roles().to_owned());
    set(&mut p, "listeners", listeners.join(","));
    set(
        &mut p,
        "listener.security.protocol.map",
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".to_owned(),
    );
    set(&mut p, "controller.listener.names", "CONTROLLER".to_owned());
    if role.is_broker() {
        set(&mut p, "inter.broker.listener.name", "PLAINTEXT".to_owned());
    }
    set(&mut p, "controller.quorum.voters", quorum_voters(vc));
    set(&mut p, "log.dirs", format!("{DATA_MOUNT}/data"));
    set(&mut p, "http.listener", format!("0.0.0.0:{HTTP_PORT}"));
    p
}

/// The complete properties of the pod with `ordinal`.
pub fn node_properties(
    vc: &ValidatedCluster,
    pool: &Pool,
    ordinal: i32,
) -> BTreeMap<String, String> {
    let mut p = shared_properties(vc, pool);
    p.insert("node.id".to_owned(), pool.role.node_id(ordinal).to_string());
    if pool.role.is_broker() {
        p.insert(
            "advertised.listeners".to_owned(),
            format!(
                "PLAINTEXT://{}:{}",
                pod_dns(vc, pool, ordinal),
                vc.client_port
            ),
        );
    }
    p
}

/// Java-properties text, sorted by key so it is stable.
pub fn render_properties(props: &BTreeMap<String, String>) -> String {
    let mut out = String::from("# Rendered by tributary-operator; edits are overwritten.\n");
    for (k, v) in props {
        out.push_str(k);
        out.push('=');
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// The pool's current ConfigMap revision (named by `configmap_name`): one `<pod>.properties`
/// key per ordinal.
pub fn build_configmap(vc: &ValidatedCluster, pool: &Pool) -> ConfigMap {
    ConfigMap {
        metadata: object_meta(vc, configmap_name(vc, pool), pool_labels(vc, pool)),
        data: Some(configmap_data(vc, pool, |props| props)),
        ..ConfigMap::default()
    }
}

/// Hash of what a restart would change for every pod of the pool: the shared properties
/// (without the dynamic configs) and the image. (The pod template's other
/// fields are hashed into the StatefulSet by `statefulset`.)
pub fn config_hash(vc: &ValidatedCluster, pool: &Pool) -> String {
    let mut h = Sha256::new();
    let shared = restart_relevant(shared_properties(vc, pool));
    h.update(render_properties(&shared).as_bytes());
    h.update(vc.image.as_bytes());
    hex(&h.finalize()[..8])
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::fixtures::cluster;
    use crate::cluster::validate::validate;

    #[test]
    fn broker_properties_are_rendered_with_kafka_names() {
        let vc = validate(&cluster("basic.yaml")).expect("valid");
        let cm = build_configmap(&vc, vc.broker_pool());
        let data = cm.data.expect("data");
        assert_eq!(data.len(), 3);
        let text = &data["demo-broker-1.properties"];
        let expected = "\
# Rendered by tributary-operator; edits are overwritten.
advertised.listeners=PLAINTEXT://demo-broker-1.demo-broker.kafka.svc:9092
controller.listener.names=CONTROLLER
controller.quorum.voters=0@demo-controller-0.demo-controller.kafka.svc:9093,1@demo-controller-1.demo-controller.kafka.svc:9093,2@demo-controller-2.demo-controller.kafka.svc:9093
default.replication.factor=3
http.listener=0.0.0.0:9644
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
listeners=PLAINTEXT://0.0.0.0:9092
log.dirs=/var/lib/tributary/data
min.insync.replicas=2
node.id=101
num.partitions=3
process.roles=broker
";
        assert_eq!(text, expected);
    }

    #[test]
    fn every_config_revision_gets_its_own_configmap_name() {
        let kc = cluster("basic.yaml");
        let vc = validate(&kc).expect("valid");
        let name = configmap_name(&vc, vc.broker_pool());
        assert!(name.starts_with("demo-broker-config-"), "{name}");
        assert_eq!(name.len(), "demo-broker-config-".len() + 10);
        assert_eq!(
            build_configmap(&vc, vc.broker_pool()).metadata.name,
            Some(name.clone())
        );
        let mut changed = kc.clone();
        changed
            .spec
            .config
            .insert("log.retention.ms".into(), "1000".into());
        let vc2 = validate(&changed).expect("valid");
        assert_ne!(configmap_name(&vc2, vc2.broker_pool()), name);
        assert_eq!(
            configmap_name(&validate(&kc).expect("valid"), vc.broker_pool()),
            name
        );
    }

    #[test]
    fn controllers_do_not_advertise_a_client_listener() {
        let vc = validate(&cluster("basic.yaml")).expect("valid");
        let props = node_properties(&vc, vc.voter_pool(), 2);
        assert_eq!(props["node.id"], "2");
        assert_eq!(props["process.roles"], "controller");
        assert_eq!(props["listeners"], "CONTROLLER://0.0.0.0:9093");
        assert!(!props.contains_key("advertised.listeners"));
    }

    #[test]
    fn a_dynamic_config_changes_neither_revision_nor_hash() {
        let kc = cluster("basic.yaml");
        let vc = validate(&kc).expect("valid");
        let broker = vc.broker_pool();
        let (name, hash) = (configmap_name(&vc, broker), config_hash(&vc, broker));
        assert_eq!(dynamic_broker_configs(&vc)["min.insync.replicas"], "2");
        // basic.yaml's brokers set min.insync.replicas 2: a new value is applied dynamically
        let mut new_value = kc.clone();
        new_value
            .spec
            .brokers
            .config
            .insert("min.insync.replicas".into(), "3".into());
        let vc2 = validate(&new_value).expect("valid");
        assert_eq!(configmap_name(&vc2, vc2.broker_pool()), name);
        assert_eq!(config_hash(&vc2, vc2.broker_pool()), hash);
        let data = build_configmap(&vc2, vc2.broker_pool()).data.expect("data");
        assert!(data["demo-broker-0.properties"].contains("min.insync.replicas=3\n"));
        assert_eq!(dynamic_broker_configs(&vc2)["min.insync.replicas"], "3");
        // nor the controllers' (which do not use it)
        let mut controllers = kc.clone();
        controllers
            .spec
            .config
            .insert("min.insync.replicas".into(), "3".into());
        let vc3 = validate(&controllers).expect("valid");
        assert_eq!(
            config_hash(&vc3, vc3.voter_pool()),
            config_hash(&vc, vc.voter_pool())
        );
        // a static key's value restarts; a dynamic key added does not (a new revision names it)
        let mut static_key = kc.clone();
        static_key
            .spec
            .brokers
            .config
            .insert("log.cleaner.backoff.ms".into(), "1000".into());
        let vc4 = validate(&static_key).expect("valid");
        assert_ne!(config_hash(&vc4, vc4.broker_pool()), hash);
        let mut added = kc;
        added
            .spec
            .brokers
            .config
            .insert("log.retention.ms".into(), "1000".into());
        let vc5 = validate(&added).expect("valid");
        assert_eq!(config_hash(&vc5, vc5.broker_pool()), hash);
        assert_ne!(configmap_name(&vc5, vc5.broker_pool()), name);
        assert_eq!(
            dynamic_config_names(vc5.broker_pool()),
            "log.retention.ms,min.insync.replicas"
        );
    }

    #[test]
    fn hash_changes_with_shared_config_but_not_with_broker_count() {
        let kc = cluster("basic.yaml");
        let vc = validate(&kc).expect("valid");
        let base = config_hash(&vc, vc.broker_pool());
        let mut more = kc.clone();
        more.spec.brokers.replicas = 5;
        let vc_more = validate(&more).expect("valid");
        assert_eq!(config_hash(&vc_more, vc_more.broker_pool()), base);
        let mut changed = kc;
        changed
            .spec
            .config
            .insert("log.cleaner.backoff.ms".into(), "1000".into());
        let vc_changed = validate(&changed).expect("valid");
        assert_ne!(config_hash(&vc_changed, vc_changed.broker_pool()), base);
    }
}
