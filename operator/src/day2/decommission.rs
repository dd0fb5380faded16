//! Decommissioning: cordon the leaving brokers (the highest ordinals), drain them in batches,
//! wait until they are empty and every moved partition is fully in sync, shrink the StatefulSet,
//! wait for the pods to stop, unregister. Refused when fewer brokers than a topic's replication
//! factor would remain.

use std::collections::BTreeSet;

use tributary_planner::{plan, Goal};

use super::decide::{act, idle, planner_input, submit_batch, wait};
use super::model::{
    Blocker, Day2Action, Day2Input, Day2State, Decision, NodeId, Operation, ReportedOperation,
};

/// Broker ids that run (a pod or a registration) but the spec no longer wants.
pub(super) fn leaving_brokers(input: &Day2Input) -> Vec<NodeId> {
    let running = input
        .kube
        .pods
        .iter()
        .filter(|p| p.broker)
        .map(|p| p.node_id)
        .chain(input.kafka.brokers.iter().map(|b| b.id));
    running
        .filter(|id| !input.spec.brokers.contains(id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Topics whose replication factor exceeds `remaining` brokers, as `name (RF n)`.
fn topics_too_wide(input: &Day2Input, remaining: usize) -> Vec<String> {
    let mut out = BTreeSet::new();
    for p in &input.kafka.partitions {
        let rf = p.replicas.len() - p.adding.len();
        if rf > remaining {
            out.insert(format!("{} (RF {rf})", p.topic));
        }
    }
    out.into_iter().collect()
}

pub(super) fn decommission(input: &Day2Input, mut state: Day2State) -> Decision {
    let (leaving, mut moved, scaled_down) = match state.operation.take() {
        Some(Operation::Decommissioning {
            brokers,
            moved,
            scaled_down,
        }) => (brokers, moved, scaled_down),
        _ => (leaving_brokers(input), Vec::new(), false),
    };
    if !scaled_down && leaving.iter().all(|b| input.spec.brokers.contains(b)) {
        // The spec wants them back: the decommission is cancelled.
        let cordoned: Vec<NodeId> = input
            .kafka
            .brokers
            .iter()
            .filter(|b| b.cordoned && leaving.contains(&b.id))
            .map(|b| b.id)
            .collect();
        if cordoned.is_empty() {
            return idle(state, "decommission cancelled: the spec keeps the brokers");
        }
        let msg = format!("decommission cancelled: uncordoning brokers {cordoned:?}");
        return act(
            state,
            Day2Action::Uncordon { brokers: cordoned },
            ReportedOperation::Draining,
            msg,
        );
    }
    if scaled_down {
        return finish_decommission(input, state, leaving, moved);
    }
    let voters: Vec<NodeId> = input
        .kube
        .pods
        .iter()
        .filter(|p| p.controller && leaving.contains(&p.node_id))
        .map(|p| p.node_id)
        .collect();
    if !voters.is_empty() {
        state.operation = None;
        let reason = format!(
            "brokers {voters:?} are also controller quorum voters: the quorum's membership cannot change yet"
        );
        return act(
            state,
            Day2Action::Refuse {
                reason: "QuorumChangeRefused".to_owned(),
            },
            ReportedOperation::None,
            reason,
        );
    }
    let remaining = input
        .kafka
        .brokers
        .iter()
        .filter(|b| !leaving.contains(&b.id))
        .count();
    let too_wide = topics_too_wide(input, remaining);
    if !too_wide.is_empty() {
        let reason = format!(
            "removing brokers {leaving:?} would leave {remaining} brokers, fewer than the replication factor of {}",
            too_wide.join(", ")
        );
        state.operation = None;
        let mut d = act(
            state,
            Day2Action::Refuse {
                reason: "ScaleDownRefused".to_owned(),
            },
            ReportedOperation::None,
            reason,
        );
        d.skipped = too_wide;
        return d;
    }
    state.operation = Some(Operation::Decommissioning {
        brokers: leaving.clone(),
        moved: moved.clone(),
        scaled_down: false,
    });
    let uncordoned: Vec<NodeId> = input
        .kafka
        .brokers
        .iter()
        .filter(|b| leaving.contains(&b.id) && !b.cordoned)
        .map(|b| b.id)
        .collect();
    if !uncordoned.is_empty() {
        let msg = format!("decommissioning brokers {leaving:?}: cordoning {uncordoned:?} so they receive no new replicas");
        return act(
            state,
            Day2Action::Cordon {
                brokers: uncordoned,
            },
            ReportedOperation::Draining,
            msg,
        );
    }
    let hosting = input
        .kafka
        .partitions
        .iter()
        .filter(|p| p.replicas.iter().any(|r| leaving.contains(r)))
        .count();
    if hosting > 0 {
        let (brokers, partitions) = planner_input(input);
        let goal = Goal::Drain(leaving.iter().copied().collect());
        let planned = match plan(&brokers, &partitions, &goal) {
            Ok(p) => p,
            Err(e) => {
                let reason = format!("cannot drain brokers {leaving:?}: {e}");
                return act(
                    state,
                    Day2Action::Refuse {
                        reason: "DrainImpossible".to_owned(),
                    },
                    ReportedOperation::Draining,
                    reason,
                );
            }
        };
        return submit_batch(
            input,
            state,
            planned.moves,
            &mut moved,
            ReportedOperation::Draining,
            &format!("draining brokers {leaving:?}"),
        );
    }
    drained(input, state, leaving, moved)
}

/// The leaving brokers hold no replica: wait for every moved partition to be fully in sync and
/// for their log directories to be empty, then shrink the StatefulSet.
fn drained(
    input: &Day2Input,
    state: Day2State,
    leaving: Vec<NodeId>,
    moved: Vec<String>,
) -> Decision {
    let mut blocked: Vec<Blocker> = input
        .kafka
        .partitions
        .iter()
        .filter(|p| moved.contains(&p.name()) && !p.fully_in_sync())
        .map(|p| Blocker {
            partition: p.name(),
            reason: format!("ISR {:?} of replicas {:?}", p.isr, p.replicas),
        })
        .collect();
    for id in &leaving {
        if input.kafka.unanswered.contains(id) {
            blocked.push(Blocker {
                partition: String::new(),
                reason: format!("broker {id} did not report its log directories"),
            });
        }
        if let Some(bytes) = input.kafka.log_dir_bytes.get(id).filter(|b| **b > 0) {
            blocked.push(Blocker {
                partition: String::new(),
                reason: format!("broker {id} still holds {bytes} bytes"),
            });
        }
    }
    let what = format!("brokers {leaving:?} are drained");
    if !blocked.is_empty() {
        return wait(
            state,
            &input.now,
            ReportedOperation::Draining,
            &what,
            blocked,
        );
    }
    let replicas = i32::try_from(input.spec.brokers.len()).unwrap_or(i32::MAX);
    let mut state = state;
    state.operation = Some(Operation::Decommissioning {
        brokers: leaving.clone(),
        moved,
        scaled_down: true,
    });
    let msg = format!(
        "{what} and every moved partition is in sync: shrinking the StatefulSet to {replicas}"
    );
    act(
        state,
        Day2Action::ScaleBrokers { replicas },
        ReportedOperation::Draining,
        msg,
    )
}

fn finish_decommission(
    input: &Day2Input,
    mut state: Day2State,
    leaving: Vec<NodeId>,
    moved: Vec<String>,
) -> Decision {
    state.operation = Some(Operation::Decommissioning {
        brokers: leaving.clone(),
        moved,
        scaled_down: true,
    });
    let pods: Vec<Blocker> = input
        .kube
        .pods
        .iter()
        .filter(|p| p.broker && leaving.contains(&p.node_id))
        .map(|p| Blocker {
            partition: String::new(),
            reason: format!("pod {} is still running", p.name),
        })
        .collect();
    if !pods.is_empty() {
        let what = format!("decommissioning brokers {leaving:?}");
        return wait(state, &input.now, ReportedOperation::Draining, &what, pods);
    }
    let registered: Vec<NodeId> = input
        .kafka
        .brokers
        .iter()
        .filter(|b| leaving.contains(&b.id))
        .map(|b| b.id)
        .collect();
    if !registered.is_empty() {
        let msg = format!("brokers {registered:?} stopped empty: unregistering them");
        return act(
            state,
            Day2Action::Unregister {
                brokers: registered,
            },
            ReportedOperation::Draining,
            msg,
        );
    }
    state.known_brokers.retain(|b| !leaving.contains(b));
    idle(state, &format!("brokers {leaving:?} decommissioned"))
}
