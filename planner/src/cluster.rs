//! The planner's working state: the validated input in dense, deterministic form (brokers by
//! id, partitions by topic and partition, racks as small integers) and the target assignment
//! being built, with the per-broker load kept in step. It knows how to change one slot and how
//! to answer rack and membership questions; it does not decide anything.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::PlanError;
use crate::model::{BrokerId, BrokerInfo, PartitionInfo};

/// What a broker may do in this plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// May keep and receive replicas.
    Usable,
    /// Keeps its replicas, receives none, and is neither source nor target of a balance.
    Cordoned,
    /// Must lose every replica: drained, or absent from the broker list.
    Leaving,
}

#[derive(Debug)]
pub(crate) struct Broker {
    pub(crate) id: BrokerId,
    pub(crate) rack: usize,
    pub(crate) role: Role,
}

#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) size: u64,
    /// The current replica list, as broker indices.
    pub(crate) current: Vec<usize>,
    /// The target being built, in preference order; `None` is a replica still to be placed.
    pub(crate) slots: Vec<Option<usize>>,
}

/// Brokers are indexed in id order and partitions in (topic, partition) order, so iterating
/// either, or breaking ties by index, is deterministic and independent of the input's order.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) brokers: Vec<Broker>,
    pub(crate) parts: Vec<Part>,
    /// Replicas per broker in the target (placed slots only).
    pub(crate) load: Vec<usize>,
    /// Per broker, the partitions it holds in the target as (size, partition index): smallest,
    /// then first in (topic, partition) order, comes first.
    pub(crate) hosted: Vec<BTreeSet<(u64, usize)>>,
}

impl Cluster {
    /// Validates the input and starts the target as the current assignment with every replica
    /// on a leaving broker (one in `draining`, or one not in `brokers`) turned into a vacancy.
    pub(crate) fn new(
        brokers: &[BrokerInfo],
        partitions: &[PartitionInfo],
        draining: &BTreeSet<BrokerId>,
    ) -> Result<Self, PlanError> {
        let brokers = index_brokers(brokers, partitions, draining)?;
        let position: BTreeMap<BrokerId, usize> =
            brokers.iter().enumerate().map(|(i, b)| (b.id, i)).collect();
        let mut sorted: Vec<&PartitionInfo> = partitions.iter().collect();
        sorted.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let mut cluster = Cluster {
            load: vec![0; brokers.len()],
            hosted: vec![BTreeSet::new(); brokers.len()],
            parts: Vec::with_capacity(sorted.len()),
            brokers,
        };
        for (p, info) in sorted.into_iter().enumerate() {
            if let Some(prev) = cluster.parts.last() {
                if prev.topic == info.topic && prev.partition == info.partition {
                    return Err(PlanError::DuplicatePartition {
                        topic: info.topic.clone(),
                        partition: info.partition,
                    });
                }
            }
            let current: Vec<usize> = info.replicas.iter().map(|id| position[id]).collect();
            cluster.parts.push(Part {
                topic: info.topic.clone(),
                partition: info.partition,
                size: info.size_bytes,
                slots: vec![None; current.len()],
                current: current.clone(),
            });
            for (slot, b) in current.into_iter().enumerate() {
                if cluster.brokers[b].role != Role::Leaving {
                    cluster.assign(p, slot, b);
                }
            }
        }
        Ok(cluster)
    }

    pub(crate) fn rack(&self, b: usize) -> usize {
        self.brokers[b].rack
    }

    pub(crate) fn is_usable(&self, b: usize) -> bool {
        self.brokers[b].role == Role::Usable
    }

    /// Whether partition `p`'s target already holds broker `b`.
    pub(crate) fn hosts(&self, p: usize, b: usize) -> bool {
        self.parts[p].slots.contains(&Some(b))
    }

    /// How many of partition `p`'s placed replicas, other than one on `except`, sit in `rack`.
    pub(crate) fn rack_uses(&self, p: usize, rack: usize, except: Option<usize>) -> usize {
        self.parts[p]
            .slots
            .iter()
            .flatten()
            .filter(|&&b| Some(b) != except && self.rack(b) == rack)
            .count()
    }

    /// Places broker `b` in slot `slot` of partition `p`, which must be a vacancy.
    pub(crate) fn assign(&mut self, p: usize, slot: usize, b: usize) {
        debug_assert!(self.parts[p].slots[slot].is_none());
        self.parts[p].slots[slot] = Some(b);
        self.load[b] += 1;
        self.hosted[b].insert((self.parts[p].size, p));
    }

    /// Empties slot `slot` of partition `p`, returning the broker it held.
    pub(crate) fn unassign(&mut self, p: usize, slot: usize) -> Option<usize> {
        let b = self.parts[p].slots[slot].take()?;
        self.load[b] -= 1;
        self.hosted[b].remove(&(self.parts[p].size, p));
        Some(b)
    }

    /// Whether partition `p`'s target holds a different set of brokers than its current list.
    pub(crate) fn replicas_change(&self, p: usize) -> bool {
        let part = &self.parts[p];
        part.slots.len() != part.current.len()
            || part
                .slots
                .iter()
                .any(|s| s.is_none_or(|b| !part.current.contains(&b)))
    }
}

