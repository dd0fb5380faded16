//! Producer ids for idempotent producers: handed out one at a time from blocks that the
//! controller allocates through the metadata log, so an id is never reused, across restarts and
//! brokers.

use std::ops::Range;

use std::time::Duration;

use kafka_protocol::messages::{AllocateProducerIdsRequest, BrokerId};
use kafka_protocol::ResponseError;
use tokio::sync::Mutex;

use crate::metadata::channel::ControllerChannel;
use crate::metadata::controller::api::ALLOCATE_PRODUCER_IDS_VERSION;
use crate::metadata::ApiError;

/// How many ids one controller round trip reserves (Kafka uses 1000 too).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// This broker's current block of producer ids.
#[derive(Default)]
pub struct ProducerIdManager {
    block: Mutex<Range<i64>>,
}

impl ProducerIdManager {
    /// The next unused producer id, fetching a new block from the controller when needed.
    pub async fn next(&self, channel: &ControllerChannel, broker_id: i32) -> Result<i64, ApiError> {
        let mut block = self.block.lock().await;
        if block.is_empty() {
            let req = AllocateProducerIdsRequest::default().with_broker_id(BrokerId(broker_id));
            let resp = channel
                .call(ALLOCATE_PRODUCER_IDS_VERSION, req, Duration::from_secs(10))
                .await?;
            if resp.error_code != 0 {
                let code = ResponseError::try_from_code(resp.error_code)
                    .unwrap_or(ResponseError::UnknownServerError);
                return Err(ApiError::new(code, "producer id allocation refused"));
            }
            let start = resp.producer_id_start.0;
            *block = start..start + i64::from(resp.producer_id_len);
            tracing::info!(
                start = block.start,
                end = block.end,
                "allocated producer id block"
            );
        }
        let id = block.start;
        block.start += 1;
        Ok(id)
    }
}
