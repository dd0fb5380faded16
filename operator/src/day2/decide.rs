//! The day-2 decision: from the desired brokers, the pods, the Kafka cluster's state and the
//! operation kept in status, the ONE next safe action and the words that explain it.
//!
//! Rules, in order:
//! 1. one disruptive operation at a time: while any reassignment is in flight, wait;
//! 2. an operation kept in status is resumed before anything new starts (a restarted operator
//!    picks it up from the state), except a commissioning of brokers the spec no longer wants,
//!    which the decommission replaces;
//! 3. decommissioning (brokers the spec no longer has, i.e. the highest ordinals): refuse when
//!    fewer brokers than some topic's replication factor would remain (naming the topics); else
//!    cordon → drain in batches (`tributary_planner`, `Goal::Drain`) → wait until the leaving
//!    brokers hold no replica and no bytes and every moved partition is fully in sync → shrink
//!    the StatefulSet → wait for the pods to stop → unregister;
//! 4. commissioning (registered brokers not yet balanced in): wait for every desired broker to
//!    be registered and unfenced, then balance in batches (`Goal::Balance`) until the plan is empty;
//! 5. rolling restart of outdated pods: controllers before brokers, the active controller last;
//!    every pod ready first; before a broker restarts, the `gates::before_restart` rule; after,
//!    `gates::after_restart`. Blocked gates wait (never fail) and name the partitions and since
//!    when.
//!
//! The function never errors: an impossible plan is a `Refuse` decision.

use tributary_planner::{BrokerInfo, PartitionInfo};

use super::commission::{commission, new_brokers};
use super::decommission::{decommission, leaving_brokers};
use super::model::{
    Blocker, Day2Action, Day2Input, Day2State, Decision, Operation, PartitionView,
    ReportedOperation,
};
use super::progress;
use super::restart::{continue_restart, rolling_restart};

/// How many blocking partitions a message names (all are in `Decision::blocked`).
const NAMED_IN_MESSAGE: usize = 5;

/// Decides the next action. Pure and deterministic.
///
/// On the first pass (no brokers known, no operation) the desired brokers that are registered
/// (fenced or not) or already have a pod are adopted as they are: a cluster the operator starts
/// managing is not rebalanced, and a new cluster whose brokers register one by one is not
/// "commissioned" broker by broker; only brokers that appear later are. The decision carries the
/// operation's byte progress (`progress::report`).
pub fn decide(input: &Day2Input) -> Decision {
    if input.state.known_brokers.is_empty() && input.state.operation.is_none() {
        let mut adopted = input.clone();
        adopted.state.known_brokers = input
            .spec
            .brokers
            .iter()
            .copied()
            .filter(|id| {
                input.kafka.brokers.iter().any(|b| b.id == *id)
                    || input.kube.pods.iter().any(|p| p.broker && p.node_id == *id)
            })
            .collect();
        adopted.state.known_brokers.sort_unstable();
        if !adopted.state.known_brokers.is_empty() {
            return decide(&adopted);
        }
    }
    let mut decision = with_throttle(input, next_step(input));
    progress::report(input, &mut decision);
    decision
}

/// Removes a throttle set with submitted moves as soon as no move is in flight and the next
/// step is not another batch.
fn with_throttle(input: &Day2Input, decision: Decision) -> Decision {
    let in_flight = input
        .kafka
        .partitions
        .iter()
        .any(PartitionView::reassigning);
    if input.state.throttled
        && !in_flight
        && !matches!(decision.action, Day2Action::Reassign { .. })
    {
        let mut state = input.state.clone();
        state.throttled = false;
        let operation = reported(&state);
        return act(
            state,
            Day2Action::ClearThrottle,
            operation,
            "every submitted move is finished: removing the replication throttle".to_owned(),
        );
    }
    decision
}

