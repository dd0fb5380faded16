//! Property tests over random clusters: every plan obeys the rules `common::check_plan`
//! checks, is deterministic and order-independent, changes nothing when planned again on its
//! own result, and fails exactly when (and with the error that) the input makes it impossible.

mod common;

use std::collections::BTreeSet;

use common::*;
use proptest::prelude::*;
use tributary_planner::{plan, BrokerId, BrokerInfo, Goal, PartitionInfo, PlanError};

#[derive(Debug, Clone)]
struct Cluster {
    brokers: Vec<BrokerInfo>,
    partitions: Vec<PartitionInfo>,
}

/// What may vary in a generated cluster.
#[derive(Clone, Copy)]
struct Shape {
    max_brokers: usize,
    /// Racks r0..r2 (some brokers without one); else no broker has a rack.
    racks: bool,
    cordons: bool,
    /// Replicas on broker 99, which is not registered.
    strays: bool,
    /// Every partition has this replication factor (capped at the broker count).
    rf: Option<usize>,
}

fn cluster(shape: Shape) -> impl Strategy<Value = Cluster> {
    (1..=shape.max_brokers)
        .prop_flat_map(move |n| {
            let cordon = if shape.cordons { 0.15 } else { 0.0 };
            let brokers = prop::collection::vec((0..4usize, prop::bool::weighted(cordon)), n);
            let ids: Vec<BrokerId> = (1..=n as BrokerId).collect();
            let rf = match shape.rf {
                Some(rf) => rf.min(n)..=rf.min(n),
                None => 1..=n.min(4),
            };
            let stray = if shape.strays { 0.05 } else { 0.0 };
            let part = (
                rf,
                Just(ids).prop_shuffle(),
                0u64..10_000,
                prop::bool::weighted(stray),
            );
            (brokers, prop::collection::vec(part, 0..60))
        })
        .prop_map(move |(brokers, parts)| Cluster {
            brokers: (1..)
                .zip(brokers)
                .map(|(id, (rack, cordoned))| BrokerInfo {
                    id,
                    rack: (shape.racks && rack < 3).then(|| format!("r{rack}")),
                    cordoned,
                })
                .collect(),
            partitions: (0..)
                .zip(parts)
                .map(|(i, (rf, ids, size_bytes, stray))| {
                    let mut replicas = ids[..rf].to_vec();
                    if stray {
                        replicas[rf - 1] = 99;
                    }
                    PartitionInfo {
                        topic: format!("t{}", i % 3),
                        partition: i,
                        replicas,
                        size_bytes,
                    }
                })
                .collect(),
        })
}

fn goal() -> impl Strategy<Value = Goal> {
    prop_oneof![
        Just(Goal::Balance),
        prop::collection::btree_set(1..=9, 0..3).prop_map(Goal::Drain),
        (0..=4usize).prop_map(|replication_factor| Goal::SetReplicationFactor {
            topic: "t0".into(),
            replication_factor
        }),
    ]
}

/// The error the goal must fail with, computed from the input alone.
fn expected_error(c: &Cluster, goal: &Goal) -> Option<PlanError> {
    let known = |id: BrokerId| c.brokers.iter().any(|b| b.id == id);
    let draining = match goal {
        Goal::Drain(ids) => ids.clone(),
        _ => BTreeSet::new(),
    };
    let unknown: Vec<BrokerId> = draining.iter().copied().filter(|&id| !known(id)).collect();
    if !unknown.is_empty() {
        return Some(PlanError::UnknownBrokers(unknown));
    }
    if !draining.is_empty()
        && c.brokers
            .iter()
            .all(|b| b.cordoned || draining.contains(&b.id))
    {
        return Some(PlanError::NoUsableBrokers);
    }
    let mut resize = None;
    if let Goal::SetReplicationFactor {
        topic,
        replication_factor,
    } = goal
    {
        if *replication_factor == 0 {
            return Some(PlanError::InvalidReplicationFactor);
        }
        if !c.partitions.iter().any(|p| p.topic == *topic) {
            return Some(PlanError::UnknownTopic(topic.clone()));
        }
        resize = Some((topic, *replication_factor));
    }
    let usable = c
        .brokers
        .iter()
        .filter(|b| !b.cordoned && !draining.contains(&b.id))
        .count();
    let mut sorted: Vec<&PartitionInfo> = c.partitions.iter().collect();
    sorted.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    sorted.into_iter().find_map(|p| {
        let needed = match resize {
            Some((topic, rf)) if *topic == p.topic => rf,
            _ => p.replicas.len(),
        };
        let cordoned_kept = p
            .replicas
            .iter()
            .filter(|&&r| {
                c.brokers
                    .iter()
                    .any(|b| b.id == r && b.cordoned && !draining.contains(&r))
            })
            .count();
        let available = usable + cordoned_kept;
        (needed > available).then(|| PlanError::NotEnoughBrokers {
            topic: p.topic.clone(),
            partition: p.partition,
            needed,
            available,
        })
    })
}

