//! The coordinator's side of the broker: `__consumer_offsets` created on first use (compacted,
//! `offsets.topic.num.partitions` partitions) through the controller, appends and reads of its
//! partitions through the replica manager, and following leadership from the metadata image.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use tributary_log::Offset;

use super::coordinator::{BoxFuture, GroupLog};
use super::OFFSETS_TOPIC;
use crate::broker::{now_ms, Broker};
use crate::metadata::NewTopic;
use crate::server::slow::{self, Phase};

/// How long an append waits for the high watermark to pass it (Kafka's
/// `offsets.commit.timeout.ms` default).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// [`GroupLog`] over this broker's replicas of `__consumer_offsets`.
pub struct ReplicaGroupLog {
    broker: Weak<Broker>,
}

impl ReplicaGroupLog {
    pub fn new(broker: Weak<Broker>) -> Self {
        ReplicaGroupLog { broker }
    }
}

fn storage_error(e: &tributary_log::LogError) -> ResponseError {
    match ResponseError::try_from_code(e.kafka_error_code()) {
        Some(ResponseError::MessageTooLarge | ResponseError::RecordListTooLarge) => {
            ResponseError::InvalidCommitOffsetSize
        }
        Some(ResponseError::NotLeaderOrFollower) => ResponseError::NotCoordinator,
        _ => ResponseError::UnknownServerError,
    }
}

impl ReplicaGroupLog {
    async fn append_batch(&self, p: i32, mut batch: BytesMut) -> Result<(), ResponseError> {
        let broker = self
            .broker
            .upgrade()
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let part = broker
            .replicas
            .get(OFFSETS_TOPIC, p)
            .ok_or(ResponseError::NotCoordinator)?;
        if part.leader.load(Ordering::Acquire) != broker.config.node_id {
            return Err(ResponseError::NotCoordinator);
        }
        let isr = part.isr_len.load(Ordering::Acquire);
        if isr < part.min_insync_replicas.load(Ordering::Acquire) {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let epoch = part.leader_epoch.load(Ordering::Acquire);
        let node_id = broker.config.node_id;
        let appender = part.clone();
        let append = tokio::task::spawn_blocking(move || {
            let mut log = appender.log.write().expect("log lock poisoned");
            // Still leading in this epoch, under the log lock (see `Partition::leads_in`).
            if !appender.leads_in(node_id, epoch) {
                return None;
            }
            Some(
                log.append_as_leader(&mut batch, epoch, now_ms())
                    .map(|_| log.log_end_offset()),
            )
        });
        let appended = slow::timed(Phase::Local, append)
            .await
            .map_err(|_| ResponseError::UnknownServerError)?
            .ok_or(ResponseError::NotCoordinator)?;
        let end = appended.map_err(|e| {
            tracing::warn!(partition = p, error = %e, "__consumer_offsets append failed");
            storage_error(&e)
        })?;
        part.after_local_append(end);
        part.notify();
        // acks=all: answer only once the high watermark has passed the batch.
        let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
        match slow::timed(Phase::Remote, part.wait_hw(end, node_id, epoch, deadline)).await {
            crate::replica::HwWait::Reached => Ok(()),
            crate::replica::HwWait::NotLeader => Err(ResponseError::NotCoordinator),
            crate::replica::HwWait::TimedOut => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    async fn read_partition(&self, p: i32) -> Result<Bytes, ResponseError> {
        let broker = self
            .broker
            .upgrade()
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let part = broker
            .replicas
            .get(OFFSETS_TOPIC, p)
            .ok_or(ResponseError::NotCoordinator)?;
        let hw = part.hw();
        let log = part.log.clone();
        let read = tokio::task::spawn_blocking(move || {
            let log = log.read().expect("log lock poisoned");
            let start = log.log_start_offset();
            log.read(start, usize::MAX, hw.max(Offset(start.0)), true)
        })
        .await
        .map_err(|_| ResponseError::UnknownServerError)?;
        read.map(|r| Bytes::from(r.records)).map_err(|e| {
            tracing::error!(partition = p, error = %e, "failed to read __consumer_offsets");
            ResponseError::UnknownServerError
        })
    }
}

impl GroupLog for ReplicaGroupLog {
    fn append(&self, partition: i32, batch: BytesMut) -> BoxFuture<'_, Result<(), ResponseError>> {
        Box::pin(self.append_batch(partition, batch))
    }

    fn read_all(&self, partition: i32) -> BoxFuture<'_, Result<Bytes, ResponseError>> {
        Box::pin(self.read_partition(partition))
    }
}

/// Creates `__consumer_offsets` if it does not exist yet (compacted; replication factor
/// `offsets.topic.replication.factor` capped at the registered brokers) and starts
/// coordinating its partitions. Returns its partition count, `None` if it cannot exist yet.
pub async fn ensure_offsets_topic(broker: &Broker) -> Option<i32> {
    let image = broker.metadata.image();
    if let Some(t) = image.topics.get(OFFSETS_TOPIC) {
        return i32::try_from(t.partitions.len()).ok();
    }
    let cfg = &broker.groups.config;
    // Capped at the active brokers while fewer exist (as Kafka does when auto-creating).
    let brokers = i16::try_from(image.active_brokers().len())
        .unwrap_or(i16::MAX)
        .max(1);
    let topic = NewTopic {
        name: OFFSETS_TOPIC.to_owned(),
        num_partitions: cfg.offsets_partitions,
        replication_factor: cfg.offsets_replication_factor.min(brokers),
        assignments: BTreeMap::new(),
        configs: BTreeMap::from([
            ("cleanup.policy".to_owned(), "compact".to_owned()),
            (
                "segment.bytes".to_owned(),
                cfg.offsets_segment_bytes.to_string(),
            ),
        ]),
    };
    for (_, code, message) in broker.create_topics(vec![topic]).await {
        match code {
            0 => tracing::info!(
                partitions = cfg.offsets_partitions,
                "created __consumer_offsets"
            ),
            c if c == ResponseError::TopicAlreadyExists.code() => {}
            c => {
                tracing::warn!(code = c, error = ?message, "failed to create __consumer_offsets");
                return None;
            }
        }
    }
    broker.sync_replicas().await;
    follow_leadership(broker);
    Some(cfg.offsets_partitions)
}

/// Tells the coordinator which `__consumer_offsets` partitions this broker leads now.
pub fn follow_leadership(broker: &Broker) {
    let image = broker.metadata.image();
    let Some(t) = image.topics.get(OFFSETS_TOPIC) else {
        return;
    };
    let led: BTreeSet<i32> = t
        .partitions
        .values()
        .filter(|p| p.leader == broker.config.node_id)
        .filter(|p| broker.replicas.get(OFFSETS_TOPIC, p.partition).is_some())
        .map(|p| p.partition)
        .collect();
    let n = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
    broker.groups.sync_partitions(n, &led);
}

/// After every metadata change: follow leadership, and drop offsets of deleted topics in a
/// task of its own. The removal waits for the group write lock, which an offset commit holds
/// until the high watermark passes it, and that can take until the leader learns a shrunk ISR
/// from a later metadata change: the metadata loop that calls this must never wait for it (it
/// did, and a broker then took leadership seconds late, after a network partition healed).
pub fn on_metadata(broker: &Broker) {
    follow_leadership(broker);
    let image = broker.metadata.image();
    let groups = broker.groups.clone();
    tokio::spawn(async move {
        groups
            .remove_offsets_of_deleted_topics(|t| image.topics.contains_key(t))
            .await;
    });
}
