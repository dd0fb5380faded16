//! Unit tests of the partition state machine (`partition.rs`).

use std::time::Duration;

use super::*;

const ME: i32 = 1;
const LAG: Duration = Duration::from_secs(30);

fn record(
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: &[i32],
    isr: &[i32],
) -> PartitionRecord {
    PartitionRecord {
        topic_id: uuid::Uuid::nil(),
        partition: 0,
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        leader,
        leader_epoch,
        partition_epoch,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
        original_replicas: Vec::new(),
    }
}

fn settings(min_insync_replicas: usize) -> ReplicaSettings {
    ReplicaSettings {
        min_insync_replicas,
        replica_lag_time_max: LAG,
    }
}

/// Broker 1 leading [1, 2, 3] with `isr` in leader epoch 5, partition epoch 10: log end
/// 100, high watermark 90 (as it knew it when it was elected).
fn leading(isr: &[i32], min_isr: usize, t0: Instant) -> PartitionState {
    let mut p = PartitionState::new(ME, Offset(90), settings(min_isr));
    let t = p.on_metadata(&record(ME, 5, 10, &[1, 2, 3], isr), Offset(100), t0);
    assert!(matches!(t, Transition::BecameLeader { .. }), "{t:?}");
    p
}

fn fetch(
    p: &mut PartitionState,
    replica: i32,
    offset: i64,
    log_end: i64,
    now: Instant,
) -> Option<Offset> {
    p.on_follower_fetch(
        replica,
        Offset(offset),
        LeaderEpoch(5),
        Offset(log_end),
        now,
    )
    .expect("fetch accepted")
}

#[test]
fn the_high_watermark_is_the_smallest_log_end_over_the_isr() {
    let t0 = Instant::now();
    let mut p = leading(&[1, 2, 3], 1, t0);
    assert_eq!(p.high_watermark(), Offset(90));
    // A new leader knows no follower's log end: it waits for every ISR member.
    assert_eq!(fetch(&mut p, 2, 95, 100, t0), None);
    assert_eq!(fetch(&mut p, 3, 97, 100, t0), Some(Offset(95)));
    assert_eq!(fetch(&mut p, 2, 100, 100, t0), Some(Offset(97)));
    assert_eq!(fetch(&mut p, 3, 100, 100, t0), Some(Offset(100)));
    // The leader's own appends wait for the followers.
    assert_eq!(p.on_local_append(Offset(120), t0), None);
    assert_eq!(fetch(&mut p, 2, 120, 120, t0), None);
    assert_eq!(fetch(&mut p, 3, 110, 120, t0), Some(Offset(110)));
    assert_eq!(p.high_watermark(), Offset(110));
}

#[test]
fn the_high_watermark_stays_when_a_follower_log_end_goes_back() {
    let t0 = Instant::now();
    let mut p = leading(&[1, 2, 3], 1, t0);
    fetch(&mut p, 2, 100, 100, t0);
    fetch(&mut p, 3, 100, 100, t0);
    assert_eq!(p.high_watermark(), Offset(100));
    // Follower 2 restarted without its unflushed tail.
    assert_eq!(fetch(&mut p, 2, 80, 100, t0), None);
    assert_eq!(p.high_watermark(), Offset(100));
    assert_eq!(p.on_local_append(Offset(110), t0), None);
    assert_eq!(fetch(&mut p, 3, 110, 110, t0), None);
    assert_eq!(p.high_watermark(), Offset(100));
    assert_eq!(fetch(&mut p, 2, 105, 110, t0), Some(Offset(105)));
}

#[test]
fn the_high_watermark_stays_when_the_isr_changes_and_rises_when_a_laggard_leaves() {
    let t0 = Instant::now();
    let mut p = leading(&[1, 2], 1, t0);
    fetch(&mut p, 2, 100, 100, t0);
    p.on_local_append(Offset(120), t0);
    assert_eq!(fetch(&mut p, 2, 110, 120, t0), Some(Offset(110)));
    assert_eq!(fetch(&mut p, 3, 105, 120, t0), None);
    // The ISR gains a member whose log end is below the high watermark: it stays.
    let t = p.on_metadata(&record(ME, 5, 11, &[1, 2, 3], &[1, 2, 3]), Offset(120), t0);
    assert_eq!(
        t,
        Transition::Updated {
            high_watermark: None
        }
    );
    assert_eq!(fetch(&mut p, 2, 120, 120, t0), None);
    assert_eq!(p.high_watermark(), Offset(110));
    // The laggard is removed: the high watermark may only rise.
    let t = p.on_metadata(&record(ME, 5, 12, &[1, 2, 3], &[1, 2]), Offset(120), t0);
    assert_eq!(
        t,
        Transition::Updated {
            high_watermark: Some(Offset(120))
        }
    );
}

