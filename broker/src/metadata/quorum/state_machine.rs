//! The quorum's state machine on openraft: the type configuration, and the state machine that
//! hands committed [`MetadataBatch`]es to the node's [`MetadataFollower`] (which owns the
//! image) and builds and installs snapshots of that image.
//!
//! Durability comes from the Raft log plus a snapshot file (`snapshot.json`, written
//! atomically). On start openraft replays the committed entries after the snapshot, so the
//! image after a restart equals the image before it. A snapshot lets openraft purge the log
//! before it, and is what a voter that was away too long receives.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomically_off_runtime;
use crate::metadata::follower::MetadataFollower;
use crate::metadata::image::MetadataImage;
use crate::metadata::records::MetadataRecord;

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

/// Hands committed batches to the follower, which applies and publishes them.
pub struct StateMachine {
    dir: PathBuf,
    follower: Arc<MetadataFollower>,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    current: Option<SnapshotFile>,
    /// In a snapshot builder: the image as of `last_applied`, taken when the builder was made
    /// (openraft builds snapshots in a task of its own while entries go on being applied).
    frozen: Option<Arc<MetadataImage>>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_snapshot(None, AnyError::new(&e)).into()
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

impl StateMachine {
    /// Opens the state machine, restoring the last snapshot in `dir` if there is one.
    pub fn open(dir: &Path, follower: Arc<MetadataFollower>) -> std::io::Result<Self> {
        let mut sm = StateMachine {
            dir: dir.to_path_buf(),
            follower,
            last_applied: None,
            membership: StoredMembership::default(),
            current: None,
            frozen: None,
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
        self.follower.reset(snap.image.clone());
        self.last_applied = snap.meta.last_log_id;
        self.membership = snap.meta.last_membership.clone();
        self.current = Some(snap);
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
            image: self
                .frozen
                .clone()
                .unwrap_or_else(|| self.follower.image())
                .as_ref()
                .clone(),
        };
        let bytes = serde_json::to_vec(&file).map_err(sm_err)?;
        write_atomically_off_runtime(self.dir.join(SNAPSHOT_FILE), bytes)
            .await
            .map_err(sm_err)?;
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
        let mut batches = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let records = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(batch) => batch.records,
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    Vec::new()
                }
            };
            batches.push((entry.log_id.index, Arc::new(records)));
            out.push(());
        }
        self.follower.apply(batches);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Entries are applied one call at a time, so the follower's image now is exactly
        // `last_applied`.
        StateMachine {
            dir: self.dir.clone(),
            follower: self.follower.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            current: None,
            frozen: Some(self.follower.image()),
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
        write_atomically_off_runtime(self.dir.join(SNAPSHOT_FILE), bytes)
            .await
            .map_err(sm_err)?;
        self.restore(file);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        // Snapshots are built by a separate builder (openraft's own task), which writes the
        // file; the file, not this instance's memory, is the current snapshot.
        match std::fs::read(self.dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(read_err)?;
                let snap = Self::snapshot_of(&file)?;
                self.current = Some(file);
                Ok(Some(snap))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.current.as_ref().map(Self::snapshot_of).transpose()
            }
            Err(e) => Err(read_err(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    #[tokio::test]
    async fn a_snapshot_built_by_the_builder_is_the_current_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let follower = Arc::new(MetadataFollower::default());
        let mut sm = StateMachine::open(dir.path(), follower.clone()).unwrap();
        assert!(sm.get_current_snapshot().await.unwrap().is_none());
        let entry = |index| Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(MetadataBatch {
                records: vec![MetadataRecord::ClusterId {
                    cluster_id: "c".into(),
                }],
            }),
        };
        sm.apply([entry(1), entry(2)]).await.unwrap();
        let mut builder = sm.get_snapshot_builder().await;
        // Entries applied after the builder was made are not in its snapshot.
        sm.apply([entry(3)]).await.unwrap();
        let built = builder.build_snapshot().await.unwrap();
        assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(2));
        let current = sm
            .get_current_snapshot()
            .await
            .unwrap()
            .expect("a snapshot");
        assert_eq!(current.meta.last_log_id.map(|l| l.index), Some(2));
        let file: SnapshotFile = serde_json::from_slice(current.snapshot.get_ref()).unwrap();
        assert_eq!(file.image.applied_index, 2);
        assert_eq!(file.image.cluster_id.as_deref(), Some("c"));
    }
}
