//! The fake cluster's partitions, for tests of day-2 decisions: replica lists, ISRs, leaders and
//! KIP-455 reassignments (target replicas are added, join the ISR, then the replicas no longer
//! wanted are removed), brokers stopped and started (a stopped broker is fenced and leaves every
//! ISR; a started one catches up on the next step), cordoning and unregistering. Time advances
//! only when the test calls `tick`: one tick lets every live replica catch up and completes every
//! reassignment whose new replicas are in sync. Cancelled reassignments return to the original
//! replicas; preferred elections follow the real controller's rule (the first replica, if in
//! sync and unfenced). A throttle is only recorded (it slows nothing); the controller quorum is
//! the voters a test sets, each as far behind as it says. It models no data and no lag beyond
//! that one step.

use std::collections::{BTreeMap, BTreeSet};

use tributary_planner::Move;

use super::fake::FakeState;
use super::{codes, AdminError, QuorumInfo, TopicPartition, VoterInfo};
use crate::day2::{BrokerView, ObservedKafka, PartitionView};

/// The metadata log end the fake quorum's leader reports.
const FAKE_METADATA_END: i64 = 1000;

fn refusal(api: &'static str, resource: String, code: i16, message: String) -> AdminError {
    AdminError::Kafka {
        api,
        resource,
        code,
        message: Some(message),
    }
}

/// One partition of the fake cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePartition {
    /// Assigned replicas; during a reassignment the target followed by the replicas to remove.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: Option<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
    /// The replicas before the reassignment in progress (what a cancel returns to).
    pub original: Vec<i32>,
    pub size_bytes: u64,
}

impl FakeState {
    /// Adds a topic's partitions with these assignments (all replicas in sync, first one leads).
    pub fn add_partitions(&mut self, topic: &str, assignments: &[Vec<i32>], size_bytes: u64) {
        for (p, replicas) in assignments.iter().enumerate() {
            let partition = i32::try_from(p).expect("few partitions");
            self.partitions.insert(
                (topic.to_owned(), partition),
                FakePartition {
                    replicas: replicas.clone(),
                    isr: replicas.clone(),
                    leader: replicas.first().copied(),
                    adding: Vec::new(),
                    removing: Vec::new(),
                    original: Vec::new(),
                    size_bytes,
                },
            );
        }
    }

    /// What the admin APIs would report: registered brokers (fenced, cordoned), partitions with
    /// ISR, leader and moves in progress, and each broker's log-dir bytes.
    pub fn kafka_view(&self) -> ObservedKafka {
        let mut log_dir_bytes: BTreeMap<i32, u64> = self.brokers.iter().map(|b| (*b, 0)).collect();
        let partitions = self
            .partitions
            .iter()
            .map(|((topic, partition), p)| {
                for r in &p.replicas {
                    *log_dir_bytes.entry(*r).or_default() += p.size_bytes;
                }
                PartitionView {
                    topic: topic.clone(),
                    partition: *partition,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    leader: p.leader,
                    adding: p.adding.clone(),
                    removing: p.removing.clone(),
                    size_bytes: p.size_bytes,
                    // a new replica has copied everything once it is in sync, nothing before
                    adding_bytes: p.size_bytes
                        * p.adding.iter().filter(|a| p.isr.contains(a)).count() as u64,
                }
            })
            .collect();
        ObservedKafka {
            brokers: self
                .brokers
                .iter()
                .map(|id| BrokerView {
                    id: *id,
                    rack: self.racks.get(id).cloned(),
                    fenced: self.fenced.contains(id),
                    cordoned: self.cordoned.contains(id),
                })
                .collect(),
            active_controller: self.controller,
            partitions,
            topic_min_insync_replicas: self.topic_min_isr.clone(),
            log_dir_bytes,
            quorum_lag: self.quorum().lags(),
            unanswered: Default::default(),
        }
    }

