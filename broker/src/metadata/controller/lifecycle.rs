//! Broker lifecycle on the active controller: registration (fenced), heartbeats, unfencing once
//! caught up with the metadata log, fencing on a missed session, controlled shutdown, and
//! unregistration. The record planning is pure ([`deactivate`], [`activate`]); the methods
//! validate against the image and commit.

use std::time::Instant;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{election, ApiError, QuorumController};
use crate::metadata::image::MetadataImage;
use crate::metadata::records::{BrokerRegistration, MetadataRecord};

/// A broker's registration request, as BrokerRegistration carries it.
#[derive(Debug, Clone)]
pub struct Registration {
    pub broker_id: i32,
    pub cluster_id: String,
    pub incarnation_id: Uuid,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

/// A broker heartbeat, as BrokerHeartbeat carries it.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub metadata_offset: i64,
    pub want_fence: bool,
    pub want_shut_down: bool,
}

/// The controller's answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub should_shut_down: bool,
}

/// Records that take `broker` out of service: `state` (a fence or controlled-shutdown record),
/// then every partition change that follows (leaders moved to another eligible ISR member, the
/// broker removed from ISRs that have another member).
pub fn deactivate(
    image: &MetadataImage,
    broker: i32,
    state: MetadataRecord,
    unclean_default: bool,
) -> Vec<MetadataRecord> {
    let eligible = |b: i32| b != broker && image.brokers.get(&b).is_some_and(|r| r.is_active());
    let mut records = vec![state];
    for t in image.topics.values() {
        for p in t.partitions.values() {
            if !p.replicas.contains(&broker) {
                continue;
            }
            if let Some(mut next) = election::without_broker(p, broker, eligible) {
                if next.leader < 0 && unclean_allowed(image, t, unclean_default) {
                    if let Ok(u) = election::unclean(&next, eligible) {
                        tracing::warn!(topic = %t.name, partition = p.partition, leader = u.leader, "unclean leader election: acknowledged data may be lost");
                        next = u;
                    }
                }
                records.push(MetadataRecord::Partition(next));
            }
        }
    }
    records
}

/// `unclean.leader.election.enable`: the topic's override, else the controller's default.
/// Whether `t` may elect an unclean leader: its override, else the cluster's dynamic default,
/// else the controller's own property (`default`).
fn unclean_allowed(
    image: &MetadataImage,
    t: &crate::metadata::image::TopicImage,
    default: bool,
) -> bool {
    const KEY: &str = "unclean.leader.election.enable";
    t.configs
        .get(KEY)
        .or_else(|| image.broker_configs.get(&None).and_then(|m| m.get(KEY)))
        .map_or(default, |v| v.trim().eq_ignore_ascii_case("true"))
}

/// Records that put `broker` back in service: the unfence record, then leaders for the
/// leaderless partitions it can lead.
pub fn activate(
    image: &MetadataImage,
    broker: i32,
    epoch: i64,
    unclean_default: bool,
) -> Vec<MetadataRecord> {
    let eligible = |b: i32| b == broker || image.brokers.get(&b).is_some_and(|r| r.is_active());
    let mut records = vec![MetadataRecord::UnfenceBroker {
        broker_id: broker,
        epoch,
    }];
    for t in image.topics.values() {
        for p in t.partitions.values() {
            if p.leader < 0 && p.replicas.contains(&broker) {
                if let Some(next) = election::with_broker(p, eligible) {
                    records.push(MetadataRecord::Partition(next));
                } else if unclean_allowed(image, t, unclean_default) {
                    if let Ok(u) = election::unclean(p, eligible) {
                        tracing::warn!(topic = %t.name, partition = p.partition, leader = u.leader, "unclean leader election: acknowledged data may be lost");
                        records.push(MetadataRecord::Partition(u));
                    }
                }
            }
        }
    }
    records
}

/// Partitions that `broker` still leads.
pub fn led_by(image: &MetadataImage, broker: i32) -> Vec<String> {
    image
        .topics
        .values()
        .flat_map(|t| {
            t.partitions
                .values()
                .filter(move |p| p.leader == broker)
                .map(move |p| format!("{}-{}", t.name, p.partition))
        })
        .collect()
}