const ANY: Shape = Shape {
    max_brokers: 9,
    racks: true,
    cordons: true,
    strays: true,
    rf: None,
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_plan_obeys_the_rules_or_fails_for_the_right_reason(c in cluster(ANY), goal in goal()) {
        let result = plan(&c.brokers, &c.partitions, &goal);
        let expected = expected_error(&c, &goal);
        match (&result, expected) {
            (Ok(p), None) => check_plan(&c.brokers, &c.partitions, &goal, p),
            (Err(e), Some(want)) => prop_assert_eq!(e, &want),
            (got, want) => prop_assert!(false, "got {:?}, expected error {:?}", got, want),
        }
        // Determinism, whatever the input order.
        let (mut brokers, mut partitions) = (c.brokers.clone(), c.partitions.clone());
        brokers.reverse();
        partitions.reverse();
        prop_assert_eq!(&plan(&brokers, &partitions, &goal), &result);
        // A plan's result needs no further plan.
        if let Ok(p) = result {
            let after = apply(&c.partitions, &p);
            let again = plan(&c.brokers, &after, &goal).expect("the planned state is valid");
            prop_assert!(again.is_empty(), "planned again: {:?}", again.moves);
        }
    }

    #[test]
    fn without_racks_balance_is_reached_with_the_fewest_moves(
        c in cluster(Shape { max_brokers: 12, racks: false, cordons: true, strays: false, rf: None }),
    ) {
        let p = plan(&c.brokers, &c.partitions, &Goal::Balance).expect("always plannable");
        check_plan(&c.brokers, &c.partitions, &Goal::Balance, &p);
        let usable: Vec<BrokerId> = c.brokers.iter().filter(|b| !b.cordoned).map(|b| b.id).collect();
        prop_assert!(within_one_of_mean(&p.replicas_per_broker_after, &usable));
        // Each move takes one replica from above the band and/or gives one to below it, and
        // does both while both exist: the fewest moves that reach the band.
        let before: Vec<usize> = usable.iter().map(|b| p.replicas_per_broker_before[b]).collect();
        let (n, total) = (usable.len(), before.iter().sum::<usize>());
        let (mut excess, mut deficit) = (0, 0);
        for count in before {
            excess += (count * n).saturating_sub(total + n).div_ceil(n);
            deficit += (total - n.min(total)).saturating_sub(count * n).div_ceil(n);
        }
        let moved: usize = p.moves.iter().map(|m| m.added().len()).sum();
        prop_assert_eq!(moved, excess.max(deficit));
    }

    #[test]
    fn with_one_replication_factor_leaders_are_balanced(
        c in cluster(Shape { max_brokers: 10, racks: false, cordons: false, strays: false, rf: Some(3) }),
    ) {
        let p = plan(&c.brokers, &c.partitions, &Goal::Balance).expect("always plannable");
        let hosts: Vec<BrokerId> =
            p.replicas_per_broker_after.iter().filter(|(_, &n)| n > 0).map(|(&b, _)| b).collect();
        prop_assert!(
            within_one_of_mean(&p.leaders_per_broker_after, &hosts),
            "leaders {:?}", p.leaders_per_broker_after
        );
    }
}
