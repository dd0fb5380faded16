//! Sends the ISR changes the partitions this broker leads decide on (`isr`, through
//! `PartitionState::propose_isr_change`) to the active controller as AlterPartition, every
//! half second. The committed result comes back through the metadata log like every other
//! partition change; an answer that says the change was not applied, or no answer, clears it so
//! it can be proposed again.

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
            if let Some(p) = part.with_state(|st| st.propose_isr_change(now)) {
                tracing::info!(partition = %tp, isr = ?p.isr, leader_epoch = p.leader_epoch.0, partition_epoch = p.partition_epoch.0, "proposing ISR change");
                proposals.push((tp, part, p));
            }
        }
        if proposals.is_empty() {
            continue;
        }
        let mut topics: Vec<TopicData> = Vec::new();
        for (tp, part, p) in &proposals {
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
        for (tp, part, p) in &proposals {
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
                Some(0) => {}
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
