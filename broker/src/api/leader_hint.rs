//! KIP-951: a NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH answer to Produce (v10+) or Fetch
//! (v16+) names the partition's current leader and leader epoch, and the response carries that
//! leader's endpoint, so the client goes to the new leader at once instead of refreshing its
//! metadata first (which is what shortens a failover for KIP-951 clients).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::metadata::image::MetadataImage;
use crate::metadata::records::BrokerRegistration;

/// Collects the leaders named in one response.
pub(super) struct LeaderHints {
    image: Arc<MetadataImage>,
    named: BTreeSet<i32>,
}

impl LeaderHints {
    pub(super) fn new(image: Arc<MetadataImage>) -> LeaderHints {
        LeaderHints {
            image,
            named: BTreeSet::new(),
        }
    }

    /// `(leader id, leader epoch)` of `topic`-`partition` if it has a leader that clients may
    /// use (registered, not fenced); the leader's endpoint is then part of the response.
    pub(super) fn leader(&mut self, topic: &str, partition: i32) -> Option<(i32, i32)> {
        let p = self.image.topics.get(topic)?.partitions.get(&partition)?;
        let b = self.image.brokers.get(&p.leader).filter(|b| !b.fenced)?;
        self.named.insert(b.broker_id);
        Some((p.leader, p.leader_epoch))
    }

    /// The endpoints of the leaders named so far, in id order.
    pub(super) fn endpoints(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.named
            .iter()
            .filter_map(|id| self.image.brokers.get(id))
    }

    /// Whether an error code asks for a hint.
    pub(super) fn wanted(code: i16) -> bool {
        use kafka_protocol::ResponseError;
        code == ResponseError::NotLeaderOrFollower.code()
            || code == ResponseError::FencedLeaderEpoch.code()
    }
}

/// The error for a partition this broker does not host: NOT_LEADER_OR_FOLLOWER when the
/// partition exists (its replicas are elsewhere, e.g. after a reassignment: the client refreshes
/// and retries), UNKNOWN_TOPIC_OR_PARTITION when it does not, as Kafka answers.
pub(super) fn not_hosted(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
) -> kafka_protocol::ResponseError {
    let exists = image
        .topics
        .get(topic)
        .is_some_and(|t| t.partitions.contains_key(&partition));
    if exists {
        kafka_protocol::ResponseError::NotLeaderOrFollower
    } else {
        kafka_protocol::ResponseError::UnknownTopicOrPartition
    }
}
