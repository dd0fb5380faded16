//! The gates of a rolling restart, as pure checks over observed partitions:
//! - before restarting broker X (Strimzi's rule): every partition X hosts must keep at least
//!   `min.insync.replicas` in-sync replicas without X. Topics whose replication factor is not
//!   above `min.insync.replicas` can never pass that check: they are skipped and named (their
//!   acks=all producers see NOT_ENOUGH_REPLICAS while X restarts, whatever the operator waits for);
//! - after restarting X: X is registered and unfenced, back in the ISR of every partition it
//!   hosts, and no partition of the cluster is under-replicated;
//! - before restarting controller C: without C, a majority of the quorum's voters is caught up
//!   with the active controller (DescribeQuorum); after: C itself is caught up.
//!
//! This module does not choose which pod restarts next; `decide` does.

use std::collections::BTreeSet;

use super::model::{Blocker, BrokerView, NodeId, ObservedKafka, PartitionView};

/// The result of a gate: the partitions that block it and the topics it does not wait for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateResult {
    pub blocked: Vec<Blocker>,
    pub skipped: Vec<String>,
}

impl GateResult {
    /// Whether the step may go ahead.
    pub fn open(&self) -> bool {
        self.blocked.is_empty()
    }
}

/// `min.insync.replicas` of `topic`: its override, or the cluster's.
pub fn min_isr(kafka: &ObservedKafka, topic: &str, cluster_default: usize) -> usize {
    kafka
        .topic_min_insync_replicas
        .get(topic)
        .copied()
        .unwrap_or(cluster_default)
}

/// May brokers `ids` restart now, together?
pub fn before_restart(kafka: &ObservedKafka, ids: &[NodeId], cluster_min_isr: usize) -> GateResult {
    let mut out = GateResult::default();
    let mut skipped = BTreeSet::new();
    let who = match ids {
        [id] => format!("broker {id}"),
        _ => format!("brokers {ids:?}"),
    };
    let hosted = |p: &&PartitionView| p.replicas.iter().any(|r| ids.contains(r));
    for p in kafka.partitions.iter().filter(hosted) {
        let min = min_isr(kafka, &p.topic, cluster_min_isr);
        let rf = p.replicas.len() - p.adding.len();
        if rf <= min {
            skipped.insert(format!(
                "{} (replication factor {rf} ≤ min.insync.replicas {min}: unavailable to acks=all producers while a replica restarts)",
                p.topic
            ));
            continue;
        }
        let remaining = p.isr.iter().filter(|r| !ids.contains(r)).count();
        if remaining < min {
            out.blocked.push(Blocker {
                partition: p.name(),
                reason: format!(
                    "ISR {:?} would keep {remaining} in-sync replicas without {who}, below min.insync.replicas {min}",
                    p.isr
                ),
            });
        }
    }
    out.skipped = skipped.into_iter().collect();
    out
}

/// Are brokers `ids` (restarted together) fully back?
pub fn after_restart(kafka: &ObservedKafka, ids: &[NodeId]) -> GateResult {
    let mut out = GateResult::default();
    for &id in ids {
        match kafka.brokers.iter().find(|b| b.id == id) {
            None => out.blocked.push(Blocker {
                partition: String::new(),
                reason: format!("broker {id} is not registered"),
            }),
            Some(BrokerView { fenced: true, .. }) => out.blocked.push(Blocker {
                partition: String::new(),
                reason: format!("broker {id} is fenced"),
            }),
            Some(_) => {}
        }
    }
    for p in &kafka.partitions {
        if let Some(reason) = after_restart_blocker(p, ids) {
            out.blocked.push(Blocker {
                partition: p.name(),
                reason,
            });
        }
    }
    out
}

/// Partitions not led by their preferred (first) replica although it is in the ISR and no
/// reassignment moves them; with `only`, those whose preferred replica is that broker.
pub fn not_led_by_preferred(kafka: &ObservedKafka, only: Option<NodeId>) -> Vec<String> {
    kafka
        .partitions
        .iter()
        .filter(|p| p.adding.is_empty() && p.removing.is_empty())
        .filter(|p| {
            p.replicas.first().is_some_and(|preferred| {
                only.is_none_or(|b| b == *preferred)
                    && p.isr.contains(preferred)
                    && p.leader != Some(*preferred)
            })
        })
        .map(PartitionView::name)
        .collect()
}