#[test]
fn the_high_watermark_is_frozen_below_min_isr_and_moves_again_when_the_isr_recovers() {
    let t0 = Instant::now();
    let mut p = leading(&[1, 2, 3], 2, t0);
    fetch(&mut p, 2, 100, 100, t0);
    fetch(&mut p, 3, 100, 100, t0);
    assert_eq!(p.high_watermark(), Offset(100));
    assert_eq!(p.can_accept_acks_all(), Ok(()));
    // Both followers leave the ISR: below min ISR 2 nothing moves it (KIP-966).
    let t = p.on_metadata(&record(ME, 5, 11, &[1, 2, 3], &[1]), Offset(100), t0);
    assert_eq!(
        t,
        Transition::Updated {
            high_watermark: None
        }
    );
    assert_eq!(p.on_local_append(Offset(130), t0), None);
    assert_eq!(fetch(&mut p, 2, 130, 130, t0), None);
    assert_eq!(p.high_watermark(), Offset(100));
    let refused = p.can_accept_acks_all().expect_err("below min ISR");
    assert_eq!(
        refused,
        ReplicaError::NotEnoughReplicas { isr: 1, min_isr: 2 }
    );
    assert_eq!(refused.kafka_error(), ResponseError::NotEnoughReplicas);
    // Back at min ISR, it moves at once (to 2's log end: 3, outside the ISR, has been
    // silent past the lag time, so it is not about to join and does not hold it).
    let t1 = t0 + LAG + Duration::from_secs(1);
    let t = p.on_metadata(&record(ME, 5, 12, &[1, 2, 3], &[1, 2]), Offset(130), t1);
    assert_eq!(
        t,
        Transition::Updated {
            high_watermark: Some(Offset(130))
        }
    );
    assert_eq!(p.can_accept_acks_all(), Ok(()));
}

#[test]
fn a_leader_alone_in_the_isr_with_min_isr_1_moves_the_high_watermark_on_its_own() {
    let t0 = Instant::now();
    let mut p = PartitionState::new(ME, Offset(90), settings(1));
    let t = p.on_metadata(&record(ME, 5, 10, &[1, 2, 3], &[1]), Offset(100), t0);
    let expected = Transition::BecameLeader {
        leader_epoch: LeaderEpoch(5),
        epoch_start_offset: Offset(100),
        high_watermark: Some(Offset(100)),
    };
    assert_eq!(t, expected);
    assert_eq!(p.on_local_append(Offset(110), t0), Some(Offset(110)));
    assert_eq!(p.can_accept_acks_all(), Ok(()));
}

#[test]
fn a_leader_alone_in_the_isr_with_min_isr_2_freezes_and_refuses_acks_all() {
    let t0 = Instant::now();
    let mut p = PartitionState::new(ME, Offset(90), settings(2));
    let t = p.on_metadata(&record(ME, 5, 10, &[1, 2, 3], &[1]), Offset(100), t0);
    let expected = Transition::BecameLeader {
        leader_epoch: LeaderEpoch(5),
        epoch_start_offset: Offset(100),
        high_watermark: None,
    };
    assert_eq!(t, expected);
    assert_eq!(p.on_local_append(Offset(110), t0), None);
    assert_eq!(p.high_watermark(), Offset(90));
    assert_eq!(
        p.can_accept_acks_all(),
        Err(ReplicaError::NotEnoughReplicas { isr: 1, min_isr: 2 })
    );
    // Lowering min.insync.replicas lets it move at once.
    assert_eq!(p.set_settings(settings(1), t0), Some(Offset(110)));
    assert_eq!(p.can_accept_acks_all(), Ok(()));
}

#[test]
fn min_isr_above_the_replication_factor_is_capped_as_in_kafka() {
    let t0 = Instant::now();
    let mut p = PartitionState::new(ME, Offset(0), settings(2));
    let t = p.on_metadata(&record(ME, 1, 1, &[1], &[1]), Offset(10), t0);
    assert!(matches!(
        t,
        Transition::BecameLeader {
            high_watermark: Some(Offset(10)),
            ..
        }
    ));
    assert_eq!(p.on_local_append(Offset(20), t0), Some(Offset(20)));
    assert_eq!(p.can_accept_acks_all(), Ok(()));
}

