//! Turns a `KafkaCluster` into a `ValidatedCluster` once, refusing specs the schema cannot catch
//! (name lengths, voter counts, properties the operator manages, malformed quantities). Pure: no
//! API calls. Every error here is permanent: only a new spec can fix it.

use std::collections::BTreeMap;

use kube::ResourceExt;
use thiserror::Error;

use crate::crd::cluster::{KafkaCluster, NodePoolSpec, PodTemplateOverrides, RebalanceSpec};

/// Longest cluster name: `<name>-controller` must leave room for StatefulSet pod names and the
/// `controller-revision-hash` label (63 characters), and every Service name (`<name>-controller`,
/// `<name>-bootstrap`) must stay an RFC 1035 label of at most 63 characters.
pub const MAX_CLUSTER_NAME_LEN: usize = 40;
/// Most controller voters we accept.
pub const MAX_CONTROLLERS: i32 = 9;
/// Node ids of dedicated brokers start here; controllers use `0..MAX_CONTROLLERS`.
pub const BROKER_NODE_ID_BASE: i32 = 100;

/// Properties the operator renders itself; users may not set them.
pub const RESERVED_PROPERTIES: &[&str] = &[
    "node.id",
    "process.roles",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "controller.listener.names",
    "controller.quorum.voters",
    "log.dirs",
    "http.listener",
    "broker.rack",
];

/// Node labels a pod can learn through the downward API (Kubernetes copies them onto pods).
pub const SUPPORTED_RACK_KEYS: &[&str] = &[
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
];

/// Why a spec is refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("cluster name {name:?} is longer than {MAX_CLUSTER_NAME_LEN} characters")]
    NameTooLong { name: String },
    #[error("cluster name {name:?} is not a valid Service name (an RFC 1035 label: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit)")]
    NameNotDns { name: String },
    #[error("resource has no namespace")]
    NoNamespace,
    #[error("spec.controllers is required unless spec.combined is true")]
    ControllersMissing,
    #[error("spec.controllers must be omitted when spec.combined is true")]
    ControllersWithCombined,
    #[error("{pool}.replicas is {replicas}: a controller quorum needs an odd number of voters between 1 and {MAX_CONTROLLERS}")]
    VoterCount { pool: &'static str, replicas: i32 },
    #[error("brokers.replicas is {replicas}: at least one broker is required")]
    NoBrokers { replicas: i32 },
    #[error("{pool}.storage.size {size:?} is not a Kubernetes quantity (e.g. 10Gi)")]
    StorageSize { pool: &'static str, size: String },
    #[error("{location} sets {property:?}, which the operator manages")]
    ReservedProperty { location: String, property: String },
    #[error("{location} has an invalid property name {property:?}")]
    PropertyName { location: String, property: String },
    #[error("spec.rack.topologyKey {key:?} is not supported (use topology.kubernetes.io/zone or topology.kubernetes.io/region)")]
    RackKey { key: String },
    #[error("spec.image is empty")]
    NoImage,
    #[error("spec.rollingUpdate.maxUnavailablePerRack is {value}: above 1 it needs spec.rack (without racks brokers restart one at a time)")]
    PerRackWithoutRack { value: u32 },
}

/// The role a StatefulSet's nodes play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// KRaft quorum voter only.
    Controller,
    /// Hosts partitions only.
    Broker,
    /// Both (small clusters).
    Combined,
}

impl Role {
    /// Suffix of the role's object names (`<cluster>-<suffix>`).
    pub fn suffix(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Broker => "broker",
            Role::Combined => "node",
        }
    }

    /// The `process.roles` value.
    pub fn process_roles(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Broker => "broker",
            Role::Combined => "broker,controller",
        }
    }

    /// Whether nodes of this role serve clients.
    pub fn is_broker(self) -> bool {
        self != Role::Controller
    }

    /// Whether nodes of this role vote in the controller quorum.
    pub fn is_controller(self) -> bool {
        self != Role::Broker
    }

    /// The stable node id of the pod with this ordinal.
    pub fn node_id(self, ordinal: i32) -> i32 {
        match self {
            Role::Broker => BROKER_NODE_ID_BASE + ordinal,
            Role::Controller | Role::Combined => ordinal,
        }
    }
}

/// One StatefulSet's worth of nodes, with its effective broker properties.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub role: Role,
    pub replicas: i32,
    pub spec: NodePoolSpec,
    /// `spec.config` overlaid with the pool's own config.
    pub config: BTreeMap<String, String>,
}