/// A voter at most this many metadata records behind the active controller is caught up.
pub const QUORUM_CAUGHT_UP_LAG: i64 = 10;

/// May controller `id` restart now? Only if, without it, a majority of the quorum's voters is
/// caught up with the active controller: the quorum keeps committing while it is down. A node
/// that is not a voter, or the only one, has nothing to wait for.
pub fn before_controller_restart(kafka: &ObservedKafka, id: NodeId) -> GateResult {
    let mut out = GateResult::default();
    if kafka.quorum_lag.is_empty() {
        out.blocked.push(Blocker {
            partition: String::new(),
            reason: "the controller quorum's state (DescribeQuorum) to be known".to_owned(),
        });
        return out;
    }
    let voters = kafka.quorum_lag.len();
    if !kafka.quorum_lag.contains_key(&id) || voters == 1 {
        return out;
    }
    let majority = voters / 2 + 1;
    let caught_up = kafka
        .quorum_lag
        .iter()
        .filter(|(v, lag)| **v != id && **lag <= QUORUM_CAUGHT_UP_LAG)
        .count();
    if caught_up < majority {
        let behind: Vec<String> = kafka
            .quorum_lag
            .iter()
            .filter(|(v, lag)| **v != id && **lag > QUORUM_CAUGHT_UP_LAG)
            .map(|(v, lag)| format!("voter {v} {lag} records behind"))
            .collect();
        out.blocked.push(Blocker {
            partition: String::new(),
            reason: format!(
                "without controller {id}, {caught_up} of {voters} voters are caught up, fewer than a majority ({majority}): {}",
                behind.join(", ")
            ),
        });
    }
    out
}

/// Is controller `id` caught up with the quorum again after its restart?
pub fn after_controller_restart(kafka: &ObservedKafka, id: NodeId) -> GateResult {
    let mut out = GateResult::default();
    match kafka.quorum_lag.get(&id) {
        Some(lag) if *lag > QUORUM_CAUGHT_UP_LAG => out.blocked.push(Blocker {
            partition: String::new(),
            reason: format!(
                "controller {id} is {lag} metadata records behind the active controller"
            ),
        }),
        None if kafka.quorum_lag.is_empty() => out.blocked.push(Blocker {
            partition: String::new(),
            reason: "the controller quorum's state (DescribeQuorum) to be known".to_owned(),
        }),
        _ => {}
    }
    out
}