impl QuorumController {
    /// Registers a broker, fenced, with a new broker epoch; returns the epoch.
    pub async fn register_broker(&self, reg: Registration) -> Result<i64, ApiError> {
        let _guard = self.write.lock().await;
        let image = self.image();
        if !self.is_active() {
            return Err(super::not_controller());
        }
        self.refresh_sessions(&image);
        match &image.cluster_id {
            Some(id) if *id != reg.cluster_id => {
                return Err(ApiError::new(
                    ResponseError::InconsistentClusterId,
                    format!(
                        "broker {} has cluster id {}, but this cluster's id is {id}",
                        reg.broker_id, reg.cluster_id
                    ),
                ))
            }
            Some(_) => {}
            None => {
                return Err(ApiError::new(
                    ResponseError::NotController,
                    "the controller has not written the cluster id yet",
                ))
            }
        }
        let mut records = Vec::new();
        if let Some(old) = image.brokers.get(&reg.broker_id) {
            if old.incarnation_id != reg.incarnation_id && !old.fenced && self.recently_heard(old) {
                return Err(ApiError::new(
                    ResponseError::DuplicateBrokerRegistration,
                    format!(
                        "another broker with node.id {} is registered and alive (incarnation {})",
                        reg.broker_id, old.incarnation_id
                    ),
                ));
            }
            if !old.fenced {
                records.extend(self.fence_records(&image, reg.broker_id, old.epoch));
            }
        }
        let epoch = image.next_broker_epoch;
        records.push(MetadataRecord::RegisterBroker(BrokerRegistration {
            broker_id: reg.broker_id,
            incarnation_id: reg.incarnation_id,
            host: reg.host,
            port: reg.port,
            rack: reg.rack,
            epoch,
            fenced: true,
            in_controlled_shutdown: false,
        }));
        let index = self.commit(records).await?;
        let mut s = self.sessions.lock().expect("sessions lock poisoned");
        s.last_heartbeat.insert(reg.broker_id, Instant::now());
        s.contacted.insert(reg.broker_id, Instant::now());
        s.caught_up_at.insert(reg.broker_id, index);
        tracing::info!(broker = reg.broker_id, epoch, incarnation = %reg.incarnation_id, "registered broker (fenced)");
        Ok(epoch)
    }

    /// The records that fence registration `epoch` of `broker_id` and move its leaderships.
    fn fence_records(
        &self,
        image: &MetadataImage,
        broker_id: i32,
        epoch: i64,
    ) -> Vec<MetadataRecord> {
        let fence = MetadataRecord::FenceBroker { broker_id, epoch };
        deactivate(
            image,
            broker_id,
            fence,
            self.lifecycle.unclean_leader_election,
        )
    }

    fn session_alive(&self, b: &BrokerRegistration) -> bool {
        let s = self.sessions.lock().expect("sessions lock poisoned");
        s.last_heartbeat
            .get(&b.broker_id)
            .is_some_and(|t| t.elapsed() < self.lifecycle.session_timeout)
    }

    /// Whether this controller heard from the broker within the session timeout (a fresh
    /// session after failover does not count: a restarted broker may replace its old
    /// registration at once, while a second live process with the same id is refused).
    fn recently_heard(&self, b: &BrokerRegistration) -> bool {
        let s = self.sessions.lock().expect("sessions lock poisoned");
        s.contacted
            .get(&b.broker_id)
            .is_some_and(|t| t.elapsed() < self.lifecycle.session_timeout)
    }

    /// Starts fresh sessions when this controller's term changed (it just became active).
    fn refresh_sessions(&self, image: &MetadataImage) {
        let term = self.quorum.term();
        let mut s = self.sessions.lock().expect("sessions lock poisoned");
        if s.term == term {
            return;
        }
        s.term = term;
        let now = Instant::now();
        s.last_heartbeat = image.brokers.keys().map(|id| (*id, now)).collect();
        s.contacted.clear();
        s.caught_up_at.clear();
    }