    /// Starts KIP-455 reassignments. Refused (nothing changes) when a partition is unknown or
    /// already moving, or a target broker is not registered.
    pub fn reassign(&mut self, moves: &[Move]) -> Result<(), AdminError> {
        const API: &str = "AlterPartitionReassignments";
        for m in moves {
            let name = format!("{}-{}", m.topic, m.partition);
            let Some(p) = self.partitions.get(&(m.topic.clone(), m.partition)) else {
                let code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                return Err(refusal(API, name, code, "unknown partition".into()));
            };
            if !p.adding.is_empty() || !p.removing.is_empty() {
                let code = codes::REASSIGNMENT_IN_PROGRESS;
                return Err(refusal(API, name, code, "already moving".into()));
            }
            if let Some(b) = m.target.iter().find(|b| !self.brokers.contains(b)) {
                let code = codes::INVALID_REPLICA_ASSIGNMENT;
                return Err(refusal(
                    API,
                    name,
                    code,
                    format!("broker {b} is not registered"),
                ));
            }
        }
        for m in moves {
            let Some(p) = self.partitions.get_mut(&(m.topic.clone(), m.partition)) else {
                continue;
            };
            p.original = p.replicas.clone();
            p.adding = m.added();
            p.removing = m.removed();
            let mut replicas = m.target.clone();
            replicas.extend(p.removing.iter().copied());
            p.replicas = replicas;
            self.calls.push(format!(
                "reassign {}-{} {:?}",
                m.topic, m.partition, m.target
            ));
        }
        Ok(())
    }

    /// One step of time: live replicas catch up into the ISR, finished reassignments drop the
    /// replicas they remove, and partitions without a live leader elect one from the ISR.
    pub fn tick(&mut self) {
        let fenced = self.fenced.clone();
        for p in self.partitions.values_mut() {
            let has_leader = p.leader.is_some_and(|l| !fenced.contains(&l));
            if has_leader {
                for r in p.replicas.clone() {
                    if !fenced.contains(&r) && !p.isr.contains(&r) {
                        p.isr.push(r);
                    }
                }
            }
            if (!p.adding.is_empty() || !p.removing.is_empty())
                && p.adding.iter().all(|a| p.isr.contains(a))
            {
                let removing = std::mem::take(&mut p.removing);
                p.adding.clear();
                p.replicas.retain(|r| !removing.contains(r));
                p.isr.retain(|r| !removing.contains(r));
                if p.leader.is_some_and(|l| removing.contains(&l)) {
                    p.leader = None;
                }
            }
            elect(p, &fenced);
        }
    }

    /// Stops a broker: fenced, out of every ISR, its leaderships move to the next in-sync replica.
    pub fn stop_broker(&mut self, id: i32) {
        self.fenced.insert(id);
        let fenced = self.fenced.clone();
        for p in self.partitions.values_mut() {
            if p.isr.len() > 1 || p.isr != [id] {
                p.isr.retain(|r| *r != id);
            }
            if p.leader == Some(id) {
                p.leader = None;
            }
            elect(p, &fenced);
        }
    }

    /// Starts a stopped broker: unfenced; its replicas rejoin the ISRs on the next `tick`.
    pub fn start_broker(&mut self, id: i32) {
        self.fenced.remove(&id);
    }

    /// Unregisters a broker; refused while it still holds replicas (as the real controller does).
    pub fn unregister(&mut self, id: i32) -> Result<(), AdminError> {
        const API: &str = "UnregisterBroker";
        let name = format!("broker {id}");
        if !self.brokers.contains(&id) {
            let code = codes::BROKER_ID_NOT_REGISTERED;
            return Err(refusal(API, name, code, "not registered".into()));
        }
        if self.partitions.values().any(|p| p.replicas.contains(&id)) {
            let code = codes::INVALID_REQUEST;
            return Err(refusal(API, name, code, "still holds replicas".into()));
        }
        self.brokers.retain(|b| *b != id);
        self.fenced.remove(&id);
        self.cordoned.remove(&id);
        Ok(())
    }

    /// Cancels the reassignments of these partitions: back to the original replicas (the ones
    /// being added leave the ISR; leadership stays if its holder remains). A partition not
    /// moving is left alone.
    pub fn cancel_reassignments(&mut self, partitions: &[TopicPartition]) {
        let fenced = self.fenced.clone();
        for tp in partitions {
            let Some(p) = self.partitions.get_mut(&(tp.topic.clone(), tp.partition)) else {
                continue;
            };
            if p.adding.is_empty() && p.removing.is_empty() {
                continue;
            }
            p.replicas = std::mem::take(&mut p.original);
            p.adding.clear();
            p.removing.clear();
            let replicas = p.replicas.clone();
            p.isr.retain(|r| replicas.contains(r));
            if p.leader.is_some_and(|l| !replicas.contains(&l)) {
                p.leader = None;
            }
            elect(p, &fenced);
            self.calls.push(format!("cancel {tp}"));
        }
    }

