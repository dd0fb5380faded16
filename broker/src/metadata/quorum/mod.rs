//! The controller quorum, on controller nodes only: openraft with its durable log
//! (`log_store`), the state machine that feeds the node's metadata follower
//! (`state_machine`), and the transport between voters (`network`). It replicates and commits
//! metadata batches; it does not decide what goes into them (that is `controller`).

pub mod log_store;
pub mod network;
pub mod state_machine;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::BasicNode;

use crate::metadata::follower::MetadataFollower;
use log_store::LogStore;
use network::Network;
pub use state_machine::{MetadataBatch, NodeId, TypeConfig};

/// Why the quorum could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("failed to open metadata storage in {dir}")]
    Storage {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid raft configuration")]
    Config(#[from] openraft::ConfigError),
    #[error("raft failed to start")]
    Raft(#[from] openraft::error::Fatal<NodeId>),
    #[error(
        "node {node_id} has the controller role but is not in controller.quorum.voters ({voters})"
    )]
    NotAVoter { node_id: i32, voters: String },
}

/// How to run this node's part of the metadata quorum.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: i32,
    /// Where the Raft log, vote and snapshot live (`<log.dirs>/__cluster_metadata-0`).
    pub dir: PathBuf,
    /// `controller.quorum.voters`: id and address of every voter.
    pub voters: Vec<(i32, String)>,
    /// A snapshot is taken after this many entries, and the log before it purged.
    pub snapshot_interval: u64,
}

/// What DescribeQuorum reports of one voter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterState {
    pub node_id: i32,
    /// The last log index known replicated to it (-1: none).
    pub log_end: i64,
    /// Milliseconds since it was last seen caught up with the leader (-1: never, or unknown).
    pub last_caught_up_ms: i64,
}

/// This node's quorum member.
pub struct Quorum {
    raft: openraft::Raft<TypeConfig>,
    voters: Vec<(i32, String)>,
    /// Check-quorum: a leader that no majority has acknowledged for this long (the longest
    /// election timeout, after which the others have elected a new one) no longer acts as the
    /// active controller, as a KRaft leader resigns when its fetch timeout passes.
    lease: Duration,
    /// When each voter was last seen at the leader's log end (leader only).
    caught_up: Mutex<HashMap<i32, Instant>>,
}

impl Quorum {
    /// Starts the quorum member, initialising a brand-new quorum on first start (every voter
    /// proposes the same membership, which is safe in openraft).
    pub async fn start(
        cfg: QuorumConfig,
        follower: Arc<MetadataFollower>,
    ) -> Result<Quorum, StartError> {
        let storage = |source| StartError::Storage {
            dir: cfg.dir.clone(),
            source,
        };
        if !cfg.voters.iter().any(|(id, _)| *id == cfg.node_id) {
            return Err(StartError::NotAVoter {
                node_id: cfg.node_id,
                voters: voters_text(&cfg.voters),
            });
        }
        let log = LogStore::open(&cfg.dir).map_err(storage)?;
        let sm = state_machine::StateMachine::open(&cfg.dir, follower).map_err(storage)?;
        // A real quorum gets timeouts that ride out a busy machine without needless elections
        // (Kafka's default is 1 s). A lone voter has nobody to send heartbeats to, and openraft
        // elects it at once on start whatever the timeouts, so long ones cost it nothing and
        // its Raft timer (every 1.5 heartbeat intervals) wakes it rarely when idle.
        let lone = cfg.voters.len() == 1;
        let (heartbeat, election) = if lone { (500, 1500) } else { (100, 500) };
        let raft_config = openraft::Config {
            cluster_name: "tributary-metadata".into(),
            enable_heartbeat: !lone,
            heartbeat_interval: heartbeat,
            election_timeout_min: election,
            election_timeout_max: election * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_interval.max(1)),
            max_in_snapshot_log_to_keep: cfg.snapshot_interval.max(1) / 2,
            ..Default::default()
        }
        .validate()?;
        let raft = openraft::Raft::new(
            node_id(cfg.node_id),
            Arc::new(raft_config),
            Network::new(&cfg.voters),
            log,
            sm,
        )
        .await?;
        let members: BTreeMap<NodeId, BasicNode> = cfg
            .voters
            .iter()
            .map(|(id, addr)| (node_id(*id), BasicNode::new(addr)))
            .collect();
        if !raft.is_initialized().await.map_err(StartError::Raft)? {
            if let Err(e) = raft.initialize(members).await {
                tracing::warn!(error = %e, "metadata quorum initialisation refused");
            }
        }
        Ok(Quorum {
            raft,
            voters: cfg.voters,
            lease: Duration::from_millis(election * 2),
            caught_up: Mutex::new(HashMap::new()),
        })
    }

    /// The Raft node.
    pub fn raft(&self) -> &openraft::Raft<TypeConfig> {
        &self.raft
    }

    /// The voters, as configured.
    pub fn voters(&self) -> &[(i32, String)] {
        &self.voters
    }

    /// The active controller (the Raft leader), if known.
    ///
    /// This node reports itself only while a majority acknowledged it within the lease: a
    /// leader cut off from the other voters (but not from brokers) would otherwise go on
    /// answering brokers' metadata fetches with a frozen log and taking their heartbeats, and
    /// the brokers would never find the new active controller.
    pub fn leader(&self) -> Option<i32> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let leader = m.current_leader?;
        if leader == m.id {
            let acked = m
                .millis_since_quorum_ack
                .is_some_and(|ms| u128::from(ms) <= self.lease.as_millis());
            if !acked {
                return None;
            }
        }
        i32::try_from(leader).ok()
    }

    /// This node's id.
    pub fn id(&self) -> i32 {
        i32::try_from(self.raft.metrics().borrow().id).unwrap_or(-1)
    }

    /// The Raft term (Kafka's leader epoch of the metadata log).
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// Each voter's replication state, as the leader sees it; `None` on a non-leader.
    pub fn voter_states(&self) -> Option<Vec<VoterState>> {
        let m = self.raft.metrics().borrow().clone();
        let replication = m.replication.as_ref()?;
        let leader_end = m.last_log_index.map_or(-1, |i| i as i64);
        let now = Instant::now();
        let mut seen = self.caught_up.lock().expect("caught-up lock poisoned");
        let states = self
            .voters
            .iter()
            .map(|(id, _)| {
                let end = if u64::try_from(*id).ok() == Some(m.id) {
                    leader_end
                } else {
                    replication
                        .get(&node_id(*id))
                        .and_then(|l| l.as_ref())
                        .map_or(-1, |l| l.index as i64)
                };
                if end >= leader_end && end >= 0 {
                    seen.insert(*id, now);
                }
                let last = seen
                    .get(id)
                    .map_or(-1, |t| now.duration_since(*t).as_millis() as i64);
                VoterState {
                    node_id: *id,
                    log_end: end,
                    last_caught_up_ms: last,
                }
            })
            .collect();
        Some(states)
    }

    /// Waits until this node is the leader and has applied everything committed before now.
    pub async fn wait_leader_caught_up(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            while self.raft.ensure_linearizable().await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .is_ok()
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "metadata quorum did not stop cleanly");
        }
    }
}

/// openraft's node id for a Kafka node id.
pub fn node_id(id: i32) -> NodeId {
    u64::try_from(id).unwrap_or_default()
}

fn voters_text(voters: &[(i32, String)]) -> String {
    voters
        .iter()
        .map(|(id, a)| format!("{id}@{a}"))
        .collect::<Vec<_>>()
        .join(",")
}
