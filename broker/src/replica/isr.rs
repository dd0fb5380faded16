//! The ISR rules a partition leader applies, as pure functions of its [`PartitionState`]: which
//! followers fell out of sync, which caught up, and the one AlterPartition proposal that
//! follows.
//!
//! - **Out of sync** (Kafka's `isCaughtUp`, negated): an ISR follower that is not at the
//!   leader's log end and has not been caught up within `replica.lag.time.max.ms` — stuck (no
//!   fetch) or slow (fetching, never reaching what the leader had). A follower at the log end of
//!   an idle partition stays in sync however long ago it fetched.
//! - **Caught up**: a follower outside the ISR whose log end offset reached the high watermark
//!   *and* the start of the current leader epoch (it has fetched this leader's data, so its log
//!   cannot hold a diverged tail; a new leader knows no follower's offset until it fetches), and
//!   that is eligible (not fenced, not shutting down).
//! - **Proposals**: at most one in flight; the leader is always in the proposed ISR (so it is
//!   never empty); a proposal names the leader epoch and partition epoch it is based on, so the
//!   controller refuses it if anything changed meanwhile. Removals and additions due at the same
//!   time go in one proposal.
//!
//! Not here: sending AlterPartition and retrying it (the caller), recording a proposal as
//! pending ([`PartitionState::propose_isr_change`]), applying the committed result (it arrives
//! as a metadata record, [`PartitionState::on_metadata`]).

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::partition::{LeaderEpoch, PartitionEpoch, PartitionState};

/// An ISR change for the controller (the content of an AlterPartition request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    /// The leader epoch the proposal was made under.
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch it is based on: the controller applies it only to that version.
    pub partition_epoch: PartitionEpoch,
    /// The proposed ISR, in assignment order; always holds the leader.
    pub isr: Vec<i32>,
}

/// ISR followers that fell out of sync: not at the leader's log end and not caught up within
/// `lag_time`. Empty while an ISR change is pending or when this broker does not lead; never
/// the leader itself.
pub fn shrink_candidates(
    state: &PartitionState,
    now: Instant,
    lag_time: Duration,
) -> BTreeSet<i32> {
    let Some(leader) = state.leader().filter(|l| l.pending_isr_change.is_none()) else {
        return BTreeSet::new();
    };
    leader
        .isr
        .iter()
        .copied()
        .filter(|id| *id != state.local_id())
        .filter(|id| {
            // An ISR member the leader has no progress for (not assigned) is out of sync too.
            !leader
                .followers
                .get(id)
                .is_some_and(|f| f.is_caught_up(leader.log_end_offset, now, lag_time))
        })
        .collect()
}

/// Eligible followers outside the ISR whose log end reached both the high watermark and the
/// start of the current leader epoch. Empty while an ISR change is pending or when this broker
/// does not lead.
pub fn expand_candidates(state: &PartitionState) -> BTreeSet<i32> {
    let Some(leader) = state.leader().filter(|l| l.pending_isr_change.is_none()) else {
        return BTreeSet::new();
    };
    let high_watermark = state.high_watermark();
    leader
        .followers
        .iter()
        .filter(|(id, _)| !leader.isr.contains(id) && state.is_eligible(**id))
        .filter(|(_, f)| {
            f.log_end_offset
                .is_some_and(|leo| leo >= high_watermark && leo >= leader.epoch_start_offset)
        })
        .map(|(id, _)| *id)
        .collect()
}

/// The AlterPartition proposal due now: the ISR without the followers out of sync, with the
/// followers caught up, and with the leader. `None` while another change is pending, when
/// nothing would change, or when this broker does not lead.
pub fn proposed_isr(
    state: &PartitionState,
    now: Instant,
    lag_time: Duration,
) -> Option<IsrProposal> {
    let leader = state.leader()?;
    if leader.pending_isr_change.is_some() {
        return None;
    }
    let leaving = shrink_candidates(state, now, lag_time);
    let joining = expand_candidates(state);
    // The usual case, checked every half second for every led partition: nothing to change
    // (and nothing allocated: both sets are empty).
    if leaving.is_empty() && joining.is_empty() && leader.isr.contains(&state.local_id()) {
        return None;
    }
    let mut next: BTreeSet<i32> = leader.isr.difference(&leaving).copied().collect();
    next.extend(joining);
    next.insert(state.local_id());
    if next == leader.isr {
        return None;
    }
    Some(IsrProposal {
        leader_epoch: leader.leader_epoch,
        partition_epoch: leader.partition_epoch,
        isr: in_assignment_order(&next, &leader.replicas),
    })
}

