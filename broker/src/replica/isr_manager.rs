//! Sends the ISR changes the partitions this broker leads decide on (`isr`, through
//! `PartitionState::propose_isr_change`) to the active controller as AlterPartition, every
//! half second. The committed result comes back through the metadata log like every other
//! partition change; an answer that says the change was not applied, or no answer, clears it so
//! it can be proposed again.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use kafka_protocol::messages::{AlterPartitionRequest, BrokerId};
use kafka_protocol::ResponseError;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::metadata::controller::api::ALTER_PARTITION_VERSION;

/// How often led partitions are checked for ISR changes.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Runs until `stop` flips.
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if !broker.lifecycle.caught_up_once() {
            continue;
        }
        let now = tokio::time::Instant::now();
        let mut proposals = Vec::new();
        for (tp, part) in broker.replicas.all() {
            let proposed = part.with_state(|st| {
                // Proposing leaves the committed ISR as it is: copy it only for a proposal.
                let p = st.propose_isr_change(now)?;
                Some((st.leader()?.isr.clone(), p))
            });
            if let Some((before, p)) = proposed {
                let change = IsrChange::between(&before, &p.isr);
                tracing::info!(
                    partition = %tp,
                    removed = ?change.removed,
                    added = ?change.added,
                    isr = ?p.isr,
                    leader_epoch = p.leader_epoch.0,
                    partition_epoch = p.partition_epoch.0,
                    reason = change.reason(),
                    "proposing ISR change"
                );
                proposals.push((tp, part, p, change));
            }
        }
        if proposals.is_empty() {
            continue;
        }
        let mut topics: Vec<TopicData> = Vec::new();
        for (tp, part, p, _) in &proposals {
            let data = PartitionData::default()
                .with_partition_index(tp.partition)
                .with_leader_epoch(p.leader_epoch.0)
                .with_partition_epoch(p.partition_epoch.0)
                .with_new_isr_with_epochs(
                    p.isr
                        .iter()
                        .map(|b| {
                            BrokerState::default()
                                .with_broker_id(BrokerId(*b))
                                .with_broker_epoch(-1)
                        })
                        .collect(),
                );
            match topics.iter_mut().find(|t| t.topic_id == part.topic_id) {
                Some(t) => t.partitions.push(data),
                None => topics.push(
                    TopicData::default()
                        .with_topic_id(part.topic_id)
                        .with_partitions(vec![data]),
                ),
            }
        }
        let req = AlterPartitionRequest::default()
            .with_broker_id(BrokerId(broker.config.node_id))
            .with_broker_epoch(broker.lifecycle.epoch())
            .with_topics(topics);
        let resp = broker
            .channel
            .call(ALTER_PARTITION_VERSION, req, Duration::from_secs(5))
            .await;
        let not_applied = |code: i16| {
            code == ResponseError::OperationNotAttempted.code()
                || code == ResponseError::IneligibleReplica.code()
                || code == ResponseError::InvalidRequest.code()
        };
        for (tp, part, p, change) in &proposals {
            let code = match &resp {
                Ok(r) if r.error_code != 0 => Some(r.error_code),
                Ok(r) => r
                    .topics
                    .iter()
                    .filter(|t| t.topic_id == part.topic_id)
                    .flat_map(|t| &t.partitions)
                    .find(|x| x.partition_index == tp.partition)
                    .map(|x| x.error_code),
                Err(_) => None,
            };
            match code {
                Some(0) => {
                    if !change.removed.is_empty() {
                        broker.metrics.isr_shrinks.fetch_add(1, Ordering::Relaxed);
                    }
                    if !change.added.is_empty() {
                        broker.metrics.isr_expands.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Not applied, or no answer: propose again on a later round.
                Some(c) if not_applied(c) => {
                    part.with_state(|st| st.on_isr_change_not_applied(p));
                }
                None => {
                    part.with_state(|st| st.on_isr_change_not_applied(p));
                }
                // Stale epochs: the metadata log brings the newer state, which clears it.
                Some(c) => tracing::info!(partition = %tp, code = c, "ISR change refused"),
            }
        }
    }
}

/// Which replicas a proposed ISR removes and adds, for the log line and the shrink / expand
/// counters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IsrChange {
    removed: Vec<i32>,
    added: Vec<i32>,
}

impl IsrChange {
    fn between(before: &BTreeSet<i32>, after: &[i32]) -> IsrChange {
        IsrChange {
            removed: before
                .iter()
                .copied()
                .filter(|b| !after.contains(b))
                .collect(),
            added: after
                .iter()
                .copied()
                .filter(|b| !before.contains(b))
                .collect(),
        }
    }

    fn reason(&self) -> &'static str {
        match (self.removed.is_empty(), self.added.is_empty()) {
            (false, true) => {
                "shrink: not caught up within replica.lag.time.max.ms, or fenced or shutting down"
            }
            (true, false) => "expand: caught up to the high watermark in this leader epoch",
            (false, false) => "shrink and expand",
            (true, true) => "no membership change",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_names_what_it_removes_and_adds() {
        let before: BTreeSet<i32> = [1, 2, 3].into();
        let shrink = IsrChange::between(&before, &[1, 3]);
        assert_eq!(
            (shrink.removed.as_slice(), shrink.added.as_slice()),
            (&[2][..], &[][..])
        );
        assert!(shrink.reason().starts_with("shrink"));
        let expand = IsrChange::between(&[1].into(), &[1, 2]);
        assert_eq!(
            (expand.removed.as_slice(), expand.added.as_slice()),
            (&[][..], &[2][..])
        );
        assert!(expand.reason().starts_with("expand"));
    }
}
