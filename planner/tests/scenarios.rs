//! The operations the operator and the admin CLI plan, on small clusters whose right answer is
//! known: commissioning, decommissioning, racks, cordons, refusals and no-ops.

mod common;

use std::collections::BTreeSet;

use common::*;
use tributary_planner::{
    plan, progress, BrokerInfo, Goal, PartitionInfo, PartitionState, PlanError,
};

fn within_ten_percent(counts: &std::collections::BTreeMap<i32, usize>, on: &[i32]) {
    let total: usize = on.iter().map(|b| counts[b]).sum();
    let mean = total as f64 / on.len() as f64;
    let slack = (mean * 0.1).max(1.0);
    for b in on {
        let c = counts[b] as f64;
        assert!(
            (c - mean).abs() <= slack,
            "broker {b} has {c}, mean {mean}: {counts:?}"
        );
    }
}

#[test]
fn commissioning_two_brokers_spreads_replicas_and_leaders_evenly() {
    let brokers = brokers(1..=5);
    let mut parts = topic("orders", 24, 3, &[1, 2, 3]);
    parts.extend(topic("events", 12, 3, &[1, 2, 3]));
    let goal = Goal::Balance;
    let p = plan(&brokers, &parts, &goal).expect("plannable");
    check_plan(&brokers, &parts, &goal, &p);
    // 108 replicas over 5 brokers: mean 21.6; 36 leaders: mean 7.2.
    within_ten_percent(&p.replicas_per_broker_after, &[1, 2, 3, 4, 5]);
    within_ten_percent(&p.leaders_per_broker_after, &[1, 2, 3, 4, 5]);
    assert!(within_one_of_mean(
        &p.replicas_per_broker_after,
        &[1, 2, 3, 4, 5]
    ));
    assert!(within_one_of_mean(
        &p.leaders_per_broker_after,
        &[1, 2, 3, 4, 5]
    ));
    // Minimal movement: the new brokers need 21 + 21 (band 20.6..22.6), the old ones give
    // exactly that, and every copied replica lands on a new broker.
    let added: usize = p.moves.iter().map(|m| m.added().len()).sum();
    assert_eq!(
        added,
        p.replicas_per_broker_after[&4] + p.replicas_per_broker_after[&5]
    );
    assert!(p.moves.iter().flat_map(|m| m.added()).all(|b| b >= 4));
    // Every partition sits on all of 1, 2 and 3, so the cheapest plan copies two replicas
    // (one to 4, one to 5) of each of the 21 smallest partitions.
    assert_eq!(added, 42);
    let mut sizes: Vec<u64> = parts.iter().map(|p| p.size_bytes).collect();
    sizes.sort_unstable();
    assert_eq!(p.bytes_to_move, 2 * sizes.iter().take(21).sum::<u64>());
}

#[test]
fn draining_two_of_five_moves_only_their_replicas_and_keeps_balance() {
    let brokers = brokers(1..=5);
    let parts = topic("orders", 30, 3, &[1, 2, 3, 4, 5]);
    let goal = Goal::Drain(BTreeSet::from([4, 5]));
    let p = plan(&brokers, &parts, &goal).expect("plannable");
    check_plan(&brokers, &parts, &goal, &p);
    assert_eq!(p.replicas_per_broker_after[&4], 0);
    assert_eq!(p.replicas_per_broker_after[&5], 0);
    assert_eq!(
        p.leaders_per_broker_after[&4] + p.leaders_per_broker_after[&5],
        0
    );
    // 36 replicas were on 4 and 5 (18 each); exactly 36 are copied.
    let added: usize = p.moves.iter().map(|m| m.added().len()).sum();
    assert_eq!(added, 36);
    within_ten_percent(&p.replicas_per_broker_after, &[1, 2, 3]);
    within_ten_percent(&p.leaders_per_broker_after, &[1, 2, 3]);
}

#[test]
fn rack_aware_placement_puts_each_replica_in_its_own_rack() {
    // Three racks of two brokers; the partitions start on racks a and b only (two replicas
    // in rack a), then rack c's brokers join.
    let brokers: Vec<BrokerInfo> = [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]
        .into_iter()
        .map(|(id, r)| broker(id, Some(r)))
        .collect();
    let parts = topic("t", 12, 3, &[1, 3, 2, 4]);
    let goal = Goal::Drain(BTreeSet::from([1, 3]));
    let p = plan(&brokers, &parts, &goal).expect("plannable");
    check_plan(&brokers, &parts, &goal, &p);
    for part in apply(&parts, &p) {
        let racks: BTreeSet<String> = part
            .replicas
            .iter()
            .map(|&b| rack_of(&brokers, b))
            .collect();
        assert_eq!(racks.len(), 3, "{part:?}");
    }
    // Balance never loses a rack: partitions already on three racks stay on three racks.
    let spread = apply(&parts, &p);
    let goal = Goal::Balance;
    let p = plan(&brokers, &spread, &goal).expect("plannable");
    check_plan(&brokers, &spread, &goal, &p);
    for part in apply(&spread, &p) {
        let racks: BTreeSet<String> = part
            .replicas
            .iter()
            .map(|&b| rack_of(&brokers, b))
            .collect();
        assert_eq!(racks.len(), 3, "{part:?}");
    }
}