#[test]
fn stale_metadata_is_ignored() {
    let t0 = Instant::now();
    let mut p = leading(&[1, 2, 3], 1, t0);
    let before = p.clone();
    let older = p.on_metadata(&record(2, 6, 9, &[1, 2, 3], &[2, 3]), Offset(100), t0);
    assert_eq!(
        older,
        Transition::Ignored(Stale::PartitionEpoch {
            current: PartitionEpoch(10),
            received: PartitionEpoch(9),
        })
    );
    let again = p.on_metadata(&record(ME, 5, 10, &[1, 2, 3], &[1]), Offset(100), t0);
    assert!(matches!(
        again,
        Transition::Ignored(Stale::PartitionEpoch { .. })
    ));
    let backwards = p.on_metadata(&record(2, 4, 11, &[1, 2, 3], &[2]), Offset(100), t0);
    assert_eq!(
        backwards,
        Transition::Ignored(Stale::LeaderEpoch {
            current: LeaderEpoch(5),
            received: LeaderEpoch(4),
        })
    );
    assert_eq!(p, before);
}

#[test]
fn follower_fetches_under_another_leader_epoch_are_fenced_or_unknown() {
    let t0 = Instant::now();
    let mut p = leading(&[1, 2, 3], 1, t0);
    let before = p.clone();
    let mut refuse = |replica, offset, epoch| {
        p.on_follower_fetch(replica, Offset(offset), LeaderEpoch(epoch), Offset(100), t0)
            .expect_err("refused")
    };
    let old = refuse(2, 100, 4);
    assert_eq!(
        old,
        ReplicaError::FencedLeaderEpoch {
            requested: LeaderEpoch(4),
            current: LeaderEpoch(5)
        }
    );
    assert_eq!(old.kafka_error(), ResponseError::FencedLeaderEpoch);
    let new = refuse(2, 100, 6);
    assert!(matches!(new, ReplicaError::UnknownLeaderEpoch { .. }));
    assert_eq!(new.kafka_error(), ResponseError::UnknownLeaderEpoch);
    // Not an assigned follower (Kafka 4 answers UNKNOWN_LEADER_EPOCH so it retries).
    for replica in [7, ME] {
        let e = refuse(replica, 100, 5);
        assert!(matches!(e, ReplicaError::UnknownReplica { .. }), "{e:?}");
        assert_eq!(e.kafka_error(), ResponseError::UnknownLeaderEpoch);
    }
    let beyond = refuse(2, 101, 5);
    assert_eq!(beyond.kafka_error(), ResponseError::OffsetOutOfRange);
    assert_eq!(p, before, "a refused fetch records nothing");
}

#[test]
fn followers_and_offline_replicas_refuse_follower_fetches_and_produce() {
    let t0 = Instant::now();
    let mut p = PartitionState::new(ME, Offset(0), settings(1));
    let offline = p.on_follower_fetch(2, Offset(0), LeaderEpoch(5), Offset(0), t0);
    assert_eq!(
        offline.expect_err("offline").kafka_error(),
        ResponseError::NotLeaderOrFollower
    );
    let _ = p.on_metadata(&record(2, 5, 10, &[1, 2], &[1, 2]), Offset(0), t0);
    let same = p.on_follower_fetch(3, Offset(0), LeaderEpoch(5), Offset(0), t0);
    assert_eq!(
        same,
        Err(ReplicaError::NotLeaderOrFollower {
            leader: Some(2),
            leader_epoch: Some(LeaderEpoch(5))
        })
    );
    let old = p.on_follower_fetch(3, Offset(0), LeaderEpoch(4), Offset(0), t0);
    assert!(matches!(old, Err(ReplicaError::FencedLeaderEpoch { .. })));
    let produce = p.can_accept_acks_all().expect_err("not the leader");
    assert_eq!(produce.kafka_error(), ResponseError::NotLeaderOrFollower);
}

