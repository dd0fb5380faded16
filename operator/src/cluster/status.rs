//! Computes a `KafkaClusterStatus` from what the reconciler observed (pods, the cluster's own
//! view through the admin protocol) and what it wants (node list, pod template hashes). Pure:
//! the reconciler only gathers the inputs and writes the result.

use std::collections::BTreeMap;

use super::build::{bootstrap_address, pod_name};
use super::day2::{blocker_line, operation_kind};
use super::operate::Day2Outcome;
use super::validate::{Refusal, ValidatedCluster};
use crate::admin::ClusterInfo;
use crate::crd::cluster::{
    KafkaClusterStatus, NodeState, NodeStatus, OperationKind, OperationStatus,
};
use crate::crd::common::{finalize_conditions, find_condition, Condition};
use crate::day2::{Decision, Operation, ReportedOperation};

/// Type of the condition that says whether day-2 operations (commissioning, draining, rolling
/// restarts) can run: they need the Kafka cluster observed through its admin API.
pub const DAY2_CONDITION: &str = "Day2Operations";

/// One pod as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObservation {
    pub ready: bool,
    /// The pod's `kafka.tributary.dev/config-hash` annotation.
    pub hash: Option<String>,
}

/// Everything the status is computed from.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Pods of the cluster by name.
    pub pods: BTreeMap<String, PodObservation>,
    /// Desired pod hash per pool role suffix.
    pub desired_hashes: BTreeMap<String, String>,
    /// The cluster's own view, or why it could not be asked.
    pub cluster: Result<ClusterInfo, String>,
    /// Spec changes the operator refused this pass (scale-down, quorum change, storage…).
    pub refusals: Vec<Refusal>,
    /// Pods that lack the rack label (`spec.rack.topologyKey`); empty without rack awareness.
    pub pods_without_rack: Vec<String>,
    /// Nodes those pods run on that lack the label too (as far as they could be read).
    pub nodes_without_rack: Vec<String>,
    /// Volume claims grown on request whose capacity has not reached it yet.
    pub resizing: Vec<String>,
    /// What the day-2 pass decided and did (its refusal, if any, is among `refusals`).
    pub day2: Day2Outcome,
}

