//! Kafka API handlers, one file per API, and the dispatch table that decodes each request with
//! its version, calls its handler and encodes the response.
//!
//! Handlers turn every Kafka-level failure into an error code in the response; only a request
//! that cannot be decoded (or a response that cannot be encoded) fails the connection.

mod api_versions;
mod configs;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_groups;
mod describe_log_dirs;
mod describe_quorum;
mod describe_topic_partitions;
mod elect_leaders;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leader_hint;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod reassignments;
mod sync_group;
mod unregister_broker;
pub mod versions;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::server::{
    decode_body, encode_response, encode_spliced, ConnectionError, Reply, Request,
};

/// Serves one request; `None` when the protocol wants no response (Produce with acks=0).
pub async fn dispatch(broker: &Broker, mut req: Request) -> Result<Option<Reply>, ConnectionError> {
    let version = req.header.request_api_version;
    let correlation_id = req.header.correlation_id;
    let api = req.api;
    let s = versions::supported(api).ok_or(ConnectionError::UnsupportedVersion { api, version })?;
    if version < s.min || version > s.max {
        if api == ApiKey::ApiVersions {
            let resp = api_versions::unsupported();
            return encode_response(api, 0, correlation_id, &resp).map(Reply::some);
        }
        return Err(ConnectionError::UnsupportedVersion { api, version });
    }
    if api == ApiKey::Produce && version < versions::PRODUCE_MIN_ACCEPTED {
        return produce::unsupported_old_version(&mut req).map(Reply::some);
    }
    macro_rules! serve {
        ($ty:ty, $handler:path) => {{
            let body: $ty = decode_body(&mut req, version)?;
            let resp = $handler(broker, body, version).await;
            encode_response(api, version, correlation_id, &resp).map(Reply::some)
        }};
    }
    match api {
        ApiKey::ApiVersions => serve!(ApiVersionsRequest, api_versions::handle),
        ApiKey::Metadata => serve!(MetadataRequest, metadata::handle),
        ApiKey::CreateTopics => serve!(CreateTopicsRequest, create_topics::handle),
        ApiKey::DeleteTopics => serve!(DeleteTopicsRequest, delete_topics::handle),
        ApiKey::CreatePartitions => serve!(CreatePartitionsRequest, create_partitions::handle),
        ApiKey::DescribeCluster => serve!(DescribeClusterRequest, describe_cluster::handle),
        ApiKey::DescribeQuorum => serve!(DescribeQuorumRequest, describe_quorum::handle),
        ApiKey::DescribeLogDirs => serve!(DescribeLogDirsRequest, describe_log_dirs::handle),
        ApiKey::DescribeTopicPartitions => serve!(
            DescribeTopicPartitionsRequest,
            describe_topic_partitions::handle
        ),
        ApiKey::ElectLeaders => serve!(ElectLeadersRequest, elect_leaders::handle),
        ApiKey::AlterPartitionReassignments => {
            serve!(AlterPartitionReassignmentsRequest, reassignments::alter)
        }
        ApiKey::ListPartitionReassignments => {
            serve!(ListPartitionReassignmentsRequest, reassignments::list)
        }
        ApiKey::UnregisterBroker => serve!(UnregisterBrokerRequest, unregister_broker::handle),
        ApiKey::DescribeConfigs => serve!(DescribeConfigsRequest, configs::describe),
        ApiKey::AlterConfigs => serve!(AlterConfigsRequest, configs::alter),
        ApiKey::IncrementalAlterConfigs => {
            serve!(IncrementalAlterConfigsRequest, configs::incremental_alter)
        }
        ApiKey::ListOffsets => serve!(ListOffsetsRequest, list_offsets::handle),
        ApiKey::OffsetForLeaderEpoch => {
            serve!(OffsetForLeaderEpochRequest, offset_for_leader_epoch::handle)
        }
        ApiKey::DeleteRecords => serve!(DeleteRecordsRequest, delete_records::handle),
        ApiKey::Fetch => {
            let body: FetchRequest = decode_body(&mut req, version)?;
            let (resp, splices) = fetch::handle(broker, body, version).await;
            // Records are COMPACT_RECORDS from Fetch v12, the first flexible version.
            encode_spliced(api, version, correlation_id, &resp, version >= 12, splices).map(Some)
        }
        ApiKey::InitProducerId => serve!(InitProducerIdRequest, init_producer_id::handle),
        ApiKey::FindCoordinator => serve!(FindCoordinatorRequest, find_coordinator::handle),
        ApiKey::JoinGroup => {
            let body: JoinGroupRequest = decode_body(&mut req, version)?;
            let client_id = req.header.client_id.as_deref().unwrap_or("").to_owned();
            // Kafka reports the host as InetAddress.toString() does: "/<ip>".
            let client_host = req
                .peer
                .map_or_else(String::new, |p| format!("/{}", p.ip()));
            let resp = join_group::handle(broker, body, version, client_id, client_host).await;
            encode_response(api, version, correlation_id, &resp).map(Reply::some)
        }
        ApiKey::SyncGroup => serve!(SyncGroupRequest, sync_group::handle),
        ApiKey::Heartbeat => serve!(HeartbeatRequest, heartbeat::handle),
        ApiKey::LeaveGroup => serve!(LeaveGroupRequest, leave_group::handle),
        ApiKey::OffsetCommit => serve!(OffsetCommitRequest, offset_commit::handle),
        ApiKey::OffsetFetch => serve!(OffsetFetchRequest, offset_fetch::handle),
        ApiKey::OffsetDelete => serve!(OffsetDeleteRequest, offset_delete::handle),
        ApiKey::ListGroups => serve!(ListGroupsRequest, list_groups::handle),
        ApiKey::DescribeGroups => serve!(DescribeGroupsRequest, describe_groups::handle),
        ApiKey::DeleteGroups => serve!(DeleteGroupsRequest, delete_groups::handle),
        ApiKey::Produce => {
            let body: ProduceRequest = decode_body(&mut req, version)?;
            match produce::handle(broker, body, version).await {
                Some(resp) => encode_response(api, version, correlation_id, &resp).map(Reply::some),
                None => Ok(None),
            }
        }
        _ => Err(ConnectionError::UnsupportedVersion { api, version }),
    }
}

/// NOT_CONTROLLER's code: an answer with it means nothing was done (the channel retries).
pub(crate) const NOT_CONTROLLER: i16 = 41;

/// A Kafka string from a Rust one.
pub(crate) fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// A copy of request bytes that outlive the request (a group member's subscription or
/// assignment). Decoded fields are slices of the request's frame, and a slice keeps the whole
/// frame buffer alive: with frame buffers reused per connection (up to 8 MiB, `server`), a
/// kept slice would pin that buffer for as long as the group remembers it.
pub(crate) fn owned(b: bytes::Bytes) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(&b)
}

/// An error code and optional message from an `ApiError` result.
pub(crate) fn error_parts<T>(r: &Result<T, crate::metadata::ApiError>) -> (i16, Option<StrBytes>) {
    match r {
        Ok(_) => (0, None),
        Err(e) => (e.code.code(), Some(s(e.message.clone()))),
    }
}

#[cfg(test)]
mod owned_tests {
    use super::owned;

    #[test]
    fn kept_request_bytes_do_not_share_the_frame_buffer() {
        let frame = bytes::Bytes::from(vec![7u8; 1 << 20]);
        let field = frame.slice(100..164);
        let kept = owned(field.clone());
        assert_eq!(kept, field);
        let range = frame.as_ptr_range();
        assert!(!range.contains(&kept.as_ptr()));
    }
}
