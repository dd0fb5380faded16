//! Choosing each partition's preferred leader (the first replica of its target) so leaderships
//! are even. Reordering a replica list copies no data, so this runs after the replicas are
//! placed and changes only the order.
//!
//! Every partition starts with the first replica of its target: its current preferred leader if
//! that stays, else the replica that took that broker's place. Leadership is balanced over the
//! brokers that hold a replica, to within one of the mean (`|leaders·h − partitions| ≤ h`): while
//! a broker is out of band, leadership shifts along a path of partitions from a broker with more
//! leaderships to one with at least two fewer (each partition on the path hands leadership to
//! one of its other replicas), which is what makes the result as even as the placement allows.
//! Among partitions that could hand over, the one that creates the fewest reorder-only moves is
//! chosen. Only `reorderable` partitions may change leader.

use std::collections::{BTreeSet, VecDeque};

use crate::cluster::Cluster;

struct Leadership<'a> {
    cluster: &'a Cluster,
    /// Partitions whose replica set changes (a move exists whatever the order).
    changed: &'a [bool],
    leader: Vec<usize>,
    count: Vec<usize>,
    /// Per broker, the reorderable partitions it leads.
    led: Vec<BTreeSet<usize>>,
    /// `edges[a][b]`: reorderable partitions led by `a` that have a replica on `b`.
    edges: Vec<Vec<usize>>,
    hosts: Vec<usize>,
}

/// The preferred leader (a broker index) of every partition; partitions must be fully placed.
pub(crate) fn choose_leaders(
    cluster: &Cluster,
    reorderable: &[bool],
    changed: &[bool],
) -> Vec<usize> {
    let n = cluster.brokers.len();
    let mut state = Leadership {
        cluster,
        changed,
        leader: Vec::with_capacity(cluster.parts.len()),
        count: vec![0; n],
        led: vec![BTreeSet::new(); n],
        edges: vec![vec![0; n]; n],
        hosts: (0..n).filter(|&b| cluster.load[b] > 0).collect(),
    };
    for (p, &may_reorder) in reorderable.iter().enumerate() {
        let first = state
            .replicas(p)
            .next()
            .expect("a placed partition has replicas");
        state.leader.push(first);
        state.count[first] += 1;
        if may_reorder {
            state.link(p, first, true);
        }
    }
    while let Some(path) = state.augmenting_path() {
        state.shift_along(&path);
    }
    state.leader
}

