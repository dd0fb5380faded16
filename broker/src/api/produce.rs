//! Produce: validates and appends record batches (kept as wire bytes) to partition logs.
//!
//! acks=0 gets no response; acks=1 and acks=all complete once the batch is in the leader's log
//! and, for acks=all, the ISR holds at least `min.insync.replicas` replicas. With replication
//! factor 1 the leader is the whole ISR, so the high watermark moves with every append.

use std::sync::atomic::Ordering;
use std::sync::RwLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use tributary_log::{Log, LogError};

use super::leader_hint::{self, LeaderHints};
use super::s;
use crate::broker::{now_ms, Broker};
use crate::replica::Partition;
use crate::server::slow::{self, Phase};
use crate::server::{ConnectionError, Request};

const ACKS_NONE: i16 = 0;
const ACKS_LEADER: i16 = 1;
const ACKS_ALL: i16 = -1;

pub(super) async fn handle(
    broker: &Broker,
    req: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
    let mut responses = Vec::with_capacity(req.topic_data.len());
    if broker.config.auto_create_topics {
        let image = broker.metadata.image();
        let missing = req
            .topic_data
            .iter()
            .map(|t| t.name.0.to_string())
            .filter(|n| {
                !image.topics.contains_key(n)
                    && crate::metadata::controller::placement::topic_name(n).is_ok()
            })
            .collect();
        broker.auto_create_topics(missing).await;
    }
    let image = broker.metadata.image();
    let mut hints = LeaderHints::new(image.clone());
    for t in req.topic_data {
        let name = if version >= 13 {
            image
                .topic_by_id(&t.topic_id)
                .map(|t| t.name.clone())
                .unwrap_or_default()
        } else {
            t.name.0.to_string()
        };
        let mut partitions = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let mut r = append(broker, &name, p.index, req.acks, req.timeout_ms, p.records).await;
            if version >= 10 && LeaderHints::wanted(r.error_code) {
                if let Some((leader, epoch)) = hints.leader(&name, p.index) {
                    r = r.with_current_leader(
                        LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(leader))
                            .with_leader_epoch(epoch),
                    );
                }
            }
            partitions.push(r.with_index(p.index));
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partition_responses(partitions),
        );
    }
    if req.acks == ACKS_NONE {
        return None;
    }
    let endpoints = hints
        .endpoints()
        .map(|b| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(b.broker_id))
                .with_host(s(b.host.clone()))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.clone().map(s))
        })
        .collect();
    Some(
        ProduceResponse::default()
            .with_responses(responses)
            .with_node_endpoints(endpoints),
    )
}

fn failed(code: ResponseError, message: impl Into<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_error_code(code.code())
        .with_error_message(Some(s(message.into())))
        .with_base_offset(-1)
}

