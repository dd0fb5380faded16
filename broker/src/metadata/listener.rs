//! The controller listener (`controller.listener.names`), on controller nodes: the Raft RPCs
//! between voters, the metadata fetches of brokers, and the Kafka APIs that brokers send to
//! the active controller (see `rpc` for the framing). Requests on one connection are served in
//! order. A malformed or oversized frame, or an API this listener does not serve, closes only
//! that connection, with a log line naming the peer and the reason.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::channel::ControllerApi;
use super::controller::QuorumController;
use super::follower::MetadataFollower;
use super::quorum::TypeConfig;
use super::rpc::{self, MetadataFetch, MAX_CONTROLLER_FRAME};
use crate::api::versions::{Supported, CONTROLLER_SUPPORTED};
use crate::config::BrokerConfig;
use crate::server::{self, decode_body, encode_response, frame, ConnectionError, Request};

/// What the listener serves with.
pub struct ControllerContext {
    pub controller: Arc<QuorumController>,
    pub follower: Arc<MetadataFollower>,
    pub config: BrokerConfig,
}

/// Why a controller-listener connection was closed.
#[derive(Debug, thiserror::Error)]
enum ListenerError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("malformed private request {key}: {reason}")]
    Private { key: i16, reason: String },
}

/// Accepts connections until `stop` flips.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ControllerContext>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tasks.spawn(connection(stream, peer, ctx.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "controller listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
        }
        while tasks.try_join_next().is_some() {}
    }
    tasks.abort_all();
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ControllerContext>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(64 * 1024, read);
    loop {
        let frame = tokio::select! {
            f = frame::read_frame(&mut read, MAX_CONTROLLER_FRAME) => f,
            _ = stop.changed() => return,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "controller listener: closing connection");
                return;
            }
        };
        let reply = match serve_one(&ctx, frame).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%peer, error = %e, cause = ?std::error::Error::source(&e).map(ToString::to_string), "controller listener: closing connection");
                return;
            }
        };
        if let Err(e) = write.write_all(&reply).await {
            tracing::debug!(%peer, error = %e, "controller listener: write failed");
            return;
        }
    }
}

async fn serve_one(ctx: &ControllerContext, frame: Bytes) -> Result<Bytes, ListenerError> {
    let key = frame
        .get(..2)
        .map_or(-1, |k| i16::from_be_bytes([k[0], k[1]]));
    if rpc::PRIVATE_KEYS.contains(&key) {
        return serve_private(ctx, frame).await;
    }
    let req = server::parse_header(frame)?;
    Ok(serve_kafka(ctx, req).await?)
}

async fn serve_private(ctx: &ControllerContext, frame: Bytes) -> Result<Bytes, ListenerError> {
    let (key, correlation, body) = rpc::parse_private(frame).ok_or(ListenerError::Private {
        key: -1,
        reason: "short header".into(),
    })?;
    let bad = |e: serde_json::Error| ListenerError::Private {
        key,
        reason: e.to_string(),
    };
    let raft = ctx.controller.quorum().raft();
    let encoded = match key {
        rpc::RAFT_VOTE => {
            let req: VoteRequest<u64> = serde_json::from_slice(&body).map_err(bad)?;
            rpc::private_response(correlation, &raft.vote(req).await)
        }
        rpc::RAFT_APPEND => {
            let req: AppendEntriesRequest<TypeConfig> =
                serde_json::from_slice(&body).map_err(bad)?;
            rpc::private_response(correlation, &raft.append_entries(req).await)
        }
        rpc::RAFT_SNAPSHOT => {
            let req: InstallSnapshotRequest<TypeConfig> =
                serde_json::from_slice(&body).map_err(bad)?;
            rpc::private_response(correlation, &raft.install_snapshot(req).await)
        }
        rpc::METADATA_FETCH => {
            let req: MetadataFetch = serde_json::from_slice(&body).map_err(bad)?;
            let answer = ctx
                .follower
                .serve_fetch(&req, ctx.controller.leader())
                .await;
            rpc::private_response(correlation, &answer)
        }
        other => {
            return Err(ListenerError::Private {
                key: other,
                reason: "unknown private api".into(),
            })
        }
    };
    encoded.map_err(|reason| ListenerError::Private { key, reason })
}

async fn serve_kafka(ctx: &ControllerContext, mut req: Request) -> Result<Bytes, ConnectionError> {
    let api = req.api;
    let version = req.header.request_api_version;
    let correlation_id = req.header.correlation_id;
    let s = CONTROLLER_SUPPORTED
        .iter()
        .find(|s| s.key == api)
        .filter(|s| version >= s.min && version <= s.max)
        .ok_or(ConnectionError::UnsupportedVersion { api, version })?;
    macro_rules! serve {
        ($ty:ty) => {{
            let body: $ty = decode_body(&mut req, version)?;
            let resp =
                <$ty as ControllerApi>::serve(&ctx.controller, &ctx.config, body, version).await;
            encode_response(api, version, correlation_id, &resp)
        }};
    }
    match s.key {
        ApiKey::ApiVersions => {
            let _: ApiVersionsRequest = decode_body(&mut req, version)?;
            encode_response(api, version, correlation_id, &api_versions())
        }
        ApiKey::BrokerRegistration => serve!(BrokerRegistrationRequest),
        ApiKey::BrokerHeartbeat => serve!(BrokerHeartbeatRequest),
        ApiKey::UnregisterBroker => serve!(UnregisterBrokerRequest),
        ApiKey::AllocateProducerIds => serve!(AllocateProducerIdsRequest),
        ApiKey::AlterPartition => serve!(AlterPartitionRequest),
        ApiKey::ElectLeaders => serve!(ElectLeadersRequest),
        ApiKey::AlterPartitionReassignments => serve!(AlterPartitionReassignmentsRequest),
        ApiKey::ListPartitionReassignments => serve!(ListPartitionReassignmentsRequest),
        ApiKey::DescribeQuorum => serve!(DescribeQuorumRequest),
        ApiKey::CreateTopics => serve!(CreateTopicsRequest),
        ApiKey::DeleteTopics => serve!(DeleteTopicsRequest),
        ApiKey::CreatePartitions => serve!(CreatePartitionsRequest),
        ApiKey::AlterConfigs => serve!(AlterConfigsRequest),
        ApiKey::IncrementalAlterConfigs => serve!(IncrementalAlterConfigsRequest),
        _ => Err(ConnectionError::UnsupportedVersion { api, version }),
    }
}

fn api_versions() -> ApiVersionsResponse {
    let keys = CONTROLLER_SUPPORTED
        .iter()
        .map(|s: &Supported| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.min)
                .with_max_version(s.max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(keys)
}

/// Binds the controller listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr).await?;
    tracing::info!(address = %l.local_addr()?, "controller listener bound");
    Ok(l)
}
