//! DescribeCluster: the registered brokers, cluster id and active controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::s;
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    _req: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let image = broker.controller.image();
    let brokers = image
        .brokers
        .values()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.broker_id))
                .with_host(s(b.host.clone()))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.clone().map(s))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(s(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.controller.leader().unwrap_or(-1)))
        .with_brokers(brokers)
}
