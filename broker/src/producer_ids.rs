//! Producer ids for idempotent producers: handed out one at a time from blocks that the
//! controller allocates through the metadata log, so an id is never reused, across restarts and
//! brokers.

use std::ops::Range;

use tokio::sync::Mutex;

use crate::metadata::{ApiError, Controller};

/// How many ids one controller round trip reserves (Kafka uses 1000 too).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// This broker's current block of producer ids.
#[derive(Default)]
pub struct ProducerIdManager {
    block: Mutex<Range<i64>>,
}

impl ProducerIdManager {
    /// The next unused producer id, fetching a new block from the controller when needed.
    pub async fn next(&self, controller: &Controller, broker_id: i32) -> Result<i64, ApiError> {
        let mut block = self.block.lock().await;
        if block.is_empty() {
            *block = controller
                .allocate_producer_ids(broker_id, PRODUCER_ID_BLOCK_SIZE)
                .await?;
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