/// `isr` in the order of `replicas`, then any member not assigned (none, normally) in id order.
fn in_assignment_order(isr: &BTreeSet<i32>, replicas: &[i32]) -> Vec<i32> {
    let assigned = replicas.iter().copied().filter(|r| isr.contains(r));
    let others = isr.iter().copied().filter(|r| !replicas.contains(r));
    assigned.chain(others).collect()
}

#[cfg(test)]
mod tests {
    use tributary_log::Offset;

    use super::*;
    use crate::metadata::records::PartitionRecord;
    use crate::replica::partition::{ReplicaSettings, Transition};

    const ME: i32 = 1;
    const LAG: Duration = Duration::from_secs(30);

    fn record(replicas: &[i32], isr: &[i32], partition_epoch: i32) -> PartitionRecord {
        PartitionRecord {
            topic_id: uuid::Uuid::nil(),
            partition: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader: ME,
            leader_epoch: 5,
            partition_epoch,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            original_replicas: Vec::new(),
        }
    }

    /// Broker 1 leading `replicas` with `isr` in leader epoch 5, partition epoch 10: log end
    /// 100, high watermark 90.
    fn leading(replicas: &[i32], isr: &[i32], t0: Instant) -> PartitionState {
        let settings = ReplicaSettings {
            min_insync_replicas: 1,
            replica_lag_time_max: LAG,
        };
        let mut p = PartitionState::new(ME, Offset(90), settings);
        let t = p.on_metadata(&record(replicas, isr, 10), Offset(100), t0);
        assert!(matches!(t, Transition::BecameLeader { .. }), "{t:?}");
        p
    }

    fn fetch(p: &mut PartitionState, replica: i32, offset: i64, log_end: i64, now: Instant) {
        p.on_follower_fetch(
            replica,
            Offset(offset),
            LeaderEpoch(5),
            Offset(log_end),
            now,
        )
        .expect("fetch accepted");
    }

    fn ids(v: &[i32]) -> BTreeSet<i32> {
        v.iter().copied().collect()
    }

    #[test]
    fn a_follower_that_stopped_fetching_is_shrunk_after_the_lag_time() {
        let t0 = Instant::now();
        let mut p = leading(&[1, 2, 3], &[1, 2, 3], t0);
        fetch(&mut p, 2, 100, 100, t0);
        fetch(&mut p, 3, 100, 100, t0);
        let t1 = t0 + Duration::from_secs(1);
        p.on_local_append(Offset(110), t1);
        fetch(&mut p, 2, 110, 110, t1);
        assert!(
            shrink_candidates(&p, t0 + LAG, LAG).is_empty(),
            "exactly the lag time"
        );
        let late = t0 + LAG + Duration::from_millis(1);
        fetch(&mut p, 2, 110, 110, late);
        assert_eq!(shrink_candidates(&p, late, LAG), ids(&[3]));
        let proposal = proposed_isr(&p, late, LAG).expect("a shrink");
        let expected = IsrProposal {
            leader_epoch: LeaderEpoch(5),
            partition_epoch: PartitionEpoch(10),
            isr: vec![1, 2],
        };
        assert_eq!(proposal, expected);
    }

    #[test]
    fn a_follower_at_the_log_end_of_an_idle_partition_stays_in_sync() {
        let t0 = Instant::now();
        let mut p = leading(&[1, 2, 3], &[1, 2, 3], t0);
        fetch(&mut p, 2, 100, 100, t0);
        fetch(&mut p, 3, 100, 100, t0);
        let much_later = t0 + Duration::from_secs(3600);
        assert!(shrink_candidates(&p, much_later, LAG).is_empty());
        assert_eq!(proposed_isr(&p, much_later, LAG), None);
    }

