//! KIP-455 partition reassignment as pure changes of a partition record; the active controller
//! commits each result, so a reassignment is in the metadata log at every step and survives
//! controller failover and broker restarts.
//!
//! Starting one sets `replicas` to the target followed by the original replicas that leave,
//! `adding_replicas` to the target replicas that are new, and `removing_replicas` to the
//! original ones that leave; the ISR and leader stay. The adding replicas start following,
//! catch up and join the ISR through the leader's AlterPartition. Once every target replica is
//! in the ISR, completing it keeps only the target (ISR too), moves leadership to the first
//! target replica in the ISR if the leader is leaving, and clears both lists. Cancelling keeps
//! only the original replicas. Every change bumps the partition epoch; a new leader bumps the
//! leader epoch.

use kafka_protocol::ResponseError;

use super::election::choose_leader;
use crate::metadata::records::PartitionRecord;

/// Whether `p` is being reassigned.
pub fn in_progress(p: &PartitionRecord) -> bool {
    !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty()
}

/// The replicas before the reassignment started, in their order (the current ones when there
/// is none).
pub fn original(p: &PartitionRecord) -> Vec<i32> {
    if in_progress(p) && !p.original_replicas.is_empty() {
        return p.original_replicas.clone();
    }
    p.replicas
        .iter()
        .copied()
        .filter(|r| !p.adding_replicas.contains(r))
        .collect()
}

/// The replicas the reassignment moves to (the current ones when there is none).
pub fn target(p: &PartitionRecord) -> Vec<i32> {
    p.replicas
        .iter()
        .copied()
        .filter(|r| !p.removing_replicas.contains(r))
        .collect()
}

/// Starts reassigning `p` to `target`, replacing a reassignment in progress (whose own target
/// replicas are then no longer wanted unless `target` names them). `usable(b)` says whether a
/// broker may receive a new replica (registered and not fenced). Returns the new record, already
/// completed when nothing needs to catch up; `None` when `target` is what `p` has already.
pub fn start(
    p: &PartitionRecord,
    target: &[i32],
    usable: impl Fn(i32) -> bool,
    eligible: impl Fn(i32) -> bool,
) -> Result<Option<PartitionRecord>, (ResponseError, String)> {
    let invalid = |m: String| Err((ResponseError::InvalidReplicaAssignment, m));
    if target.is_empty() {
        return invalid("the target replica list is empty".into());
    }
    for (i, r) in target.iter().enumerate() {
        if target[..i].contains(r) {
            return invalid(format!("broker {r} is listed twice in the target replicas"));
        }
    }
    let original = original(p);
    for r in target {
        if !original.contains(r) && !usable(*r) {
            return invalid(format!(
                "broker {r} is not registered or is fenced: it cannot receive a new replica"
            ));
        }
    }
    if !in_progress(p) && p.replicas == target {
        return Ok(None);
    }
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|r| !original.contains(r))
        .collect();
    let removing: Vec<i32> = original
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    let replicas: Vec<i32> = target.iter().chain(&removing).copied().collect();
    // A replica of a replaced reassignment that is no longer wanted leaves the ISR now.
    let isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|r| p.isr.contains(r))
        .collect();
    if isr.is_empty() {
        return invalid("no replica of the new assignment is in sync".into());
    }
    let mut next = p.clone();
    next.replicas = replicas;
    next.isr = isr;
    next.adding_replicas = adding;
    next.removing_replicas = removing;
    next.original_replicas = if next.adding_replicas.is_empty() && next.removing_replicas.is_empty()
    {
        Vec::new() // a reordering: nothing to wait for, nothing to restore
    } else {
        original
    };
    if !next.replicas.contains(&next.leader) {
        next.leader = choose_leader(&next.replicas, &next.isr, &eligible).unwrap_or(-1);
        next.leader_epoch += 1;
    }
    next.partition_epoch += 1;
    Ok(Some(complete(&next, &eligible).unwrap_or(next)))
}

