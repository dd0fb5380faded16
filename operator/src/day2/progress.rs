//! How far an operation's partition moves are: bytes moved and remaining, the rate since the
//! first batch was submitted and the time it will take at that rate.
//!
//! The state kept in status (`MoveProgress`) is updated only when a batch is submitted (the
//! previous batch is then finished, since one batch is in flight at a time); every other pass
//! derives the figures from it and from the partitions in flight, whose new replicas report how
//! much they have copied (`PartitionView::adding_bytes`). The rate is the whole operation's
//! average, pauses between batches included. With a replication throttle, the ETA is also never
//! sooner than the busiest receiving broker needs at the throttled rate: the aggregate rate of
//! the first minutes, when every receiver copies, overstates the end, when the busiest one
//! copies alone.

use k8s_openapi::jiff::{SignedDuration, Timestamp, Unit};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use tributary_planner::Move;

use super::model::{Day2Action, Day2Input, Day2State, Decision, NodeId, PartitionView};

/// The moves of the operation in progress, kept in status between passes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveProgress {
    /// When the operation's first batch was submitted (RFC 3339).
    pub started_at: String,
    /// Bytes of the batches submitted before the current one (all copied).
    pub bytes_done: u64,
    /// Bytes the current batch copies (partition size times replicas added).
    pub batch_bytes: u64,
    /// Bytes of the moves planned but not submitted yet, as of the last plan, per receiving
    /// broker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub queued_by_broker: BTreeMap<NodeId, u64>,
}

impl MoveProgress {
    /// Bytes of the moves planned but not submitted yet.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_by_broker.values().sum()
    }
}

/// The figures reported in status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ByteProgress {
    pub moved: u64,
    pub remaining: u64,
    /// Average since the first batch; absent until something was copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<u64>,
    /// When the remaining bytes will be copied at that rate (RFC 3339); absent while paused
    /// or without a rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<String>,
}

/// Bytes each broker receives through `moves` (together, `Move::bytes` of them all).
fn by_receiver(moves: &[Move]) -> BTreeMap<NodeId, u64> {
    let mut out = BTreeMap::new();
    for m in moves {
        for b in m.added() {
            *out.entry(b).or_default() += m.size_bytes;
        }
    }
    out
}

/// Records the batch `batch` submitted at `now`, with `queued` planned after it.
pub(super) fn record_batch(state: &mut Day2State, now: &str, batch: &[Move], queued: &[Move]) {
    let p = state.moves.get_or_insert_with(|| MoveProgress {
        started_at: now.to_owned(),
        ..MoveProgress::default()
    });
    p.bytes_done = p.bytes_done.saturating_add(p.batch_bytes);
    p.batch_bytes = batch.iter().map(Move::bytes).sum();
    p.queued_by_broker = by_receiver(queued);
}

/// Records what the latest plan still has to move, when it submits nothing (paused).
pub(super) fn record_queue(state: &mut Day2State, queued: &[Move]) {
    if let Some(p) = state.moves.as_mut() {
        p.queued_by_broker = by_receiver(queued);
    }
}

/// Seconds the busiest receiving broker needs for what it still has to copy at `throttle`
/// bytes per second: its queued bytes, and its share of each partition in flight it receives.
fn throttle_bound(input: &Day2Input, p: &MoveProgress, throttle: u64) -> f64 {
    let mut left = p.queued_by_broker.clone();
    for part in input.kafka.partitions.iter().filter(|p| p.reassigning()) {
        let share = left_to_copy(part) / part.adding.len().max(1) as u64;
        for b in &part.adding {
            *left.entry(*b).or_default() += share;
        }
    }
    let busiest = left.values().copied().max().unwrap_or(0);
    busiest as f64 / throttle.max(1) as f64
}

/// Bytes a partition in flight still has to copy onto its new replicas (0 when not moving).
pub fn left_to_copy(p: &PartitionView) -> u64 {
    let target = p.size_bytes.saturating_mul(p.adding.len() as u64);
    target.saturating_sub(p.adding_bytes)
}

/// Sets `decision.bytes` (and appends the figures to its message) from `input`, once the
/// operation has submitted a move; clears the kept progress when the operation is over.
pub(super) fn report(input: &Day2Input, decision: &mut Decision) {
    if decision.state.operation.is_none() {
        decision.state.moves = None;
    }
    let Some(p) = &decision.state.moves else {
        return;
    };
    let in_flight = match &decision.action {
        // submitted this pass: nothing of it is copied yet
        Day2Action::Reassign { .. } => p.batch_bytes,
        _ => input
            .kafka
            .partitions
            .iter()
            .filter(|p| p.reassigning())
            .map(left_to_copy)
            .sum::<u64>()
            .min(p.batch_bytes),
    };
    let moved = p.bytes_done + (p.batch_bytes - in_flight);
    let remaining = p.queued_bytes().saturating_add(in_flight);
    let now = input.now.parse::<Timestamp>().ok();
    let elapsed = match (now, p.started_at.parse::<Timestamp>()) {
        (Some(now), Ok(started)) => now.duration_since(started).as_secs_f64(),
        _ => 0.0,
    };
    let rate = (moved > 0 && elapsed >= 1.0).then(|| moved as f64 / elapsed);
    let eta = match (rate, now) {
        (Some(r), Some(now)) if !input.spec.paused => {
            let mut secs = remaining as f64 / r;
            if let Some(throttle) = input.spec.throttle_bytes_per_second {
                secs = secs.max(throttle_bound(input, p, throttle));
            }
            let left = SignedDuration::from_secs_f64(secs);
            now.checked_add(left)
                .ok()
                .map(|t| t.round(Unit::Second).unwrap_or(t).to_string())
        }
        _ => None,
    };
    let bytes_per_second = rate.map(|r| r.round() as u64);
    decision.message.push_str(&format!(
        "; {} moved, {} to go{}",
        human(moved),
        human(remaining),
        match (bytes_per_second, &eta) {
            (Some(r), Some(eta)) => format!(" at {}/s, done about {eta}", human(r)),
            (Some(r), None) => format!(" at {}/s", human(r)),
            _ => String::new(),
        }
    ));
    decision.bytes = Some(ByteProgress {
        moved,
        remaining,
        bytes_per_second,
        eta,
    });
}

/// `n` bytes in binary units, one decimal.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(1 << 30), "1.0 GiB");
    }
}