fn next_step(input: &Day2Input) -> Decision {
    let state = input.state.clone();
    let moving: Vec<&PartitionView> = input
        .kafka
        .partitions
        .iter()
        .filter(|p| p.reassigning())
        .collect();
    if !moving.is_empty() {
        return waiting_on_moves(input, state, &moving);
    }
    match &state.operation {
        Some(Operation::Restarting { .. }) => return continue_restart(input, state),
        Some(Operation::Decommissioning { .. }) => return decommission(input, state),
        Some(Operation::Commissioning { brokers, .. })
            if brokers.iter().all(|b| input.spec.brokers.contains(b)) =>
        {
            return commission(input, state)
        }
        // The spec no longer wants some of the brokers being commissioned: balancing onto
        // brokers about to leave would only move the data twice; the decommission below
        // replaces the operation.
        Some(Operation::Commissioning { .. }) | None => {}
    }
    if !leaving_brokers(input).is_empty() {
        return decommission(input, state);
    }
    if !new_brokers(input).is_empty() {
        return commission(input, state);
    }
    if input.kube.pods.iter().any(|p| !p.up_to_date) {
        return rolling_restart(input, state);
    }
    idle(state, "the cluster matches its spec")
}

pub(super) fn idle(mut state: Day2State, message: &str) -> Decision {
    state.operation = None;
    state.blocked_since = None;
    Decision {
        action: Day2Action::None,
        state,
        operation: ReportedOperation::None,
        message: message.to_owned(),
        blocked: Vec::new(),
        skipped: Vec::new(),
        done: 0,
        total: 0,
        bytes: None,
    }
}

/// A decision that acts (not a wait): the gate clock stops.
pub(super) fn act(
    mut state: Day2State,
    action: Day2Action,
    operation: ReportedOperation,
    message: String,
) -> Decision {
    state.blocked_since = None;
    Decision {
        action,
        state,
        operation,
        message,
        blocked: Vec::new(),
        skipped: Vec::new(),
        done: 0,
        total: 0,
        bytes: None,
    }
}

/// Asks for a preferred leader election of `partitions`, and records in the state that this
/// step has asked (it is asked once per step; `leaders_elected` is cleared when a step starts).
pub(super) fn elect_leaders(
    mut state: Day2State,
    partitions: Vec<String>,
    operation: ReportedOperation,
    message: String,
) -> Decision {
    state.leaders_elected = true;
    act(
        state,
        Day2Action::ElectLeaders { partitions },
        operation,
        message,
    )
}

/// A wait on a gate: keeps (or starts) the time since which the step waits and names the first
/// blockers in the message.
pub(super) fn wait(
    mut state: Day2State,
    now: &str,
    operation: ReportedOperation,
    what: &str,
    blocked: Vec<Blocker>,
) -> Decision {
    let since = state
        .blocked_since
        .get_or_insert_with(|| now.to_owned())
        .clone();
    let named: Vec<String> = blocked
        .iter()
        .take(NAMED_IN_MESSAGE)
        .map(|b| {
            if b.partition.is_empty() {
                b.reason.clone()
            } else {
                format!("{} ({})", b.partition, b.reason)
            }
        })
        .collect();
    let more = blocked.len().saturating_sub(NAMED_IN_MESSAGE);
    let mut message = format!("{what}: waiting since {since} for {}", named.join("; "));
    if more > 0 {
        message.push_str(&format!(" and {more} more"));
    }
    Decision {
        action: Day2Action::Wait,
        state,
        operation,
        message,
        blocked,
        skipped: Vec::new(),
        done: 0,
        total: 0,
        bytes: None,
    }
}

fn reported(state: &Day2State) -> ReportedOperation {
    match state.operation {
        Some(Operation::Commissioning { .. }) => ReportedOperation::Commissioning,
        Some(Operation::Decommissioning { .. }) => ReportedOperation::Draining,
        Some(Operation::Restarting { .. }) => ReportedOperation::Rolling,
        None => ReportedOperation::None,
    }
}

