//! The metadata quorum on openraft: type configuration, the state machine that applies
//! [`MetadataRecord`]s to the [`MetadataImage`] and publishes each new image, and the transport.
//!
//! The state machine keeps the image in memory; durability comes from the Raft log plus a
//! snapshot file (`snapshot.json`, written atomically). On start openraft replays the committed
//! entries after the snapshot, so the image after a restart equals the image before it.
//!
//! Not here yet: the network transport between controller voters. With the single-voter quorum
//! of the combined single-node default there is never a peer to talk to; a configured peer is
//! reported unreachable until the inter-controller transport is built.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::image::MetadataImage;
use super::records::MetadataRecord;
use crate::fsutil::write_atomically;

/// Controller node ids (Kafka's `node.id`, widened for openraft).
pub type NodeId = u64;

/// One committed unit of the metadata log: records applied atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataBatch {
    pub records: Vec<MetadataRecord>,
}

impl std::fmt::Display for MetadataBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} metadata records", self.records.len())
    }
}

openraft::declare_raft_types!(
    /// openraft types for the metadata quorum.
    pub TypeConfig:
        D = MetadataBatch,
        R = (),
        NodeId = NodeId,
        Node = BasicNode,
        Entry = Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

const SNAPSHOT_FILE: &str = "snapshot.json";

/// What a snapshot file holds.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    image: MetadataImage,
}

/// Applies committed batches to the image and publishes it.
pub struct StateMachine {
    dir: PathBuf,
    image: MetadataImage,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    current: Option<SnapshotFile>,
    publish: watch::Sender<Arc<MetadataImage>>,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

impl StateMachine {
    /// Opens the state machine, restoring the last snapshot in `dir` if there is one.
    pub fn open(dir: &Path, publish: watch::Sender<Arc<MetadataImage>>) -> std::io::Result<Self> {
        let mut sm = StateMachine {
            dir: dir.to_path_buf(),
            image: MetadataImage::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            current: None,
            publish,
        };
        match std::fs::read(dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => {
                let snap: SnapshotFile =
                    serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
                sm.restore(snap);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(sm)
    }

    fn restore(&mut self, snap: SnapshotFile) {
        self.image = snap.image.clone();
        self.last_applied = snap.meta.last_log_id;
        self.membership = snap.meta.last_membership.clone();
        self.current = Some(snap);
        self.publish.send_replace(Arc::new(self.image.clone()));
    }

    #[allow(clippy::result_large_err)] // openraft's error type, returned as openraft wants it
    fn snapshot_of(file: &SnapshotFile) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let bytes = serde_json::to_vec(file).map_err(sm_err)?;
        Ok(Snapshot {
            meta: file.meta.clone(),
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}", id.leader_id, id.index),
            None => "empty".to_owned(),
        };
        let file = SnapshotFile {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
                snapshot_id,
            },
            image: self.image.clone(),
        };
        let bytes = serde_json::to_vec(&file).map_err(sm_err)?;
        write_atomically(&self.dir.join(SNAPSHOT_FILE), &bytes).map_err(sm_err)?;
        let snap = Self::snapshot_of(&file)?;
        self.current = Some(file);
        Ok(snap)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    for r in &batch.records {
                        self.image.apply(r);
                    }
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            self.image.applied_index = entry.log_id.index;
            out.push(());
        }
        self.publish.send_replace(Arc::new(self.image.clone()));
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        StateMachine {
            dir: self.dir.clone(),
            image: self.image.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            current: None,
            publish: self.publish.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let mut file: SnapshotFile = serde_json::from_slice(&bytes).map_err(sm_err)?;
        file.meta = meta.clone();
        let bytes = serde_json::to_vec(&file).map_err(sm_err)?;
        write_atomically(&self.dir.join(SNAPSHOT_FILE), &bytes).map_err(sm_err)?;
        self.restore(file);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        self.current.as_ref().map(Self::snapshot_of).transpose()
    }
}

/// Transport between controller voters. See the module docs: not built yet, so every peer is
/// unreachable and only a single-voter quorum makes progress.
#[derive(Clone, Default)]
pub struct Network;

/// A client to one peer voter.
pub struct PeerClient {
    target: NodeId,
}

#[derive(Debug, thiserror::Error)]
#[error("no transport to controller {0}: multi-voter quorums are not supported yet")]
struct NoTransport(NodeId);

impl PeerClient {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&NoTransport(self.target)))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> PeerClient {
        PeerClient { target }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}
