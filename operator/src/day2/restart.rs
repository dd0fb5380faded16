//! Rolling restarts: one pod at a time; a pod that is down on an old configuration first, then
//! controllers before brokers, the active controller last; every pod ready before the next, the
//! quorum gates of `gates` before and after each controller, and the ISR gates before and after
//! each broker, whose preferred leaderships are moved back to it before the next pod.

use super::decide::{act, elect_leaders, idle, wait};
use super::gates::{
    after_controller_restart, after_restart, before_controller_restart, before_restart,
    not_led_by_preferred, GateResult,
};
use super::model::{
    Blocker, Day2Action, Day2Input, Day2State, Decision, NodeId, Operation, PodView,
    ReportedOperation,
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
        return with_progress(restart(state, down, msg, Vec::new()), done, total);
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
        let d = wait(
            state,
            &input.now,
            ReportedOperation::Rolling,
            &what,
            not_ready,
        );
        return with_progress(d, done, total);
    }
    let mut skipped = Vec::new();
    let mut gate = GateResult::default();
    if next.controller {
        gate = before_controller_restart(&input.kafka, next.node_id);
    }
    if next.broker {
        let broker_gate =
            before_restart(&input.kafka, next.node_id, input.spec.min_insync_replicas);
        skipped = broker_gate.skipped;
        gate.blocked.extend(broker_gate.blocked);
    }
    if !gate.open() {
        let mut d = wait(
            state,
            &input.now,
            ReportedOperation::Rolling,
            &what,
            gate.blocked,
        );
        d.skipped = skipped;
        return with_progress(d, done, total);
    }
    let mut msg = format!(
        "rolling restart: restarting {} ({done} of {total} pods up to date)",
        next.name
    );
    if !skipped.is_empty() {
        msg.push_str(&format!("; not waited for: {}", skipped.join(", ")));
    }
    with_progress(restart(state, next, msg, skipped), done, total)
}

/// Restarts `pod`: the step that the next passes follow (`continue_restart`).
fn restart(mut state: Day2State, pod: &PodView, msg: String, skipped: Vec<String>) -> Decision {
    state.operation = Some(Operation::Restarting {
        pod: pod.name.clone(),
        node_id: pod.node_id,
    });
    state.leaders_elected = false;
    let action = Day2Action::RestartPod {
        pod: pod.name.clone(),
    };
    let mut d = act(state, action, ReportedOperation::Rolling, msg);
    d.skipped = skipped;
    d
}

fn with_progress(mut d: Decision, done: usize, total: usize) -> Decision {
    (d.done, d.total) = (done, total);
    d
}

pub(super) fn continue_restart(
    input: &Day2Input,
    state: Day2State,
    pod: &str,
    node_id: NodeId,
) -> Decision {
    let what = format!("rolling restart: {pod} restarted");
    let Some(p) = input.kube.pods.iter().find(|p| p.name == pod) else {
        let blocked = vec![Blocker {
            partition: String::new(),
            reason: format!("pod {pod} to be recreated"),
        }];
        return wait(
            state,
            &input.now,
            ReportedOperation::Rolling,
            &what,
            blocked,
        );
    };
    if p.ready && !p.up_to_date {
        // The old pod still runs: the delete did not happen (or not yet); ask again.
        let msg = format!("rolling restart: {pod} still runs the old configuration; restarting it");
        return act(
            state,
            Day2Action::RestartPod {
                pod: pod.to_owned(),
            },
            ReportedOperation::Rolling,
            msg,
        );
    }
    if !p.ready {
        let blocked = vec![Blocker {
            partition: String::new(),
            reason: format!("pod {pod} to be ready"),
        }];
        return wait(
            state,
            &input.now,
            ReportedOperation::Rolling,
            &what,
            blocked,
        );
    }
    let mut gate = GateResult::default();
    if p.controller {
        gate = after_controller_restart(&input.kafka, node_id);
    }
    if p.broker {
        gate.blocked
            .extend(after_restart(&input.kafka, node_id).blocked);
    }
    if !gate.open() {
        return wait(
            state,
            &input.now,
            ReportedOperation::Rolling,
            &what,
            gate.blocked,
        );
    }
    let mut state = state;
    if p.broker {
        // Leadership moved away for the restart comes back before the next pod goes: asked for
        // once, then waited for.
        let unled = not_led_by_preferred(&input.kafka, Some(node_id));
        if !unled.is_empty() && !state.leaders_elected {
            let msg = format!(
                "rolling restart: {pod} is back; moving leadership of {} partitions back to it (preferred leader election)",
                unled.len()
            );
            return elect_leaders(state, unled, ReportedOperation::Rolling, msg);
        }
        if !unled.is_empty() {
            let blocked = unled
                .into_iter()
                .map(|partition| Blocker {
                    partition,
                    reason: format!("broker {node_id} to lead again as the preferred replica"),
                })
                .collect();
            return wait(
                state,
                &input.now,
                ReportedOperation::Rolling,
                &what,
                blocked,
            );
        }
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
