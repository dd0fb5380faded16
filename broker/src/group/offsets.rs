//! Committed offsets and the admin side of groups: OffsetCommit (acknowledged only after the
//! `__consumer_offsets` append is committed), OffsetFetch, OffsetDelete, ListGroups,
//! DescribeGroups, DeleteGroups, and the clean-up of offsets of deleted topics and of groups
//! empty for longer than `offsets.retention.minutes` (tombstones; compaction removes them).

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::coordinator::{group_record, GroupCoordinator, Inner, Load};
use super::records::{GroupRecord, OffsetValue};
use super::state::GroupState;
use crate::broker::now_ms;

/// One partition of an OffsetCommit.
#[derive(Debug, Clone)]
pub struct CommitPartition {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// An OffsetCommit, parsed. Generation -1 with no member id is a simple (non-group) commit.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub topics: Vec<(String, Vec<CommitPartition>)>,
}

/// Per topic, per partition: the error, if any.
pub type PartitionResults = Vec<(String, Vec<(i32, Option<ResponseError>)>)>;

/// Committed offsets per topic and partition (`None`: nothing committed).
pub type FetchedOffsets = Vec<(String, Vec<(i32, Option<OffsetValue>)>)>;

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// Offsets (and, with `true`, the group itself) to delete, per group.
type Removal = Vec<(String, Vec<(String, i32)>, bool)>;

impl GroupCoordinator {
    fn check_commit(
        &self,
        inner: &mut Inner,
        group_id: &str,
        req: &CommitRequest,
    ) -> Result<(), ResponseError> {
        let p = Self::owner(inner, group_id)?;
        let simple = req.generation < 0 && req.member_id.is_empty() && req.instance_id.is_none();
        let Some(entry) = inner.groups.get_mut(group_id) else {
            if simple {
                self.entry(inner, group_id, p);
                return Ok(());
            }
            return Err(ResponseError::IllegalGeneration);
        };
        let g = &mut entry.group;
        if g.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if req.generation < 0 && g.state == GroupState::Empty {
            return Ok(());
        }
        if simple {
            return Err(ResponseError::UnknownMemberId);
        }
        g.check_member(&req.member_id, req.instance_id.as_deref())?;
        if req.generation != g.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if g.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        g.touch(&req.member_id, Instant::now());
        Ok(())
    }

