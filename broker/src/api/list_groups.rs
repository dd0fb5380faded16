//! ListGroups (v0–5): the groups this broker coordinates, filtered by state (v4+) and type
//! (v5; every group here is "classic").

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::s;
use crate::broker::Broker;

const CLASSIC: &str = "classic";

pub(super) async fn handle(
    broker: &Broker,
    req: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_string()).collect();
    let types_ok = req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case(CLASSIC));
    let listed = match broker.groups.list_groups(&states) {
        Ok(l) => l,
        Err(e) => return ListGroupsResponse::default().with_error_code(e.code()),
    };
    let groups = listed
        .into_iter()
        .filter(|_| types_ok)
        .map(|(id, protocol_type, state)| {
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(s(id)))
                .with_protocol_type(s(protocol_type));
            if version >= 4 {
                g = g.with_group_state(s(state));
            }
            if version >= 5 {
                g = g.with_group_type(s(CLASSIC));
            }
            g
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
