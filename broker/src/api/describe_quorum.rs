//! DescribeQuorum (API 55) on the broker listener: forwarded to the active controller, which
//! reports every voter's log end and when it was last caught up (as Kafka's brokers forward
//! it since KIP-919).

use std::time::Duration;

use kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};

use super::s;
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    match broker
        .channel
        .call(version, req, Duration::from_secs(10))
        .await
    {
        Ok(resp) => resp,
        Err(e) => DescribeQuorumResponse::default()
            .with_error_code(e.code.code())
            .with_error_message(Some(s(e.message))),
    }
}
