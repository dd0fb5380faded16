//! Partition reassignment planning for Tributary: which replicas to move, and where, to drain
//! brokers (decommissioning), to spread partitions onto new brokers (commissioning, rebalancing)
//! or to change a topic's replication factor.
//!
//! [`plan`] is a pure, deterministic function of plain data: the same brokers, partitions and
//! goal give the same plan, whatever the input order. It does no I/O and knows no Kafka protocol;
//! the admin CLI and the operator read the cluster, call it, and submit the moves as KIP-455
//! reassignments. [`progress`] tells how far a submitted plan has got.
//!
//! What a plan guarantees:
//! - every target has the length of the current list (except for `SetReplicationFactor`), no
//!   duplicate, and only brokers that may hold it: usable ones (registered, not cordoned, not
//!   draining), or a cordoned broker that already held that replica;
//! - minimal movement: a replica that may stay stays. `Drain` moves only replicas on draining
//!   (or unregistered) brokers; `Balance` moves replicas from the most-loaded to the least-loaded
//!   usable brokers, smallest partitions first, and stops once every usable broker is within one
//!   replica of the mean (or no allowed move gets closer);
//! - rack awareness: a new replica goes to a rack the partition does not use yet whenever one
//!   exists, and a balancing move never reduces the racks a partition spans;
//! - leader balance: preferred leaders are even across the brokers that hold replicas (within
//!   one of the mean where the placement allows), by reordering target lists only. `Balance` may
//!   reorder any partition; `Drain` and `SetReplicationFactor` reorder only partitions they move.
//!   A partition keeps its current preferred leader unless balance needs otherwise;
//! - ties are broken by (topic, partition) and broker id; nothing is random.

mod balance;
mod cluster;
mod error;
mod leaders;
mod model;
mod place;
mod progress;

use std::collections::{BTreeMap, BTreeSet};

pub use error::PlanError;
pub use model::{BrokerId, BrokerInfo, Goal, Move, PartitionInfo, Plan};
pub use progress::{progress, PartitionState, Progress};

use cluster::Cluster;

/// Plans the moves that achieve `goal` on a cluster of `brokers` holding `partitions`.
///
/// A replica on a broker that is not in `brokers` is always moved away, whatever the goal.
/// Errors: malformed input (duplicate brokers, partitions or replicas, empty replica lists), a
/// goal naming unknown brokers or topics, a drain that leaves no usable broker, or a partition
/// needing more replicas than there are brokers that may hold one.
pub fn plan(
    brokers: &[BrokerInfo],
    partitions: &[PartitionInfo],
    goal: &Goal,
) -> Result<Plan, PlanError> {
    let empty = BTreeSet::new();
    let draining = match goal {
        Goal::Drain(ids) => ids,
        _ => &empty,
    };
    let unknown: Vec<BrokerId> = draining
        .iter()
        .copied()
        .filter(|id| !brokers.iter().any(|b| b.id == *id))
        .collect();
    if !unknown.is_empty() {
        return Err(PlanError::UnknownBrokers(unknown));
    }
    if !draining.is_empty()
        && brokers
            .iter()
            .all(|b| b.cordoned || draining.contains(&b.id))
    {
        return Err(PlanError::NoUsableBrokers);
    }
    let mut cluster = Cluster::new(brokers, partitions, draining)?;
    if let Goal::SetReplicationFactor {
        topic,
        replication_factor,
    } = goal
    {
        place::set_replication_factor(&mut cluster, topic, *replication_factor)?;
    }
    place::fill_vacancies(&mut cluster)?;
    if *goal == Goal::Balance {
        balance::balance_replicas(&mut cluster);
    }
    let changed: Vec<bool> = (0..cluster.parts.len())
        .map(|p| cluster.replicas_change(p))
        .collect();
    let reorderable = if *goal == Goal::Balance {
        vec![true; changed.len()]
    } else {
        changed.clone()
    };
    let leaders = leaders::choose_leaders(&cluster, &reorderable, &changed);
    Ok(assemble(&cluster, &leaders))
}

/// Turns the finished target assignment into a [`Plan`], putting each chosen leader first and
/// keeping the other replicas in their order.
fn assemble(cluster: &Cluster, leaders: &[usize]) -> Plan {
    let id = |b: usize| cluster.brokers[b].id;
    let zeros: BTreeMap<BrokerId, usize> = cluster.brokers.iter().map(|b| (b.id, 0)).collect();
    let mut plan = Plan {
        replicas_per_broker_before: zeros.clone(),
        replicas_per_broker_after: zeros.clone(),
        leaders_per_broker_before: zeros.clone(),
        leaders_per_broker_after: zeros,
        ..Plan::default()
    };
    for (part, &leader) in cluster.parts.iter().zip(leaders) {
        let current: Vec<BrokerId> = part.current.iter().map(|&b| id(b)).collect();
        let mut target = vec![id(leader)];
        target.extend(
            part.slots
                .iter()
                .flatten()
                .filter(|&&b| b != leader)
                .map(|&b| id(b)),
        );
        count(
            &mut plan.replicas_per_broker_before,
            &mut plan.leaders_per_broker_before,
            &current,
        );
        count(
            &mut plan.replicas_per_broker_after,
            &mut plan.leaders_per_broker_after,
            &target,
        );
        if target != current {
            let m = Move {
                topic: part.topic.clone(),
                partition: part.partition,
                current,
                target,
                size_bytes: part.size,
            };
            plan.bytes_to_move += m.bytes();
            plan.moves.push(m);
        }
    }
    plan
}

fn count(
    replicas: &mut BTreeMap<BrokerId, usize>,
    leaders: &mut BTreeMap<BrokerId, usize>,
    list: &[BrokerId],
) {
    for b in list {
        *replicas.entry(*b).or_default() += 1;
    }
    if let Some(first) = list.first() {
        *leaders.entry(*first).or_default() += 1;
    }
}
