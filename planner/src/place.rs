//! Placing replicas that must go somewhere (the vacancies left by leaving brokers, or added by a
//! higher replication factor) and removing replicas a lower replication factor sheds. Each
//! choice is greedy and local to one partition: a new replica goes to the rack the partition uses
//! least, then to the least-loaded usable broker, then to the lowest id. Replicas that may stay
//! are never touched here; evening out load is [`crate::balance`]'s job.

use crate::cluster::{Cluster, Role};
use crate::error::PlanError;

/// Fills every vacancy, partition by partition in (topic, partition) order and slot by slot,
/// so a replaced replica keeps its position in the preference order.
pub(crate) fn fill_vacancies(cluster: &mut Cluster) -> Result<(), PlanError> {
    for p in 0..cluster.parts.len() {
        for slot in 0..cluster.parts[p].slots.len() {
            if cluster.parts[p].slots[slot].is_some() {
                continue;
            }
            let Some(b) = best_new_replica(cluster, p) else {
                let part = &cluster.parts[p];
                return Err(PlanError::NotEnoughBrokers {
                    topic: part.topic.clone(),
                    partition: part.partition,
                    needed: part.slots.len(),
                    available: part.slots.iter().flatten().count(),
                });
            };
            cluster.assign(p, slot, b);
        }
    }
    Ok(())
}

/// The usable broker that should receive a new replica of partition `p`, if any may.
fn best_new_replica(cluster: &Cluster, p: usize) -> Option<usize> {
    (0..cluster.brokers.len())
        .filter(|&b| cluster.is_usable(b) && !cluster.hosts(p, b))
        .min_by_key(|&b| {
            (
                cluster.rack_uses(p, cluster.rack(b), None),
                cluster.load[b],
                b,
            )
        })
}

/// Resizes every partition of `topic` to `replication_factor` slots: surplus replicas are
/// dropped, missing ones become vacancies for [`fill_vacancies`].
pub(crate) fn set_replication_factor(
    cluster: &mut Cluster,
    topic: &str,
    replication_factor: usize,
) -> Result<(), PlanError> {
    if replication_factor == 0 {
        return Err(PlanError::InvalidReplicationFactor);
    }
    let parts: Vec<usize> = (0..cluster.parts.len())
        .filter(|&p| cluster.parts[p].topic == topic)
        .collect();
    if parts.is_empty() {
        return Err(PlanError::UnknownTopic(topic.to_owned()));
    }
    for p in parts {
        while cluster.parts[p].slots.len() > replication_factor {
            let slot = cheapest_to_drop(cluster, p);
            cluster.unassign(p, slot);
            cluster.parts[p].slots.remove(slot);
        }
        cluster.parts[p].slots.resize(replication_factor, None);
    }
    Ok(())
}

/// The slot of partition `p` whose removal loses least: a vacancy first, never the preferred
/// leader while others remain, then a replica sharing its rack, on a cordoned broker, on the
/// most-loaded broker, on the highest id.
fn cheapest_to_drop(cluster: &Cluster, p: usize) -> usize {
    let slots = &cluster.parts[p].slots;
    (0..slots.len())
        .max_by_key(|&slot| match slots[slot] {
            None => (true, true, true, true, usize::MAX, usize::MAX),
            Some(b) => (
                false,
                slot != 0,
                cluster.rack_uses(p, cluster.rack(b), Some(b)) > 0,
                cluster.brokers[b].role == Role::Cordoned,
                cluster.load[b],
                b,
            ),
        })
        .expect("a partition being shrunk has at least two slots")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(c: &Cluster, p: usize) -> Vec<usize> {
        c.parts[p]
            .slots
            .iter()
            .map(|s| s.expect("placed"))
            .collect()
    }

    #[test]
    fn a_vacancy_prefers_an_unused_rack_over_a_lighter_broker() {
        // Broker 3 (rack c) is the busiest, but it is the only one in a rack the partition
        // does not use once broker 2 leaves.
        let mut c = Cluster::for_tests(
            &["a", "b", "c", "c", "a"],
            &[(&[0, 1, 2], 1), (&[3, 4], 1), (&[3, 0], 1)],
            &[2],
        );
        fill_vacancies(&mut c).expect("placeable");
        assert_eq!(target(&c, 0), [0, 1, 3]);
    }

    #[test]
    fn a_vacancy_goes_to_the_least_loaded_broker_of_equal_racks() {
        let mut c = Cluster::for_tests(
            &["a", "a", "a", "a"],
            &[(&[0, 1], 1), (&[2, 1], 1), (&[0, 2], 1)],
            &[0],
        );
        fill_vacancies(&mut c).expect("placeable");
        // Broker 3 is empty, so it takes both of broker 0's replicas.
        assert_eq!(target(&c, 0), [3, 1]);
        assert_eq!(target(&c, 2), [3, 2]);
    }

    #[test]
    fn shrinking_drops_a_duplicated_rack_and_keeps_the_leader() {
        let mut c = Cluster::for_tests(&["a", "b", "a"], &[(&[0, 1, 2], 1)], &[]);
        set_replication_factor(&mut c, "t", 2).expect("valid");
        assert_eq!(target(&c, 0), [0, 1]);
        // Growing appends vacancies after the kept replicas.
        set_replication_factor(&mut c, "t", 3).expect("valid");
        assert_eq!(c.parts[0].slots, [Some(0), Some(1), None]);
    }

    #[test]
    fn a_partition_with_no_broker_left_for_it_is_refused() {
        let mut c = Cluster::for_tests(&["a", "b"], &[(&[0, 1], 1)], &[1]);
        assert_eq!(
            fill_vacancies(&mut c),
            Err(PlanError::NotEnoughBrokers {
                topic: "t".into(),
                partition: 0,
                needed: 2,
                available: 1
            })
        );
    }
}
