//! Commissioning: once every desired broker is registered and unfenced, balance replicas onto
//! the new ones in batches until the planner has nothing left to move, then a preferred leader
//! election for the partitions not led by their first replica.

use tributary_planner::{plan, Goal};

use super::decide::{act, elect_leaders, idle, planner_input, submit_batch, wait};
use super::gates::not_led_by_preferred;
use super::model::{
    Blocker, Day2Action, Day2Input, Day2State, Decision, NodeId, Operation, ReportedOperation,
};

/// Desired brokers that are registered and unfenced but not yet balanced in.
pub(super) fn new_brokers(input: &Day2Input) -> Vec<NodeId> {
    input
        .kafka
        .brokers
        .iter()
        .filter(|b| !b.fenced && input.spec.brokers.contains(&b.id))
        .filter(|b| !input.state.known_brokers.contains(&b.id))
        .map(|b| b.id)
        .collect()
}

pub(super) fn commission(input: &Day2Input, mut state: Day2State) -> Decision {
    let (brokers, mut moved) = match state.operation.take() {
        Some(Operation::Commissioning { brokers, moved }) => (brokers, moved),
        _ => {
            state.leaders_elected = false;
            (new_brokers(input), Vec::new())
        }
    };
    state.operation = Some(Operation::Commissioning {
        brokers: brokers.clone(),
        moved: moved.clone(),
    });
    let not_up: Vec<Blocker> = input
        .spec
        .brokers
        .iter()
        .filter(|id| {
            !input
                .kafka
                .brokers
                .iter()
                .any(|b| b.id == **id && !b.fenced)
        })
        .map(|id| Blocker {
            partition: String::new(),
            reason: format!("broker {id} to register and be unfenced"),
        })
        .collect();
    let what = format!("commissioning brokers {brokers:?}");
    if !not_up.is_empty() {
        return wait(
            state,
            &input.now,
            ReportedOperation::Commissioning,
            &what,
            not_up,
        );
    }
    let (infos, partitions) = planner_input(input);
    let planned = match plan(&infos, &partitions, &Goal::Balance) {
        Ok(p) => p,
        Err(e) => {
            let reason = format!("cannot balance partitions onto brokers {brokers:?}: {e}");
            return act(
                state,
                Day2Action::Refuse {
                    reason: "BalanceImpossible".to_owned(),
                },
                ReportedOperation::Commissioning,
                reason,
            );
        }
    };
    if planned.moves.is_empty() {
        // Balanced: leadership follows the new assignment's preferred replicas (asked once).
        let unled = not_led_by_preferred(&input.kafka, None);
        if !unled.is_empty() && !state.leaders_elected {
            let msg = format!(
                "brokers {brokers:?} balanced in: moving leadership of {} partitions to their preferred replicas",
                unled.len()
            );
            return elect_leaders(state, unled, ReportedOperation::Commissioning, msg);
        }
        state.leaders_elected = false;
        for b in &input.kafka.brokers {
            if input.spec.brokers.contains(&b.id) && !state.known_brokers.contains(&b.id) {
                state.known_brokers.push(b.id);
            }
        }
        state.known_brokers.sort_unstable();
        let mut d = idle(
            state,
            &format!(
                "brokers {brokers:?} commissioned: {} partitions moved, replicas balanced",
                moved.len()
            ),
        );
        d.done = moved.len();
        d.total = moved.len();
        return d;
    }
    submit_batch(
        input,
        state,
        planned.moves,
        &mut moved,
        ReportedOperation::Commissioning,
        &what,
    )
}
