//! ISR changes that partition leaders propose (AlterPartition), validated against the image by a
//! pure function, then committed by the active controller as the partition's new record.
//!
//! A proposal is made under a leader epoch and a partition epoch; it is refused unless both are
//! the partition's current ones (a leader that was replaced, or that raced another change, must
//! learn the new state from the metadata log and propose again). The new ISR must hold the
//! leader, only assigned replicas, and only active brokers among the replicas it adds.

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::metadata::image::MetadataImage;
use crate::metadata::records::PartitionRecord;

/// One partition's proposed ISR, as AlterPartition carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub topic_id: Uuid,
    pub partition: i32,
    /// The broker that sent it (it must lead the partition).
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// The partition record after `p`, or the Kafka error that refuses it.
pub fn apply_isr_change(
    image: &MetadataImage,
    p: &IsrProposal,
) -> Result<PartitionRecord, ResponseError> {
    let topic = image
        .topic_by_id(&p.topic_id)
        .ok_or(ResponseError::UnknownTopicId)?;
    let current = topic
        .partitions
        .get(&p.partition)
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    if p.leader_epoch < current.leader_epoch {
        return Err(ResponseError::FencedLeaderEpoch);
    }
    if p.leader_epoch > current.leader_epoch || current.leader != p.leader {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    if p.partition_epoch != current.partition_epoch {
        return Err(ResponseError::InvalidUpdateVersion);
    }
    let mut isr = Vec::with_capacity(p.new_isr.len());
    for r in &p.new_isr {
        if !current.replicas.contains(r) || isr.contains(r) {
            return Err(ResponseError::InvalidRequest);
        }
        isr.push(*r);
    }
    if !isr.contains(&p.leader) {
        return Err(ResponseError::InvalidRequest);
    }
    let added_inactive = isr
        .iter()
        .any(|r| !current.isr.contains(r) && !image.brokers.get(r).is_some_and(|b| b.is_active()));
    if added_inactive {
        return Err(ResponseError::IneligibleReplica);
    }
    // Keep assignment order, as election reads it.
    let mut next = current.clone();
    next.isr = current
        .replicas
        .iter()
        .copied()
        .filter(|r| isr.contains(r))
        .collect();
    next.partition_epoch += 1;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::records::{BrokerRegistration, MetadataRecord};

    fn image(fenced: &[i32]) -> (MetadataImage, Uuid) {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            image.apply(&MetadataRecord::RegisterBroker(BrokerRegistration {
                broker_id: id,
                incarnation_id: Uuid::nil(),
                host: "h".into(),
                port: 1,
                rack: None,
                epoch: 0,
                fenced: fenced.contains(&id),
                in_controlled_shutdown: false,
            }));
        }
        let topic_id = Uuid::new_v4();
        image.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id,
            configs: BTreeMap::new(),
        });
        image.apply(&MetadataRecord::Partition(PartitionRecord {
            topic_id,
            partition: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 5,
            partition_epoch: 8,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            original_replicas: Vec::new(),
        }));
        (image, topic_id)
    }

    fn proposal(topic_id: Uuid, isr: &[i32]) -> IsrProposal {
        IsrProposal {
            topic_id,
            partition: 0,
            leader: 1,
            leader_epoch: 5,
            partition_epoch: 8,
            new_isr: isr.to_vec(),
        }
    }

    #[test]
    fn a_current_leader_expands_and_shrinks_the_isr_in_assignment_order() {
        let (img, id) = image(&[]);
        let next = apply_isr_change(&img, &proposal(id, &[3, 1, 2])).expect("expand");
        assert_eq!((next.isr.clone(), next.partition_epoch), (vec![1, 2, 3], 9));
        assert_eq!(
            (next.leader, next.leader_epoch),
            (1, 5),
            "leadership unchanged"
        );
        let next = apply_isr_change(&img, &proposal(id, &[1])).expect("shrink");
        assert_eq!(next.isr, vec![1]);
    }

    #[test]
    fn stale_or_foreign_proposals_are_refused() {
        let (img, id) = image(&[]);
        let mut p = proposal(id, &[1]);
        p.leader_epoch = 4;
        assert_eq!(
            apply_isr_change(&img, &p),
            Err(ResponseError::FencedLeaderEpoch)
        );
        p.leader_epoch = 6;
        assert_eq!(
            apply_isr_change(&img, &p),
            Err(ResponseError::NotLeaderOrFollower)
        );
        let mut p = proposal(id, &[1]);
        p.partition_epoch = 7;
        assert_eq!(
            apply_isr_change(&img, &p),
            Err(ResponseError::InvalidUpdateVersion)
        );
        let mut p = proposal(id, &[2]);
        p.leader = 2;
        assert_eq!(
            apply_isr_change(&img, &p),
            Err(ResponseError::NotLeaderOrFollower)
        );
        let p = proposal(Uuid::new_v4(), &[1]);
        assert_eq!(
            apply_isr_change(&img, &p),
            Err(ResponseError::UnknownTopicId)
        );
    }

    #[test]
    fn the_new_isr_must_be_valid() {
        let (img, id) = image(&[3]);
        for bad in [&[2][..], &[1, 4], &[1, 1], &[]] {
            assert_eq!(
                apply_isr_change(&img, &proposal(id, bad)),
                Err(ResponseError::InvalidRequest),
                "{bad:?}"
            );
        }
        // Broker 3 is fenced: it cannot be added; 2, already in, may stay.
        assert_eq!(
            apply_isr_change(&img, &proposal(id, &[1, 2, 3])),
            Err(ResponseError::IneligibleReplica)
        );
        assert!(apply_isr_change(&img, &proposal(id, &[1, 2])).is_ok());
    }
}