#[test]
fn a_leader_losing_leadership_becomes_a_follower_that_keeps_its_high_watermark() {
    let t0 = Instant::now();
    let mut p = leading(&[1, 2, 3], 1, t0);
    fetch(&mut p, 2, 100, 100, t0);
    fetch(&mut p, 3, 100, 100, t0);
    p.on_local_append(Offset(110), t0);
    let t1 = t0 + LAG + Duration::from_secs(1);
    fetch(&mut p, 2, 110, 110, t1);
    assert!(p.propose_isr_change(t1).is_some(), "3 is out of sync");
    let t = p.on_metadata(&record(2, 6, 11, &[1, 2, 3], &[1, 2]), Offset(110), t1);
    let expected = Transition::BecameFollower {
        leader: Some(2),
        leader_epoch: LeaderEpoch(6),
        truncate_needed: true,
    };
    assert_eq!(t, expected);
    assert!(p.leader().is_none());
    assert_eq!(p.high_watermark(), Offset(100));
    assert_eq!(p.on_local_append(Offset(150), t1), None);
    assert_eq!(p.propose_isr_change(t1), None);
    assert!(matches!(
        p.can_accept_acks_all(),
        Err(ReplicaError::NotLeaderOrFollower { .. })
    ));
    let f = p.on_follower_fetch(3, Offset(110), LeaderEpoch(6), Offset(110), t1);
    assert!(matches!(
        f,
        Err(ReplicaError::NotLeaderOrFollower {
            leader: Some(2),
            ..
        })
    ));
    // As a follower it learns the new leader's high watermark, never past its own log.
    assert_eq!(
        p.on_leader_high_watermark(Offset(120), Offset(110)),
        Some(Offset(110))
    );
    assert_eq!(p.on_leader_high_watermark(Offset(105), Offset(110)), None);
    assert_eq!(p.high_watermark(), Offset(110));
}

#[test]
fn a_new_leader_epoch_resets_what_the_leader_knows_of_its_followers() {
    let t0 = Instant::now();
    let mut p = leading(&[1, 2, 3], 1, t0);
    fetch(&mut p, 2, 100, 100, t0);
    fetch(&mut p, 3, 100, 100, t0);
    // Re-elected (new epoch, still leader): follower log ends are kept.
    let t = p.on_metadata(&record(ME, 6, 11, &[1, 2, 3], &[1, 2, 3]), Offset(100), t0);
    assert!(matches!(
        t,
        Transition::BecameLeader {
            leader_epoch: LeaderEpoch(6),
            ..
        }
    ));
    let kept = p.leader().map(|l| l.followers[&2].log_end_offset);
    assert_eq!(kept, Some(Some(Offset(100))));
    // Leader again after following: nothing is known until they fetch in this epoch.
    let _ = p.on_metadata(&record(2, 7, 12, &[1, 2, 3], &[1, 2, 3]), Offset(100), t0);
    let t = p.on_metadata(&record(ME, 8, 13, &[1, 2, 3], &[1, 2, 3]), Offset(100), t0);
    assert!(matches!(
        t,
        Transition::BecameLeader {
            high_watermark: None,
            ..
        }
    ));
    let leader = p.leader().expect("leads");
    assert!(leader
        .followers
        .values()
        .all(|f| f.log_end_offset.is_none()));
    assert_eq!(
        p.on_local_append(Offset(105), t0),
        None,
        "waits for the ISR"
    );
}

#[test]
fn a_follower_truncates_on_every_new_leader_epoch_with_a_leader() {
    let t0 = Instant::now();
    let mut p = PartitionState::new(ME, Offset(0), settings(1));
    let mut apply = |leader, epoch, pe| {
        p.on_metadata(
            &record(leader, epoch, pe, &[1, 2, 3], &[1, 2, 3]),
            Offset(0),
            t0,
        )
    };
    let follow = |leader: Option<i32>, epoch, truncate_needed| Transition::BecameFollower {
        leader,
        leader_epoch: LeaderEpoch(epoch),
        truncate_needed,
    };
    // A restart, then an ISR change, a new leader, no leader, a leader again.
    assert_eq!(apply(2, 5, 10), follow(Some(2), 5, true));
    assert_eq!(
        apply(2, 5, 11),
        Transition::Updated {
            high_watermark: None
        }
    );
    assert_eq!(apply(3, 6, 12), follow(Some(3), 6, true));
    assert_eq!(apply(-1, 7, 13), follow(None, 7, false));
    assert_eq!(apply(2, 8, 14), follow(Some(2), 8, true));
}

