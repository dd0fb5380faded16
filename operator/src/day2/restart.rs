//! Rolling restarts: one pod at a time; a pod that is down on an old configuration first, then
//! controllers before brokers, the active controller last; every pod ready before the next, the
//! quorum gates of `gates` before and after each controller, and the ISR gates before and after
//! each broker, whose preferred leaderships are moved back to it before the next pod.
//!
//! With `maxUnavailablePerRack` above 1, a broker-only pod takes down with it other outdated
//! broker-only pods of its rack (the rack its broker registered with), up to that many pods in
//! all, each added only if the ISR gate still holds for the whole set: with rack-aware placement
//! no partition has two replicas in one rack, so a rack's brokers can go together. The set comes
//! back as one step: every pod ready, every broker back in its ISRs, leaders restored.

use super::decide::{act, elect_leaders, idle, wait};
use super::gates::{
    after_controller_restart, after_restart, before_controller_restart, before_restart,
    not_led_by_preferred, GateResult,
};
use super::model::{
    Blocker, Day2Action, Day2Input, Day2State, Decision, NodeId, ObservedKafka, Operation, PodView,
    ReportedOperation, RestartingPod,
};

/// Restart order: controller-only pods, then the others; within each, the active controller
/// last; then by node id.
fn restart_order(input: &Day2Input) -> Vec<&PodView> {
    let active = input.kafka.active_controller;
    let mut pods: Vec<&PodView> = input.kube.pods.iter().collect();
    pods.sort_by_key(|p| {
        let group = u8::from(p.broker);
        let is_active = p.controller && Some(p.node_id) == active;
        (group, is_active, p.node_id)
    });
    pods
}

/// The rack broker `id` registered with (none when it has none or is not registered).
fn rack_of(kafka: &ObservedKafka, id: NodeId) -> Option<&str> {
    kafka
        .brokers
        .iter()
        .find(|b| b.id == id)?
        .rack
        .as_deref()
        .filter(|r| !r.is_empty())
}

/// Outdated, ready broker-only pods of `next`'s rack that restart together with it: added in
/// restart order while the ISR gate holds for the whole set, up to `maxUnavailablePerRack` pods
/// in all. Empty for a controller, a broker without a rack, or a limit of 1.
fn rack_peers<'a>(input: &Day2Input, next: &PodView, order: &[&'a PodView]) -> Vec<&'a PodView> {
    let max = input.spec.max_unavailable_per_rack;
    let broker_only = |p: &PodView| p.broker && !p.controller;
    if max <= 1 || !broker_only(next) {
        return Vec::new();
    }
    let Some(rack) = rack_of(&input.kafka, next.node_id) else {
        return Vec::new();
    };
    let mut set = vec![next.node_id];
    let mut peers = Vec::new();
    for p in order {
        if set.len() >= max {
            break;
        }
        let candidate = p.name != next.name && !p.up_to_date && p.ready && broker_only(p);
        if !candidate || rack_of(&input.kafka, p.node_id) != Some(rack) {
            continue;
        }
        let mut with = set.clone();
        with.push(p.node_id);
        if before_restart(&input.kafka, &with, input.spec.min_insync_replicas).open() {
            set = with;
            peers.push(*p);
        }
    }
    peers
}

pub(super) fn rolling_restart(input: &Day2Input, state: Day2State) -> Decision {
    let total = input.kube.pods.len();
    let done = input.kube.pods.iter().filter(|p| p.up_to_date).count();
    let order = restart_order(input);
    let Some(next) = order.iter().find(|p| !p.up_to_date) else {
        return idle(state, "every pod runs the desired configuration");
    };
    // A pod that is down and runs an old configuration restarts first, without the ISR gate:
    // taking down what is already down lowers no ISR, and its old configuration may be why it
    // is down. A pod down on the desired configuration is waited for.
    if let Some(down) = order.iter().find(|p| !p.ready && !p.up_to_date) {
        let msg = format!(
            "rolling restart: restarting {} first: it is not ready and runs an old configuration ({done} of {total} pods up to date)",
            down.name
        );
        let d = restart(state, down, Vec::new(), msg, Vec::new());
        return with_progress(d, done, total);
    }
    let what = format!("rolling restart: {} next", next.name);
    let not_ready: Vec<Blocker> = input
        .kube
        .pods
        .iter()
        .filter(|p| !p.ready)
        .map(|p| Blocker {
            partition: String::new(),
            reason: format!("pod {} to be ready (one pod down at a time)", p.name),
        })
        .collect();
    if !not_ready.is_empty() {
        let d = rolling_wait(input, state, &what, not_ready);
        return with_progress(d, done, total);
    }
    let mut skipped = Vec::new();
    let mut gate = GateResult::default();
    if next.controller {
        gate = before_controller_restart(&input.kafka, next.node_id);
    }
    if next.broker {
        let broker_gate = before_restart(
            &input.kafka,
            &[next.node_id],
            input.spec.min_insync_replicas,
        );
        skipped = broker_gate.skipped;
        gate.blocked.extend(broker_gate.blocked);
    }
    if !gate.open() {
        let mut d = rolling_wait(input, state, &what, gate.blocked);
        d.skipped = skipped;
        return with_progress(d, done, total);
    }
    let peers = rack_peers(input, next, &order);
    let mut msg = format!("rolling restart: restarting {}", next.name);
    if !peers.is_empty() {
        let ids: Vec<NodeId> = std::iter::once(next.node_id)
            .chain(peers.iter().map(|p| p.node_id))
            .collect();
        // the topics the whole set's gate does not wait for
        skipped = before_restart(&input.kafka, &ids, input.spec.min_insync_replicas).skipped;
        let names: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
        msg.push_str(&format!(
            " together with {} (rack {}, maxUnavailablePerRack {})",
            names.join(", "),
            rack_of(&input.kafka, next.node_id).unwrap_or_default(),
            input.spec.max_unavailable_per_rack
        ));
    }
    msg.push_str(&format!(" ({done} of {total} pods up to date)"));
    if !skipped.is_empty() {
        msg.push_str(&format!("; not waited for: {}", skipped.join(", ")));
    }
    let peers = peers.into_iter().cloned().collect();
    with_progress(restart(state, next, peers, msg, skipped), done, total)
}