/// A spec that passed validation; builders take only this.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCluster {
    pub name: String,
    pub namespace: String,
    pub uid: Option<String>,
    pub image: String,
    pub image_pull_policy: Option<String>,
    /// Controller pool first (when dedicated), then brokers.
    pub pools: Vec<Pool>,
    pub client_port: i32,
    pub rack_key: Option<String>,
    pub pod_overrides: PodTemplateOverrides,
    /// How partitions move during commissioning and draining.
    pub rebalance: RebalanceSpec,
    /// `spec.rollingUpdate.maxUnavailablePerRack` (1 when unset).
    pub max_unavailable_per_rack: u32,
    /// The `kafka.tributary.dev/restart` annotation of the resource: a new value rolls every pod.
    pub restart_token: Option<String>,
}

impl ValidatedCluster {
    /// The pool whose nodes vote in the quorum.
    pub fn voter_pool(&self) -> &Pool {
        self.pools
            .iter()
            .find(|p| p.role.is_controller())
            .expect("validate always produces a controller or combined pool")
    }

    /// The pool whose nodes serve clients.
    pub fn broker_pool(&self) -> &Pool {
        self.pools
            .iter()
            .find(|p| p.role.is_broker())
            .expect("validate always produces a broker or combined pool")
    }
}

/// Checks a `KafkaCluster` and returns its validated form.
pub fn validate(kc: &KafkaCluster) -> Result<ValidatedCluster, SpecError> {
    let spec = &kc.spec;
    let name = kc.name_any();
    if name.len() > MAX_CLUSTER_NAME_LEN {
        return Err(SpecError::NameTooLong { name });
    }
    if !is_cluster_name(&name) {
        return Err(SpecError::NameNotDns { name });
    }
    let namespace = kc.namespace().ok_or(SpecError::NoNamespace)?;
    if spec.image.trim().is_empty() {
        return Err(SpecError::NoImage);
    }
    check_properties("spec.config", &spec.config)?;
    let pools = pools(kc)?;
    if let Some(rack) = &spec.rack {
        if !SUPPORTED_RACK_KEYS.contains(&rack.topology_key.as_str()) {
            return Err(SpecError::RackKey {
                key: rack.topology_key.clone(),
            });
        }
    }
    let max_unavailable_per_rack = spec
        .rolling_update
        .as_ref()
        .and_then(|r| r.max_unavailable_per_rack)
        .unwrap_or(1)
        .max(1);
    if max_unavailable_per_rack > 1 && spec.rack.is_none() {
        return Err(SpecError::PerRackWithoutRack {
            value: max_unavailable_per_rack,
        });
    }
    Ok(ValidatedCluster {
        name,
        namespace,
        uid: kc.uid(),
        image: spec.image.clone(),
        image_pull_policy: spec.image_pull_policy.clone(),
        pools,
        client_port: spec.listeners.internal.port,
        rack_key: spec.rack.as_ref().map(|r| r.topology_key.clone()),
        pod_overrides: spec.pod_template.clone().unwrap_or_default(),
        rebalance: spec.rebalance.clone().unwrap_or_default(),
        max_unavailable_per_rack,
        restart_token: kc
            .annotations()
            .get(crate::cluster::build::RESTART_ANNOTATION)
            .cloned(),
    })
}

/// A spec change the operator does not carry out, with the reason it reports in the `Degraded`
/// condition and the Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// CamelCase reason (`ScaleDownRefused`, `QuorumChangeRefused`, `PoolRemovalRefused`…).
    pub reason: &'static str,
    /// What was refused and why.
    pub message: String,
}

