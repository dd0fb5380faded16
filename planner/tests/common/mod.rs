//! Cluster builders and an independent checker of the rules every plan must obey, shared by the
//! scenario and property tests. The checker recomputes everything from the input and the plan;
//! it does not reuse the planner's code.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};

use tributary_planner::{BrokerId, BrokerInfo, Goal, PartitionInfo, Plan};

pub fn broker(id: BrokerId, rack: Option<&str>) -> BrokerInfo {
    BrokerInfo {
        id,
        rack: rack.map(str::to_owned),
        cordoned: false,
    }
}

/// Brokers `ids` without racks.
pub fn brokers(ids: impl IntoIterator<Item = BrokerId>) -> Vec<BrokerInfo> {
    ids.into_iter().map(|id| broker(id, None)).collect()
}

/// `count` partitions of `topic`, replicas laid out round-robin over `on` (as Kafka creates a
/// topic), sized 1000 + partition bytes so sizes differ.
pub fn topic(topic: &str, count: i32, rf: usize, on: &[BrokerId]) -> Vec<PartitionInfo> {
    (0..count)
        .map(|p| PartitionInfo {
            topic: topic.into(),
            partition: p,
            replicas: (0..rf).map(|r| on[(p as usize + r) % on.len()]).collect(),
            size_bytes: 1000 + p as u64,
        })
        .collect()
}

/// The replica lists after applying `plan`.
pub fn apply(partitions: &[PartitionInfo], plan: &Plan) -> Vec<PartitionInfo> {
    let targets: BTreeMap<(&str, i32), &Vec<BrokerId>> = plan
        .moves
        .iter()
        .map(|m| ((m.topic.as_str(), m.partition), &m.target))
        .collect();
    partitions
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if let Some(t) = targets.get(&(p.topic.as_str(), p.partition)) {
                p.replicas = (*t).clone();
            }
            p
        })
        .collect()
}

pub fn replica_counts(partitions: &[PartitionInfo]) -> BTreeMap<BrokerId, usize> {
    let mut out = BTreeMap::new();
    for b in partitions.iter().flat_map(|p| &p.replicas) {
        *out.entry(*b).or_default() += 1;
    }
    out
}

pub fn leader_counts(partitions: &[PartitionInfo]) -> BTreeMap<BrokerId, usize> {
    let mut out = BTreeMap::new();
    for p in partitions {
        *out.entry(p.replicas[0]).or_default() += 1;
    }
    out
}

/// Whether every count, over `on`, is within one of the mean (`count` defaults to 0).
pub fn within_one_of_mean(counts: &BTreeMap<BrokerId, usize>, on: &[BrokerId]) -> bool {
    let total: usize = on.iter().map(|b| counts.get(b).copied().unwrap_or(0)).sum();
    let n = on.len();
    on.iter()
        .all(|b| (counts.get(b).copied().unwrap_or(0) * n).abs_diff(total) <= n)
}

/// The rack of broker `id`: its own, or a rack of its own when it has none or is unregistered.
pub fn rack_of(brokers: &[BrokerInfo], id: BrokerId) -> String {
    brokers
        .iter()
        .find(|b| b.id == id)
        .and_then(|b| b.rack.clone())
        .unwrap_or_else(|| format!("#{id}"))
}

fn distinct_racks(brokers: &[BrokerInfo], replicas: &[BrokerId]) -> usize {
    replicas
        .iter()
        .map(|&b| rack_of(brokers, b))
        .collect::<BTreeSet<_>>()
        .len()
}

