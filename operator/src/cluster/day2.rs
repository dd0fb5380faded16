//! What the cluster reconciler hands the day-2 planner and takes back from it, as pure
//! functions: the desired brokers (`DesiredCluster`) from the validated spec, the pods as the
//! planner sees them (`ObservedKube`: node id from the ordinal, roles from the pool, "up to date"
//! from the pod's config-hash annotation against its pool's desired one), and how many broker
//! replicas the StatefulSet may have while an operation runs (a shrink happens only when the
//! planner has drained the leaving brokers). Nothing here talks to the API or to Kafka; that is
//! `cluster::operate`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::build::{
    dynamic_configs_of, pod_name, DesiredObjects, DesiredPod, CONFIG_HASH_ANNOTATION, ROLE_LABEL,
};
use super::validate::{Role, ValidatedCluster, BROKER_NODE_ID_BASE};
use crate::admin::MIN_INSYNC_REPLICAS;
use crate::crd::cluster::OperationKind;
use crate::day2::model::{DEFAULT_BATCH_SIZE, DEFAULT_MIN_INSYNC_REPLICAS};
use crate::day2::{
    Blocker, Day2State, DesiredCluster, ObservedKube, Operation, PodView, ReportedOperation,
};

/// The brokers the spec wants, for the planner. Call it after `refuse_unsafe_changes` and
/// before `hold_broker_replicas`: for a dedicated broker pool these are the spec's ordinals
/// (fewer than run during a drain); combined nodes are voters, whose count the quorum refusal
/// already kept, so their planner never sees a scale-down it would refuse a second time.
pub fn desired_cluster(vc: &ValidatedCluster) -> DesiredCluster {
    let pool = vc.broker_pool();
    DesiredCluster {
        brokers: (0..pool.replicas).map(|o| pool.role.node_id(o)).collect(),
        min_insync_replicas: pool
            .config
            .get(MIN_INSYNC_REPLICAS)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MIN_INSYNC_REPLICAS),
        batch_size: vc
            .rebalance
            .batch_size
            .and_then(|b| usize::try_from(b).ok())
            .unwrap_or(DEFAULT_BATCH_SIZE)
            .max(1),
        throttle_bytes_per_second: vc.rebalance.throttle_bytes_per_second,
        paused: vc.rebalance.paused.unwrap_or(false),
        max_unavailable_per_rack: usize::try_from(vc.max_unavailable_per_rack).unwrap_or(1),
    }
}

/// Sets the broker pool's replicas to what the StatefulSet may have now, given what it has
/// (`current`, by role suffix) and the day-2 state kept in status:
/// - growing is immediate (the planner commissions the new brokers once they register);
/// - shrinking waits for the planner: the count stays at the current one until a
///   decommission has drained the leaving brokers and scaled down (`scaledDown`), from when it
///   is the first leaving ordinal until the decommission finishes, whatever the spec says
///   meanwhile (a re-grow then starts once the leaving brokers are unregistered).
///
/// Returns whether the spec's count is being held back.
pub fn hold_broker_replicas(
    vc: &mut ValidatedCluster,
    current: &BTreeMap<String, i32>,
    state: &Day2State,
) -> bool {
    let Some(pool) = vc.pools.iter_mut().find(|p| p.role == Role::Broker) else {
        return false;
    };
    let Some(&now) = current.get(pool.role.suffix()) else {
        return false;
    };
    let wanted = pool.replicas;
    if let Some(Operation::Decommissioning {
        brokers,
        scaled_down: true,
        ..
    }) = &state.operation
    {
        if let Some(first) = brokers.iter().map(|b| b - BROKER_NODE_ID_BASE).min() {
            pool.replicas = first.max(0);
            return pool.replicas != wanted;
        }
    }
    if wanted < now {
        pool.replicas = now;
        return true;
    }
    false
}

/// What each pool's pods must have started from, per pool role suffix (from the built
/// StatefulSets' templates).
pub fn desired_pods(d: &DesiredObjects) -> BTreeMap<String, DesiredPod> {
    d.stateful_sets
        .iter()
        .filter_map(|s| {
            let role = s.labels().get(ROLE_LABEL)?.clone();
            let annotations = s
                .spec
                .as_ref()?
                .template
                .metadata
                .as_ref()?
                .annotations
                .as_ref()?;
            let desired = DesiredPod {
                hash: annotations.get(CONFIG_HASH_ANNOTATION)?.clone(),
                dynamic_configs: dynamic_configs_of(annotations),
            };
            Some((role, desired))
        })
        .collect()
}

