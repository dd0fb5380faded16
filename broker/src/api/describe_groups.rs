//! DescribeGroups (v0–6): state, protocol and members (with metadata and assignment when
//! Stable) of each group; from v6 (KIP-1043) an error comes with its message.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::s;
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let d = match broker.groups.describe_group(&id.0) {
                Ok(d) => d,
                Err(e) => {
                    let failed = DescribedGroup::default()
                        .with_group_id(id)
                        .with_error_code(e.code());
                    return if version >= 6 {
                        failed.with_error_message(Some(s(e.to_string())))
                    } else {
                        failed
                    };
                }
            };
            let members = d
                .members
                .into_iter()
                .map(|(member, instance, client, host, md, asg)| {
                    let m = DescribedGroupMember::default()
                        .with_member_id(s(member))
                        .with_client_id(s(client))
                        .with_client_host(s(host))
                        .with_member_metadata(md)
                        .with_member_assignment(asg);
                    if version >= 4 {
                        m.with_group_instance_id(instance.map(s))
                    } else {
                        m
                    }
                })
                .collect();
            DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(s(d.state))
                .with_protocol_type(s(d.protocol_type))
                .with_protocol_data(s(d.protocol))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
