//! Evening out replicas over the usable brokers with as little copying as possible.
//!
//! A broker is in band when it holds within one replica of the mean over usable brokers
//! (`|load·n − total| ≤ n`). While one is out of band, one replica moves from the most-loaded
//! broker that can give one to the least-loaded broker that may take it, and the smallest such
//! partition is the one moved. A move needs the giver at least two above the taker and never
//! lowers the partition's number of distinct racks. Cordoned and leaving brokers take no part.
//! Each move lowers the sum of squared loads, so the loop ends: in band when racks allow, else
//! as even as moves that keep every partition's racks can make it (when every partition spans
//! every rack, that is even within each rack).

use std::collections::BTreeSet;

use crate::cluster::Cluster;

/// Where the band lies for the usable brokers.
struct Band {
    brokers: usize,
    total: usize,
}

impl Band {
    fn over(&self, load: usize) -> bool {
        load * self.brokers > self.total + self.brokers
    }

    fn under(&self, load: usize) -> bool {
        load * self.brokers + self.brokers < self.total
    }
}

/// A candidate move, ordered by what makes it preferable: the emptier taker, then the smaller
/// partition, then (topic, partition), giver and taker order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    taker_load: usize,
    size: u64,
    part: usize,
    giver: usize,
    taker: usize,
}

struct Balancer<'a> {
    cluster: &'a mut Cluster,
    usable: Vec<usize>,
    band: Band,
    /// `blocked[b][r]`: partitions on broker `b` that may not move to rack `r` (see
    /// [`may_move`]). A giver whose partitions are all blocked for a taker's rack is skipped
    /// without looking at them.
    blocked: Vec<Vec<usize>>,
    /// Givers with no allowed move. One rarely gains a move later, so it is skipped until a
    /// search finds nothing; then every giver is tried once more.
    stuck: BTreeSet<usize>,
}

/// Moves replicas between usable brokers until every one is in band, or no allowed move helps.
pub(crate) fn balance_replicas(cluster: &mut Cluster) {
    let usable: Vec<usize> = (0..cluster.brokers.len())
        .filter(|&b| cluster.is_usable(b))
        .collect();
    let band = Band {
        brokers: usable.len(),
        total: usable.iter().map(|&b| cluster.load[b]).sum(),
    };
    let racks = cluster
        .brokers
        .iter()
        .map(|b| b.rack + 1)
        .max()
        .unwrap_or(0);
    let blocked = vec![vec![0; racks]; cluster.brokers.len()];
    let mut balancer = Balancer {
        cluster,
        usable,
        band,
        blocked,
        stuck: BTreeSet::new(),
    };
    for p in 0..balancer.cluster.parts.len() {
        balancer.block(p, true);
    }
    loop {
        let mut found = balancer.next_move();
        if found.is_none() && !balancer.stuck.is_empty() {
            balancer.stuck.clear();
            found = balancer.next_move();
        }
        match found {
            Some(c) => balancer.apply(c),
            None => break,
        }
    }
}