async fn append(
    broker: &Broker,
    topic: &str,
    partition: i32,
    acks: i16,
    timeout_ms: i32,
    records: Option<Bytes>,
) -> PartitionProduceResponse {
    if !matches!(acks, ACKS_NONE | ACKS_LEADER | ACKS_ALL) {
        return failed(
            ResponseError::InvalidRequiredAcks,
            format!("acks must be -1, 0 or 1, not {acks}"),
        );
    }
    let Some(part) = broker.replicas.get(topic, partition) else {
        return failed(
            leader_hint::not_hosted(&broker.metadata.image(), topic, partition),
            format!("{topic}-{partition} is not hosted here"),
        );
    };
    if part.leader.load(Ordering::Acquire) != broker.config.node_id {
        return failed(
            ResponseError::NotLeaderOrFollower,
            format!("this broker does not lead {topic}-{partition}"),
        );
    }
    let isr_len = part.isr_len.load(Ordering::Acquire);
    let min_isr = part.min_insync_replicas.load(Ordering::Acquire);
    if acks == ACKS_ALL && isr_len < min_isr {
        return failed(
            ResponseError::NotEnoughReplicas,
            format!("{topic}-{partition} has {isr_len} in-sync replicas, min.insync.replicas is {min_isr}"),
        );
    }
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return failed(
            ResponseError::CorruptMessage,
            "produce request carries no records",
        );
    };
    // The request's bytes are appended as they are: patched headers are written beside them.
    let buf = records.clone();
    let epoch = part.leader_epoch.load(Ordering::Acquire);
    let node_id = broker.config.node_id;
    // A small append that only writes into the page cache is done on this task when the log is
    // free: the hand-off to the blocking pool and back costs two thread wake-ups, more than the
    // write. Anything that may wait (a roll's new files, a new epoch's checkpoint, a configured
    // flush, a busy log, a compacted topic's key check) goes to the blocking pool.
    let inline = slow::timed(Phase::Local, async {
        append_inline(&part, &buf, epoch, node_id)
    })
    .await;
    let result = match inline {
        Some(done) => {
            broker
                .metrics
                .appends_inline
                .fetch_add(1, Ordering::Relaxed);
            Ok(done)
        }
        None => {
            broker.metrics.appends_pool.fetch_add(1, Ordering::Relaxed);
            let appender = part.clone();
            let append = tokio::task::spawn_blocking(move || {
                let log = &appender.log;
                if let Err((e, keyless)) = check_keys_if_compacted(log, &buf) {
                    return Appended::Refused(e, keyless);
                }
                let mut log = log.write().expect("log lock poisoned");
                append_locked(&appender, &mut log, &buf, epoch, node_id, now_ms())
            });
            slow::timed(Phase::Local, append).await
        }
    };
    let (info, log_start) = match result {
        Ok(Appended::Ok(info, leo, log_start)) => {
            broker.metrics.log_dir_written(true);
            if info.duplicate {
                // An idempotent producer's retry of a batch already stored: answered with the
                // original offsets, once they are committed like any other acks=all append.
                tracing::debug!(
                    topic,
                    partition,
                    base_offset = info.first_offset.0,
                    "duplicate batch"
                );
            } else {
                // With the leader alone in the ISR this commits the append at once.
                part.after_local_append(leo);
                part.notify();
            }
            (info, log_start)
        }
        Ok(Appended::Deposed) => {
            return failed(
                ResponseError::NotLeaderOrFollower,
                format!("this broker no longer leads {topic}-{partition}"),
            );
        }
        Ok(Appended::Refused(e, keyless)) => {
            if e.kafka_error_code() == tributary_log::codes::KAFKA_STORAGE_ERROR {
                broker.metrics.log_dir_written(false);
            }
            tracing::debug!(topic, partition, error = %e, "append refused");
            let code = ResponseError::try_from_code(e.kafka_error_code())
                .unwrap_or(ResponseError::UnknownServerError);
            // Produce v8+ names the records that refused the batch (older versions drop the
            // field when encoding).
            let record_errors = keyless
                .into_iter()
                .map(|i| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(i)
                        .with_batch_index_error_message(Some(s(KEYLESS.to_owned())))
                })
                .collect();
            return failed(code, e.to_string()).with_record_errors(record_errors);
        }
        Err(e) => {
            return failed(
                ResponseError::UnknownServerError,
                format!("append task failed: {e}"),
            )
        }
    };
    if acks == ACKS_ALL {
        // A delayed produce: done when the high watermark passes the batch (every ISR member
        // has it) while this broker still leads in the batch's epoch, or REQUEST_TIMED_OUT after
        // the request's timeout.
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
        let end = tributary_log::Offset(info.last_offset.0 + 1);
        match slow::timed(Phase::Remote, part.wait_hw(end, node_id, epoch, deadline)).await {
            crate::replica::HwWait::Reached => {}
            // Leadership moved while waiting: the client retries on the new leader (its
            // idempotent retry is recognised there if the batch was replicated).
            crate::replica::HwWait::NotLeader => {
                return failed(
                    ResponseError::NotLeaderOrFollower,
                    format!("{topic}-{partition}: leadership moved before the batch was committed"),
                );
            }
            crate::replica::HwWait::TimedOut => {
                return failed(
                    ResponseError::RequestTimedOut,
                    format!(
                        "{topic}-{partition}: not replicated to the in-sync replicas within {timeout_ms} ms"
                    ),
                );
            }
        }
    }
    if !info.duplicate {
        broker
            .metrics
            .bytes_in
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        broker
            .metrics
            .messages_in
            .fetch_add(info.records, Ordering::Relaxed);
    }
    PartitionProduceResponse::default()
        .with_base_offset(info.first_offset.0)
        .with_log_append_time_ms(info.log_append_time.unwrap_or(-1))
        .with_log_start_offset(log_start.0)
}

/// Appends at most this many bytes on the request's task ([`append_inline`]): librdkafka's
/// default `batch.size` and the Java producer's `max.request.size`, so a client's usual batch
/// qualifies. At the measured 0.4 broker CPU-s per GB of produce, a 1 MiB append holds the
/// runtime thread for about 0.4 ms (docs/benchmarks.md, issue 13).
const INLINE_APPEND_MAX_BYTES: usize = 1024 * 1024;

/// The append done on the request's own task, or `None` when it belongs on the blocking pool:
/// too large, the log busy (another append, a reader, the cleaner's swap), a compacted topic
/// (its key check reads the records), or an append that would do more than write into the
/// active segment's pages ([`Log::append_stays_in_page_cache`]).
fn append_inline(part: &Partition, buf: &[u8], epoch: i32, node_id: i32) -> Option<Appended> {
    if buf.len() > INLINE_APPEND_MAX_BYTES {
        return None;
    }
    let mut log = part.log.try_write().ok()?;
    let now = now_ms();
    if log.config().compact || !log.append_stays_in_page_cache(buf.len() as u64, epoch, now) {
        return None;
    }
    Some(append_locked(part, &mut log, buf, epoch, node_id, now))
}

