//! LeaveGroup (v0–5): one member (v0–2) or a batch identified by member or instance id (v3+).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                let instance = m.group_instance_id.as_ref().map(|i| i.to_string());
                (m.member_id.to_string(), instance)
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let results = match broker.groups.leave(&req.group_id.0, members).await {
        Ok(r) => r,
        Err(e) => return LeaveGroupResponse::default().with_error_code(e.code()),
    };
    let code = |r: &Result<(), kafka_protocol::ResponseError>| r.err().map_or(0, |e| e.code());
    if version < 3 {
        return LeaveGroupResponse::default().with_error_code(results.first().map_or(0, code));
    }
    let members = req
        .members
        .into_iter()
        .zip(&results)
        .map(|(m, r)| {
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(code(r))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}
