//! JoinGroup (v0–9): parked until the group's rebalance completes (see `group::coordinator`).

use std::time::Duration;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{owned, s};
use crate::broker::Broker;
use crate::group::state::JoinRequest;

/// A Kafka `*_ms` field as a duration (negative values become zero and are refused later).
pub(super) fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(super) async fn handle(
    broker: &Broker,
    req: JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> JoinGroupResponse {
    let instance_id = req
        .group_instance_id
        .filter(|_| version >= 5)
        .map(|i| i.to_string());
    // v0 has no rebalance timeout: the session timeout bounds the join phase.
    let rebalance_ms = if version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        require_known_member_id: version >= 4 && instance_id.is_none(),
        instance_id,
        client_id,
        client_host,
        session_timeout: millis(req.session_timeout_ms),
        rebalance_timeout: millis(rebalance_ms),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), owned(p.metadata)))
            .collect(),
        supports_skip_assignment: version >= 9,
    };
    let r = broker.groups.join(&req.group_id.0, join).await;
    let members = r
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let m = JoinGroupResponseMember::default()
                .with_member_id(s(id))
                .with_metadata(metadata);
            if version >= 5 {
                m.with_group_instance_id(instance.map(s))
            } else {
                m
            }
        })
        .collect();
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error.map_or(0, |e| e.code()))
        .with_generation_id(r.generation)
        .with_leader(s(r.leader))
        .with_member_id(s(r.member_id))
        .with_members(members);
    if version >= 7 {
        resp = resp
            .with_protocol_type(r.protocol_type.map(s))
            .with_protocol_name(r.protocol_name.map(s));
    } else {
        // Before v7 the protocol name is not nullable.
        resp = resp.with_protocol_name(Some(s(r.protocol_name.unwrap_or_default())));
    }
    if version >= 9 {
        resp = resp.with_skip_assignment(r.skip_assignment);
    }
    resp
}