    #[test]
    fn a_follower_that_keeps_up_with_steady_appends_stays_in_sync() {
        let t0 = Instant::now();
        let mut p = leading(&[1, 2, 3], &[1, 2, 3], t0);
        fetch(&mut p, 2, 100, 100, t0);
        fetch(&mut p, 3, 100, 100, t0);
        // Every 10 s the leader appends and the followers fetch what it had at their previous
        // fetch: never at the log end, always caught up to the previous one.
        for i in 1..=10 {
            let now = t0 + Duration::from_secs(10 * i);
            let log_end = 100 + 10 * i as i64;
            p.on_local_append(Offset(log_end), now);
            fetch(&mut p, 2, log_end - 10, log_end, now);
            fetch(&mut p, 3, log_end - 10, log_end, now);
            assert!(
                shrink_candidates(&p, now, LAG).is_empty(),
                "after {i} rounds"
            );
        }
    }

    #[test]
    fn a_slow_follower_is_shrunk_although_it_keeps_fetching() {
        let t0 = Instant::now();
        let mut p = leading(&[1, 2, 3], &[1, 2, 3], t0);
        fetch(&mut p, 2, 100, 100, t0);
        fetch(&mut p, 3, 100, 100, t0);
        // The leader grows by 20 every 10 s; follower 3 gets only 10 further each time.
        for i in 1..=4 {
            let now = t0 + Duration::from_secs(10 * i);
            let log_end = 100 + 20 * i as i64;
            p.on_local_append(Offset(log_end), now);
            fetch(&mut p, 2, log_end, log_end, now);
            fetch(&mut p, 3, 100 + 10 * (i as i64 - 1), log_end, now);
            let expected = if i <= 3 { ids(&[]) } else { ids(&[3]) };
            assert_eq!(
                shrink_candidates(&p, now, LAG),
                expected,
                "after {i} rounds"
            );
        }
    }

    #[test]
    fn a_caught_up_follower_is_added() {
        let t0 = Instant::now();
        let mut p = leading(&[1, 2, 3], &[1, 2], t0);
        fetch(&mut p, 2, 100, 100, t0);
        assert_eq!(p.high_watermark(), Offset(100));
        fetch(&mut p, 3, 90, 100, t0);
        assert!(expand_candidates(&p).is_empty(), "below the high watermark");
        fetch(&mut p, 3, 100, 100, t0);
        assert_eq!(expand_candidates(&p), ids(&[3]));
        let proposal = proposed_isr(&p, t0, LAG).expect("an expansion");
        assert_eq!(proposal.isr, vec![1, 2, 3]);
        assert_eq!(
            (proposal.leader_epoch, proposal.partition_epoch),
            (LeaderEpoch(5), PartitionEpoch(10))
        );
    }

    #[test]
    fn a_follower_joins_only_once_it_reached_the_current_leader_epoch() {
        let t0 = Instant::now();
        // Elected with log end 100 and high watermark 90; 2 has not fetched, so it stays 90.
        let mut p = leading(&[1, 2, 3], &[1, 2], t0);
        assert!(
            expand_candidates(&p).is_empty(),
            "no follower fetched from this leader"
        );
        fetch(&mut p, 3, 95, 100, t0);
        assert_eq!(p.high_watermark(), Offset(90));
        assert!(
            expand_candidates(&p).is_empty(),
            "95 is above the high watermark, not in epoch 5"
        );
        fetch(&mut p, 3, 100, 100, t0);
        assert_eq!(expand_candidates(&p), ids(&[3]));
    }

    #[test]
    fn an_ineligible_follower_is_not_added() {
        let t0 = Instant::now();
        let mut p = leading(&[1, 2, 3], &[1, 2], t0);
        fetch(&mut p, 2, 100, 100, t0);
        fetch(&mut p, 3, 100, 100, t0);
        let _ = p.set_ineligible_brokers(ids(&[3]), t0);
        assert!(expand_candidates(&p).is_empty());
        assert_eq!(proposed_isr(&p, t0, LAG), None);
        let _ = p.set_ineligible_brokers(ids(&[]), t0);
        assert_eq!(expand_candidates(&p), ids(&[3]));
    }