fn moved_of(state: &Day2State) -> &[String] {
    match &state.operation {
        Some(Operation::Commissioning { moved, .. })
        | Some(Operation::Decommissioning { moved, .. }) => moved,
        _ => &[],
    }
}

fn waiting_on_moves(input: &Day2Input, state: Day2State, moving: &[&PartitionView]) -> Decision {
    let operation = reported(&state);
    let moved = moved_of(&state).len();
    let who = if state.operation.is_none() {
        " (not submitted by the operator)"
    } else {
        ""
    };
    let blocked = moving
        .iter()
        .map(|p| Blocker {
            partition: p.name(),
            reason: format!(
                "moving: adding {:?}, removing {:?}, ISR {:?}",
                p.adding, p.removing, p.isr
            ),
        })
        .collect();
    let what = format!(
        "{} partition reassignments in progress{who}; one operation at a time",
        moving.len()
    );
    let mut d = wait(state, &input.now, operation, &what, blocked);
    d.done = moved.saturating_sub(moving.len());
    d.total = moved;
    d
}

/// The planner's view: registered brokers (fenced ones may keep but not receive replicas) and
/// every partition.
pub(super) fn planner_input(input: &Day2Input) -> (Vec<BrokerInfo>, Vec<PartitionInfo>) {
    let brokers = input
        .kafka
        .brokers
        .iter()
        .map(|b| BrokerInfo {
            id: b.id,
            rack: b.rack.clone(),
            cordoned: b.cordoned || b.fenced,
        })
        .collect();
    let partitions = input
        .kafka
        .partitions
        .iter()
        .map(|p| PartitionInfo {
            topic: p.topic.clone(),
            partition: p.partition,
            replicas: p.replicas.clone(),
            size_bytes: p.size_bytes,
        })
        .collect();
    (brokers, partitions)
}

/// Submits the next batch of `moves` and records them in the operation's `moved` list.
pub(super) fn submit_batch(
    input: &Day2Input,
    mut state: Day2State,
    mut moves: Vec<tributary_planner::Move>,
    moved: &mut Vec<String>,
    operation: ReportedOperation,
    what: &str,
) -> Decision {
    let planned = moves.len();
    let remaining: u64 = moves.iter().map(tributary_planner::Move::bytes).sum();
    if input.spec.paused {
        progress::record_queue(&mut state, &moves);
        let blocked = vec![Blocker {
            partition: String::new(),
            reason: format!(
                "spec.rebalance.paused to be false ({planned} partition moves, {remaining} bytes, remain)"
            ),
        }];
        let mut d = wait(state, &input.now, operation, what, blocked);
        d.done = moved.len();
        d.total = moved.len() + planned;
        return d;
    }
    let queued = moves.split_off(input.spec.batch_size.max(1).min(moves.len()));
    let bytes: u64 = moves.iter().map(tributary_planner::Move::bytes).sum();
    state.throttled |= input.spec.throttle_bytes_per_second.is_some();
    progress::record_batch(&mut state, &input.now, &moves, &queued);
    for m in &moves {
        let name = format!("{}-{}", m.topic, m.partition);
        if !moved.contains(&name) {
            moved.push(name);
        }
    }
    match state.operation.as_mut() {
        Some(Operation::Decommissioning { moved: m, .. })
        | Some(Operation::Commissioning { moved: m, .. }) => m.clone_from(moved),
        _ => {}
    }
    let msg = format!(
        "{what}: submitting {} of {planned} remaining partition moves ({bytes} bytes to copy, {remaining} bytes in all)",
        moves.len()
    );
    let done = moved.len() - moves.len();
    let total = moved.len() + planned - moves.len();
    let mut d = act(
        state,
        Day2Action::Reassign {
            moves,
            throttle_bytes_per_second: input.spec.throttle_bytes_per_second,
        },
        operation,
        msg,
    );
    d.done = done;
    d.total = total;
    d
}