    /// Preferred election of these partitions (every one with `None`): the first replica leads
    /// if it is in sync and unfenced. Returns the partitions whose leader changed.
    pub fn elect_preferred(
        &mut self,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<TopicPartition>, AdminError> {
        let wanted: Vec<TopicPartition> = match partitions {
            Some(ps) => ps.to_vec(),
            None => self
                .partitions
                .keys()
                .map(|(topic, partition)| TopicPartition {
                    topic: topic.clone(),
                    partition: *partition,
                })
                .collect(),
        };
        let mut elected = Vec::new();
        let mut failures = Vec::new();
        for tp in wanted {
            let fail = |code: i16| super::Failure {
                resource: tp.to_string(),
                code,
                message: None,
            };
            let Some(p) = self.partitions.get_mut(&(tp.topic.clone(), tp.partition)) else {
                failures.push(fail(codes::UNKNOWN_TOPIC_OR_PARTITION));
                continue;
            };
            let Some(first) = p.replicas.first().copied() else {
                failures.push(fail(codes::PREFERRED_LEADER_NOT_AVAILABLE));
                continue;
            };
            if p.leader == Some(first) {
                continue;
            }
            if !p.isr.contains(&first) || self.fenced.contains(&first) {
                failures.push(fail(codes::PREFERRED_LEADER_NOT_AVAILABLE));
                continue;
            }
            p.leader = Some(first);
            elected.push(tp);
        }
        if !failures.is_empty() {
            return Err(AdminError::Refused {
                api: "ElectLeaders",
                failures,
            });
        }
        Ok(elected)
    }

    /// The controller quorum: `voters` (the controller alone when none are set), led by
    /// `controller`, each `voter_lag` records behind.
    pub fn quorum(&self) -> QuorumInfo {
        let voters = if self.voters.is_empty() {
            self.controller.into_iter().collect()
        } else {
            self.voters.clone()
        };
        QuorumInfo {
            leader_id: self.controller,
            leader_epoch: 1,
            high_watermark: FAKE_METADATA_END,
            voters: voters
                .iter()
                .map(|id| VoterInfo {
                    id: *id,
                    log_end_offset: FAKE_METADATA_END
                        - self.voter_lag.get(id).copied().unwrap_or(0),
                    last_caught_up_ms: None,
                })
                .collect(),
        }
    }

    /// Partitions whose ISR is smaller than `min` (the topic's override or this default), as
    /// `topic-partition`: what acks=all producers would see as NOT_ENOUGH_REPLICAS.
    pub fn below_min_isr(&self, default_min: usize) -> Vec<String> {
        self.partitions
            .iter()
            .filter(|((topic, _), p)| {
                let min = self
                    .topic_min_isr
                    .get(topic)
                    .copied()
                    .unwrap_or(default_min);
                p.isr.len() < min
            })
            .map(|((t, n), _)| format!("{t}-{n}"))
            .collect()
    }

    /// Brokers holding at least one replica.
    pub fn hosting_brokers(&self) -> BTreeSet<i32> {
        self.partitions
            .values()
            .flat_map(|p| p.replicas.iter().copied())
            .collect()
    }
}

/// Elects the first in-sync, unfenced replica in assignment order when there is no live leader.
fn elect(p: &mut FakePartition, fenced: &BTreeSet<i32>) {
    if p.leader.is_some_and(|l| !fenced.contains(&l)) {
        return;
    }
    p.leader = p
        .replicas
        .iter()
        .copied()
        .find(|r| p.isr.contains(r) && !fenced.contains(r));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brokers 1–4, partition t-0 on [1, 2, 3], and the move of its replica on 1 to 4.
    fn four_brokers_and_a_move_from_1_to_4() -> (FakeState, Move) {
        let mut s = FakeState::default();
        s.brokers = vec![1, 2, 3, 4];
        s.add_partitions("t", &[vec![1, 2, 3]], 10);
        let m = Move {
            topic: "t".into(),
            partition: 0,
            current: vec![1, 2, 3],
            target: vec![4, 2, 3],
            size_bytes: 10,
        };
        (s, m)
    }

    #[test]
    fn a_move_adds_catches_up_then_removes() {
        let (mut s, m) = four_brokers_and_a_move_from_1_to_4();
        s.reassign(std::slice::from_ref(&m)).expect("accepted");
        let v = s.kafka_view();
        assert_eq!(v.partitions[0].replicas, [4, 2, 3, 1]);
        assert_eq!(
            (
                v.partitions[0].adding.clone(),
                v.partitions[0].removing.clone()
            ),
            (vec![4], vec![1])
        );
        assert!(s.reassign(&[m]).is_err(), "already moving");
        assert!(s.unregister(1).is_err());
        s.tick();
        let v = s.kafka_view();
        assert_eq!(v.partitions[0].replicas, [4, 2, 3]);
        assert_eq!(v.partitions[0].isr, [2, 3, 4]);
        assert_eq!(
            v.partitions[0].leader,
            Some(4),
            "the removed leader handed over"
        );
        assert_eq!(v.log_dir_bytes[&1], 0);
        s.unregister(1).expect("empty broker unregisters");
    }

    #[test]
    fn a_stopped_broker_leaves_the_isr_and_rejoins_after_start() {
        let mut s = FakeState::default();
        s.brokers = vec![1, 2, 3];
        s.add_partitions("t", &[vec![1, 2, 3]], 10);
        s.stop_broker(1);
        let v = s.kafka_view();
        assert_eq!(v.partitions[0].isr, [2, 3]);
        assert_eq!(v.partitions[0].leader, Some(2));
        assert!(v.brokers[0].fenced);
        assert_eq!(s.below_min_isr(3), ["t-0"]);
        s.tick();
        assert_eq!(s.kafka_view().partitions[0].isr, [2, 3], "still down");
        s.start_broker(1);
        s.tick();
        assert_eq!(s.kafka_view().partitions[0].isr, [2, 3, 1]);
    }

    #[test]
    fn a_cancelled_move_returns_to_its_original_replicas() {
        let (mut s, m) = four_brokers_and_a_move_from_1_to_4();
        s.reassign(&[m]).expect("accepted");
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        s.cancel_reassignments(std::slice::from_ref(&tp));
        let p = &s.kafka_view().partitions[0];
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![1, 2, 3], vec![1, 2, 3])
        );
        assert!(!p.reassigning());
        s.cancel_reassignments(&[tp]);
        assert_eq!(
            s.kafka_view().partitions[0].replicas,
            [1, 2, 3],
            "nothing to cancel"
        );
    }

    #[test]
    fn preferred_election_needs_the_first_replica_in_sync_and_up() {
        let mut s = FakeState::default();
        s.brokers = vec![1, 2, 3];
        s.add_partitions("t", &[vec![1, 2, 3], vec![2, 3, 1]], 10);
        s.stop_broker(1);
        assert_eq!(s.kafka_view().partitions[0].leader, Some(2));
        let err = s.elect_preferred(None).expect_err("1 is down");
        assert_eq!(
            err.kafka_code(),
            Some(codes::PREFERRED_LEADER_NOT_AVAILABLE)
        );
        assert!(err.to_string().contains("t-0"), "{err}");
        s.start_broker(1);
        s.tick();
        let elected = s.elect_preferred(None).expect("1 is back in sync");
        let names: Vec<String> = elected.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["t-0"], "t-1 is already led by 2");
        assert_eq!(s.kafka_view().partitions[0].leader, Some(1));
    }

    #[test]
    fn the_quorum_reports_each_voters_lag() {
        let mut s = FakeState::default();
        s.controller = Some(1);
        assert_eq!(s.quorum().voters.len(), 1, "the controller alone");
        s.voters = vec![1, 2, 3];
        s.voter_lag.insert(3, 5);
        let q = s.quorum();
        assert_eq!(q.leader_id, Some(1));
        assert_eq!((q.lag(2), q.lag(3), q.lag(4)), (Some(0), Some(5), None));
    }
}