/// Computes the new status. `previous` keeps condition transition times; `now` is RFC 3339.
pub fn compute_status(
    vc: &ValidatedCluster,
    observed: &Observed,
    previous: &KafkaClusterStatus,
    generation: Option<i64>,
    now: &str,
) -> KafkaClusterStatus {
    let nodes = node_statuses(vc, observed);
    let total = nodes.len() as i32;
    let ready = nodes.iter().filter(|n| n.ready).count() as i32;
    let registered = nodes.iter().filter(|n| n.ready && n.registered).count() as i32;
    let outdated: Vec<String> = nodes
        .iter()
        .filter(|n| !n.up_to_date)
        .map(|n| n.pod.clone())
        .collect();
    let all_ready = total > 0 && registered == total;
    let was_ready = find_condition(&previous.conditions, "Ready").is_some_and(Condition::is_true);
    let was_degraded = find_condition(&previous.conditions, "Degraded")
        .is_some_and(|c| c.is_true() && c.reason == "NodesNotReady");
    let extra_pods = observed
        .pods
        .keys()
        .filter(|p| !nodes.iter().any(|n| &n.pod == *p))
        .count();
    // A node the previous status did not list is being added; a listed node that is not ready
    // has failed (Degraded), which is not scaling.
    let new_nodes = !previous.nodes.is_empty()
        && nodes
            .iter()
            .any(|n| !n.ready && !previous.nodes.iter().any(|p| p.pod == n.pod));
    let creating = previous.nodes.is_empty() || previous.operation.kind == OperationKind::Creating;
    let kind = if all_ready && extra_pods == 0 {
        OperationKind::None
    } else if creating && extra_pods == 0 {
        OperationKind::Creating
    } else if extra_pods > 0 || new_nodes || previous.operation.kind == OperationKind::Scaling {
        OperationKind::Scaling
    } else {
        OperationKind::None
    };
    let day2_op = observed
        .day2
        .decision()
        .filter(|d| d.operation != ReportedOperation::None);
    let paused = paused_operation(previous, &observed.day2);
    let operation = if let Some(d) = day2_op {
        day2_operation(d)
    } else if let Some(p) = paused {
        p
    } else if kind == OperationKind::None {
        OperationStatus::default()
    } else {
        OperationStatus {
            kind,
            message: format!("{registered} of {total} nodes ready and registered"),
            done: registered,
            total,
            blockers: Vec::new(),
        }
    };
    let ready_message = match &observed.cluster {
        Ok(_) => format!("{registered} of {total} nodes ready and registered"),
        Err(e) => format!("{ready} of {total} pods ready; cluster not reachable: {e}"),
    };
    let mut conditions = vec![Condition::new(
        "Ready",
        all_ready,
        if all_ready {
            "AllNodesReady"
        } else {
            "NodesNotReady"
        },
        ready_message,
    )];
    conditions.push(if let Some(d) = day2_op {
        let reason = format!("{:?}", d.operation);
        Condition::new("Progressing", true, &reason, operation.message.clone())
    } else if operation.kind != OperationKind::None {
        Condition::new(
            "Progressing",
            true,
            "Reconciling",
            operation.message.clone(),
        )
    } else if !observed.resizing.is_empty() {
        Condition::new(
            "Progressing",
            true,
            "VolumesResizing",
            format!("volumes growing: {}", observed.resizing.join(", ")),
        )
    } else if !outdated.is_empty() {
        Condition::new(
            "Progressing",
            false,
            "RestartRequired",
            format!(
                "{} pods run an outdated configuration ({}); {}",
                outdated.len(),
                outdated.join(", "),
                match &observed.day2 {
                    Day2Outcome::Unavailable(_) =>
                        "the rolling restart waits until the Kafka cluster can be observed",
                    _ => "the operator restarts them one at a time",
                }
            ),
        )
    } else {
        Condition::new("Progressing", false, "UpToDate", "cluster matches its spec")
    });
    // Once a ready cluster loses a node it stays Degraded until every node is back, however
    // many passes that takes. A pod the rolling restart took down on purpose does not count.
    let down: Vec<&str> = nodes
        .iter()
        .filter(|n| !(n.ready && n.registered) && n.state != NodeState::Restarting)
        .map(|n| n.pod.as_str())
        .collect();
    let degraded = !down.is_empty() && (was_ready || was_degraded);
    conditions.push(if let Some(first) = observed.refusals.first() {
        Condition::new(
            "Degraded",
            true,
            first.reason,
            refusal_message(&observed.refusals),
        )
    } else if degraded {
        Condition::new(
            "Degraded",
            true,
            "NodesNotReady",
            format!("not ready or not registered: {}", down.join(", ")),
        )
    } else {
        Condition::new("Degraded", false, "AsExpected", "")
    });
    if vc.rack_key.is_some() {
        conditions.push(rack_condition(vc, observed));
    }
    if let Some(c) = day2_condition(&observed.day2) {
        conditions.push(c);
    }
    KafkaClusterStatus {
        conditions: finalize_conditions(conditions, &previous.conditions, generation, now),
        observed_generation: generation,
        nodes,
        // A leader once known stays reported while the cluster cannot be asked or knows none.
        controller_leader: observed
            .cluster
            .as_ref()
            .ok()
            .and_then(|c| c.controller_id)
            .or(previous.controller_leader),
        operation,
        bootstrap: Some(bootstrap_address(vc)),
        outdated_pods: outdated,
        // A failed action keeps the previous state: the next pass decides it again.
        day2: match &observed.day2 {
            Day2Outcome::Decided {
                decision,
                failed: None,
            } => Some(decision.state.clone()),
            _ => previous.day2.clone(),
        },
    }
}

/// The merge patch that writes `status` over `previous`: a JSON merge patch leaves keys it does
/// not mention, so every key `previous` has and `status` omits (a finished operation in
/// `day2`, a cleared `throttled`, blockers no longer there) is sent as `null`, which removes it.
/// Without this a restarted operator would resume an operation that had finished.
pub fn status_patch(
    previous: &KafkaClusterStatus,
    status: &KafkaClusterStatus,
) -> serde_json::Value {
    let mut new = serde_json::to_value(status).unwrap_or_default();
    let old = serde_json::to_value(previous).unwrap_or_default();
    null_removed(&old, &mut new);
    serde_json::json!({ "status": new })
}

fn null_removed(old: &serde_json::Value, new: &mut serde_json::Value) {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object_mut()) else {
        return;
    };
    for (k, ov) in o {
        match n.get_mut(k) {
            Some(nv) => null_removed(ov, nv),
            None => {
                n.insert(k.clone(), serde_json::Value::Null);
            }
        }
    }
}

