//! Heartbeat (v0–4): keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: HeartbeatRequest,
    version: i16,
) -> HeartbeatResponse {
    let instance = req.group_instance_id.filter(|_| version >= 3);
    let r = broker.groups.heartbeat(
        &req.group_id.0,
        &req.member_id,
        instance.as_deref(),
        req.generation_id,
    );
    HeartbeatResponse::default().with_error_code(r.err().map_or(0, |e| e.code()))
}
