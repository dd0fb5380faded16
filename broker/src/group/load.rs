//! Taking over and giving up `__consumer_offsets` partitions: when this broker becomes leader
//! of a partition its records are replayed (latest value per key wins, tombstones delete) into
//! groups and offsets; until that finishes the partition's groups answer
//! COORDINATOR_LOAD_IN_PROGRESS. A partition no longer led is dropped from memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::coordinator::{Entry, GroupCoordinator, Load};
use super::records::{decode_batches, GroupRecord, GroupValue, OffsetValue};
use super::state::{Group, GroupTimeouts};

/// What a partition's records say about one group.
#[derive(Debug, Default, PartialEq)]
pub struct Replayed {
    pub metadata: Option<GroupValue>,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
}

/// Replays records in log order: the latest value per key wins, tombstones delete.
pub fn replay(records: Vec<GroupRecord>) -> BTreeMap<String, Replayed> {
    let mut groups: BTreeMap<String, Replayed> = BTreeMap::new();
    for r in records {
        match r {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                let g = groups.entry(group).or_default();
                match value {
                    Some(v) => g.offsets.insert((topic, partition), v),
                    None => g.offsets.remove(&(topic, partition)),
                };
            }
            GroupRecord::Group { group, value } => {
                groups.entry(group).or_default().metadata = value;
            }
        }
    }
    groups.retain(|_, g| g.metadata.is_some() || !g.offsets.is_empty());
    groups
}

fn restore(id: &str, r: Replayed, timeouts: GroupTimeouts, p: i32, now: Instant) -> Entry {
    let mut group = Group::new(id, timeouts, crate::broker::now_ms());
    let mut members = Vec::new();
    if let Some(m) = r.metadata {
        group.generation = m.generation;
        group.protocol_type = (!m.protocol_type.is_empty()).then_some(m.protocol_type);
        group.protocol = m.protocol.clone();
        group.leader = m.leader;
        if m.state_timestamp_ms >= 0 {
            group.state_timestamp_ms = m.state_timestamp_ms;
        }
        let protocol = m.protocol.unwrap_or_default();
        let dur = |ms: i32| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        for s in m.members {
            members.push(Group::stored_member(
                s.member_id,
                s.instance_id,
                s.client_id,
                s.client_host,
                dur(s.session_timeout_ms),
                dur(s.rebalance_timeout_ms),
                (protocol.clone(), s.subscription),
                s.assignment,
            ));
        }
    }
    Entry {
        group: group.restore(members, now),
        offsets: r.offsets,
        partition: p,
    }
}

impl GroupCoordinator {
    /// Brings the led partitions in line: loads newly led ones (in the background), drops those
    /// no longer led. `num_partitions` is the partition count of `__consumer_offsets`.
    pub fn sync_partitions(self: &Arc<Self>, num_partitions: i32, led: &BTreeSet<i32>) {
        let mut to_load = Vec::new();
        {
            let mut inner = self.lock();
            inner.num_partitions = num_partitions;
            let held: Vec<i32> = inner.partitions.keys().copied().collect();
            for p in held.into_iter().filter(|p| !led.contains(p)) {
                tracing::info!(
                    partition = p,
                    "no longer coordinator for __consumer_offsets partition"
                );
                self.unload(&mut inner, p);
            }
            for p in led {
                if !inner.partitions.contains_key(p) {
                    inner.partitions.insert(*p, Load::Loading);
                    to_load.push(*p);
                }
            }
        }
        for p in to_load {
            let me = self.clone();
            tokio::spawn(async move { me.load(p).await });
        }
    }

    /// Loads one partition's groups and offsets.
    pub async fn load(&self, p: i32) {
        let started = std::time::Instant::now();
        let records = match self.log.read_all(p).await {
            Ok(bytes) => decode(bytes),
            Err(e) => {
                tracing::error!(partition = p, error = ?e, "failed to read __consumer_offsets partition");
                self.lock().partitions.remove(&p);
                return;
            }
        };
        let replayed = replay(records);
        let timeouts = GroupTimeouts {
            initial_rebalance_delay: self.config.initial_rebalance_delay,
        };
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.partitions.get(&p) != Some(&Load::Loading) {
            return;
        }
        let n = replayed.len();
        for (id, r) in replayed {
            inner
                .groups
                .insert(id.clone(), restore(&id, r, timeouts, p, now));
        }
        inner.partitions.insert(p, Load::Loaded);
        drop(inner);
        // The restored members' sessions run from now.
        self.rearm_all();
        tracing::info!(
            partition = p,
            groups = n,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded __consumer_offsets partition"
        );
    }

    /// Whether every led partition is loaded (tests, readiness).
    pub fn all_loaded(&self) -> bool {
        self.lock().partitions.values().all(|l| *l == Load::Loaded)
    }
}

/// Decodes stored batches one at a time; a batch that cannot be read is logged and skipped.
fn decode(bytes: Bytes) -> Vec<GroupRecord> {
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while let Ok(tributary_log::Frame::Batch(_, batch)) =
        tributary_log::read_frame(rest, usize::MAX)
    {
        match decode_batches(Bytes::copy_from_slice(batch)) {
            Ok(r) => out.extend(r),
            Err(e) => {
                tracing::error!(error = %e, "skipping an unreadable __consumer_offsets batch")
            }
        }
        rest = &rest[batch.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(group: &str, p: i32, offset: Option<i64>) -> GroupRecord {
        GroupRecord::Offset {
            group: group.into(),
            topic: "t".into(),
            partition: p,
            value: offset.map(|offset| OffsetValue {
                offset,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 0,
            }),
        }
    }

    #[test]
    fn latest_value_wins_and_tombstones_delete() {
        let records = vec![
            commit("a", 0, Some(1)),
            commit("a", 0, Some(5)),
            commit("a", 1, Some(2)),
            commit("a", 1, None),
            commit("b", 0, Some(9)),
            commit("b", 0, None),
        ];
        let out = replay(records);
        assert_eq!(out.len(), 1, "group b has nothing left");
        let a = &out["a"];
        assert_eq!(a.offsets.len(), 1);
        assert_eq!(a.offsets[&("t".to_owned(), 0)].offset, 5);
    }
}