/// A day-2 operation under way when the Kafka cluster cannot be observed: still reported (it
/// resumes from `status.day2`), with why it does not advance.
fn paused_operation(previous: &KafkaClusterStatus, day2: &Day2Outcome) -> Option<OperationStatus> {
    let Day2Outcome::Unavailable(e) = day2 else {
        return None;
    };
    let under_way = matches!(
        previous.operation.kind,
        OperationKind::Commissioning | OperationKind::Draining | OperationKind::Rolling
    ) && previous
        .day2
        .as_ref()
        .is_some_and(|d| d.operation.is_some());
    under_way.then(|| OperationStatus {
        message: format!("paused: the Kafka cluster cannot be observed: {e}"),
        blockers: Vec::new(),
        ..previous.operation.clone()
    })
}

/// `status.operation` for a day-2 operation under way.
/// At most this many blockers are listed in status (a large cluster can have thousands of
/// partitions behind one gate; the status object must stay small).
const BLOCKERS_IN_STATUS: usize = 20;

fn day2_operation(d: &Decision) -> OperationStatus {
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let mut blockers: Vec<String> = d
        .blocked
        .iter()
        .take(BLOCKERS_IN_STATUS)
        .map(blocker_line)
        .collect();
    if d.blocked.len() > BLOCKERS_IN_STATUS {
        blockers.push(format!(
            "… and {} more",
            d.blocked.len() - BLOCKERS_IN_STATUS
        ));
    }
    OperationStatus {
        kind: operation_kind(d.operation),
        message: d.message.clone(),
        done: count(d.done),
        total: count(d.total),
        blockers,
    }
}

/// `Day2Operations`: whether the planner could run this pass, and whether its action was
/// carried out. `None` when the pass did not run day-2 at all.
fn day2_condition(outcome: &Day2Outcome) -> Option<Condition> {
    Some(match outcome {
        Day2Outcome::NotRun => return None,
        Day2Outcome::Unavailable(e) => Condition::new(
            DAY2_CONDITION,
            false,
            "KafkaUnreachable",
            format!("scaling, draining and rolling restarts wait for the Kafka cluster: {e}"),
        ),
        Day2Outcome::Decided {
            failed: Some(e), ..
        } => Condition::new(
            DAY2_CONDITION,
            false,
            "ActionFailed",
            format!("{e}; decided again next pass"),
        ),
        Day2Outcome::Decided { decision, .. } => {
            Condition::new(DAY2_CONDITION, true, "Observed", decision.message.clone())
        }
    })
}

/// The state a node is in because of the day-2 operation, if any.
fn day2_node_state(outcome: &Day2Outcome, pod: &str, node_id: i32) -> Option<NodeState> {
    let Day2Outcome::Decided { decision, .. } = outcome else {
        return None;
    };
    match decision.state.operation.as_ref()? {
        Operation::Commissioning { brokers, .. } if brokers.contains(&node_id) => {
            Some(NodeState::Commissioning)
        }
        Operation::Decommissioning { brokers, .. } if brokers.contains(&node_id) => {
            Some(NodeState::Draining)
        }
        Operation::Restarting { pod: p, .. } if p == pod => Some(NodeState::Restarting),
        _ => None,
    }
}

/// `RackAwareness`: whether every pod carries the rack label its `broker.rack` is read from.
/// A pod without it runs with an empty rack, so replicas may share a zone.
fn rack_condition(vc: &ValidatedCluster, observed: &Observed) -> Condition {
    let key = vc.rack_key.as_deref().unwrap_or_default();
    if observed.pods_without_rack.is_empty() {
        Condition::new(
            "RackAwareness",
            true,
            "ZoneLabelsPresent",
            format!("every pod carries {key}"),
        )
    } else {
        let fix = if observed.nodes_without_rack.is_empty() {
            "the pods' nodes were not found without it: Kubernetes copies node topology labels onto pods only with PodTopologyLabelsAdmission (1.33+); restart the pods once it is on".to_owned()
        } else {
            format!(
                "nodes without it: {}; label them, then restart the pods",
                observed.nodes_without_rack.join(", ")
            )
        };
        Condition::new(
            "RackAwareness",
            false,
            "ZoneLabelMissing",
            format!(
                "pods without the {key} label run with no broker.rack, so replicas may share a zone: {} ({fix})",
                observed.pods_without_rack.join(", ")
            ),
        )
    }
}