    /// Serves a heartbeat: records the session, and unfences, fences or starts a controlled
    /// shutdown as the broker's state asks.
    pub async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatAnswer, ApiError> {
        let _guard = self.write.lock().await;
        if !self.is_active() {
            return Err(super::not_controller());
        }
        let image = self.image();
        self.refresh_sessions(&image);
        let reg = match image.brokers.get(&hb.broker_id) {
            Some(r) if r.epoch == hb.broker_epoch => r.clone(),
            Some(r) => {
                return Err(ApiError::new(
                    ResponseError::StaleBrokerEpoch,
                    format!(
                        "broker {} heartbeat for epoch {}, registered with epoch {}",
                        hb.broker_id, hb.broker_epoch, r.epoch
                    ),
                ))
            }
            None => {
                return Err(ApiError::new(
                    ResponseError::BrokerIdNotRegistered,
                    format!("broker {} is not registered", hb.broker_id),
                ))
            }
        };
        let caught_up = {
            let mut s = self.sessions.lock().expect("sessions lock poisoned");
            s.last_heartbeat.insert(hb.broker_id, Instant::now());
            s.contacted.insert(hb.broker_id, Instant::now());
            let target = *s
                .caught_up_at
                .entry(hb.broker_id)
                .or_insert_with(|| image.applied_index);
            u64::try_from(hb.metadata_offset).is_ok_and(|o| o >= target)
        };
        let state = |r: &BrokerRegistration| MetadataRecord::ControlledShutdown {
            broker_id: r.broker_id,
            epoch: r.epoch,
        };
        if hb.want_shut_down {
            if !reg.in_controlled_shutdown && !reg.fenced {
                self.commit(deactivate(
                    &image,
                    hb.broker_id,
                    state(&reg),
                    self.lifecycle.unclean_leader_election,
                ))
                .await?;
                tracing::info!(
                    broker = hb.broker_id,
                    "controlled shutdown: leaderships moved"
                );
            }
            let image = self.image();
            let done = led_by(&image, hb.broker_id).is_empty();
            let mut fenced = image.brokers.get(&hb.broker_id).is_none_or(|b| b.fenced);
            if done && !fenced {
                // Done: the broker is fenced now, so that its next incarnation can register
                // at once (a fenced registration is never a live duplicate).
                self.commit(self.fence_records(&image, reg.broker_id, reg.epoch))
                    .await?;
                fenced = true;
            }
            return Ok(HeartbeatAnswer {
                is_caught_up: caught_up,
                is_fenced: fenced,
                should_shut_down: done,
            });
        }
        let mut fenced = reg.fenced;
        if hb.want_fence && !reg.fenced {
            self.commit(self.fence_records(&image, reg.broker_id, reg.epoch))
                .await?;
            fenced = true;
        } else if reg.fenced && caught_up && !hb.want_fence {
            self.commit(activate(
                &image,
                hb.broker_id,
                reg.epoch,
                self.lifecycle.unclean_leader_election,
            ))
            .await?;
            tracing::info!(broker = hb.broker_id, epoch = reg.epoch, "unfenced broker");
            fenced = false;
        }
        Ok(HeartbeatAnswer {
            is_caught_up: caught_up,
            is_fenced: fenced,
            should_shut_down: false,
        })
    }