/// Whether `p` is up to date with its pool's `desired` pod (`DesiredPod::run_by`).
pub fn pod_up_to_date(p: &Pod, desired: &BTreeMap<String, DesiredPod>) -> bool {
    p.labels()
        .get(ROLE_LABEL)
        .and_then(|role| desired.get(role))
        .is_some_and(|d| d.run_by(p.annotations()))
}

/// Whether a pod passes its readiness probe and is not being deleted.
pub fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pods as the planner sees them. A pod of a pool the spec no longer has, or whose name
/// has no ordinal, is left out (it is not the planner's to restart). A pod the StatefulSet
/// should have (an ordinal below the replicas `vc` applies) but that does not exist (deleted,
/// not recreated yet) is listed as not ready: the planner then waits for it rather than take a
/// second pod down.
pub fn observed_kube(
    vc: &ValidatedCluster,
    pods: &[Pod],
    desired: &BTreeMap<String, DesiredPod>,
) -> ObservedKube {
    let mut views: Vec<PodView> = pods
        .iter()
        .filter_map(|p| {
            let suffix = p.labels().get(ROLE_LABEL)?;
            let pool = vc.pools.iter().find(|x| x.role.suffix() == suffix)?;
            let name = p.name_any();
            let ordinal: i32 = name.rsplit('-').next()?.parse().ok()?;
            Some(PodView {
                node_id: pool.role.node_id(ordinal),
                broker: pool.role.is_broker(),
                controller: pool.role.is_controller(),
                ready: pod_ready(p),
                up_to_date: pod_up_to_date(p, desired),
                name,
            })
        })
        .collect();
    for pool in &vc.pools {
        for ordinal in 0..pool.replicas {
            let name = pod_name(vc, pool, ordinal);
            if !views.iter().any(|v| v.name == name) {
                views.push(PodView {
                    name,
                    node_id: pool.role.node_id(ordinal),
                    broker: pool.role.is_broker(),
                    controller: pool.role.is_controller(),
                    ready: false,
                    up_to_date: true,
                });
            }
        }
    }
    ObservedKube {
        broker_replicas: vc.broker_pool().replicas,
        pods: views,
    }
}

/// The status operation kind of a planner operation.
pub fn operation_kind(op: ReportedOperation) -> OperationKind {
    match op {
        ReportedOperation::None => OperationKind::None,
        ReportedOperation::Commissioning => OperationKind::Commissioning,
        ReportedOperation::Draining => OperationKind::Draining,
        ReportedOperation::Rolling => OperationKind::Rolling,
    }
}

/// A blocker as `status.operation.blockers` lists it: `topic-partition: reason`, or the reason
/// alone when it is not a partition.
pub fn blocker_line(b: &Blocker) -> String {
    if b.partition.is_empty() {
        b.reason.clone()
    } else {
        format!("{}: {}", b.partition, b.reason)
    }
}

/// What a blocker line is about (the partition, or the whole reason): an Event is recorded
/// when this set changes, not when a moving partition's ISR does.
pub fn blocker_key(line: &str) -> &str {
    line.split_once(": ").map_or(line, |(k, _)| k)
}

