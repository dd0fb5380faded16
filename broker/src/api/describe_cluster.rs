//! DescribeCluster: the unfenced brokers (every registered one with `include_fenced_brokers`,
//! v2, each with its fenced state), the cluster id and the controller id clients are given.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::s;
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let image = broker.metadata.image();
    let with_fenced = version >= 2 && req.include_fenced_brokers;
    let brokers = image
        .brokers
        .values()
        .filter(|b| with_fenced || !b.fenced)
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.broker_id))
                .with_host(s(b.host.clone()))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.clone().map(s))
                .with_is_fenced(b.fenced)
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(s(broker.cluster_id()))
        .with_controller_id(BrokerId(broker.controller_id_for_clients()))
        .with_brokers(brokers)
}
