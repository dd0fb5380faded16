//! UnregisterBroker (API 64) on the broker listener: forwarded to the active controller, which
//! fences the broker (moving its leaderships) and removes its registration.

use std::time::Duration;

use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};

use super::s;
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: UnregisterBrokerRequest,
    version: i16,
) -> UnregisterBrokerResponse {
    match broker
        .channel
        .call(version, req, Duration::from_secs(10))
        .await
    {
        Ok(resp) => resp,
        Err(e) => UnregisterBrokerResponse::default()
            .with_error_code(e.code.code())
            .with_error_message(Some(s(e.message))),
    }
}