/// The `Degraded` reason of a planner refusal (the planner's names; any other is reported as
/// `Day2Refused`).
pub fn refusal_reason(reason: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "ScaleDownRefused",
        "QuorumChangeRefused",
        "DrainImpossible",
        "BalanceImpossible",
    ];
    KNOWN
        .iter()
        .find(|k| **k == reason)
        .copied()
        .unwrap_or("Day2Refused")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::build::{build_all, DYNAMIC_CONFIGS_ANNOTATION};
    use crate::cluster::fixtures::cluster;
    use crate::cluster::validate::validate;

    fn current(broker: i32) -> BTreeMap<String, i32> {
        BTreeMap::from([("broker".to_owned(), broker), ("controller".to_owned(), 3)])
    }

    fn decommissioning(brokers: Vec<i32>, scaled_down: bool) -> Day2State {
        Day2State {
            known_brokers: vec![100, 101, 102, 103, 104],
            operation: Some(Operation::Decommissioning {
                brokers,
                moved: Vec::new(),
                scaled_down,
            }),
            ..Day2State::default()
        }
    }

    #[test]
    fn the_statefulset_shrinks_only_once_the_planner_scaled_down() {
        let mut kc = cluster("basic.yaml");
        kc.spec.brokers.replicas = 3;
        let vc = validate(&kc).expect("valid");
        // spec 3, running 5, nothing drained yet: held at 5, the planner wants 3
        let mut held = vc.clone();
        assert!(hold_broker_replicas(
            &mut held,
            &current(5),
            &Day2State::default()
        ));
        assert_eq!(held.broker_pool().replicas, 5);
        assert_eq!(desired_cluster(&vc).brokers, [100, 101, 102]);
        let mut draining = vc.clone();
        hold_broker_replicas(
            &mut draining,
            &current(5),
            &decommissioning(vec![103, 104], false),
        );
        assert_eq!(draining.broker_pool().replicas, 5);
        // drained and scaled down: the first leaving ordinal, even if the spec grew meanwhile
        let mut grown = kc.clone();
        grown.spec.brokers.replicas = 6;
        let mut vc6 = validate(&grown).expect("valid");
        hold_broker_replicas(
            &mut vc6,
            &current(3),
            &decommissioning(vec![103, 104], true),
        );
        assert_eq!(vc6.broker_pool().replicas, 3);
        // growing is immediate
        let mut vc6 = validate(&grown).expect("valid");
        assert!(!hold_broker_replicas(
            &mut vc6,
            &current(3),
            &Day2State::default()
        ));
        assert_eq!(vc6.broker_pool().replicas, 6);
    }

    #[test]
    fn pods_carry_node_ids_roles_and_whether_they_run_the_desired_hash() {
        let vc = validate(&cluster("basic.yaml")).expect("valid");
        let desired = desired_pods(&build_all(&vc));
        let pod = |name: &str, role: &str, hash: &str, ready: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": { "name": name, "labels": { ROLE_LABEL: role },
                              "annotations": { CONFIG_HASH_ANNOTATION: hash,
                                               DYNAMIC_CONFIGS_ANNOTATION: "min.insync.replicas" } },
                "status": { "conditions": [{ "type": "Ready", "status": ready }] }
            }))
            .expect("pod")
        };
        // started with a dynamic config (log.retention.ms) the spec no longer sets
        let mut removed = pod("demo-broker-1", "broker", &desired["broker"].hash, "True");
        removed.annotations_mut().insert(
            DYNAMIC_CONFIGS_ANNOTATION.to_owned(),
            "log.retention.ms,min.insync.replicas".to_owned(),
        );
        let kube = observed_kube(
            &vc,
            &[
                pod("demo-broker-2", "broker", &desired["broker"].hash, "True"),
                pod("demo-controller-1", "controller", "old", "False"),
                pod("demo-other-0", "gone", "x", "True"),
                removed,
            ],
            &desired,
        );
        assert_eq!(kube.broker_replicas, 3);
        // three observed, the other three the StatefulSets should have listed as not ready
        assert_eq!(kube.pods.len(), 6, "{kube:?}");
        let missing = kube
            .pods
            .iter()
            .find(|p| p.name == "demo-broker-0")
            .expect("listed");
        assert_eq!((missing.node_id, missing.ready), (100, false));
        assert!(!kube.pods.iter().any(|p| p.name.starts_with("demo-other")));
        let b = &kube.pods[0];
        assert_eq!((b.node_id, b.broker, b.controller), (102, true, false));
        assert!(b.ready && b.up_to_date);
        let c = &kube.pods[1];
        assert_eq!((c.node_id, c.broker, c.controller), (1, false, true));
        assert!(!c.ready && !c.up_to_date);
        let r = &kube.pods[2];
        assert_eq!(r.name, "demo-broker-1");
        assert!(
            r.ready && !r.up_to_date,
            "a removed dynamic config restarts"
        );
    }

    #[test]
    fn min_isr_comes_from_the_broker_pool_config() {
        let vc = validate(&cluster("basic.yaml")).expect("valid");
        assert_eq!(desired_cluster(&vc).min_insync_replicas, 2);
        assert_eq!(desired_cluster(&vc).batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(desired_cluster(&vc).throttle_bytes_per_second, None);
        let mut kc = cluster("basic.yaml");
        kc.spec.rebalance = Some(crate::crd::cluster::RebalanceSpec {
            batch_size: Some(4),
            throttle_bytes_per_second: Some(1_000_000),
            paused: Some(true),
        });
        let d = desired_cluster(&validate(&kc).expect("valid"));
        assert_eq!(
            (d.batch_size, d.throttle_bytes_per_second, d.paused),
            (4, Some(1_000_000), true)
        );
        assert_eq!(blocker_key("orders-1: ISR [1]"), "orders-1");
        assert_eq!(blocker_key("pod x to be ready"), "pod x to be ready");
        assert_eq!(refusal_reason("ScaleDownRefused"), "ScaleDownRefused");
        assert_eq!(refusal_reason("Other"), "Day2Refused");
    }
}