impl Balancer<'_> {
    /// Counts (or uncounts) partition `p` in `blocked` for each broker holding it: a replica
    /// alone in its rack may not move to a rack another replica uses.
    fn block(&mut self, p: usize, add: bool) {
        let racks: Vec<(usize, usize)> = self.cluster.parts[p]
            .slots
            .iter()
            .flatten()
            .map(|&b| (b, self.cluster.rack(b)))
            .collect();
        for &(host, own) in &racks {
            if racks.iter().filter(|&&(_, r)| r == own).count() > 1 {
                continue;
            }
            let mut others: Vec<usize> = racks
                .iter()
                .map(|&(_, r)| r)
                .filter(|&r| r != own)
                .collect();
            others.sort_unstable();
            others.dedup();
            for r in others {
                let count = &mut self.blocked[host][r];
                *count = if add { *count + 1 } else { *count - 1 };
            }
        }
    }

    /// The best move from the most-loaded givers that have one, marking givers with none as
    /// stuck.
    fn next_move(&mut self) -> Option<Candidate> {
        let load = &self.cluster.load;
        let mut givers: Vec<usize> = self
            .usable
            .iter()
            .copied()
            .filter(|b| !self.stuck.contains(b))
            .collect();
        givers.sort_by_key(|&b| (std::cmp::Reverse(load[b]), b));
        let mut takers = self.usable.clone();
        takers.sort_by_key(|&b| (load[b], b));
        let any_under = takers.first().is_some_and(|&b| self.band.under(load[b]));
        // Givers of equal load are equally good; among them the cheapest move wins.
        for group in givers.chunk_by(|&a, &b| load[a] == load[b]) {
            if !self.band.over(load[group[0]]) && !any_under {
                return None;
            }
            let best = group
                .iter()
                .filter_map(|&g| self.best_move_from(g, &takers))
                .min();
            if best.is_some() {
                return best;
            }
            self.stuck.extend(group);
        }
        None
    }

    /// The best move off `giver`: to the least-loaded taker that may take one of its
    /// partitions, the smallest such partition.
    fn best_move_from(&self, giver: usize, takers: &[usize]) -> Option<Candidate> {
        let cluster = &*self.cluster;
        let giver_load = cluster.load[giver];
        let mut best: Option<Candidate> = None;
        for &taker in takers {
            let taker_load = cluster.load[taker];
            if taker_load + 2 > giver_load || best.is_some_and(|b| b.taker_load < taker_load) {
                break;
            }
            let helps = self.band.over(giver_load) || self.band.under(taker_load);
            if !helps || self.blocked[giver][cluster.rack(taker)] == giver_load {
                continue;
            }
            let found = cluster.hosted[giver]
                .iter()
                .find(|&&(_, p)| may_move(cluster, p, giver, taker));
            if let Some(&(size, part)) = found {
                let c = Candidate {
                    taker_load,
                    size,
                    part,
                    giver,
                    taker,
                };
                best = Some(best.map_or(c, |b| b.min(c)));
            }
        }
        best
    }

    fn apply(&mut self, c: Candidate) {
        let slot = self.cluster.parts[c.part]
            .slots
            .iter()
            .position(|&s| s == Some(c.giver))
            .expect("the giver hosts the partition it gives");
        self.block(c.part, false);
        self.cluster.unassign(c.part, slot);
        self.cluster.assign(c.part, slot, c.taker);
        self.block(c.part, true);
    }
}

/// Whether partition `p`'s replica may go from `giver` to `taker` without a duplicate broker
/// and without lowering the number of racks the partition spans.
fn may_move(cluster: &Cluster, p: usize, giver: usize, taker: usize) -> bool {
    let (from, to) = (cluster.rack(giver), cluster.rack(taker));
    let loses = from != to && cluster.rack_uses(p, from, Some(giver)) == 0;
    let gains = cluster.rack_uses(p, to, Some(giver)) == 0;
    !cluster.hosts(p, taker) && (gains || !loses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_partitions_move_to_the_new_brokers() {
        let mut c = Cluster::for_tests(
            &["a", "a", "a", "a"],
            &[(&[0, 1], 30), (&[1, 0], 10), (&[0, 1], 20), (&[1, 0], 40)],
            &[],
        );
        balance_replicas(&mut c);
        // 8 replicas over 4 brokers: the band is 1..=3. Both replicas of the 10-byte partition
        // move, in place; nothing else does.
        assert_eq!(c.load, [3, 3, 1, 1]);
        assert_eq!(c.parts[1].slots, [Some(3), Some(2)]);
        for p in [0, 2, 3] {
            assert!(!c.replicas_change(p));
        }
    }

    #[test]
    fn a_move_never_gives_up_a_rack() {
        // Partitions span racks b and a; the empty broker 2 is in rack a, so it takes a
        // replica from broker 1 (rack a), never from broker 0 (rack b), which the tie-break
        // would otherwise pick.
        let mut c = Cluster::for_tests(
            &["b", "a", "a"],
            &[(&[0, 1], 1), (&[1, 0], 1), (&[0, 1], 1)],
            &[],
        );
        balance_replicas(&mut c);
        assert_eq!(c.load, [3, 2, 1]);
    }

    #[test]
    fn a_replica_sharing_its_rack_may_move_to_another_rack_the_partition_uses() {
        // Racks a, a, b, b; the partition spans a (twice) and b. Broker 0's replica may go to
        // broker 3 in rack b: the partition still spans both racks.
        let mut c = Cluster::for_tests(
            &["a", "a", "b", "b"],
            &[(&[0, 1, 2], 1), (&[0, 1, 2], 2)],
            &[],
        );
        balance_replicas(&mut c);
        assert_eq!(c.parts[0].slots, [Some(3), Some(1), Some(2)]);
        assert_eq!(c.load, [1, 2, 2, 1]);
    }

    #[test]
    fn a_balanced_cluster_stays_as_it_is() {
        let mut c = Cluster::for_tests(
            &["a", "a", "a"],
            &[(&[0, 1], 1), (&[1, 2], 1), (&[2, 0], 1), (&[0, 1], 1)],
            &[],
        );
        balance_replicas(&mut c);
        assert_eq!(c.load, [3, 3, 2]);
    }
}