    #[test]
    fn no_second_isr_change_while_one_is_in_flight() {
        let t0 = Instant::now();
        let mut p = leading(&[1, 2, 3], &[1, 2], t0);
        fetch(&mut p, 2, 100, 100, t0);
        fetch(&mut p, 3, 100, 100, t0);
        let first = p.propose_isr_change(t0).expect("3 joins");
        assert_eq!(first.isr, vec![1, 2, 3]);
        // Follower 2 falls out of sync meanwhile: nothing else is proposed.
        let t1 = t0 + LAG + Duration::from_secs(1);
        p.on_local_append(Offset(110), t1);
        assert!(shrink_candidates(&p, t1, LAG).is_empty());
        assert!(expand_candidates(&p).is_empty());
        assert_eq!(proposed_isr(&p, t1, LAG), None);
        assert_eq!(p.propose_isr_change(t1), None);
        // A refusal of another proposal does not clear this one; its own refusal does.
        let other = IsrProposal {
            partition_epoch: PartitionEpoch(9),
            ..first.clone()
        };
        assert!(!p.on_isr_change_not_applied(&other));
        assert_eq!(p.propose_isr_change(t1), None);
        assert!(p.on_isr_change_not_applied(&first));
        let second = p.propose_isr_change(t1).expect("2 leaves, 3 joins");
        assert_eq!(second.isr, vec![1, 3]);
        // A newer partition epoch settles it, and the next change is based on that epoch.
        let t = p.on_metadata(&record(&[1, 2, 3], &[1, 3], 11), Offset(110), t1);
        assert!(matches!(t, Transition::Updated { .. }));
        fetch(&mut p, 2, 110, 110, t1);
        fetch(&mut p, 3, 110, 110, t1);
        let third = p.propose_isr_change(t1).expect("2 is back");
        assert_eq!(
            (third.partition_epoch, third.isr),
            (PartitionEpoch(11), vec![1, 2, 3])
        );
    }

    #[test]
    fn the_leader_is_never_removed_and_the_isr_never_empty() {
        let t0 = Instant::now();
        let mut p = leading(&[1, 2, 3], &[1, 2, 3], t0);
        let late = t0 + LAG + Duration::from_secs(1);
        p.on_local_append(Offset(110), late);
        assert_eq!(shrink_candidates(&p, late, LAG), ids(&[2, 3]));
        assert_eq!(proposed_isr(&p, late, LAG).map(|p| p.isr), Some(vec![ME]));
        // Alone in the ISR with nobody caught up: nothing to propose.
        let alone = leading(&[1, 2, 3], &[1], t0);
        assert!(shrink_candidates(&alone, late, LAG).is_empty());
        assert_eq!(proposed_isr(&alone, late, LAG), None);
    }

    #[test]
    fn removals_and_additions_go_in_one_proposal_in_assignment_order() {
        let t0 = Instant::now();
        let mut p = leading(&[3, 1, 2], &[1, 2], t0);
        let late = t0 + LAG + Duration::from_secs(1);
        fetch(&mut p, 3, 100, 100, late);
        let proposal = proposed_isr(&p, late, LAG).expect("2 leaves, 3 joins");
        assert_eq!(proposal.isr, vec![3, 1]);
    }

    #[test]
    fn a_broker_that_does_not_lead_proposes_nothing() {
        let t0 = Instant::now();
        let mut p = PartitionState::new(ME, Offset(0), ReplicaSettings::default());
        assert_eq!(proposed_isr(&p, t0, LAG), None);
        let follower = PartitionRecord {
            leader: 2,
            ..record(&[1, 2, 3], &[2], 10)
        };
        let _ = p.on_metadata(&follower, Offset(0), t0);
        let late = t0 + LAG + Duration::from_secs(1);
        assert!(shrink_candidates(&p, late, LAG).is_empty());
        assert!(expand_candidates(&p).is_empty());
        assert_eq!(p.propose_isr_change(late), None);
    }
}
