//! SyncGroup (v0–5): the leader's assignment is stored and handed to each member untouched.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{owned, s};
use crate::broker::Broker;
use crate::group::state::SyncRequest;

pub(super) async fn handle(
    broker: &Broker,
    req: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let sync = SyncRequest {
        member_id: req.member_id.to_string(),
        instance_id: req
            .group_instance_id
            .filter(|_| version >= 3)
            .map(|i| i.to_string()),
        generation: req.generation_id,
        protocol_type: req
            .protocol_type
            .filter(|_| version >= 5)
            .map(|p| p.to_string()),
        protocol_name: req
            .protocol_name
            .filter(|_| version >= 5)
            .map(|p| p.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), owned(a.assignment)))
            .collect(),
    };
    let r = broker.groups.sync(&req.group_id.0, sync).await;
    let resp = SyncGroupResponse::default()
        .with_error_code(r.error.map_or(0, |e| e.code()))
        .with_assignment(r.assignment);
    if version >= 5 {
        resp.with_protocol_type(r.protocol_type.map(s))
            .with_protocol_name(r.protocol_name.map(s))
    } else {
        resp
    }
}
