//! DeleteRecords: moves a partition's log start offset forward (offset -1 means the high
//! watermark); whole segments below it are deleted by the log.

use std::sync::atomic::Ordering;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;
use tributary_log::Offset;

use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let mut topics = Vec::new();
    for t in req.topics {
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let base = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let r = match broker.replicas.get(&t.name.0, p.partition_index) {
                None => base.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                Some(part) if part.leader.load(Ordering::Acquire) != broker.config.node_id => {
                    base.with_error_code(ResponseError::NotLeaderOrFollower.code())
                }
                Some(part) => {
                    let requested = p.offset;
                    let done = tokio::task::spawn_blocking(move || {
                        let hw = part.hw();
                        let target = if requested == -1 {
                            hw
                        } else {
                            Offset(requested)
                        };
                        if target.0 < 0 || target > hw {
                            return Err(ResponseError::OffsetOutOfRange);
                        }
                        let (low, files) = {
                            let mut log = part.log.write().expect("log lock poisoned");
                            (log.delete_records_before(target), log.take_deleted_files())
                        };
                        // Outside the lock: appends do not wait for the blocks to be freed.
                        if let Err(e) = files.remove() {
                            tracing::warn!(error = %e, "removing deleted segment files failed");
                        }
                        low.map_err(|e| {
                            ResponseError::try_from_code(e.kafka_error_code())
                                .unwrap_or(ResponseError::UnknownServerError)
                        })
                    })
                    .await;
                    match done {
                        Ok(Ok(low)) => base.with_low_watermark(low.0),
                        Ok(Err(code)) => base.with_error_code(code.code()),
                        Err(_) => base.with_error_code(ResponseError::UnknownServerError.code()),
                    }
                }
            };
            partitions.push(r);
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    broker.replicas.checkpoint();
    DeleteRecordsResponse::default().with_topics(topics)
}