/// Checks the rules every successful plan obeys; panics with the broken rule.
pub fn check_plan(brokers: &[BrokerInfo], partitions: &[PartitionInfo], goal: &Goal, plan: &Plan) {
    let draining: BTreeSet<BrokerId> = match goal {
        Goal::Drain(ids) => ids.clone(),
        _ => BTreeSet::new(),
    };
    let info = |id: BrokerId| brokers.iter().find(|b| b.id == id);
    let leaving = |id: BrokerId| draining.contains(&id) || info(id).is_none();
    let usable: Vec<BrokerId> = brokers
        .iter()
        .filter(|b| !b.cordoned && !leaving(b.id))
        .map(|b| b.id)
        .collect();
    let usable_racks: BTreeSet<String> = usable.iter().map(|&b| rack_of(brokers, b)).collect();
    let after = apply(partitions, plan);

    let keys: Vec<(&str, i32)> = plan
        .moves
        .iter()
        .map(|m| (m.topic.as_str(), m.partition))
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "moves sorted and unique"
    );
    let mut bytes = 0;
    for (before, now) in partitions.iter().zip(&after) {
        let key = (before.topic.as_str(), before.partition);
        let moved = plan
            .moves
            .iter()
            .find(|m| (m.topic.as_str(), m.partition) == key);
        assert_eq!(
            moved.is_some(),
            before.replicas != now.replicas,
            "a move only for a change"
        );
        if let Some(m) = moved {
            assert_eq!(
                m.current, before.replicas,
                "{key:?}: move starts from the current list"
            );
            assert_eq!(m.size_bytes, before.size_bytes);
            bytes += m.size_bytes * m.added().len() as u64;
        }
        let target = &now.replicas;
        let expected_len = match goal {
            Goal::SetReplicationFactor {
                topic,
                replication_factor,
            } if *topic == before.topic => *replication_factor,
            _ => before.replicas.len(),
        };
        assert_eq!(target.len(), expected_len, "{key:?}: replication factor");
        let unique: BTreeSet<_> = target.iter().collect();
        assert_eq!(
            unique.len(),
            target.len(),
            "{key:?}: duplicate in {target:?}"
        );
        for &b in target {
            let kept = before.replicas.contains(&b);
            let ok =
                usable.contains(&b) || (kept && info(b).is_some_and(|i| i.cordoned) && !leaving(b));
            assert!(
                ok,
                "{key:?}: broker {b} may not hold a replica ({target:?})"
            );
        }
        // A replica that may stay stays, unless Balance moves it or the factor shrinks.
        let staying: Vec<BrokerId> = before
            .replicas
            .iter()
            .copied()
            .filter(|&b| !leaving(b))
            .collect();
        let shrinking = expected_len < before.replicas.len();
        if !shrinking && *goal != Goal::Balance {
            for b in &staying {
                assert!(
                    target.contains(b),
                    "{key:?}: replica on {b} moved needlessly"
                );
            }
        }
        // Rack awareness: never fewer racks than the staying replicas span, and all distinct
        // whenever enough racks exist and the staying replicas were distinct.
        let kept_racks = distinct_racks(brokers, &staying);
        let now_racks = distinct_racks(brokers, target);
        assert!(
            now_racks >= kept_racks.min(target.len()),
            "{key:?}: lost rack diversity"
        );
        let mut available = usable_racks.clone();
        available.extend(staying.iter().map(|&b| rack_of(brokers, b)));
        if kept_racks == staying.len() && available.len() >= target.len() {
            assert_eq!(
                now_racks,
                target.len(),
                "{key:?}: replicas share a rack: {target:?}"
            );
        }
    }
    assert_eq!(plan.bytes_to_move, bytes, "bytes_to_move");
    let with_zeros = |counts: BTreeMap<BrokerId, usize>| {
        let mut all: BTreeMap<BrokerId, usize> = brokers.iter().map(|b| (b.id, 0)).collect();
        for id in partitions.iter().flat_map(|p| &p.replicas) {
            all.insert(*id, 0);
        }
        all.extend(counts);
        all
    };
    assert_eq!(
        plan.replicas_per_broker_before,
        with_zeros(replica_counts(partitions))
    );
    assert_eq!(
        plan.replicas_per_broker_after,
        with_zeros(replica_counts(&after))
    );
    assert_eq!(
        plan.leaders_per_broker_before,
        with_zeros(leader_counts(partitions))
    );
    assert_eq!(
        plan.leaders_per_broker_after,
        with_zeros(leader_counts(&after))
    );
    if *goal == Goal::Balance {
        check_balance_moves(brokers, partitions, &after, &usable);
    }
}

/// Balance moves replicas only between usable brokers. Without racks and unregistered brokers
/// (whose replicas go where they must, and racks may force chains or per-rack balance), it also
/// moves only from brokers that end at or above the band's floor to brokers that end at or
/// below its ceiling, and never through a broker that both gives and takes.
fn check_balance_moves(
    brokers: &[BrokerInfo],
    before: &[PartitionInfo],
    after: &[PartitionInfo],
    usable: &[BrokerId],
) {
    let after_counts = replica_counts(after);
    let count = |c: &BTreeMap<BrokerId, usize>, b: BrokerId| c.get(&b).copied().unwrap_or(0);
    let n = usable.len();
    let total: usize = usable.iter().map(|&b| count(&after_counts, b)).sum();
    let racked = brokers.iter().any(|b| b.rack.is_some());
    let forced = before
        .iter()
        .flat_map(|p| &p.replicas)
        .any(|r| !brokers.iter().any(|b| b.id == *r));
    for b in brokers {
        let gained = before
            .iter()
            .zip(after)
            .any(|(x, y)| !x.replicas.contains(&b.id) && y.replicas.contains(&b.id));
        let lost = before
            .iter()
            .zip(after)
            .any(|(x, y)| x.replicas.contains(&b.id) && !y.replicas.contains(&b.id));
        if b.cordoned {
            assert!(!gained && !lost, "cordoned broker {} changed", b.id);
            continue;
        }
        if racked || forced {
            continue;
        }
        let end = count(&after_counts, b.id);
        assert!(!(gained && lost), "broker {} gave and took", b.id);
        assert!(
            !lost || end * n + n >= total,
            "broker {} gave too much: {end} of {total}",
            b.id
        );
        assert!(
            !gained || end * n <= total + n,
            "broker {} took too much: {end} of {total}",
            b.id
        );
    }
}
