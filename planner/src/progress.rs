//! How far a submitted plan has got, from the partitions' observed state. Pure bookkeeping: the
//! caller reads the replica lists and in-flight reassignments (ListPartitionReassignments), this
//! module compares them with the plan.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{BrokerId, Plan};

/// A partition as observed while a plan runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionState {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The replica list now (during a KIP-455 reassignment: the union of old and new).
    pub replicas: Vec<BrokerId>,
    /// Whether a reassignment of this partition is in progress.
    pub reassigning: bool,
    /// Bytes already on the replicas this move adds (the sum of their log sizes, as
    /// DescribeLogDirs reports them), while the move runs; 0 when unknown.
    #[serde(default)]
    pub copied_bytes: u64,
}

/// Progress of a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Moves whose partition has reached its target and is not reassigning, or that no longer
    /// exists (a deleted topic has nothing left to move).
    pub partitions_done: usize,
    /// Moves in the plan.
    pub partitions_total: usize,
    /// Bytes of the finished moves, plus what the running moves have copied so far (at most
    /// each move's own size).
    pub bytes_moved_estimate: u64,
    /// Bytes the moves not finished yet still have to copy.
    pub bytes_remaining: u64,
}

impl Progress {
    /// True when every move is done.
    pub fn is_complete(&self) -> bool {
        self.partitions_done == self.partitions_total
    }
}

/// Compares `plan` with the observed partitions. A move is done when its partition's replica
/// list equals the target (order included: the order sets the preferred leader) and no
/// reassignment of it is in progress. A running move counts the bytes its new replicas already
/// hold (`copied_bytes`, capped at the move's size: a replica may already have grown past the
/// size planned); a done move counts its whole size.
pub fn progress(plan: &Plan, current: &[PartitionState]) -> Progress {
    let observed: BTreeMap<(&str, i32), &PartitionState> = current
        .iter()
        .map(|s| ((s.topic.as_str(), s.partition), s))
        .collect();
    let mut out = Progress {
        partitions_total: plan.moves.len(),
        ..Progress::default()
    };
    for m in &plan.moves {
        let state = observed.get(&(m.topic.as_str(), m.partition));
        let done = state.is_none_or(|s| !s.reassigning && s.replicas == m.target);
        if done {
            out.partitions_done += 1;
            out.bytes_moved_estimate += m.bytes();
        } else {
            let copied = state.map_or(0, |s| s.copied_bytes.min(m.bytes()));
            out.bytes_moved_estimate += copied;
            out.bytes_remaining += m.bytes() - copied;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Move;

    fn mv(partition: i32, current: &[BrokerId], target: &[BrokerId]) -> Move {
        Move {
            topic: "t".into(),
            partition,
            current: current.to_vec(),
            target: target.to_vec(),
            size_bytes: 100,
        }
    }

    fn state(partition: i32, replicas: &[BrokerId], reassigning: bool) -> PartitionState {
        PartitionState {
            topic: "t".into(),
            partition,
            replicas: replicas.to_vec(),
            reassigning,
            copied_bytes: 0,
        }
    }

    #[test]
    fn a_move_is_done_when_the_target_is_reached_and_nothing_is_in_flight() {
        let plan = Plan {
            moves: vec![
                mv(0, &[1, 2], &[3, 2]),
                mv(1, &[1, 2], &[3, 4]),
                mv(2, &[1, 2], &[2, 1]),
            ],
            bytes_to_move: 300,
            ..Plan::default()
        };
        let observed = [
            state(0, &[3, 2], false), // done: 100 bytes
            state(1, &[3, 4], true),  // target listed but still reassigning
            state(2, &[1, 2], false), // reorder not applied yet
        ];
        let p = progress(&plan, &observed);
        assert_eq!(
            p,
            Progress {
                partitions_done: 1,
                partitions_total: 3,
                bytes_moved_estimate: 100,
                bytes_remaining: 200
            }
        );
        assert!(!p.is_complete());
        let finished = [state(1, &[3, 4], false), state(2, &[2, 1], false)];
        // Partition 0 is gone from the observation (topic deleted): nothing left to move.
        assert!(progress(&plan, &finished).is_complete());
        assert_eq!(progress(&plan, &finished).bytes_remaining, 0);
    }

    #[test]
    fn a_running_move_counts_what_its_new_replicas_hold_up_to_its_size() {
        let plan = Plan {
            moves: vec![mv(0, &[1, 2], &[3, 4]), mv(1, &[1, 2], &[3, 2])],
            bytes_to_move: 300,
            ..Plan::default()
        };
        let observed = [
            PartitionState {
                copied_bytes: 150,
                ..state(0, &[3, 4, 1, 2], true)
            },
            // The new replica grew past the planned size (writes go on): capped at 100.
            PartitionState {
                copied_bytes: 180,
                ..state(1, &[3, 2, 1], true)
            },
        ];
        let p = progress(&plan, &observed);
        assert_eq!((p.bytes_moved_estimate, p.bytes_remaining), (250, 50));
        assert_eq!(p.partitions_done, 0);
    }
}
