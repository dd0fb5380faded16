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
    /// Whether it started from what its pool wants now (`DesiredPod::run_by`).
    pub up_to_date: bool,
}

/// Everything the status is computed from.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Pods of the cluster by name.
    pub pods: BTreeMap<String, PodObservation>,
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
    let counts = Counts::of(&nodes);
    let outdated: Vec<String> = nodes
        .iter()
        .filter(|n| !n.up_to_date)
        .map(|n| n.pod.clone())
        .collect();
    let day2_op = observed
        .day2
        .decision()
        .filter(|d| d.operation != ReportedOperation::None);
    let operation = operation(observed, previous, &nodes, &counts, day2_op);
    let ready_message = match &observed.cluster {
        Ok(_) => counts.message(),
        Err(e) => format!(
            "{} of {} pods ready; cluster not reachable: {e}",
            counts.ready, counts.total
        ),
    };
    let all_ready = counts.all_ready();
    let ready_reason = if all_ready {
        "AllNodesReady"
    } else {
        "NodesNotReady"
    };
    let mut conditions = vec![
        Condition::new("Ready", all_ready, ready_reason, ready_message),
        progressing(observed, &operation, day2_op, &outdated),
        degraded(observed, previous, &nodes),
    ];
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

/// How many nodes there are, are ready, and are ready and registered.
struct Counts {
    total: i32,
    ready: i32,
    registered: i32,
}

impl Counts {
    fn of(nodes: &[NodeStatus]) -> Counts {
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        Counts {
            total: count(nodes.len()),
            ready: count(nodes.iter().filter(|n| n.ready).count()),
            registered: count(nodes.iter().filter(|n| n.ready && n.registered).count()),
        }
    }

    fn all_ready(&self) -> bool {
        self.total > 0 && self.registered == self.total
    }

    fn message(&self) -> String {
        format!(
            "{} of {} nodes ready and registered",
            self.registered, self.total
        )
    }
}

/// `status.operation`: the day-2 operation under way (or paused while Kafka cannot be
/// observed), else creating or scaling the node set, else none.
fn operation(
    observed: &Observed,
    previous: &KafkaClusterStatus,
    nodes: &[NodeStatus],
    counts: &Counts,
    day2_op: Option<&Decision>,
) -> OperationStatus {
    if let Some(d) = day2_op {
        return day2_operation(d);
    }
    if let Some(p) = paused_operation(previous, &observed.day2) {
        return p;
    }
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
    let kind = if counts.all_ready() && extra_pods == 0 {
        OperationKind::None
    } else if creating && extra_pods == 0 {
        OperationKind::Creating
    } else if extra_pods > 0 || new_nodes || previous.operation.kind == OperationKind::Scaling {
        OperationKind::Scaling
    } else {
        OperationKind::None
    };
    if kind == OperationKind::None {
        return OperationStatus::default();
    }
    OperationStatus {
        kind,
        message: counts.message(),
        done: counts.registered,
        total: counts.total,
        ..OperationStatus::default()
    }
}

/// `Progressing`: the operation under way, volumes growing, or pods waiting for a restart.
fn progressing(
    observed: &Observed,
    operation: &OperationStatus,
    day2_op: Option<&Decision>,
    outdated: &[String],
) -> Condition {
    if let Some(d) = day2_op {
        let reason = format!("{:?}", d.operation);
        return Condition::new("Progressing", true, &reason, operation.message.clone());
    }
    if operation.kind != OperationKind::None {
        let message = operation.message.clone();
        return Condition::new("Progressing", true, "Reconciling", message);
    }
    if !observed.resizing.is_empty() {
        let message = format!("volumes growing: {}", observed.resizing.join(", "));
        return Condition::new("Progressing", true, "VolumesResizing", message);
    }
    if outdated.is_empty() {
        return Condition::new("Progressing", false, "UpToDate", "cluster matches its spec");
    }
    let then = match &observed.day2 {
        Day2Outcome::Unavailable(_) => {
            "the rolling restart waits until the Kafka cluster can be observed"
        }
        _ => "the operator restarts them one at a time",
    };
    let message = format!(
        "{} pods run an outdated configuration ({}); {then}",
        outdated.len(),
        outdated.join(", "),
    );
    Condition::new("Progressing", false, "RestartRequired", message)
}

/// `Degraded`: a refused spec change, or nodes down. Once a ready cluster loses a node it stays
/// Degraded until every node is back, however many passes that takes; a pod the rolling restart
/// took down on purpose does not count.
fn degraded(observed: &Observed, previous: &KafkaClusterStatus, nodes: &[NodeStatus]) -> Condition {
    if let Some(first) = observed.refusals.first() {
        let message = refusal_message(&observed.refusals);
        return Condition::new("Degraded", true, first.reason, message);
    }
    let was_ready = find_condition(&previous.conditions, "Ready").is_some_and(Condition::is_true);
    let was_degraded = find_condition(&previous.conditions, "Degraded")
        .is_some_and(|c| c.is_true() && c.reason == "NodesNotReady");
    let down: Vec<&str> = nodes
        .iter()
        .filter(|n| !(n.ready && n.registered) && n.state != NodeState::Restarting)
        .map(|n| n.pod.as_str())
        .collect();
    if !down.is_empty() && (was_ready || was_degraded) {
        let message = format!("not ready or not registered: {}", down.join(", "));
        return Condition::new("Degraded", true, "NodesNotReady", message);
    }
    Condition::new("Degraded", false, "AsExpected", "")
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

/// At most this many blockers are listed in status (a large cluster can have thousands of
/// partitions behind one gate; the status object must stay small).
const BLOCKERS_IN_STATUS: usize = 20;

/// `status.operation` for a day-2 operation under way.
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
        bytes_moved: d.bytes.as_ref().map(|b| b.moved),
        bytes_remaining: d.bytes.as_ref().map(|b| b.remaining),
        bytes_per_second: d.bytes.as_ref().and_then(|b| b.bytes_per_second),
        eta: d.bytes.as_ref().and_then(|b| b.eta.clone()),
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
        op @ Operation::Restarting { .. } if op.restarting().iter().any(|r| r.pod == pod) => {
            Some(NodeState::Restarting)
        }
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
            let up_to_date = obs.is_none_or(|p| p.up_to_date);
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
#[path = "status_tests.rs"]
mod tests;