    /// OffsetCommit. `topic_exists` says whether a partition exists in the cluster.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        req: CommitRequest,
        topic_exists: impl Fn(&str, i32) -> bool,
    ) -> PartitionResults {
        let _w = self.write_group(group_id).await;
        let now = now_ms();
        let mut records = Vec::new();
        let mut results: PartitionResults = Vec::new();
        let p = {
            let mut inner = self.lock();
            let checked = self
                .check_commit(&mut inner, group_id, &req)
                .map(|()| super::partition_for(group_id, inner.num_partitions));
            for (topic, parts) in &req.topics {
                let mut out = Vec::new();
                for c in parts {
                    let meta = c.metadata.clone().unwrap_or_default();
                    let err = match &checked {
                        Err(e) => Some(*e),
                        Ok(_) if !topic_exists(topic, c.partition) => {
                            Some(ResponseError::UnknownTopicOrPartition)
                        }
                        Ok(_) if meta.len() > self.config.offset_metadata_max_bytes => {
                            Some(ResponseError::OffsetMetadataTooLarge)
                        }
                        Ok(_) => {
                            records.push(GroupRecord::Offset {
                                group: group_id.to_owned(),
                                topic: topic.clone(),
                                partition: c.partition,
                                value: Some(OffsetValue {
                                    offset: c.offset,
                                    leader_epoch: c.leader_epoch,
                                    metadata: meta,
                                    commit_timestamp_ms: now,
                                }),
                            });
                            None
                        }
                    };
                    out.push((c.partition, err));
                }
                results.push((topic.clone(), out));
            }
            checked
        };
        let Ok(p) = p else { return results };
        if records.is_empty() {
            return results;
        }
        if let Err(e) = self.append(p, &records).await {
            for (_, parts) in &mut results {
                for (_, err) in parts.iter_mut().filter(|(_, err)| err.is_none()) {
                    *err = Some(e);
                }
            }
            return results;
        }
        let mut inner = self.lock();
        self.entry(&mut inner, group_id, p);
        if let Some(entry) = inner.groups.get_mut(group_id) {
            for r in records {
                if let GroupRecord::Offset {
                    topic,
                    partition,
                    value: Some(v),
                    ..
                } = r
                {
                    entry.offsets.insert((topic, partition), v);
                }
            }
        }
        results
    }

    /// OffsetFetch of one group: the listed partitions, or every committed one (`None`).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<FetchedOffsets, ResponseError> {
        let inner = self.lock();
        Self::owner(&inner, group_id)?;
        let offsets = inner.groups.get(group_id).map(|e| &e.offsets);
        let Some(topics) = topics else {
            let mut all: BTreeMap<String, Vec<(i32, Option<OffsetValue>)>> = BTreeMap::new();
            for ((t, p), v) in offsets.into_iter().flatten() {
                all.entry(t.clone())
                    .or_default()
                    .push((*p, Some(v.clone())));
            }
            return Ok(all.into_iter().collect());
        };
        Ok(topics
            .into_iter()
            .map(|(t, parts)| {
                let found = parts
                    .into_iter()
                    .map(|p| {
                        let v = offsets.and_then(|o| o.get(&(t.clone(), p))).cloned();
                        (p, v)
                    })
                    .collect();
                (t, found)
            })
            .collect())
    }

    /// ListGroups: (group id, protocol type, state) of every group here, optionally only
    /// those in the given states (case-insensitive).
    pub fn list_groups(
        &self,
        states: &[String],
    ) -> Result<Vec<(String, String, &'static str)>, ResponseError> {
        let inner = self.lock();
        if inner.partitions.values().any(|l| *l == Load::Loading) {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        Ok(inner
            .groups
            .iter()
            .filter(|(_, e)| e.group.state != GroupState::Dead)
            .filter(|(_, e)| {
                states.is_empty()
                    || states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(e.group.state.name()))
            })
            .map(|(id, e)| {
                let pt = e.group.protocol_type.clone().unwrap_or_default();
                (id.clone(), pt, e.group.state.name())
            })
            .collect())
    }

    /// DescribeGroups of one group; an unknown group is reported Dead, as Kafka does.
    pub fn describe_group(&self, group_id: &str) -> Result<GroupDescription, ResponseError> {
        let inner = self.lock();
        Self::owner(&inner, group_id)?;
        let Some(e) = inner.groups.get(group_id) else {
            return Ok(GroupDescription {
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        };
        let g = &e.group;
        let stable = g.state == GroupState::Stable;
        let protocol = g.protocol.clone().unwrap_or_default();
        let members = g
            .members
            .values()
            .map(|m| {
                let (md, asg) = if stable {
                    (
                        m.metadata(&protocol).cloned().unwrap_or_default(),
                        m.assignment.clone(),
                    )
                } else {
                    (Bytes::new(), Bytes::new())
                };
                (
                    m.member_id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    md,
                    asg,
                )
            })
            .collect();
        Ok(GroupDescription {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable { protocol } else { String::new() },
            members,
        })
    }

    /// DeleteGroups: only empty groups; their metadata and offsets get tombstones.
    pub async fn delete_groups(
        &self,
        ids: Vec<String>,
    ) -> Vec<(String, Result<(), ResponseError>)> {
        self.tick_groups(Some(&ids)).await;
        let _w = self.write_groups(&ids).await;
        let mut results = Vec::new();
        for id in ids {
            let plan = {
                let inner = self.lock();
                Self::owner(&inner, &id).and_then(|_| match inner.groups.get(&id) {
                    None => Err(ResponseError::GroupIdNotFound),
                    Some(e)
                        if !e.group.is_empty()
                            || !matches!(e.group.state, GroupState::Empty | GroupState::Dead) =>
                    {
                        Err(ResponseError::NonEmptyGroup)
                    }
                    Some(e) => Ok(vec![(
                        id.clone(),
                        e.offsets.keys().cloned().collect(),
                        true,
                    )]),
                })
            };
            let r = match plan {
                Ok(plan) => self.remove(plan).await,
                Err(e) => Err(e),
            };
            results.push((id, r));
        }
        results
    }

    /// OffsetDelete: refused per partition for topics the (non-empty) group subscribes to.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        topics: Vec<(String, Vec<i32>)>,
    ) -> Result<PartitionResults, ResponseError> {
        self.tick_groups(Some(&[group_id.to_owned()])).await;
        let _w = self.write_group(group_id).await;
        let (results, plan) = {
            let inner = self.lock();
            Self::owner(&inner, group_id)?;
            let e = inner
                .groups
                .get(group_id)
                .ok_or(ResponseError::GroupIdNotFound)?;
            let subscribed = subscribed_topics(&e.group);
            let mut gone = Vec::new();
            let results: PartitionResults = topics
                .into_iter()
                .map(|(t, parts)| {
                    let out = parts
                        .into_iter()
                        .map(|p| {
                            if subscribed.contains(&t) {
                                return (p, Some(ResponseError::GroupSubscribedToTopic));
                            }
                            if e.offsets.contains_key(&(t.clone(), p)) {
                                gone.push((t.clone(), p));
                            }
                            (p, None)
                        })
                        .collect();
                    (t, out)
                })
                .collect();
            (results, vec![(group_id.to_owned(), gone, false)])
        };
        self.remove(plan).await?;
        Ok(results)
    }

    /// Writes tombstones for the planned offsets (and groups), then forgets them. Callers hold
    /// `write`.
    async fn remove(&self, plan: Removal) -> Result<(), ResponseError> {
        let mut by_partition: BTreeMap<i32, Vec<GroupRecord>> = BTreeMap::new();
        {
            let inner = self.lock();
            for (group, offsets, whole) in &plan {
                let Some(e) = inner.groups.get(group) else {
                    continue;
                };
                let records = by_partition.entry(e.partition).or_default();
                records.extend(offsets.iter().map(|(t, p)| GroupRecord::Offset {
                    group: group.clone(),
                    topic: t.clone(),
                    partition: *p,
                    value: None,
                }));
                if *whole {
                    records.push(GroupRecord::Group {
                        group: group.clone(),
                        value: None,
                    });
                }
            }
        }
        for (p, records) in by_partition.iter().filter(|(_, r)| !r.is_empty()) {
            self.append(*p, records).await?;
        }
        let mut inner = self.lock();
        for (group, offsets, whole) in plan {
            if whole {
                if let Some(mut e) = inner.groups.remove(&group) {
                    e.group.set_dead(now_ms());
                }
            } else if let Some(e) = inner.groups.get_mut(&group) {
                for k in offsets {
                    e.offsets.remove(&k);
                }
            }
        }
        Ok(())
    }

    /// Removes offsets of groups empty for longer than the retention (and of simple-commit
    /// groups, offsets older than it), then groups left with nothing (background task).
    pub async fn expire_offsets(&self, now_ms: i64) {
        let _w = self.write_all().await;
        let retention =
            i64::try_from(self.config.offsets_retention.as_millis()).unwrap_or(i64::MAX);
        let plan: Removal = {
            let inner = self.lock();
            inner
                .groups
                .iter()
                .filter(|(_, e)| e.group.state == GroupState::Empty && e.group.is_empty())
                .filter_map(|(id, e)| {
                    let expired: Vec<(String, i32)> = e
                        .offsets
                        .iter()
                        .filter(|(_, v)| {
                            let base = if e.group.protocol_type.is_some() {
                                e.group.state_timestamp_ms
                            } else {
                                v.commit_timestamp_ms
                            };
                            base.saturating_add(retention) <= now_ms
                        })
                        .map(|(k, _)| k.clone())
                        .collect();
                    let whole = expired.len() == e.offsets.len();
                    (!expired.is_empty() || whole).then(|| (id.clone(), expired, whole))
                })
                .collect()
        };
        if plan.is_empty() {
            return;
        }
        tracing::info!(groups = plan.len(), "expiring offsets");
        if let Err(e) = self.remove(plan).await {
            tracing::warn!(error = ?e, "failed to expire offsets");
        }
    }

    /// Removes the offsets of topics that no longer exist. The check is made before taking the
    /// write lock (and again under it), so that callers only wait for a commit in progress when
    /// there is something to remove.
    pub async fn remove_offsets_of_deleted_topics(&self, exists: impl Fn(&str) -> bool) {
        if self.offsets_of_deleted_topics(&exists).is_empty() {
            return;
        }
        let _w = self.write_all().await;
        let plan = self.offsets_of_deleted_topics(&exists);
        if plan.is_empty() {
            return;
        }
        if let Err(e) = self.remove(plan).await {
            tracing::warn!(error = ?e, "failed to remove offsets of deleted topics");
        }
    }

    /// For each group with offsets of topics that no longer exist: those offsets.
    fn offsets_of_deleted_topics(&self, exists: &impl Fn(&str) -> bool) -> Removal {
        let inner = self.lock();
        inner
            .groups
            .iter()
            .filter_map(|(id, e)| {
                let gone: Vec<(String, i32)> = e
                    .offsets
                    .keys()
                    .filter(|(t, _)| !exists(t))
                    .cloned()
                    .collect();
                (!gone.is_empty()).then(|| (id.clone(), gone, false))
            })
            .collect()
    }

    /// The group's current metadata record (tests and tools).
    pub fn group_metadata(&self, group_id: &str) -> Option<GroupRecord> {
        self.lock()
            .groups
            .get(group_id)
            .map(|e| group_record(&e.group))
    }
}

/// Topics the members of a consumer group subscribe to (from their protocol metadata).
fn subscribed_topics(g: &super::state::Group) -> BTreeSet<String> {
    if g.protocol_type.as_deref() != Some("consumer") || g.members.is_empty() {
        return BTreeSet::new();
    }
    let protocol = g.protocol.clone().unwrap_or_default();
    g.members
        .values()
        .filter_map(|m| m.metadata(&protocol).cloned())
        .filter_map(|mut md| {
            if md.remaining() < 2 {
                return None;
            }
            let version = md.get_i16().min(3);
            ConsumerProtocolSubscription::decode(&mut md, version).ok()
        })
        .flat_map(|s| s.topics.into_iter().map(|t| t.to_string()))
        .collect()
}
