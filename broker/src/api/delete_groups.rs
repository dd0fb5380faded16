//! DeleteGroups (v0–2): removes empty groups and their offsets (NON_EMPTY_GROUP otherwise).

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};

use super::s;
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let ids = req
        .groups_names
        .into_iter()
        .map(|g| g.0.to_string())
        .collect();
    let results = broker
        .groups
        .delete_groups(ids)
        .await
        .into_iter()
        .map(|(id, r)| {
            DeletableGroupResult::default()
                .with_group_id(GroupId(s(id)))
                .with_error_code(r.err().map_or(0, |e| e.code()))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