/// The completed reassignment of `p`, when every target replica is in the ISR and the target
/// has a leader (the current one, or an eligible target replica in the ISR); otherwise `None`.
pub fn complete(p: &PartitionRecord, eligible: impl Fn(i32) -> bool) -> Option<PartitionRecord> {
    if !in_progress(p) {
        return None;
    }
    let target = target(p);
    if !target.iter().all(|r| p.isr.contains(r)) {
        return None;
    }
    let leader = if target.contains(&p.leader) {
        p.leader
    } else {
        choose_leader(&target, &target, &eligible)?
    };
    let mut next = p.clone();
    next.isr = target.clone();
    next.replicas = target;
    next.adding_replicas.clear();
    next.removing_replicas.clear();
    next.original_replicas.clear();
    if leader != p.leader {
        next.leader = leader;
        next.leader_epoch += 1;
    }
    next.partition_epoch += 1;
    Some(next)
}

/// Cancels the reassignment of `p`: only the original replicas stay (NO_REASSIGNMENT_IN_PROGRESS
/// when there is none). Refused when no original replica is in sync, as the data would then be
/// only on replicas the cancel removes.
pub fn cancel(
    p: &PartitionRecord,
    eligible: impl Fn(i32) -> bool,
) -> Result<PartitionRecord, (ResponseError, String)> {
    if !in_progress(p) {
        return Err((
            ResponseError::NoReassignmentInProgress,
            "no reassignment is in progress".into(),
        ));
    }
    let original = original(p);
    let isr: Vec<i32> = original
        .iter()
        .copied()
        .filter(|r| p.isr.contains(r))
        .collect();
    if isr.is_empty() {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            "no original replica is in sync: cancelling would leave the partition without its data"
                .into(),
        ));
    }
    let mut next = p.clone();
    next.replicas = original;
    next.isr = isr;
    next.adding_replicas.clear();
    next.removing_replicas.clear();
    next.original_replicas.clear();
    if !next.replicas.contains(&next.leader) {
        next.leader = choose_leader(&next.replicas, &next.isr, &eligible).unwrap_or(-1);
        next.leader_epoch += 1;
    }
    next.partition_epoch += 1;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionRecord {
        PartitionRecord {
            topic_id: uuid::Uuid::nil(),
            partition: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 4,
            partition_epoch: 10,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            original_replicas: Vec::new(),
        }
    }

    fn all(_: i32) -> bool {
        true
    }

    #[test]
    fn a_move_adds_first_then_completes_when_the_new_replicas_are_in_sync() {
        let p = record(&[1, 2, 3], &[1, 2, 3], 1);
        let started = start(&p, &[4, 5, 1], |b| b <= 5, all)
            .expect("valid")
            .expect("a change");
        assert_eq!(started.replicas, [4, 5, 1, 2, 3]);
        assert_eq!(started.adding_replicas, [4, 5]);
        assert_eq!(started.removing_replicas, [2, 3]);
        assert_eq!(
            (started.isr.as_slice(), started.leader),
            (&[1, 2, 3][..], 1)
        );
        assert_eq!((started.partition_epoch, started.leader_epoch), (11, 4));
        assert!(in_progress(&started));
        assert_eq!(original(&started), [1, 2, 3]);
        assert_eq!(target(&started), [4, 5, 1]);
        // Not before both new replicas are in sync.
        let mut half = started.clone();
        half.isr = vec![4, 1, 2, 3];
        assert_eq!(complete(&half, all), None);
        let mut caught_up = started.clone();
        caught_up.isr = vec![4, 5, 1, 2, 3];
        let done = complete(&caught_up, all).expect("complete");
        assert_eq!(
            (done.replicas.as_slice(), done.isr.as_slice()),
            (&[4, 5, 1][..], &[4, 5, 1][..])
        );
        assert!(!in_progress(&done));
        assert_eq!(
            (done.leader, done.leader_epoch),
            (1, 4),
            "the leader stays: it is a target"
        );
    }

    #[test]
    fn a_leaving_leader_hands_over_to_the_first_eligible_target_replica() {
        let mut p = start(&record(&[1, 2], &[1, 2], 1), &[3, 4], all, all)
            .expect("valid")
            .expect("a change");
        p.isr = vec![3, 4, 1, 2];
        let done = complete(&p, |b| b != 3).expect("complete");
        assert_eq!((done.leader, done.leader_epoch), (4, 5));
        assert_eq!(done.replicas, [3, 4]);
        // No eligible target replica: it waits.
        assert_eq!(complete(&p, |b| b == 1), None);
    }

    #[test]
    fn removing_replicas_or_reordering_in_sync_ones_completes_at_once() {
        let p = record(&[1, 2, 3], &[1, 2, 3], 2);
        let shrunk = start(&p, &[2, 3], all, all)
            .expect("valid")
            .expect("a change");
        assert_eq!(
            (shrunk.replicas.as_slice(), shrunk.isr.as_slice()),
            (&[2, 3][..], &[2, 3][..])
        );
        assert!(!in_progress(&shrunk));
        assert_eq!(shrunk.leader, 2);
        let reordered = start(&p, &[3, 2, 1], all, all)
            .expect("valid")
            .expect("a change");
        assert_eq!(reordered.replicas, [3, 2, 1]);
        assert!(!in_progress(&reordered));
        assert_eq!(start(&p, &[1, 2, 3], all, all), Ok(None), "nothing to do");
        // Growing the replication factor waits for the new replica.
        let grown = start(&p, &[1, 2, 3, 4], all, all)
            .expect("valid")
            .expect("a change");
        assert_eq!(grown.adding_replicas, [4]);
        assert!(grown.removing_replicas.is_empty());
    }

    #[test]
    fn invalid_targets_are_refused_with_invalid_replica_assignment() {
        let p = record(&[1, 2, 3], &[1, 2, 3], 1);
        let code =
            |r: Result<Option<PartitionRecord>, (ResponseError, String)>| r.err().map(|e| e.0);
        let bad = Some(ResponseError::InvalidReplicaAssignment);
        assert_eq!(code(start(&p, &[], all, all)), bad);
        assert_eq!(code(start(&p, &[1, 4, 4], all, all)), bad);
        assert_eq!(
            code(start(&p, &[1, 9], |b| b < 9, all)),
            bad,
            "unknown or fenced broker"
        );
        // A fenced broker that already holds a replica may stay in the target.
        assert!(start(&p, &[3, 1], |b| b != 3, all).is_ok());
    }

    #[test]
    fn cancel_restores_the_original_replicas_and_a_new_target_replaces_the_old() {
        let p = record(&[1, 2, 3], &[1, 2, 3], 1);
        let mut moving = start(&p, &[4, 5, 6], all, all)
            .expect("valid")
            .expect("a change");
        moving.isr = vec![4, 1, 2, 3];
        let back = cancel(&moving, all).expect("cancel");
        assert_eq!(
            (back.replicas.as_slice(), back.isr.as_slice()),
            (&[1, 2, 3][..], &[1, 2, 3][..])
        );
        assert!(!in_progress(&back));
        assert_eq!(
            cancel(&p, all).map_err(|e| e.0),
            Err(ResponseError::NoReassignmentInProgress)
        );
        // Replaced by [4, 2, 3]: 5 and 6 are no longer added, 1 leaves; 4 is in sync already, so
        // the new target is complete at once and leadership moves off the leaving 1.
        let replaced = start(&moving, &[4, 2, 3], all, all)
            .expect("valid")
            .expect("a change");
        assert!(!in_progress(&replaced));
        assert_eq!(
            (replaced.replicas.as_slice(), replaced.isr.as_slice()),
            (&[4, 2, 3][..], &[4, 2, 3][..])
        );
        assert_eq!((replaced.leader, replaced.leader_epoch), (4, 5));
    }

    #[test]
    fn cancel_restores_the_original_order() {
        let p = record(&[3, 1, 2], &[3, 1, 2], 3);
        let moving = start(&p, &[1, 4], all, all)
            .expect("valid")
            .expect("a change");
        assert_eq!(moving.replicas, [1, 4, 3, 2]);
        assert_eq!(cancel(&moving, all).expect("cancel").replicas, [3, 1, 2]);
    }

    #[test]
    fn a_completed_reassignment_names_its_new_leader_in_a_new_epoch() {
        let mut moving = start(&record(&[1, 2, 3], &[1, 2, 3], 1), &[4, 5, 6], all, all)
            .expect("valid")
            .expect("a change");
        moving.isr = vec![4, 5, 6, 1, 2, 3];
        let done = complete(&moving, all).expect("complete");
        assert_eq!(
            (done.leader, done.leader_epoch, done.partition_epoch),
            (4, 5, 12)
        );
        assert_eq!(done.isr, [4, 5, 6]);
    }
}