impl Refusal {
    /// A refusal with `reason` and `message`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

/// Refuses replica changes that cannot be done safely yet, given what the pools' StatefulSets
/// run now (`current`, by role suffix), and keeps the current count in `vc` for them: any
/// change of the voter pool (controllers, or combined nodes), because the broker has no
/// controller membership change (KIP-853) yet, so the quorum keeps its voters.
///
/// A dedicated broker pool may grow or shrink: a shrink is the day-2 planner's decommission
/// (drain first, then shrink), which `cluster::day2::hold_broker_replicas` waits for and the
/// planner refuses when it cannot be done safely.
pub fn refuse_unsafe_changes(
    vc: &mut ValidatedCluster,
    current: &BTreeMap<String, i32>,
) -> Vec<Refusal> {
    let mut refused = Vec::new();
    for pool in &mut vc.pools {
        let Some(&now) = current.get(pool.role.suffix()) else {
            continue;
        };
        if pool.role.is_controller() && pool.replicas != now {
            refused.push(Refusal::new(
                "QuorumChangeRefused",
                format!(
                    "{} replicas stay at {now} (spec asks for {}): the controller quorum's voters cannot change yet (no controller membership change in the broker)",
                    pool.role.suffix(),
                    pool.replicas
                ),
            ));
            pool.replicas = now;
        }
    }
    refused
}

/// A StatefulSet of the cluster as observed: its role suffix and how many pods it runs or wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingPool {
    pub suffix: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.replicas`: pods that still exist.
    pub running: i32,
}

/// Refuses a spec whose pools no longer include a pool that still has nodes (flipping
/// `combined`, or dropping `controllers`): pruning its StatefulSet would delete its pods and,
/// with `reclaimPolicy: Delete`, its volumes. A pool may go only once it is empty (0 replicas,
/// no pods). `None` when every existing pool is still wanted or empty.
pub fn refuse_pool_removal(vc: &ValidatedCluster, existing: &[ExistingPool]) -> Option<Refusal> {
    let busy: Vec<String> = existing
        .iter()
        .filter(|e| !vc.pools.iter().any(|p| p.role.suffix() == e.suffix))
        .filter(|e| e.replicas > 0 || e.running > 0)
        .map(|e| {
            format!(
                "{}-{} ({} nodes)",
                vc.name,
                e.suffix,
                e.replicas.max(e.running)
            )
        })
        .collect();
    (!busy.is_empty()).then(|| {
        Refusal::new(
            "PoolRemovalRefused",
            format!(
                "the spec no longer has the node pool of {}, which still runs nodes: changing spec.combined or removing a pool would delete them and their data; nothing was changed (restore the previous spec, or move the data to a new cluster)",
                busy.join(", ")
            ),
        )
    })
}

fn pools(kc: &KafkaCluster) -> Result<Vec<Pool>, SpecError> {
    let spec = &kc.spec;
    let mut out = Vec::new();
    match (&spec.controllers, spec.combined) {
        (Some(_), true) => return Err(SpecError::ControllersWithCombined),
        (None, false) => return Err(SpecError::ControllersMissing),
        (Some(c), false) => {
            check_voters("controllers", c.replicas)?;
            out.push(pool(Role::Controller, "controllers", c, &spec.config)?);
            if spec.brokers.replicas < 1 {
                return Err(SpecError::NoBrokers {
                    replicas: spec.brokers.replicas,
                });
            }
            out.push(pool(Role::Broker, "brokers", &spec.brokers, &spec.config)?);
        }
        (None, true) => {
            check_voters("brokers", spec.brokers.replicas)?;
            out.push(pool(
                Role::Combined,
                "brokers",
                &spec.brokers,
                &spec.config,
            )?);
        }
    }
    Ok(out)
}

fn check_voters(pool: &'static str, replicas: i32) -> Result<(), SpecError> {
    if !(1..=MAX_CONTROLLERS).contains(&replicas) || replicas % 2 == 0 {
        return Err(SpecError::VoterCount { pool, replicas });
    }
    Ok(())
}

fn pool(
    role: Role,
    field: &'static str,
    spec: &NodePoolSpec,
    cluster_config: &BTreeMap<String, String>,
) -> Result<Pool, SpecError> {
    if !is_quantity(&spec.storage.size) {
        return Err(SpecError::StorageSize {
            pool: field,
            size: spec.storage.size.clone(),
        });
    }
    check_properties(&format!("spec.{field}.config"), &spec.config)?;
    let mut config = cluster_config.clone();
    config.extend(spec.config.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(Pool {
        role,
        replicas: spec.replicas,
        spec: spec.clone(),
        config,
    })
}

fn check_properties(location: &str, props: &BTreeMap<String, String>) -> Result<(), SpecError> {
    for key in props.keys() {
        if RESERVED_PROPERTIES.contains(&key.as_str()) {
            return Err(SpecError::ReservedProperty {
                location: location.to_owned(),
                property: key.clone(),
            });
        }
        if !is_property_name(key) {
            return Err(SpecError::PropertyName {
                location: location.to_owned(),
                property: key.clone(),
            });
        }
    }
    Ok(())
}

/// An RFC 1035 label (what a Service name must be) no longer than [`MAX_CLUSTER_NAME_LEN`].
pub fn is_cluster_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_CLUSTER_NAME_LEN
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Kafka property names: lowercase words joined by `.`, `-` or `_`.
fn is_property_name(key: &str) -> bool {
    !key.is_empty()
        && key.split(['.', '-', '_']).all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// A Kubernetes quantity as storage sizes use it: a decimal number and an optional suffix.
pub fn is_quantity(s: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E", "",
    ];
    SUFFIXES.iter().any(|suffix| {
        s.strip_suffix(suffix).is_some_and(|num| {
            let mut parts = num.splitn(2, '.');
            let int = parts.next().unwrap_or("");
            let frac = parts.next();
            !int.is_empty()
                && int.chars().all(|c| c.is_ascii_digit())
                && frac.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::fixtures::cluster;

    #[test]
    fn dedicated_controllers_and_brokers_get_distinct_node_ids() {
        let vc = validate(&cluster("basic.yaml")).expect("valid");
        assert_eq!(vc.pools.len(), 2);
        assert_eq!(vc.voter_pool().role, Role::Controller);
        assert_eq!(vc.broker_pool().role, Role::Broker);
        assert_eq!(Role::Controller.node_id(2), 2);
        assert_eq!(Role::Broker.node_id(0), BROKER_NODE_ID_BASE);
        // role config overrides cluster config
        assert_eq!(vc.broker_pool().config["min.insync.replicas"], "2");
        assert_eq!(vc.voter_pool().config["min.insync.replicas"], "1");
    }

    #[test]
    fn combined_cluster_has_one_pool_of_voting_brokers() {
        let vc = validate(&cluster("combined.yaml")).expect("valid");
        assert_eq!(vc.pools.len(), 1);
        assert_eq!(vc.pools[0].role, Role::Combined);
        assert_eq!(vc.pools[0].role.process_roles(), "broker,controller");
    }

    fn refused(fixture: &str, patch: impl FnOnce(&mut KafkaCluster)) -> SpecError {
        let mut kc = cluster(fixture);
        patch(&mut kc);
        validate(&kc).expect_err("spec must be refused")
    }

    #[test]
    fn invalid_specs_are_refused_with_the_field_named() {
        let e = refused("basic.yaml", |kc| {
            kc.spec.config.insert("node.id".into(), "7".into());
        });
        assert_eq!(
            e.to_string(),
            "spec.config sets \"node.id\", which the operator manages"
        );
        let e = refused("basic.yaml", |kc| {
            kc.spec.controllers.as_mut().expect("has").replicas = 2
        });
        assert!(
            matches!(e, SpecError::VoterCount { replicas: 2, .. }),
            "{e}"
        );
        let e = refused("basic.yaml", |kc| {
            kc.spec.brokers.storage.size = "ten gigs".into()
        });
        assert!(
            matches!(
                e,
                SpecError::StorageSize {
                    pool: "brokers",
                    ..
                }
            ),
            "{e}"
        );
        let e = refused("basic.yaml", |kc| kc.spec.brokers.replicas = 0);
        assert_eq!(e, SpecError::NoBrokers { replicas: 0 });
        let e = refused("combined.yaml", |kc| kc.spec.brokers.replicas = 4);
        assert!(
            matches!(
                e,
                SpecError::VoterCount {
                    pool: "brokers",
                    replicas: 4
                }
            ),
            "{e}"
        );
        let e = refused("basic.yaml", |kc| kc.spec.controllers = None);
        assert_eq!(e, SpecError::ControllersMissing);
        let e = refused("basic.yaml", |kc| kc.metadata.name = Some("x".repeat(41)));
        assert!(matches!(e, SpecError::NameTooLong { .. }));
        let e = refused("basic.yaml", |kc| {
            kc.spec.brokers.config.insert("Bad Name".into(), "1".into());
        });
        assert!(matches!(e, SpecError::PropertyName { .. }), "{e}");
        let e = refused("basic.yaml", |kc| {
            kc.spec.rack = Some(crate::crd::cluster::RackSpec {
                topology_key: "kubernetes.io/hostname".into(),
            })
        });
        assert!(matches!(e, SpecError::RackKey { .. }));
        let per_rack = |kc: &mut KafkaCluster| {
            kc.spec.rolling_update = Some(crate::crd::cluster::RollingUpdateSpec {
                max_unavailable_per_rack: Some(2),
            });
        };
        let e = refused("basic.yaml", per_rack);
        assert_eq!(e, SpecError::PerRackWithoutRack { value: 2 });
        let mut kc = cluster("basic.yaml");
        per_rack(&mut kc);
        kc.spec.rack = Some(crate::crd::cluster::RackSpec {
            topology_key: "topology.kubernetes.io/zone".into(),
        });
        assert_eq!(validate(&kc).expect("valid").max_unavailable_per_rack, 2);
    }

    #[test]
    fn any_quorum_change_is_refused_and_a_broker_scale_down_left_to_the_planner() {
        let mut vc = validate(&cluster("basic.yaml")).expect("valid");
        let current = BTreeMap::from([("broker".to_owned(), 5), ("controller".to_owned(), 1)]);
        let refused = refuse_unsafe_changes(&mut vc, &current);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].reason, "QuorumChangeRefused");
        assert!(
            refused[0]
                .message
                .starts_with("controller replicas stay at 1 (spec asks for 3)"),
            "{}",
            refused[0].message
        );
        assert_eq!(
            vc.broker_pool().replicas,
            3,
            "the planner's brokers are the spec's (cluster::day2 holds the StatefulSet)"
        );
        assert_eq!(vc.voter_pool().replicas, 1, "voters keep their count");

        // growing brokers is fine; shrinking the voters is refused too
        let mut vc = validate(&cluster("basic.yaml")).expect("valid");
        let current = BTreeMap::from([("broker".to_owned(), 2), ("controller".to_owned(), 5)]);
        let refused = refuse_unsafe_changes(&mut vc, &current);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].reason, "QuorumChangeRefused");
        assert_eq!(vc.broker_pool().replicas, 3);
        assert_eq!(vc.voter_pool().replicas, 5);

        // combined nodes are voters: growing them is refused
        let mut vc = validate(&cluster("combined.yaml")).expect("valid");
        vc.pools[0].replicas = 3;
        let refused = refuse_unsafe_changes(&mut vc, &BTreeMap::from([("node".to_owned(), 1)]));
        assert_eq!(refused[0].reason, "QuorumChangeRefused");
        assert_eq!(vc.pools[0].replicas, 1);
    }

    #[test]
    fn removing_a_pool_that_still_has_nodes_is_refused() {
        let vc = validate(&cluster("combined.yaml")).expect("valid");
        let pool = |suffix: &str, replicas, running| ExistingPool {
            suffix: suffix.to_owned(),
            replicas,
            running,
        };
        // the cluster ran dedicated pools and the spec flipped to combined
        let r = refuse_pool_removal(
            &vc,
            &[
                pool("controller", 3, 3),
                pool("broker", 0, 0),
                pool("node", 1, 1),
            ],
        )
        .expect("refused");
        assert_eq!(r.reason, "PoolRemovalRefused");
        assert!(
            r.message.contains("dev-controller (3 nodes)"),
            "{}",
            r.message
        );
        assert!(
            !r.message.contains("dev-broker"),
            "an empty pool may go: {}",
            r.message
        );
        // a pool scaled to zero whose pods are still terminating is not empty yet
        assert!(refuse_pool_removal(&vc, &[pool("broker", 0, 1)]).is_some());
        assert_eq!(
            refuse_pool_removal(&vc, &[pool("broker", 0, 0), pool("node", 1, 1)]),
            None
        );
    }

    #[test]
    fn cluster_names_must_be_service_names() {
        for ok in ["demo", "a", "kafka-prod-1", &"x".repeat(40)] {
            assert!(is_cluster_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Demo",
            "1kafka",
            "kafka-",
            "kafka.prod",
            "kafka_prod",
            &"x".repeat(41),
        ] {
            assert!(!is_cluster_name(bad), "{bad}");
        }
        let e = refused("basic.yaml", |kc| {
            kc.metadata.name = Some("kafka.prod".into())
        });
        assert!(matches!(e, SpecError::NameNotDns { .. }), "{e}");
    }

    #[test]
    fn quantities() {
        for ok in ["10Gi", "1", "1.5Ti", "500M"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "10 Gi", "1.Gi", "-1Gi", "10GB"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