#[test]
fn cordoned_brokers_keep_their_replicas_and_receive_none() {
    let mut brokers = brokers(1..=5);
    brokers[0].cordoned = true; // broker 1 holds replicas already
    brokers[4].cordoned = true; // broker 5 is new and empty
                                // Broker 4 is new and usable: it takes replicas from 2 and 3, never from the cordoned 1.
    let parts = topic("t", 20, 2, &[1, 2, 3]);
    for goal in [Goal::Balance, Goal::Drain(BTreeSet::from([2]))] {
        let p = plan(&brokers, &parts, &goal).expect("plannable");
        check_plan(&brokers, &parts, &goal, &p);
        assert!(!p.is_empty(), "{goal:?}");
        assert_eq!(p.replicas_per_broker_after[&5], 0, "{goal:?}");
        assert_eq!(
            p.replicas_per_broker_after[&1], p.replicas_per_broker_before[&1],
            "{goal:?}"
        );
    }
    // Draining 2 and 4 leaves 3 as the only usable broker: partitions on 2 and 3 cannot keep
    // two replicas, and cordoned brokers do not count.
    let parts = topic("t", 3, 2, &[2, 3]);
    assert_eq!(
        plan(&brokers, &parts, &Goal::Drain(BTreeSet::from([2, 4]))),
        Err(PlanError::NotEnoughBrokers {
            topic: "t".into(),
            partition: 0,
            needed: 2,
            available: 1
        })
    );
}

#[test]
fn impossible_goals_are_refused_with_the_reason() {
    let brokers = brokers(1..=3);
    let parts = topic("t", 4, 3, &[1, 2, 3]);
    assert_eq!(
        plan(&brokers, &parts, &Goal::Drain(BTreeSet::from([3, 7, 9]))),
        Err(PlanError::UnknownBrokers(vec![7, 9]))
    );
    assert_eq!(
        plan(&brokers, &parts, &Goal::Drain(BTreeSet::from([1, 2, 3]))),
        Err(PlanError::NoUsableBrokers)
    );
    assert_eq!(
        plan(&brokers, &parts, &Goal::Drain(BTreeSet::from([1]))),
        Err(PlanError::NotEnoughBrokers {
            topic: "t".into(),
            partition: 0,
            needed: 3,
            available: 2
        })
    );
    let grow = |topic: &str, rf| Goal::SetReplicationFactor {
        topic: topic.into(),
        replication_factor: rf,
    };
    assert_eq!(
        plan(&brokers, &parts, &grow("t", 4))
            .err()
            .map(|e| e.to_string())
            .as_deref(),
        Some("partition t-0 needs 4 replicas but only 3 brokers may hold one")
    );
    assert_eq!(
        plan(&brokers, &parts, &grow("nope", 2)),
        Err(PlanError::UnknownTopic("nope".into()))
    );
    assert_eq!(
        plan(&brokers, &parts, &grow("t", 0)),
        Err(PlanError::InvalidReplicationFactor)
    );
}

#[test]
fn empty_and_balanced_clusters_plan_nothing() {
    for goal in [Goal::Balance, Goal::Drain(BTreeSet::new())] {
        let p = plan(&[], &[], &goal).expect("empty is fine");
        assert!(p.is_empty() && p.bytes_to_move == 0);
        let brokers = brokers(1..=3);
        let parts = topic("t", 9, 3, &[1, 2, 3]);
        let p = plan(&brokers, &parts, &goal).expect("plannable");
        assert!(p.is_empty(), "{goal:?}: {p:?}");
        assert_eq!(p.replicas_per_broker_after, p.replicas_per_broker_before);
    }
}

#[test]
fn replicas_on_unregistered_brokers_are_moved_away() {
    let brokers = brokers(1..=3);
    let parts = topic("t", 6, 2, &[1, 2, 3, 8]);
    let p = plan(&brokers, &parts, &Goal::Balance).expect("plannable");
    check_plan(&brokers, &parts, &Goal::Balance, &p);
    assert_eq!(p.replicas_per_broker_before[&8], 2);
    assert_eq!(p.replicas_per_broker_after[&8], 0);
}

