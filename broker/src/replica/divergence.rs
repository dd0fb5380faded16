//! Where a follower's log diverged from its leader's, from leader-epoch caches (KIP-101,
//! KIP-279, and the diverging epoch of Fetch v12+, KIP-595), as pure functions.
//!
//! A follower that becomes one (or restarts) asks the leader, with OffsetForLeaderEpoch, where
//! the latest epoch in its own log ends on the leader ([`FollowerLog::epoch_to_ask`]); the
//! leader answers with the largest epoch it has at or below that one and the offset where it
//! ends ([`end_offset_for`]); the follower truncates to [`truncation_point`] and, when the
//! leader named an epoch the follower does not have, asks again. Newer followers instead send
//! the epoch of their last fetched batch with every Fetch and the leader answers with a
//! diverging epoch ([`diverging_epoch`]) that goes through the same [`truncation_point`].
//!
//! Epoch caches are `(epoch, start offset)` entries, strictly increasing, as
//! `tributary_log::Log::epoch_entries` returns them. Not here: reading the cache, truncating
//! the log, sending the requests.

use tributary_log::Offset;

use super::partition::{LeaderEpoch, ReplicaError};

/// Where one leader epoch ends on a log: the largest epoch at or below the one asked about, and
/// the offset where it ends (the start of the next epoch, or the log end for the latest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub epoch: LeaderEpoch,
    pub end_offset: Offset,
}

/// Kafka's `LeaderEpochFileCache.endOffsetFor` over `entries`: `None` (Kafka's undefined epoch
/// and offset) for a negative epoch or one above every known epoch. An epoch below every known
/// one ends where the first known one starts (the data before was removed).
pub fn end_offset_for(
    entries: &[(i32, Offset)],
    requested: LeaderEpoch,
    log_end: Offset,
) -> Option<EpochEndOffset> {
    if requested.0 < 0 {
        return None;
    }
    let latest = entries.last().map(|(e, _)| *e);
    if latest == Some(requested.0) {
        return Some(EpochEndOffset {
            epoch: requested,
            end_offset: log_end,
        });
    }
    let (_, next_start) = entries.iter().find(|(e, _)| *e > requested.0)?;
    let floor = entries
        .iter()
        .rev()
        .find(|(e, _)| *e <= requested.0)
        .map_or(requested, |(e, _)| LeaderEpoch(*e));
    Some(EpochEndOffset {
        epoch: floor,
        end_offset: *next_start,
    })
}

/// The follower's side of the reconciliation.
#[derive(Debug, Clone, Copy)]
pub struct FollowerLog<'a> {
    /// Its leader-epoch cache.
    pub epochs: &'a [(i32, Offset)],
    pub log_end: Offset,
    pub high_watermark: Offset,
}

impl FollowerLog<'_> {
    /// The epoch to ask the leader about: the latest in this log. `None`: the log has no epochs
    /// (empty, or written before epochs were recorded) and [`truncation_point`] needs no answer.
    pub fn epoch_to_ask(&self) -> Option<LeaderEpoch> {
        self.epochs.last().map(|(e, _)| LeaderEpoch(*e))
    }
}

/// What a follower does to its log before it fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Truncate to this offset (nothing to do when it is the log end) and fetch from there.
    Done(Offset),
    /// Truncate to this offset, then ask the leader again about the latest epoch left: the
    /// leader answered with an epoch this log does not have.
    AskAgain(Offset),
}

/// Where the follower truncates, given the leader's answer for [`FollowerLog::epoch_to_ask`]
/// (`None`: the leader has no epoch at or below it). Never above the follower's log end.
pub fn truncation_point(follower: &FollowerLog<'_>, leader: Option<EpochEndOffset>) -> Truncation {
    if follower.epochs.is_empty() {
        // No epochs to compare: keep what is committed (Kafka's path for such logs).
        return Truncation::Done(follower.high_watermark.min(follower.log_end));
    }
    let Some(leader) = leader else {
        // Kafka keeps the log and fetches from its end: the leader knows no epoch this old or
        // new, and the high watermark is no safe point (a follower's lags the leader's).
        return Truncation::Done(follower.log_end);
    };
    match end_offset_for(follower.epochs, leader.epoch, follower.log_end) {
        // The leader's epoch is above all of ours (cannot happen: it answered for one at or
        // below our latest); the leader's end offset is all we know.
        None => Truncation::Done(leader.end_offset.min(follower.log_end)),
        Some(ours) if ours.epoch != leader.epoch => {
            Truncation::AskAgain(ours.end_offset.min(follower.log_end))
        }
        Some(ours) => {
            Truncation::Done(ours.end_offset.min(leader.end_offset).min(follower.log_end))
        }
    }
}