fn after_restart_blocker(p: &PartitionView, ids: &[NodeId]) -> Option<String> {
    let out: Vec<NodeId> = ids
        .iter()
        .copied()
        .filter(|id| p.replicas.contains(id) && !p.isr.contains(id))
        .collect();
    match out.as_slice() {
        [] => {}
        [id] => return Some(format!("broker {id} is not back in the ISR {:?}", p.isr)),
        _ => {
            return Some(format!(
                "brokers {out:?} are not back in the ISR {:?}",
                p.isr
            ))
        }
    }
    if !p.fully_in_sync() {
        return Some(format!(
            "under-replicated: ISR {:?} of replicas {:?}",
            p.isr, p.replicas
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(topic: &str, replicas: &[i32], isr: &[i32]) -> PartitionView {
        PartitionView {
            topic: topic.into(),
            partition: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader: isr.first().copied(),
            adding: vec![],
            removing: vec![],
            size_bytes: 0,
            adding_bytes: 0,
        }
    }

    fn kafka(parts: Vec<PartitionView>) -> ObservedKafka {
        ObservedKafka {
            brokers: [100, 101, 102]
                .into_iter()
                .map(|id| BrokerView {
                    id,
                    rack: None,
                    fenced: false,
                    cordoned: false,
                })
                .collect(),
            partitions: parts,
            ..ObservedKafka::default()
        }
    }

    #[test]
    fn restart_keeps_min_isr_of_every_hosted_partition() {
        let k = kafka(vec![part("a", &[100, 101, 102], &[100, 101, 102])]);
        assert!(before_restart(&k, &[100], 2).open());
        // 101 is already out of the ISR: restarting 100 would leave only 102
        let k = kafka(vec![part("a", &[100, 101, 102], &[100, 102])]);
        let g = before_restart(&k, &[100], 2);
        assert_eq!(g.blocked.len(), 1, "{g:?}");
        assert_eq!(g.blocked[0].partition, "a-0");
        // but restarting 101 (already out) keeps two
        assert!(before_restart(&k, &[101], 2).open());
    }

    #[test]
    fn a_set_of_brokers_restarts_together_only_if_every_partition_keeps_min_isr_without_all() {
        // rack-aware placement: no partition has two replicas among 100 and 103
        let k = kafka(vec![
            part("a", &[100, 101, 102], &[100, 101, 102]),
            part("b", &[103, 101, 102], &[103, 101, 102]),
        ]);
        assert!(before_restart(&k, &[100, 103], 2).open());
        // a partition with replicas on both: only one of them may go
        let k = kafka(vec![part("c", &[100, 103, 101], &[100, 103, 101])]);
        let g = before_restart(&k, &[100, 103], 2);
        assert_eq!(g.blocked.len(), 1, "{g:?}");
        assert!(
            g.blocked[0].reason.contains("without brokers [100, 103]"),
            "{g:?}"
        );
        assert!(before_restart(&k, &[100], 2).open());
    }

    #[test]
    fn topics_whose_rf_is_not_above_min_isr_are_skipped_and_named() {
        let mut k = kafka(vec![part("small", &[100, 101], &[100, 101])]);
        k.topic_min_insync_replicas.insert("small".into(), 2);
        let g = before_restart(&k, &[100], 1);
        assert!(g.open());
        assert_eq!(g.skipped.len(), 1);
        assert!(
            g.skipped[0].starts_with("small (replication factor 2"),
            "{g:?}"
        );
    }

    #[test]
    fn partitions_not_led_by_their_preferred_replica() {
        let mut led_by_other = part("a", &[100, 101, 102], &[100, 101, 102]);
        led_by_other.leader = Some(101);
        let mut preferred_out_of_isr = part("b", &[100, 101], &[101]);
        preferred_out_of_isr.leader = Some(101);
        let mut other_broker = part("c", &[102, 100], &[102, 100]);
        other_broker.leader = Some(100);
        let k = kafka(vec![
            led_by_other,
            preferred_out_of_isr,
            other_broker,
            part("d", &[100, 101], &[100, 101]),
        ]);
        assert_eq!(not_led_by_preferred(&k, Some(100)), ["a-0"]);
        assert_eq!(not_led_by_preferred(&k, None), ["a-0", "c-0"]);
    }

    #[test]
    fn a_controller_restarts_only_while_a_majority_stays_caught_up() {
        let mut k = kafka(vec![]);
        // unknown quorum: wait
        assert!(!before_controller_restart(&k, 0).open());
        k.quorum_lag = [(0, 0), (1, 0), (2, 0)].into();
        assert!(before_controller_restart(&k, 0).open());
        // voter 2 lags: restarting 0 would leave 1 of 3 caught up
        k.quorum_lag.insert(2, 500);
        let g = before_controller_restart(&k, 0);
        assert!(
            g.blocked[0].reason.contains("voter 2 500 records behind"),
            "{g:?}"
        );
        // restarting the lagging voter itself is fine, and a non-voter has nothing to wait for
        assert!(before_controller_restart(&k, 2).open());
        assert!(before_controller_restart(&k, 7).open());
        // after a restart: wait until it is caught up
        assert!(!after_controller_restart(&k, 2).open());
        assert!(after_controller_restart(&k, 1).open());
        k.quorum_lag = [(0, 0)].into();
        assert!(before_controller_restart(&k, 0).open(), "a single voter");
    }

    #[test]
    fn after_restart_waits_for_the_isr_and_any_under_replicated_partition() {
        let k = kafka(vec![
            part("a", &[100, 101, 102], &[101, 102]),
            part("b", &[101, 102, 100], &[101, 102, 100]),
        ]);
        let g = after_restart(&k, &[100]);
        assert_eq!(g.blocked.len(), 1);
        assert!(g.blocked[0].reason.contains("not back in the ISR"));
        let k = kafka(vec![part("c", &[101, 102], &[101])]);
        let g = after_restart(&k, &[100]);
        assert!(g.blocked[0].reason.starts_with("under-replicated"), "{g:?}");
        let mut k = kafka(vec![]);
        k.brokers[0].fenced = true;
        assert_eq!(
            after_restart(&k, &[100]).blocked[0].reason,
            "broker 100 is fenced"
        );
    }
}
