//! Leader choice and the partition changes that follow a broker's state (pure functions).
//!
//! The leader of a partition is the first replica in assignment order that is in the ISR and
//! active (registered, unfenced, not shutting down); with none, the partition has no leader
//! (-1). A broker that stops being active leaves every ISR that has another member (the last
//! member stays, so the partition knows which replica holds its latest data, as in Kafka).
//! Every change bumps the partition epoch; a new leader also bumps the leader epoch.

use kafka_protocol::ResponseError;

use crate::metadata::records::PartitionRecord;

/// The preferred eligible leader: first in `replicas` order, in `isr`, and `eligible`.
pub fn choose_leader(replicas: &[i32], isr: &[i32], eligible: impl Fn(i32) -> bool) -> Option<i32> {
    replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && eligible(*r))
}

/// The partition after `broker` stopped being active (fenced or shutting down), or `None` if
/// nothing changes. `eligible` must already say `false` for `broker`.
pub fn without_broker(
    p: &PartitionRecord,
    broker: i32,
    eligible: impl Fn(i32) -> bool,
) -> Option<PartitionRecord> {
    let mut isr = p.isr.clone();
    if isr.len() > 1 {
        isr.retain(|r| *r != broker);
    }
    let leader = if p.leader == broker || p.leader < 0 {
        choose_leader(&p.replicas, &isr, &eligible).unwrap_or(-1)
    } else {
        p.leader
    };
    changed(p, isr, leader)
}

/// The partition after `broker` became active again, or `None`: a leaderless partition whose
/// ISR holds an eligible replica gets that leader.
pub fn with_broker(p: &PartitionRecord, eligible: impl Fn(i32) -> bool) -> Option<PartitionRecord> {
    if p.leader >= 0 {
        return None;
    }
    let leader = choose_leader(&p.replicas, &p.isr, eligible)?;
    changed(p, p.isr.clone(), leader)
}

/// Preferred-leader election: the first replica in assignment order leads again, if it is in
/// the ISR and active. Kafka's answers: ELECTION_NOT_NEEDED when it already leads,
/// PREFERRED_LEADER_NOT_AVAILABLE when it may not.
pub fn preferred(
    p: &PartitionRecord,
    eligible: impl Fn(i32) -> bool,
) -> Result<PartitionRecord, ResponseError> {
    let preferred = *p
        .replicas
        .first()
        .ok_or(ResponseError::PreferredLeaderNotAvailable)?;
    if p.leader == preferred {
        return Err(ResponseError::ElectionNotNeeded);
    }
    if !p.isr.contains(&preferred) || !eligible(preferred) {
        return Err(ResponseError::PreferredLeaderNotAvailable);
    }
    changed(p, p.isr.clone(), preferred).ok_or(ResponseError::ElectionNotNeeded)
}

/// Unclean election of a leaderless partition: the first active replica in assignment order
/// leads even if it is not in the ISR (it becomes the whole ISR). Acknowledged data may be
/// lost: only on request, or with `unclean.leader.election.enable`.
pub fn unclean(
    p: &PartitionRecord,
    eligible: impl Fn(i32) -> bool,
) -> Result<PartitionRecord, ResponseError> {
    if p.leader >= 0 {
        return Err(ResponseError::ElectionNotNeeded);
    }
    if let Some(clean) = choose_leader(&p.replicas, &p.isr, &eligible) {
        return changed(p, p.isr.clone(), clean).ok_or(ResponseError::ElectionNotNeeded);
    }
    let leader = p
        .replicas
        .iter()
        .copied()
        .find(|r| eligible(*r))
        .ok_or(ResponseError::EligibleLeadersNotAvailable)?;
    changed(p, vec![leader], leader).ok_or(ResponseError::ElectionNotNeeded)
}