/// The leader's side of a follower Fetch that names the epoch of its last fetched batch:
/// `Some` (the diverging epoch to answer with, reading nothing) when the follower's log has
/// data the leader's does not — the leader's log ends that epoch before `fetch_offset`, or knows
/// only an older epoch; `None` when it may read at `fetch_offset`. `leader_end` is the leader's
/// [`end_offset_for`] the last fetched epoch; unknown is OFFSET_OUT_OF_RANGE, as in Kafka.
pub fn diverging_epoch(
    last_fetched_epoch: LeaderEpoch,
    fetch_offset: Offset,
    leader_end: Option<EpochEndOffset>,
) -> Result<Option<EpochEndOffset>, ReplicaError> {
    let end = leader_end.ok_or(ReplicaError::UnknownFetchedEpoch {
        epoch: last_fetched_epoch,
    })?;
    let diverged = end.epoch < last_fetched_epoch || end.end_offset < fetch_offset;
    Ok(diverged.then_some(end))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::ResponseError;

    use super::*;

    fn cache(entries: &[(i32, i64)]) -> Vec<(i32, Offset)> {
        entries.iter().map(|(e, o)| (*e, Offset(*o))).collect()
    }

    fn answer(epoch: i32, end_offset: i64) -> Option<EpochEndOffset> {
        Some(EpochEndOffset {
            epoch: LeaderEpoch(epoch),
            end_offset: Offset(end_offset),
        })
    }

    /// The follower asks the leader about its latest epoch and applies the answer, as many
    /// times as it is told to ask again; returns the final offset and the steps taken.
    fn reconcile(
        follower: &[(i32, i64)],
        follower_end: i64,
        leader: &[(i32, i64)],
        leader_end: i64,
    ) -> (Offset, Vec<Truncation>) {
        let leader = cache(leader);
        let mut epochs = cache(follower);
        let mut log_end = Offset(follower_end);
        let mut steps = Vec::new();
        loop {
            let log = FollowerLog {
                epochs: &epochs,
                log_end,
                high_watermark: Offset(0),
            };
            let ask = log.epoch_to_ask().expect("the follower has epochs");
            let step = truncation_point(&log, end_offset_for(&leader, ask, Offset(leader_end)));
            steps.push(step);
            let (Truncation::Done(to) | Truncation::AskAgain(to)) = step;
            // What the log's truncation does to its epoch cache.
            epochs.retain(|(_, start)| *start < to);
            log_end = to;
            if let Truncation::Done(_) = step {
                return (to, steps);
            }
        }
    }

    #[test]
    fn end_offset_for_follows_kafka_and_the_log_crate() {
        let c = cache(&[(1, 0), (3, 10), (6, 25)]);
        let end = Offset(40);
        let at = |e| end_offset_for(&c, LeaderEpoch(e), end);
        assert_eq!(at(6), answer(6, 40));
        assert_eq!(at(3), answer(3, 25));
        assert_eq!(
            at(4),
            answer(3, 25),
            "unknown epoch: the floor, ending where the next starts"
        );
        assert_eq!(
            at(0),
            answer(0, 0),
            "below all: ends where the first starts"
        );
        assert_eq!(at(7), None);
        assert_eq!(at(-1), None);
    }

    #[test]
    fn a_follower_that_did_not_diverge_keeps_its_log() {
        // The follower has epoch 3 up to 20; the leader has more of it.
        let (to, steps) = reconcile(&[(1, 0), (3, 10)], 20, &[(1, 0), (3, 10), (4, 25)], 30);
        assert_eq!(
            (to, steps),
            (Offset(20), vec![Truncation::Done(Offset(20))])
        );
    }

    #[test]
    fn the_leader_changed_twice_while_the_follower_was_away() {
        // The follower led epoch 1 and wrote up to 15; only 10 was replicated. Epoch 2's leader
        // wrote from 10, epoch 3's from 18; the follower comes back and truncates to 10.
        let (to, steps) = reconcile(&[(1, 0)], 15, &[(1, 0), (2, 10), (3, 18)], 25);
        assert_eq!(
            (to, steps),
            (Offset(10), vec![Truncation::Done(Offset(10))])
        );
    }

    #[test]
    fn the_follower_has_an_epoch_the_leader_never_had() {
        // The follower led epoch 2 from 10 to 15 and nobody got it; the leader of epoch 3 did
        // not either. The leader ends epoch 1 at 10, and so does the follower.
        let (to, steps) = reconcile(&[(1, 0), (2, 10)], 15, &[(1, 0), (3, 10)], 30);
        assert_eq!(
            (to, steps),
            (Offset(10), vec![Truncation::Done(Offset(10))])
        );
    }

    #[test]
    fn the_leader_answers_with_an_epoch_the_follower_lacks_so_it_asks_again() {
        // Each has an epoch the other never had (follower 3, leader 2 and 4), and the follower
        // holds more of epoch 1 than the leader: it truncates to the end of its epoch 1, asks
        // about epoch 1, and truncates to where the leader's epoch 1 ends.
        let (to, steps) = reconcile(&[(1, 0), (3, 10)], 20, &[(1, 0), (2, 8), (4, 15)], 30);
        let expected = vec![
            Truncation::AskAgain(Offset(10)),
            Truncation::Done(Offset(8)),
        ];
        assert_eq!((to, steps), (Offset(8), expected));
    }

    #[test]
    fn an_empty_follower_log_has_nothing_to_truncate() {
        let empty = FollowerLog {
            epochs: &[],
            log_end: Offset(0),
            high_watermark: Offset(0),
        };
        assert_eq!(empty.epoch_to_ask(), None);
        assert_eq!(truncation_point(&empty, None), Truncation::Done(Offset(0)));
        assert_eq!(
            truncation_point(&empty, answer(3, 50)),
            Truncation::Done(Offset(0))
        );
        // Data without epochs keeps only what is committed.
        let old = FollowerLog {
            epochs: &[],
            log_end: Offset(40),
            high_watermark: Offset(30),
        };
        assert_eq!(truncation_point(&old, None), Truncation::Done(Offset(30)));
    }

    #[test]
    fn an_undefined_answer_keeps_the_log_as_kafka_does() {
        let epochs = cache(&[(1, 0), (3, 10)]);
        let log = FollowerLog {
            epochs: &epochs,
            log_end: Offset(20),
            high_watermark: Offset(12),
        };
        assert_eq!(truncation_point(&log, None), Truncation::Done(Offset(20)));
    }

    #[test]
    fn the_leader_finds_a_diverging_epoch_in_a_follower_fetch() {
        let leader = cache(&[(1, 0), (3, 10), (6, 25)]);
        let at = |e| end_offset_for(&leader, LeaderEpoch(e), Offset(40));
        let check = |last_fetched, fetch_offset| {
            diverging_epoch(
                LeaderEpoch(last_fetched),
                Offset(fetch_offset),
                at(last_fetched),
            )
        };
        assert_eq!(check(6, 30), Ok(None), "in step");
        assert_eq!(
            check(3, 25),
            Ok(None),
            "at the end of epoch 3 on the leader"
        );
        assert_eq!(
            check(3, 28),
            Ok(answer(3, 25)),
            "more of epoch 3 than the leader"
        );
        assert_eq!(
            check(4, 27),
            Ok(answer(3, 25)),
            "an epoch the leader never had"
        );
        let unknown = check(7, 41).expect_err("epoch 7 is unknown to the leader");
        assert_eq!(unknown.kafka_error(), ResponseError::OffsetOutOfRange);
        // The follower applies the diverging epoch like an OffsetForLeaderEpoch answer.
        let follower = cache(&[(1, 0), (3, 10), (4, 26)]);
        let log = FollowerLog {
            epochs: &follower,
            log_end: Offset(30),
            high_watermark: Offset(20),
        };
        assert_eq!(
            truncation_point(&log, answer(3, 25)),
            Truncation::Done(Offset(25))
        );
    }
}
