//! DescribeLogDirs (API 35, v1–4): this broker's one log directory with the size of every hosted
//! partition's log (what a reassignment planner needs for bytes to move and progress), its
//! offset lag (high watermark minus log end, 0 unless the log is behind the partition's high
//! watermark), and the directory's filesystem total and usable bytes (v4, from statvfs). A
//! filesystem that cannot be read reports KAFKA_STORAGE_ERROR for the directory.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::ResponseError;

use super::s;
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: DescribeLogDirsRequest,
    _version: i16,
) -> DescribeLogDirsResponse {
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let hosted = broker.replicas.all();
    let dir = broker.config.log_dir.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
        for (tp, part) in hosted {
            let included = wanted.as_ref().is_none_or(|w| {
                w.iter()
                    .any(|(t, ps)| *t == tp.topic && ps.contains(&tp.partition))
            });
            if !included {
                continue;
            }
            let (size, leo) = {
                let log = part.log.read().expect("log lock poisoned");
                (log.size_bytes(), log.log_end_offset())
            };
            topics.entry(tp.topic.clone()).or_default().push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                    .with_offset_lag((part.hw().0 - leo.0).max(0))
                    .with_is_future_key(false),
            );
        }
        let space = rustix::fs::statvfs(&dir).map(|v| {
            let bytes =
                |blocks: u64| i64::try_from(blocks.saturating_mul(v.f_frsize)).unwrap_or(i64::MAX);
            (bytes(v.f_blocks), bytes(v.f_bavail))
        });
        (topics, space)
    })
    .await;
    let dir_name = broker.config.log_dir.display().to_string();
    let entry = DescribeLogDirsResult::default().with_log_dir(s(dir_name));
    let entry = match result {
        Ok((topics, Ok((total, usable)))) => entry
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, mut partitions)| {
                        partitions.sort_by_key(|p| p.partition_index);
                        DescribeLogDirsTopic::default()
                            .with_name(TopicName(s(name)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
            .with_total_bytes(total)
            .with_usable_bytes(usable),
        Ok((_, Err(e))) => {
            tracing::warn!(error = %e, "cannot read the log directory's filesystem");
            entry.with_error_code(ResponseError::KafkaStorageError.code())
        }
        Err(e) => {
            tracing::error!(error = %e, "describe log dirs task failed");
            entry.with_error_code(ResponseError::KafkaStorageError.code())
        }
    };
    DescribeLogDirsResponse::default().with_results(vec![entry])
}