/// Appends a produce request's batches to the partition's log, whose write lock the caller
/// holds.
fn append_locked(
    part: &Partition,
    log: &mut Log,
    buf: &[u8],
    epoch: i32,
    node_id: i32,
    now: i64,
) -> Appended {
    // Still the leader, in the epoch the batch is stamped with, now that the log is ours:
    // metadata stores a new leader before the follower side touches the log, so a broker
    // demoted since the produce was checked appends nothing.
    if !part.leads_in(node_id, epoch) {
        return Appended::Deposed;
    }
    // The append itself applies flush.messages / flush.ms; by default the OS decides
    // (durability comes from replication, as in Kafka).
    match log.append_produced(buf, epoch, now) {
        Ok(info) => Appended::Ok(info, log.log_end_offset(), log.log_start_offset()),
        Err(e) => Appended::Refused(e, Vec::new()),
    }
}

/// How a produce append ended.
enum Appended {
    Ok(
        tributary_log::AppendInfo,
        tributary_log::Offset,
        tributary_log::Offset,
    ),
    Refused(LogError, Vec<i32>),
    /// This broker stopped leading the partition before the append.
    Deposed,
}

const KEYLESS: &str = "compacted topic cannot accept a record without a key";

/// A compacted topic refuses records without a key (INVALID_RECORD, nothing appended, the
/// keyless records' indexes in the batch returned), as Kafka does. Only compacted topics pay
/// for reading (and decompressing) the records.
fn check_keys_if_compacted(log: &RwLock<Log>, records: &[u8]) -> Result<(), (LogError, Vec<i32>)> {
    if !log.read().expect("log lock poisoned").config().compact {
        return Ok(());
    }
    let invalid = |reason: String| LogError::InvalidRecord {
        position: 0,
        reason,
    };
    match tributary_log::records::keyless_records(records) {
        Ok(keyless) if keyless.is_empty() => Ok(()),
        Ok(keyless) => Err((
            invalid(format!("{KEYLESS} ({} of them)", keyless.len())),
            keyless,
        )),
        Err(e) => Err((invalid(format!("records cannot be read: {e}")), Vec::new())),
    }
}

/// Produce v0–2 are advertised (as Kafka does for old librdkafka) but not served: answer every
/// partition with UNSUPPORTED_VERSION in the old layout, which the crate cannot encode.
pub(super) fn unsupported_old_version(req: &mut Request) -> Result<Bytes, ConnectionError> {
    let version = req.header.request_api_version;
    let malformed = |what: &str| ConnectionError::Malformed {
        api: req.api,
        version,
        source: anyhow::anyhow!("truncated produce v{version} request ({what})"),
    };
    let mut b = req.body.clone();
    let need = |b: &Bytes, n: usize| if b.remaining() >= n { Ok(()) } else { Err(()) };
    let mut out = BytesMut::new();
    out.put_i32(0);
    out.put_i32(req.header.correlation_id);
    need(&b, 6).map_err(|()| malformed("acks"))?;
    let _acks = b.get_i16();
    let _timeout = b.get_i32();
    need(&b, 4).map_err(|()| malformed("topics"))?;
    let topics = b.get_i32().max(0);
    out.put_i32(topics);
    for _ in 0..topics {
        need(&b, 2).map_err(|()| malformed("topic"))?;
        let len = usize::try_from(b.get_i16().max(0)).unwrap_or(0);
        need(&b, len + 4).map_err(|()| malformed("topic"))?;
        let name = b.copy_to_bytes(len);
        out.put_i16(len as i16);
        out.put_slice(&name);
        let parts = b.get_i32().max(0);
        out.put_i32(parts);
        for _ in 0..parts {
            need(&b, 8).map_err(|()| malformed("partition"))?;
            let index = b.get_i32();
            let size = usize::try_from(b.get_i32().max(0)).unwrap_or(0);
            need(&b, size).map_err(|()| malformed("records"))?;
            b.advance(size);
            out.put_i32(index);
            out.put_i16(ResponseError::UnsupportedVersion.code());
            out.put_i64(-1);
            if version >= 2 {
                out.put_i64(-1);
            }
        }
    }
    if version >= 1 {
        out.put_i32(0);
    }
    let len = i32::try_from(out.len() - 4).unwrap_or(i32::MAX);
    out[..4].copy_from_slice(&len.to_be_bytes());
    tracing::info!(version, "refused produce request of a removed version");
    Ok(out.freeze())
}