impl Leadership<'_> {
    fn replicas(&self, p: usize) -> impl Iterator<Item = usize> + '_ {
        self.cluster.parts[p]
            .slots
            .iter()
            .map(|s| s.expect("placed before leaders are chosen"))
    }

    fn over(&self, leaders: usize) -> bool {
        leaders * self.hosts.len() > self.cluster.parts.len() + self.hosts.len()
    }

    fn under(&self, leaders: usize) -> bool {
        leaders * self.hosts.len() + self.hosts.len() < self.cluster.parts.len()
    }

    /// Records (or forgets) that `leader` leads reorderable partition `p`.
    fn link(&mut self, p: usize, leader: usize, add: bool) {
        let others: Vec<usize> = self.replicas(p).filter(|&b| b != leader).collect();
        for b in others {
            let e = &mut self.edges[leader][b];
            *e = if add { *e + 1 } else { *e - 1 };
        }
        if add {
            self.led[leader].insert(p);
        } else {
            self.led[leader].remove(&p);
        }
    }

    /// A path of brokers from one that should lead less to one that should lead more, found
    /// from the busiest brokers first; `None` when leadership is as even as it can get.
    fn augmenting_path(&self) -> Option<Vec<usize>> {
        let any_under = self.hosts.iter().any(|&b| self.under(self.count[b]));
        let mut sources = self.hosts.clone();
        sources.sort_by_key(|&b| (std::cmp::Reverse(self.count[b]), b));
        for s in sources {
            let c = self.count[s];
            if !self.over(c) && !any_under {
                return None;
            }
            if let Some(path) = self.path_from(s) {
                return Some(path);
            }
        }
        None
    }

    /// Breadth-first search from `s` for the least-leading broker that may take one leadership.
    fn path_from(&self, s: usize) -> Option<Vec<usize>> {
        let c = self.count[s];
        let mut parent = vec![usize::MAX; self.count.len()];
        parent[s] = s;
        let mut queue = VecDeque::from([s]);
        let mut best: Option<usize> = None;
        while let Some(a) = queue.pop_front() {
            let t_count = self.count[a];
            let fits = a != s && t_count + 2 <= c && (self.over(c) || self.under(t_count));
            if fits && best.is_none_or(|b| (t_count, a) < (self.count[b], b)) {
                best = Some(a);
            }
            for &b in &self.hosts {
                if self.edges[a][b] > 0 && parent[b] == usize::MAX {
                    parent[b] = a;
                    queue.push_back(b);
                }
            }
        }
        let mut path = vec![best?];
        while let Some(&last) = path.last().filter(|&&v| v != s) {
            path.push(parent[last]);
        }
        path.reverse();
        Some(path)
    }

    /// Hands one leadership along each hop of `path`, last hop first so that earlier hops still
    /// find the partitions the search saw.
    fn shift_along(&mut self, path: &[usize]) {
        for hop in path.windows(2).rev() {
            let (from, to) = (hop[0], hop[1]);
            let p = self.led[from]
                .iter()
                .copied()
                .filter(|&p| self.replicas(p).any(|b| b == to))
                .min_by_key(|&p| {
                    (
                        self.moves_after(p, to) as isize - self.moves_after(p, from) as isize,
                        p,
                    )
                })
                .expect("an edge stands for a partition");
            self.link(p, from, false);
            self.link(p, to, true);
            self.leader[p] = to;
        }
        self.count[path[0]] -= 1;
        self.count[path[path.len() - 1]] += 1;
    }

    /// Whether partition `p` needs a move if `leader` leads it.
    fn moves_after(&self, p: usize, leader: usize) -> bool {
        self.changed[p] || self.cluster.parts[p].current[0] != leader
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_shifts_along_a_path_to_the_broker_leading_nothing() {
        // Broker 0 leads four partitions; broker 2 leads none but shares no partition with
        // broker 0, so leadership must go 0 -> 1 on one partition and 1 -> 2 on another.
        let c = Cluster::for_tests(
            &["a"; 3],
            &[
                (&[0, 1], 1),
                (&[0, 1], 1),
                (&[0, 1], 1),
                (&[0, 1], 1),
                (&[1, 2], 1),
                (&[1, 2], 1),
            ],
            &[],
        );
        let all = vec![true; 6];
        let leaders = choose_leaders(&c, &all, &[false; 6]);
        let mut count = [0; 3];
        for &l in &leaders {
            count[l] += 1;
        }
        assert_eq!(count, [3, 2, 1]);
        assert_eq!(leaders.iter().filter(|&&l| l == 2).count(), 1);
    }

    #[test]
    fn balanced_leaders_keep_their_current_order() {
        let c = Cluster::for_tests(
            &["a"; 3],
            &[(&[0, 1], 1), (&[1, 2], 1), (&[2, 0], 1), (&[0, 2], 1)],
            &[],
        );
        assert_eq!(choose_leaders(&c, &[true; 4], &[false; 4]), [0, 1, 2, 0]);
    }

    #[test]
    fn only_reorderable_partitions_change_leader() {
        let c = Cluster::for_tests(
            &["a"; 2],
            &[(&[0, 1], 1), (&[0, 1], 1), (&[0, 1], 1), (&[0, 1], 1)],
            &[],
        );
        let leaders = choose_leaders(&c, &[false, false, false, true], &[false; 4]);
        assert_eq!(leaders, [0, 0, 0, 1]);
    }
}