    /// Removes a broker's registration (it is fenced first, moving its leaderships).
    pub async fn unregister_broker(&self, broker_id: i32) -> Result<(), ApiError> {
        let _guard = self.write.lock().await;
        if !self.is_active() {
            return Err(super::not_controller());
        }
        let image = self.image();
        let reg = image.brokers.get(&broker_id).ok_or_else(|| {
            ApiError::new(
                ResponseError::BrokerIdNotRegistered,
                format!("broker {broker_id} is not registered"),
            )
        })?;
        // A broker that still holds replicas (assigned, being added or being removed) would
        // leave them unreachable: move them away first (a reassignment), then unregister.
        let held: Vec<String> = image
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .values()
                    .filter(|p| p.replicas.contains(&broker_id))
                    .map(move |p| format!("{}-{}", t.name, p.partition))
            })
            .collect();
        if !held.is_empty() {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!(
                    "broker {broker_id} still holds {} replica(s) (e.g. {}): reassign them before unregistering it",
                    held.len(),
                    held.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let mut records = Vec::new();
        if !reg.fenced {
            records.extend(self.fence_records(&image, broker_id, reg.epoch));
        }
        records.push(MetadataRecord::UnregisterBroker { broker_id });
        self.commit(records).await?;
        tracing::info!(broker = broker_id, "unregistered broker");
        Ok(())
    }

    /// Fences every broker whose session expired (active controller's timer).
    pub(super) async fn fence_expired(&self) {
        let _guard = self.write.lock().await;
        let image = self.image();
        self.refresh_sessions(&image);
        let expired: Vec<BrokerRegistration> = image
            .brokers
            .values()
            .filter(|b| !b.fenced && !self.session_alive(b))
            .cloned()
            .collect();
        for b in expired {
            let image = self.image();
            match self
                .commit(self.fence_records(&image, b.broker_id, b.epoch))
                .await
            {
                Ok(_) => tracing::warn!(
                    broker = b.broker_id,
                    timeout_ms = self.lifecycle.session_timeout.as_millis() as u64,
                    "fenced broker: no heartbeat within broker.session.timeout.ms"
                ),
                Err(e) => {
                    tracing::warn!(broker = b.broker_id, error = %e.message, "failed to fence broker")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::records::PartitionRecord;

    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in [1, 2] {
            image.apply(&MetadataRecord::RegisterBroker(BrokerRegistration {
                broker_id: id,
                incarnation_id: Uuid::nil(),
                host: "h".into(),
                port: 1,
                rack: None,
                epoch: i64::from(id),
                fenced: false,
                in_controlled_shutdown: false,
            }));
        }
        let topic_id = Uuid::new_v4();
        image.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id,
            configs: BTreeMap::new(),
        });
        for (p, b) in [(0, 1), (1, 2)] {
            image.apply(&MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition: p,
                replicas: vec![b],
                isr: vec![b],
                leader: b,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
                original_replicas: Vec::new(),
            }));
        }
        image
    }

    #[test]
    fn fencing_leaves_the_brokers_partitions_leaderless_and_unfencing_restores_them() {
        let mut img = image();
        let fence = MetadataRecord::FenceBroker {
            broker_id: 1,
            epoch: 1,
        };
        let records = deactivate(&img, 1, fence, false);
        assert_eq!(records.len(), 2, "{records:?}");
        for r in &records {
            img.apply(r);
        }
        assert!(img.brokers[&1].fenced);
        assert_eq!(img.topics["t"].partitions[&0].leader, -1);
        assert_eq!(img.topics["t"].partitions[&1].leader, 2);
        assert_eq!(led_by(&img, 1), Vec::<String>::new());
        for r in &activate(&img, 1, 1, false) {
            img.apply(r);
        }
        assert!(!img.brokers[&1].fenced);
        let p0 = &img.topics["t"].partitions[&0];
        assert_eq!((p0.leader, p0.leader_epoch), (1, 2));
    }

    #[test]
    fn unclean_election_only_when_enabled() {
        let base = image();
        let topic_id = base.topics["t"].topic_id;
        let mut img = base.clone();
        // Partition 0: replicas [1, 2], only 1 in sync.
        img.apply(&MetadataRecord::Partition(PartitionRecord {
            topic_id,
            partition: 0,
            replicas: vec![1, 2],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 1,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            original_replicas: Vec::new(),
        }));
        let fence = MetadataRecord::FenceBroker {
            broker_id: 1,
            epoch: 1,
        };
        let leader_after = |img: &MetadataImage, default: bool| {
            let mut next = img.clone();
            for r in &deactivate(img, 1, fence.clone(), default) {
                next.apply(r);
            }
            let p = &next.topics["t"].partitions[&0];
            (p.leader, p.isr.clone())
        };
        assert_eq!(leader_after(&img, false), (-1, vec![1]), "clean: no leader");
        assert_eq!(leader_after(&img, true), (2, vec![2]), "unclean by default");
        img.apply(&MetadataRecord::Config {
            resource: crate::metadata::records::ConfigResource::Topic("t".into()),
            name: "unclean.leader.election.enable".into(),
            value: Some("false".into()),
        });
        assert_eq!(leader_after(&img, true), (-1, vec![1]), "the topic says no");
    }

    #[test]
    fn records_for_an_old_registration_are_ignored() {
        let mut img = image();
        img.apply(&MetadataRecord::FenceBroker {
            broker_id: 1,
            epoch: 0,
        });
        assert!(!img.brokers[&1].fenced);
        assert_eq!(led_by(&img, 1), vec!["t-0".to_owned()]);
    }
}