#[test]
fn a_record_without_this_broker_takes_it_offline_and_older_ones_do_not_return_it() {
    let t0 = Instant::now();
    let mut p = leading(&[1, 2, 3], 1, t0);
    let t = p.on_metadata(&record(2, 6, 11, &[2, 3, 4], &[2, 3]), Offset(100), t0);
    assert_eq!(t, Transition::Removed);
    assert_eq!(
        p.role(),
        &Role::Offline {
            partition_epoch: Some(PartitionEpoch(11))
        }
    );
    let old = p.on_metadata(&record(ME, 5, 10, &[1, 2, 3], &[1]), Offset(100), t0);
    assert!(matches!(
        old,
        Transition::Ignored(Stale::PartitionEpoch { .. })
    ));
    let back = p.on_metadata(&record(2, 7, 12, &[2, 3, 1], &[2, 3]), Offset(100), t0);
    assert!(matches!(
        back,
        Transition::BecameFollower {
            truncate_needed: true,
            ..
        }
    ));
}

#[test]
fn a_caught_up_follower_outside_the_isr_holds_the_high_watermark_while_it_joins() {
    let t0 = Instant::now();
    let mut p = leading(&[1], 1, t0);
    assert_eq!(p.high_watermark(), Offset(100));
    // Follower 2 is at the log end: the leader's appends wait for it, so it can join.
    assert_eq!(fetch(&mut p, 2, 100, 100, t0), None);
    assert_eq!(p.on_local_append(Offset(110), t0), None);
    assert_eq!(fetch(&mut p, 2, 110, 110, t0), Some(Offset(110)));
    // Silent for longer than the lag time, it stops holding it.
    let t1 = t0 + LAG + Duration::from_millis(1);
    assert_eq!(p.on_local_append(Offset(120), t1), Some(Offset(120)));
    // So does a caught-up follower that is fenced or shutting down.
    assert_eq!(fetch(&mut p, 3, 120, 120, t1), None);
    assert_eq!(p.on_local_append(Offset(130), t1), None);
    assert_eq!(
        p.set_ineligible_brokers(BTreeSet::from([3]), t1),
        Some(Offset(130))
    );
}

#[test]
fn the_high_watermark_waits_for_the_maximal_isr_while_a_change_is_pending() {
    let t0 = Instant::now();
    let mut p = leading(&[1, 2], 1, t0);
    fetch(&mut p, 2, 100, 100, t0);
    fetch(&mut p, 3, 100, 100, t0);
    let adding = p.propose_isr_change(t0).expect("3 caught up");
    assert_eq!(adding.isr, vec![1, 2, 3]);
    // Long after 3's last fetch, a pending addition still holds the high watermark ...
    let t1 = t0 + LAG + Duration::from_secs(1);
    p.on_local_append(Offset(130), t1);
    assert_eq!(fetch(&mut p, 2, 130, 130, t1), None);
    // ... until the controller refuses it.
    assert!(p.on_isr_change_not_applied(&adding));
    assert_eq!(p.on_local_append(Offset(130), t1), Some(Offset(130)));
    // A pending removal does not release it before it is committed.
    let _ = p.on_metadata(&record(ME, 5, 11, &[1, 2, 3], &[1, 2, 3]), Offset(130), t1);
    p.on_local_append(Offset(140), t1);
    let t2 = t1 + LAG + Duration::from_secs(1);
    assert_eq!(fetch(&mut p, 2, 140, 140, t2), None);
    let removing = p.propose_isr_change(t2).expect("3 is out of sync");
    assert_eq!(removing.isr, vec![1, 2]);
    assert_eq!(fetch(&mut p, 2, 140, 140, t2), None);
    let t = p.on_metadata(&record(ME, 5, 12, &[1, 2, 3], &[1, 2]), Offset(140), t2);
    assert_eq!(
        t,
        Transition::Updated {
            high_watermark: Some(Offset(140))
        }
    );
    assert_eq!(p.leader().and_then(|l| l.pending_isr_change.clone()), None);
}

#[test]
fn the_high_watermark_only_comes_down_with_a_truncated_log() {
    let t0 = Instant::now();
    let mut p = PartitionState::new(ME, Offset(0), settings(1));
    let _ = p.on_metadata(&record(2, 5, 10, &[1, 2], &[1, 2]), Offset(120), t0);
    assert_eq!(
        p.on_leader_high_watermark(Offset(100), Offset(120)),
        Some(Offset(100))
    );
    assert_eq!(p.on_log_truncated(Offset(110)), None);
    assert_eq!(p.high_watermark(), Offset(100));
    assert_eq!(p.on_log_truncated(Offset(95)), Some(Offset(95)));
    assert_eq!(p.high_watermark(), Offset(95));
}
