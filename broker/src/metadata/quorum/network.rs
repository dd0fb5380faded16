//! openraft's transport between controller voters: each RPC is a private request (JSON body)
//! on the peer's controller listener (see `metadata::rpc`). One connection per peer and
//! replication stream, one request at a time, each bounded by openraft's time-to-live; a
//! failed request drops the connection and the next one reconnects.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::state_machine::{NodeId, TypeConfig};
use crate::metadata::rpc::{Conn, RpcError, RAFT_APPEND, RAFT_SNAPSHOT, RAFT_VOTE};

/// Connect timeout to a peer voter.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Creates a client per peer voter, addressed by its `controller.quorum.voters` entry (the
/// configuration, not the address stored in the Raft membership, decides where a voter is).
#[derive(Clone, Default)]
pub struct Network {
    voters: std::collections::BTreeMap<NodeId, String>,
}

impl Network {
    /// A transport to the configured voters.
    pub fn new(voters: &[(i32, String)]) -> Network {
        Network {
            voters: voters
                .iter()
                .map(|(id, a)| (super::node_id(*id), a.clone()))
                .collect(),
        }
    }
}

/// A client to one peer voter.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    conn: Option<Conn>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: self
                .voters
                .get(&target)
                .cloned()
                .unwrap_or_else(|| node.addr.clone()),
            conn: None,
        }
    }
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        key: i16,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let result = self
            .try_call::<Req, Result<Resp, RaftError<NodeId, E>>>(key, req, ttl)
            .await;
        match result {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(openraft::error::RemoteError::new(
                self.target,
                remote,
            ))),
            Err(e) => {
                self.conn = None;
                tracing::debug!(peer = self.target, error = %e, "raft rpc failed");
                Err(match e {
                    RpcError::Connect { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                    other => RPCError::Network(NetworkError::new(&other)),
                })
            }
        }
    }

    async fn try_call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        key: i16,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RpcError> {
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => self
                .conn
                .insert(Conn::connect(&self.addr, CONNECT_TIMEOUT.min(ttl)).await?),
        };
        conn.call_json(key, req, ttl).await
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RAFT_APPEND, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(RAFT_SNAPSHOT, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(RAFT_VOTE, &rpc, option.hard_ttl()).await
    }
}