/// Every refusal's message, joined: what the `Degraded` condition and the Event say.
pub fn refusal_message(refusals: &[Refusal]) -> String {
    refusals
        .iter()
        .map(|r| r.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn node_statuses(vc: &ValidatedCluster, observed: &Observed) -> Vec<NodeStatus> {
    let mut out = Vec::new();
    for pool in &vc.pools {
        let desired = observed.desired_hashes.get(pool.role.suffix());
        for ordinal in 0..pool.replicas {
            let pod = pod_name(vc, pool, ordinal);
            let node_id = pool.role.node_id(ordinal);
            let obs = observed.pods.get(&pod);
            let ready = obs.is_some_and(|p| p.ready);
            let registered = match &observed.cluster {
                // DescribeCluster lists brokers only; a controller-only node counts as registered when
                // it is ready and the cluster answers.
                Ok(info) if pool.role.is_broker() => info.broker_ids.contains(&node_id),
                Ok(_) => ready,
                Err(_) => false,
            };
            let up_to_date = obs.is_none_or(|p| p.hash.as_ref() == desired);
            let state = match day2_node_state(&observed.day2, &pod, node_id) {
                Some(s) => s,
                None if ready => NodeState::Active,
                None => NodeState::Pending,
            };
            out.push(NodeStatus {
                pod,
                node_id,
                roles: pool.role.process_roles().to_owned(),
                state,
                ready,
                registered,
                up_to_date,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::fixtures::cluster;
    use crate::cluster::validate::validate;

    #[test]
    fn status_lists_at_most_twenty_blockers() {
        let blocked = (0..25)
            .map(|i| crate::day2::Blocker {
                partition: format!("t-{i}"),
                reason: "ISR [1]".into(),
            })
            .collect();
        let d = Decision {
            action: crate::day2::Day2Action::Wait,
            state: crate::day2::Day2State::default(),
            operation: crate::day2::ReportedOperation::Rolling,
            message: "waiting".into(),
            blocked,
            skipped: Vec::new(),
            done: 0,
            total: 6,
        };
        let op = day2_operation(&d);
        assert_eq!(op.blockers.len(), 21);
        assert_eq!(op.blockers[0], "t-0: ISR [1]");
        assert_eq!(op.blockers[20], "… and 5 more");
    }

    fn observed(ready: &[&str], brokers: &[i32], hash: &str) -> Observed {
        Observed {
            pods: ready
                .iter()
                .map(|p| {
                    (
                        p.to_string(),
                        PodObservation {
                            ready: true,
                            hash: Some(hash.to_owned()),
                        },
                    )
                })
                .collect(),
            desired_hashes: [("controller", "h1"), ("broker", "h1")]
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect(),
            cluster: Ok(ClusterInfo {
                broker_ids: brokers.to_vec(),
                controller_id: Some(1),
            }),
            refusals: Vec::new(),
            pods_without_rack: Vec::new(),
            nodes_without_rack: Vec::new(),
            resizing: Vec::new(),
            day2: Day2Outcome::NotRun,
        }
    }

    const ALL: [&str; 6] = [
        "demo-controller-0",
        "demo-controller-1",
        "demo-controller-2",
        "demo-broker-0",
        "demo-broker-1",
        "demo-broker-2",
    ];

    #[test]
    fn ready_only_when_every_pod_is_ready_and_every_broker_registered() {
        let vc = validate(&cluster("basic.yaml")).expect("valid");
        let s = compute_status(
            &vc,
            &observed(&ALL, &[100, 101], "h1"),
            &Default::default(),
            Some(3),
            "t",
        );
        let ready = find_condition(&s.conditions, "Ready").expect("ready");
        assert!(!ready.is_true());
        assert_eq!(s.operation.kind, OperationKind::Creating);
        assert_eq!((s.operation.done, s.operation.total), (5, 6));
        assert!(
            !s.nodes
                .iter()
                .find(|n| n.node_id == 102)
                .expect("node")
                .registered
        );

        let s2 = compute_status(
            &vc,
            &observed(&ALL, &[100, 101, 102], "h1"),
            &s,
            Some(3),
            "t2",
        );
        let ready = find_condition(&s2.conditions, "Ready").expect("ready");
        assert!(ready.is_true());
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(s2.operation.kind, OperationKind::None);
        assert_eq!(s2.controller_leader, Some(1));
        assert_eq!(
            s2.bootstrap.as_deref(),
            Some("demo-bootstrap.kafka.svc:9092")
        );

        // a broker pod goes away after the cluster was ready: Degraded
        let s3 = compute_status(
            &vc,
            &observed(&ALL[..5], &[100, 101], "h1"),
            &s2,
            Some(3),
            "t3",
        );
        assert!(find_condition(&s3.conditions, "Degraded")
            .expect("degraded")
            .is_true());
        assert_eq!(
            s3.operation.kind,
            OperationKind::None,
            "a failed node is not scaling"
        );
    }

    #[test]
    fn a_failed_node_stays_degraded_is_not_scaling_and_the_leader_is_kept() {
        let vc = validate(&cluster("basic.yaml")).expect("valid");
        let ready = compute_status(
            &vc,
            &observed(&ALL, &[100, 101, 102], "h1"),
            &Default::default(),
            Some(3),
            "t1",
        );
        let mut status = ready;
        // broker 2 goes down for several passes, and the cluster cannot name a leader meanwhile
        for pass in 0..4 {
            let mut obs = observed(&ALL[..5], &[100, 101], "h1");
            if pass > 0 {
                obs.cluster = Err("timeout".into());
            }
            status = compute_status(&vc, &obs, &status, Some(3), &format!("t{}", pass + 2));
            let degraded = find_condition(&status.conditions, "Degraded").expect("degraded");
            assert!(degraded.is_true(), "pass {pass}: {degraded:?}");
            assert_eq!(degraded.reason, "NodesNotReady");
            assert!(
                degraded.message.contains("demo-broker-2"),
                "{}",
                degraded.message
            );
            assert_eq!(degraded.last_transition_time.as_deref(), Some("t2"));
            assert_eq!(status.operation.kind, OperationKind::None, "pass {pass}");
            assert_eq!(status.controller_leader, Some(1), "pass {pass}");
        }
        let back = compute_status(
            &vc,
            &observed(&ALL, &[100, 101, 102], "h1"),
            &status,
            Some(3),
            "t9",
        );
        assert!(!find_condition(&back.conditions, "Degraded")
            .expect("degraded")
            .is_true());
    }

    #[test]
    fn added_nodes_are_scaling_until_ready() {
        let kc = cluster("basic.yaml");
        let vc = validate(&kc).expect("valid");
        let ready = compute_status(
            &vc,
            &observed(&ALL, &[100, 101, 102], "h1"),
            &Default::default(),
            Some(3),
            "t1",
        );
        let mut more = kc;
        more.spec.brokers.replicas = 4;
        let vc4 = validate(&more).expect("valid");
        let s = compute_status(
            &vc4,
            &observed(&ALL, &[100, 101, 102], "h1"),
            &ready,
            Some(4),
            "t2",
        );
        assert_eq!(s.operation.kind, OperationKind::Scaling);
        // the next pass lists demo-broker-3 already: still scaling until it is ready
        let s = compute_status(
            &vc4,
            &observed(&ALL, &[100, 101, 102], "h1"),
            &s,
            Some(4),
            "t3",
        );
        assert_eq!(s.operation.kind, OperationKind::Scaling);
        let mut all = ALL.to_vec();
        all.push("demo-broker-3");
        let s = compute_status(
            &vc4,
            &observed(&all, &[100, 101, 102, 103], "h1"),
            &s,
            Some(4),
            "t4",
        );
        assert_eq!(s.operation.kind, OperationKind::None);
    }

    #[test]
    fn rack_awareness_warns_about_pods_without_the_zone_label() {
        let vc = validate(&cluster("combined.yaml")).expect("valid");
        let mut obs = observed(&["dev-node-0"], &[0], "h1");
        obs.pods_without_rack = vec!["dev-node-0".into()];
        let s = compute_status(&vc, &obs, &Default::default(), Some(1), "t");
        let c = find_condition(&s.conditions, "RackAwareness").expect("rack condition");
        assert!(!c.is_true());
        assert_eq!(c.reason, "ZoneLabelMissing");
        assert!(c.message.contains("dev-node-0"), "{}", c.message);
        assert!(
            c.message.contains("PodTopologyLabelsAdmission"),
            "{}",
            c.message
        );
        obs.nodes_without_rack = vec!["worker-1".into()];
        let s = compute_status(&vc, &obs, &s, Some(1), "t");
        let c = find_condition(&s.conditions, "RackAwareness").expect("rack condition");
        assert!(
            c.message.contains("nodes without it: worker-1"),
            "{}",
            c.message
        );
        obs.pods_without_rack.clear();
        obs.nodes_without_rack.clear();
        let s = compute_status(&vc, &obs, &s, Some(1), "t");
        assert!(find_condition(&s.conditions, "RackAwareness")
            .expect("rack condition")
            .is_true());
        let basic = validate(&cluster("basic.yaml")).expect("valid");
        let s = compute_status(
            &basic,
            &observed(&ALL, &[], "h1"),
            &Default::default(),
            Some(1),
            "t",
        );
        assert!(find_condition(&s.conditions, "RackAwareness").is_none());
    }

    #[test]
    fn pods_with_an_old_hash_are_listed_as_outdated() {
        let vc = validate(&cluster("basic.yaml")).expect("valid");
        let mut obs = observed(&ALL, &[100, 101, 102], "h1");
        obs.pods.get_mut("demo-broker-1").expect("pod").hash = Some("old".into());
        let s = compute_status(&vc, &obs, &Default::default(), Some(1), "t");
        assert_eq!(s.outdated_pods, vec!["demo-broker-1".to_owned()]);
        let p = find_condition(&s.conditions, "Progressing").expect("progressing");
        assert_eq!(p.reason, "RestartRequired");
    }

    #[test]
    fn the_status_patch_removes_what_the_new_status_no_longer_has() {
        let previous = KafkaClusterStatus {
            day2: Some(crate::day2::Day2State {
                known_brokers: vec![100],
                operation: Some(Operation::Restarting {
                    pod: "demo-broker-0".into(),
                    node_id: 100,
                }),
                blocked_since: Some("t".into()),
                throttled: true,
                leaders_elected: false,
            }),
            operation: OperationStatus {
                kind: OperationKind::Rolling,
                blockers: vec!["orders-0: ISR [1]".into()],
                ..OperationStatus::default()
            },
            ..KafkaClusterStatus::default()
        };
        let status = KafkaClusterStatus {
            day2: Some(crate::day2::Day2State {
                known_brokers: vec![100],
                ..Default::default()
            }),
            ..KafkaClusterStatus::default()
        };
        let patch = status_patch(&previous, &status);
        let day2 = &patch["status"]["day2"];
        assert!(day2["operation"].is_null() && day2.get("operation").is_some());
        assert!(day2
            .get("blockedSince")
            .is_some_and(serde_json::Value::is_null));
        assert!(day2
            .get("throttled")
            .is_some_and(serde_json::Value::is_null));
        assert_eq!(day2["knownBrokers"], serde_json::json!([100]));
        let op = &patch["status"]["operation"];
        assert!(op.get("blockers").is_some_and(serde_json::Value::is_null));
        assert_eq!(op["kind"], "None");
    }

    #[test]
    fn a_day2_operation_is_still_reported_while_kafka_cannot_be_observed() {
        let vc = validate(&cluster("basic.yaml")).expect("valid");
        let previous = KafkaClusterStatus {
            operation: OperationStatus {
                kind: OperationKind::Draining,
                message: "draining brokers [103]".into(),
                done: 3,
                total: 9,
                blockers: vec!["orders-1: moving".into()],
            },
            day2: Some(crate::day2::Day2State {
                known_brokers: vec![100, 101, 102, 103],
                operation: Some(Operation::Decommissioning {
                    brokers: vec![103],
                    moved: vec!["orders-1".into()],
                    scaled_down: false,
                }),
                ..Default::default()
            }),
            ..KafkaClusterStatus::default()
        };
        let mut obs = observed(&ALL, &[100, 101, 102], "h1");
        obs.day2 = Day2Outcome::Unavailable("connection refused".into());
        let s = compute_status(&vc, &obs, &previous, Some(1), "t");
        assert_eq!(s.operation.kind, OperationKind::Draining);
        assert_eq!((s.operation.done, s.operation.total), (3, 9));
        assert!(
            s.operation.message.contains("connection refused"),
            "{}",
            s.operation.message
        );
        assert_eq!(s.day2, previous.day2, "the state is kept");
        let c = find_condition(&s.conditions, DAY2_CONDITION).expect("condition");
        assert_eq!(c.reason, "KafkaUnreachable");
    }

    #[test]
    fn unreachable_cluster_is_not_ready_and_says_why() {
        let vc = validate(&cluster("basic.yaml")).expect("valid");
        let mut obs = observed(&ALL, &[], "h1");
        obs.cluster = Err("connection refused".into());
        let s = compute_status(&vc, &obs, &Default::default(), Some(1), "t");
        let ready = find_condition(&s.conditions, "Ready").expect("ready");
        assert!(!ready.is_true());
        assert!(
            ready.message.contains("connection refused"),
            "{}",
            ready.message
        );
    }
}
