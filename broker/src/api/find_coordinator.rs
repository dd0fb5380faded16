//! FindCoordinator (v0–6, key type group; batched keys from v4; v6's share-group key type is
//! refused with INVALID_REQUEST like the transaction key type): the coordinator of a group
//! is the leader of partition `abs(javaHash(group.id)) % partitions` of `__consumer_offsets`,
//! which is created on first use.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::ResponseError;

use super::s;
use crate::broker::Broker;
use crate::group::{partition_for, OFFSETS_TOPIC};

const KEY_TYPE_GROUP: i8 = 0;

/// (node id, host, port) of the key's coordinator.
async fn find(
    broker: &Broker,
    key: &str,
    key_type: i8,
) -> Result<(i32, String, i32), ResponseError> {
    if key_type != KEY_TYPE_GROUP {
        return Err(ResponseError::InvalidRequest);
    }
    if key.is_empty() {
        return Err(ResponseError::InvalidRequest);
    }
    let n = crate::group::storage::ensure_offsets_topic(broker)
        .await
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let image = broker.metadata.image();
    let p = partition_for(key, n);
    let leader = image
        .topics
        .get(OFFSETS_TOPIC)
        .and_then(|t| t.partitions.get(&p))
        .map(|p| p.leader)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let reg = image
        .brokers
        .get(&leader)
        .filter(|b| !b.fenced)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    Ok((leader, reg.host.clone(), i32::from(reg.port)))
}

pub(super) async fn handle(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let mut coordinators = Vec::new();
        for key in req.coordinator_keys {
            let c = Coordinator::default().with_key(key.clone());
            coordinators.push(match find(broker, &key, req.key_type).await {
                Ok((id, host, port)) => {
                    c.with_node_id(id.into()).with_host(s(host)).with_port(port)
                }
                Err(e) => c
                    .with_node_id((-1).into())
                    .with_port(-1)
                    .with_error_code(e.code())
                    .with_error_message(Some(s(e.to_string()))),
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let key_type = if version >= 1 {
        req.key_type
    } else {
        KEY_TYPE_GROUP
    };
    let resp = FindCoordinatorResponse::default();
    match find(broker, &req.key, key_type).await {
        Ok((id, host, port)) => resp
            .with_node_id(id.into())
            .with_host(s(host))
            .with_port(port),
        Err(e) => {
            let resp = resp
                .with_node_id((-1).into())
                .with_port(-1)
                .with_error_code(e.code());
            if version >= 1 {
                resp.with_error_message(Some(s(e.to_string())))
            } else {
                resp
            }
        }
    }
}