#[test]
fn changing_the_replication_factor_adds_and_removes_cheaply() {
    let brokers: Vec<BrokerInfo> = [(1, "a"), (2, "b"), (3, "c"), (4, "a")]
        .into_iter()
        .map(|(id, r)| broker(id, Some(r)))
        .collect();
    let parts = topic("t", 8, 2, &[1, 2, 3, 4]);
    let goal = Goal::SetReplicationFactor {
        topic: "t".into(),
        replication_factor: 3,
    };
    let grown = plan(&brokers, &parts, &goal).expect("plannable");
    check_plan(&brokers, &parts, &goal, &grown);
    assert_eq!(grown.moves.len(), 8);
    let sizes: u64 = parts.iter().map(|p| p.size_bytes).sum();
    assert_eq!(grown.bytes_to_move, sizes);
    let applied = apply(&parts, &grown);
    let goal = Goal::SetReplicationFactor {
        topic: "t".into(),
        replication_factor: 1,
    };
    let shrunk = plan(&brokers, &applied, &goal).expect("plannable");
    check_plan(&brokers, &applied, &goal, &shrunk);
    assert_eq!(shrunk.bytes_to_move, 0);
}

#[test]
fn the_same_input_in_any_order_gives_the_same_plan() {
    let mut brokers: Vec<BrokerInfo> = (1..=6)
        .map(|id| broker(id, Some(["a", "b", "c"][id as usize % 3])))
        .collect();
    let mut parts = topic("a", 40, 3, &[1, 2, 3, 4]);
    parts.extend(topic("b", 17, 2, &[2, 3]));
    let first = plan(&brokers, &parts, &Goal::Balance).expect("plannable");
    brokers.reverse();
    parts.reverse();
    assert_eq!(plan(&brokers, &parts, &Goal::Balance), Ok(first.clone()));
    let json = serde_json::to_string(&first).expect("serializable");
    assert_eq!(
        serde_json::from_str::<tributary_planner::Plan>(&json).expect("parses"),
        first
    );
}

#[test]
fn progress_follows_the_partitions_through_a_drain() {
    let brokers = brokers(1..=4);
    let parts: Vec<PartitionInfo> = topic("t", 8, 2, &[1, 2, 3, 4]);
    let p = plan(&brokers, &parts, &Goal::Drain(BTreeSet::from([4]))).expect("plannable");
    let observe = |parts: &[PartitionInfo], reassigning: bool| -> Vec<PartitionState> {
        parts
            .iter()
            .map(|x| PartitionState {
                topic: x.topic.clone(),
                partition: x.partition,
                replicas: x.replicas.clone(),
                reassigning,
                copied_bytes: 0,
            })
            .collect()
    };
    let start = progress(&p, &observe(&parts, false));
    assert_eq!(
        (start.partitions_done, start.bytes_remaining),
        (0, p.bytes_to_move)
    );
    let mid = progress(&p, &observe(&apply(&parts, &p), true));
    assert_eq!(mid.partitions_done, 0);
    let end = progress(&p, &observe(&apply(&parts, &p), false));
    assert!(end.is_complete());
    assert_eq!(
        (end.bytes_moved_estimate, end.bytes_remaining),
        (p.bytes_to_move, 0)
    );
}

#[test]
fn a_large_cluster_is_planned() {
    // 5,000 partitions on 15 brokers in 3 racks, 5 brokers joining. Replicas i, i+1, i+2 of
    // the round-robin sit in three racks. Speed is measured by `examples/plan_large.rs`, not
    // asserted here.
    let brokers: Vec<BrokerInfo> = (1..=20)
        .map(|id| broker(id, Some(["a", "b", "c"][id as usize % 3])))
        .collect();
    let old: Vec<i32> = (1..=15).collect();
    let mut parts = Vec::new();
    for t in 0..50 {
        let mut topic = topic(&format!("topic-{t}"), 100, 3, &old);
        topic.iter_mut().for_each(|p| p.size_bytes += t * 10);
        parts.extend(topic);
    }
    let p = plan(&brokers, &parts, &Goal::Balance).expect("plannable");
    check_plan(&brokers, &parts, &Goal::Balance, &p);
    // Every partition spans all three racks, so balance is per rack: each rack's brokers hold
    // 5,000 replicas between them, within one of each other.
    for rack in ["a", "b", "c"] {
        let counts: Vec<usize> = brokers
            .iter()
            .filter(|b| b.rack.as_deref() == Some(rack))
            .map(|b| p.replicas_per_broker_after[&b.id])
            .collect();
        assert_eq!(counts.iter().sum::<usize>(), 5000, "rack {rack}");
        let (min, max) = (counts.iter().min(), counts.iter().max());
        assert!(
            max.zip(min).is_some_and(|(max, min)| max - min <= 1),
            "rack {rack}: {counts:?}"
        );
    }
    let all: Vec<i32> = (1..=20).collect();
    assert!(within_one_of_mean(&p.leaders_per_broker_after, &all));
}