#[cfg(test)]
impl Cluster {
    /// A cluster for unit tests: broker `i` in rack `racks[i]`, partition `i` of topic "t" with
    /// the given replicas and size, and the `draining` brokers leaving.
    pub(crate) fn for_tests(racks: &[&str], parts: &[(&[i32], u64)], draining: &[i32]) -> Self {
        let brokers: Vec<BrokerInfo> = (0..)
            .zip(racks)
            .map(|(id, r)| BrokerInfo {
                id,
                rack: Some(r.to_string()),
                cordoned: false,
            })
            .collect();
        let parts: Vec<PartitionInfo> = (0..)
            .zip(parts)
            .map(|(partition, (replicas, size_bytes))| PartitionInfo {
                topic: "t".into(),
                partition,
                replicas: replicas.to_vec(),
                size_bytes: *size_bytes,
            })
            .collect();
        Cluster::new(&brokers, &parts, &draining.iter().copied().collect()).expect("valid")
    }
}

/// Brokers in id order with dense rack numbers, plus every unregistered broker that holds a
/// replica (as leaving). A broker without a rack gets a rack number of its own.
fn index_brokers(
    brokers: &[BrokerInfo],
    partitions: &[PartitionInfo],
    draining: &BTreeSet<BrokerId>,
) -> Result<Vec<Broker>, PlanError> {
    let mut by_id: BTreeMap<BrokerId, (Option<&str>, Role)> = BTreeMap::new();
    for b in brokers {
        let role = if draining.contains(&b.id) {
            Role::Leaving
        } else if b.cordoned {
            Role::Cordoned
        } else {
            Role::Usable
        };
        if by_id.insert(b.id, (b.rack.as_deref(), role)).is_some() {
            return Err(PlanError::DuplicateBroker(b.id));
        }
    }
    for p in partitions {
        if p.replicas.is_empty() {
            return Err(PlanError::NoReplicas {
                topic: p.topic.clone(),
                partition: p.partition,
            });
        }
        for (i, &id) in p.replicas.iter().enumerate() {
            if p.replicas[..i].contains(&id) {
                return Err(PlanError::DuplicateReplica {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    broker: id,
                });
            }
            by_id.entry(id).or_insert((None, Role::Leaving));
        }
    }
    let named: BTreeSet<&str> = by_id.values().filter_map(|(rack, _)| *rack).collect();
    let rack_index: BTreeMap<&str, usize> = named.into_iter().zip(0..).collect();
    let mut next_rack = rack_index.len();
    Ok(by_id
        .into_iter()
        .map(|(id, (rack, role))| {
            let rack = rack.map(|r| rack_index[r]).unwrap_or_else(|| {
                next_rack += 1;
                next_rack - 1
            });
            Broker { id, rack, role }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: BrokerId, rack: Option<&str>) -> BrokerInfo {
        BrokerInfo {
            id,
            rack: rack.map(str::to_owned),
            cordoned: false,
        }
    }

    fn part(topic: &str, partition: i32, replicas: &[BrokerId]) -> PartitionInfo {
        PartitionInfo {
            topic: topic.into(),
            partition,
            replicas: replicas.to_vec(),
            size_bytes: 7,
        }
    }

    #[test]
    fn leaving_replicas_become_vacancies_and_unknown_brokers_are_leaving() {
        let brokers = [broker(2, Some("a")), broker(1, None), broker(3, Some("a"))];
        let parts = [part("t", 1, &[3, 9, 1]), part("t", 0, &[1, 2])];
        let c = Cluster::new(&brokers, &parts, &BTreeSet::from([3])).expect("valid");
        let ids: Vec<BrokerId> = c.brokers.iter().map(|b| b.id).collect();
        assert_eq!(ids, [1, 2, 3, 9]);
        assert_eq!(c.brokers[3].role, Role::Leaving);
        assert_eq!(c.brokers[2].role, Role::Leaving);
        // Racks: "a" shared by 2 and 3; 1 and 9 each alone.
        assert_eq!(c.rack(1), c.rack(2));
        assert_ne!(c.rack(0), c.rack(3));
        assert_ne!(c.rack(0), c.rack(1));
        // Partitions sorted; t-1 keeps only broker 1, in its slot.
        assert_eq!(c.parts[1].slots, [None, None, Some(0)]);
        assert_eq!(c.load, [2, 1, 0, 0]);
        assert!(c.replicas_change(1));
        assert!(!c.replicas_change(0));
    }

    #[test]
    fn malformed_input_is_refused() {
        let b = [broker(1, None), broker(2, None)];
        let dup_broker = [broker(1, None), broker(1, None)];
        let none = BTreeSet::new();
        assert_eq!(
            Cluster::new(&dup_broker, &[], &none).err(),
            Some(PlanError::DuplicateBroker(1))
        );
        assert_eq!(
            Cluster::new(&b, &[part("t", 0, &[1]), part("t", 0, &[2])], &none).err(),
            Some(PlanError::DuplicatePartition {
                topic: "t".into(),
                partition: 0
            })
        );
        assert_eq!(
            Cluster::new(&b, &[part("t", 0, &[1, 2, 1])], &none).err(),
            Some(PlanError::DuplicateReplica {
                topic: "t".into(),
                partition: 0,
                broker: 1
            })
        );
        assert_eq!(
            Cluster::new(&b, &[part("t", 0, &[])], &none).err(),
            Some(PlanError::NoReplicas {
                topic: "t".into(),
                partition: 0
            })
        );
    }
}
