//! InitProducerId for idempotent producers: a fresh producer id with epoch 0 from this
//! broker's block (see `producer_ids`). Transactional producers need a transaction coordinator,
//! which does not exist yet: they get COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let failed = |code: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        return failed(ResponseError::CoordinatorNotAvailable);
    }
    // Like Kafka, a non-transactional producer always gets a new id (epoch 0), whether or not
    // it presents its previous id and epoch (KIP-360 bumps apply to transactional ids).
    match broker
        .producer_ids
        .next(&broker.channel, broker.config.node_id)
        .await
    {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e.message, "producer id allocation failed");
            failed(e.code)
        }
    }
}
