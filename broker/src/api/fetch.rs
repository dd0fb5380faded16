//! Fetch for consumers: whole batches from the log below the high watermark, with long polling
//! (`max_wait_ms` / `min_bytes`), response and partition byte limits, and KIP-74's "at least one
//! batch" rule. Fetch sessions are not kept: every response has session id 0, which tells the
//! client to send full requests (KIP-227). Follower fetches (replica id ≥ 0) are refused until
//! replication exists.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;
use tributary_log::{LogError, Offset};

use super::s;
use crate::broker::Broker;
use crate::replica::Partition;

/// What one partition of the request asks for, resolved against the image.
struct Wanted {
    topic: String,
    topic_id: uuid::Uuid,
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
    hosted: Option<Arc<Partition>>,
    /// Error for a partition that cannot be read at all.
    error: Option<ResponseError>,
}

pub(super) async fn handle(broker: &Broker, req: FetchRequest, version: i16) -> FetchResponse {
    if req.replica_id.0 >= 0 || req.replica_state.replica_id.0 >= 0 {
        return FetchResponse::default().with_error_code(ResponseError::NotLeaderOrFollower.code());
    }
    let wanted = resolve(broker, &req, version);
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0));
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let max_bytes = usize::try_from(req.max_bytes).unwrap_or(usize::MAX);
    let mut appends = broker.replicas.appends();
    loop {
        appends.borrow_and_update();
        let (parts, total, any_error) = read_all(&wanted, max_bytes).await;
        let done =
            total >= min_bytes.max(1) || any_error || tokio::time::Instant::now() >= deadline;
        if done {
            broker
                .metrics
                .bytes_out
                .fetch_add(total as u64, Ordering::Relaxed);
            return respond(wanted, parts);
        }
        // Wait for an append (or the deadline), then read again.
        if tokio::time::timeout_at(deadline, appends.changed())
            .await
            .is_err()
        {
            let (parts, total, _) = read_all(&wanted, max_bytes).await;
            broker
                .metrics
                .bytes_out
                .fetch_add(total as u64, Ordering::Relaxed);
            return respond(wanted, parts);
        }
    }
}

fn resolve(broker: &Broker, req: &FetchRequest, version: i16) -> Vec<Wanted> {
    let image = broker.controller.image();
    let mut out = Vec::new();
    for t in &req.topics {
        let (topic, topic_id) = if version >= 13 {
            match image.topic_by_id(&t.topic_id) {
                Some(topic) => (topic.name.clone(), t.topic_id),
                None => (String::new(), t.topic_id),
            }
        } else {
            let name = t.topic.0.to_string();
            let id = image
                .topics
                .get(&name)
                .map_or(uuid::Uuid::nil(), |x| x.topic_id);
            (name, id)
        };
        for p in &t.partitions {
            let hosted = broker.replicas.get(&topic, p.partition);
            let error = match &hosted {
                None if version >= 13 && topic.is_empty() => Some(ResponseError::UnknownTopicId),
                None => Some(ResponseError::UnknownTopicOrPartition),
                Some(h) if h.leader.load(Ordering::Acquire) != broker.config.node_id => {
                    Some(ResponseError::NotLeaderOrFollower)
                }
                Some(h) => check_epoch(
                    p.current_leader_epoch,
                    h.leader_epoch.load(Ordering::Acquire),
                ),
            };
            out.push(Wanted {
                topic: topic.clone(),
                topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                hosted,
                error,
            });
        }
    }
    out
}

/// KIP-320: a request naming a leader epoch must match ours.
fn check_epoch(requested: i32, ours: i32) -> Option<ResponseError> {
    match requested {
        -1 => None,
        r if r < ours => Some(ResponseError::FencedLeaderEpoch),
        r if r > ours => Some(ResponseError::UnknownLeaderEpoch),
        _ => None,
    }
}

/// Per partition: error code, high watermark, log start offset, records.
type Read = (i16, i64, i64, Option<Bytes>);

async fn read_all(wanted: &[Wanted], max_bytes: usize) -> (Vec<Read>, usize, bool) {
    let jobs: Vec<_> = wanted
        .iter()
        .map(|w| (w.hosted.clone(), w.error, w.fetch_offset, w.max_bytes))
        .collect();
    let result = tokio::task::spawn_blocking(move || {
        let mut total = 0usize;
        let mut any_error = false;
        let mut out = Vec::with_capacity(jobs.len());
        for (hosted, error, offset, part_max) in jobs {
            let (Some(part), None) = (hosted, error) else {
                any_error = true;
                out.push((error.map_or(0, |e| e.code()), -1, -1, None));
                continue;
            };
            let hw = part.hw();
            let log = part.log.read().expect("log lock poisoned");
            let budget = part_max.min(max_bytes.saturating_sub(total));
            match log.read(Offset(offset), budget, hw, total == 0) {
                Ok(r) => {
                    total += r.records.len();
                    out.push((
                        0,
                        hw.0,
                        log.log_start_offset().0,
                        Some(Bytes::from(r.records)),
                    ));
                }
                Err(LogError::OffsetOutOfRange { log_start, .. })
                    if offset <= hw.0 && offset >= log_start.0 =>
                {
                    // Between the high watermark and the log end: nothing visible yet.
                    out.push((0, hw.0, log_start.0, Some(Bytes::new())));
                }
                Err(e) => {
                    any_error = true;
                    out.push((e.kafka_error_code(), hw.0, log.log_start_offset().0, None));
                }
            }
        }
        (out, total, any_error)
    })
    .await;
    result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "fetch read task failed");
        (Vec::new(), 0, true)
    })
}

fn respond(wanted: Vec<Wanted>, parts: Vec<Read>) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (w, (code, hw, log_start, records)) in wanted.into_iter().zip(parts) {
        let data = PartitionData::default()
            .with_partition_index(w.partition)
            .with_error_code(code)
            .with_high_watermark(hw)
            .with_last_stable_offset(hw)
            .with_log_start_offset(log_start)
            .with_records(records.or(Some(Bytes::new())));
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == w.topic && t.topic_id == w.topic_id => {
                t.partitions.push(data)
            }
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(s(w.topic)))
                    .with_topic_id(w.topic_id)
                    .with_partitions(vec![data]),
            ),
        }
    }
    FetchResponse::default()
        .with_session_id(0)
        .with_responses(topics)
}