/// Restarts `pod` and its rack peers: the step the next passes follow (`continue_restart`).
fn restart(
    mut state: Day2State,
    pod: &PodView,
    peers: Vec<PodView>,
    msg: String,
    skipped: Vec<String>,
) -> Decision {
    state.operation = Some(Operation::Restarting {
        pod: pod.name.clone(),
        node_id: pod.node_id,
        rack_peers: peers
            .iter()
            .map(|p| RestartingPod {
                pod: p.name.clone(),
                node_id: p.node_id,
            })
            .collect(),
    });
    state.leaders_elected = false;
    let action = Day2Action::RestartPod {
        pod: pod.name.clone(),
        with: peers.into_iter().map(|p| p.name).collect(),
    };
    let mut d = act(state, action, ReportedOperation::Rolling, msg);
    d.skipped = skipped;
    d
}

/// A wait of the rolling restart on `blocked`.
fn rolling_wait(
    input: &Day2Input,
    state: Day2State,
    what: &str,
    blocked: Vec<Blocker>,
) -> Decision {
    wait(state, &input.now, ReportedOperation::Rolling, what, blocked)
}

fn with_progress(mut d: Decision, done: usize, total: usize) -> Decision {
    (d.done, d.total) = (done, total);
    d
}

/// The step after a restart: every pod of it back (recreated, ready, on the new
/// configuration), the post-restart gates of each, its brokers' preferred leaderships restored;
/// then the next pod.
pub(super) fn continue_restart(input: &Day2Input, state: Day2State) -> Decision {
    let members = state
        .operation
        .as_ref()
        .map(Operation::restarting)
        .unwrap_or_default();
    let names: Vec<&str> = members.iter().map(|m| m.pod.as_str()).collect();
    let what = format!("rolling restart: {} restarted", names.join(", "));
    let mut still_old = Vec::new();
    let mut blocked = Vec::new();
    let mut back = Vec::new();
    for m in &members {
        match input.kube.pods.iter().find(|p| p.name == m.pod) {
            None => blocked.push(format!("pod {} to be recreated", m.pod)),
            Some(p) if p.ready && !p.up_to_date => still_old.push(p.name.clone()),
            Some(p) if !p.ready => blocked.push(format!("pod {} to be ready", m.pod)),
            Some(p) => back.push((p, m.node_id)),
        }
    }
    if let Some((first, rest)) = still_old.split_first() {
        // The old pod still runs: the delete did not happen (or not yet); ask again.
        let msg = if rest.is_empty() {
            format!("rolling restart: {first} still runs the old configuration; restarting it")
        } else {
            format!(
                "rolling restart: {} still run the old configuration; restarting them",
                still_old.join(", ")
            )
        };
        let action = Day2Action::RestartPod {
            pod: first.clone(),
            with: rest.to_vec(),
        };
        return act(state, action, ReportedOperation::Rolling, msg);
    }
    if !blocked.is_empty() {
        let blocked = blocked
            .into_iter()
            .map(|reason| Blocker {
                partition: String::new(),
                reason,
            })
            .collect();
        return rolling_wait(input, state, &what, blocked);
    }
    let mut gate = GateResult::default();
    let brokers: Vec<NodeId> = back
        .iter()
        .filter(|(p, _)| p.broker)
        .map(|(_, id)| *id)
        .collect();
    for (p, id) in &back {
        if p.controller {
            gate.blocked
                .extend(after_controller_restart(&input.kafka, *id).blocked);
        }
    }
    if !brokers.is_empty() {
        gate.blocked
            .extend(after_restart(&input.kafka, &brokers).blocked);
    }
    if !gate.open() {
        return rolling_wait(input, state, &what, gate.blocked);
    }
    let mut state = state;
    // Leadership moved away for the restart comes back before the next pod goes: asked for
    // once, then waited for.
    let unled: Vec<(String, NodeId)> = brokers
        .iter()
        .flat_map(|id| {
            not_led_by_preferred(&input.kafka, Some(*id))
                .into_iter()
                .map(move |p| (p, *id))
        })
        .collect();
    if !unled.is_empty() && !state.leaders_elected {
        let (is, it) = if names.len() == 1 {
            ("is", "it")
        } else {
            ("are", "them")
        };
        let pods = names.join(", ");
        let msg = format!(
            "rolling restart: {pods} {is} back; moving leadership of {} partitions back to {it} (preferred leader election)",
            unled.len()
        );
        let partitions = unled.into_iter().map(|(p, _)| p).collect();
        return elect_leaders(state, partitions, ReportedOperation::Rolling, msg);
    }
    if !unled.is_empty() {
        let blocked = unled
            .into_iter()
            .map(|(partition, id)| Blocker {
                partition,
                reason: format!("broker {id} to lead again as the preferred replica"),
            })
            .collect();
        return rolling_wait(input, state, &what, blocked);
    }
    state.operation = None;
    state.blocked_since = None;
    state.leaders_elected = false;
    if input.kube.pods.iter().any(|p| !p.up_to_date) {
        return rolling_restart(input, state);
    }
    idle(
        state,
        "rolling restart finished: every pod runs the desired configuration",
    )
}