fn changed(p: &PartitionRecord, isr: Vec<i32>, leader: i32) -> Option<PartitionRecord> {
    if isr == p.isr && leader == p.leader {
        return None;
    }
    let mut next = p.clone();
    if leader != p.leader {
        next.leader_epoch += 1;
    }
    next.leader = leader;
    next.isr = isr;
    next.partition_epoch += 1;
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionRecord {
        PartitionRecord {
            topic_id: uuid::Uuid::nil(),
            partition: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 4,
            partition_epoch: 9,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            original_replicas: Vec::new(),
        }
    }

    #[test]
    fn the_leader_is_the_first_eligible_isr_member_in_assignment_order() {
        assert_eq!(choose_leader(&[3, 1, 2], &[1, 2, 3], |_| true), Some(3));
        assert_eq!(choose_leader(&[3, 1, 2], &[1, 2], |_| true), Some(1));
        assert_eq!(choose_leader(&[3, 1, 2], &[1, 2], |b| b != 1), Some(2));
        assert_eq!(choose_leader(&[3, 1, 2], &[3], |b| b != 3), None);
    }

    #[test]
    fn a_fenced_leader_is_replaced_and_leaves_the_isr() {
        let p = part(&[1, 2, 3], &[1, 2, 3], 1);
        let next = without_broker(&p, 1, |b| b != 1).expect("changed");
        assert_eq!((next.leader, next.isr.clone()), (2, vec![2, 3]));
        assert_eq!((next.leader_epoch, next.partition_epoch), (5, 10));
        // A follower leaving changes the ISR but not the leader or its epoch.
        let f = without_broker(&p, 3, |b| b != 3).expect("changed");
        assert_eq!(
            (f.leader, f.isr.clone(), f.leader_epoch),
            (1, vec![1, 2], 4)
        );
    }

    #[test]
    fn the_last_isr_member_stays_and_the_partition_goes_leaderless() {
        let p = part(&[1], &[1], 1);
        let next = without_broker(&p, 1, |_| false).expect("changed");
        assert_eq!((next.leader, next.isr.clone()), (-1, vec![1]));
        assert_eq!(next.leader_epoch, 5);
        // Nothing left to change the second time.
        assert_eq!(without_broker(&next, 1, |_| false), None);
        // When it comes back, it leads again with a new epoch.
        let back = with_broker(&next, |_| true).expect("changed");
        assert_eq!(
            (back.leader, back.leader_epoch, back.partition_epoch),
            (1, 6, 11)
        );
        assert_eq!(with_broker(&back, |_| true), None);
    }

    #[test]
    fn preferred_election_moves_leadership_back_only_when_it_may() {
        let p = part(&[1, 2, 3], &[1, 2, 3], 2);
        let next = preferred(&p, |_| true).expect("elected");
        assert_eq!(
            (next.leader, next.leader_epoch, next.partition_epoch),
            (1, 5, 10)
        );
        assert_eq!(
            preferred(&next, |_| true),
            Err(ResponseError::ElectionNotNeeded)
        );
        let out_of_isr = part(&[1, 2, 3], &[2, 3], 2);
        assert_eq!(
            preferred(&out_of_isr, |_| true),
            Err(ResponseError::PreferredLeaderNotAvailable)
        );
        assert_eq!(
            preferred(&p, |b| b != 1),
            Err(ResponseError::PreferredLeaderNotAvailable)
        );
    }

    #[test]
    fn unclean_election_prefers_the_isr_then_any_live_replica() {
        assert_eq!(
            unclean(&part(&[1, 2], &[1], 1), |_| true),
            Err(ResponseError::ElectionNotNeeded)
        );
        // The ISR's last member is alive: a clean choice.
        let clean = unclean(&part(&[1, 2, 3], &[2], -1), |_| true).expect("clean");
        assert_eq!((clean.leader, clean.isr.clone()), (2, vec![2]));
        // Only out-of-sync replicas live: the first of them, alone in the ISR.
        let dirty = unclean(&part(&[1, 2, 3], &[1], -1), |b| b != 1).expect("unclean");
        assert_eq!(
            (dirty.leader, dirty.isr.clone(), dirty.leader_epoch),
            (2, vec![2], 5)
        );
        assert_eq!(
            unclean(&part(&[1, 2], &[1], -1), |_| false),
            Err(ResponseError::EligibleLeadersNotAvailable)
        );
    }

    #[test]
    fn unrelated_partitions_do_not_change() {
        let p = part(&[2, 3], &[2, 3], 2);
        assert_eq!(without_broker(&p, 1, |b| b != 1), None);
    }
}
