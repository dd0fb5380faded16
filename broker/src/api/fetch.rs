//! Fetch for consumers and followers: whole batches from the log, with long polling
//! (`max_wait_ms` / `min_bytes`), response and partition byte limits, and KIP-74's "at least one
//! batch" rule. Consumers read below the high watermark. A follower (replica id ≥ 0) reads up to
//! the log end; its fetch offset is its log end, which the partition's state machine records
//! (moving the high watermark); a follower whose last fetched epoch ends earlier in this
//! leader's log gets the diverging epoch instead of records (KIP-320), and truncates. Fetch
//! sessions are not kept: every response has session id 0, which tells the client to send full
//! requests (KIP-227).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;
use tributary_log::{FileRange, LogError, Offset};

use super::leader_hint::{self, LeaderHints};
use super::s;
use crate::broker::Broker;
use crate::replica::divergence::{self, EpochEndOffset};
use crate::replica::partition::LeaderEpoch;
use crate::replica::throttle::Throttles;
use crate::replica::Partition;
use crate::server::slow::{self, Phase};
use crate::server::Splice;

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
    /// A follower reads up to the log end, not the high watermark.
    follower: bool,
    /// A follower's log diverged: answer with this, read nothing.
    diverging: Option<EpochEndOffset>,
    /// A follower outside the ISR whose replication the leader throttles.
    throttled: bool,
}

/// Serves a fetch: the response, and the partitions whose records go out as segment-file
/// ranges (`sendfile`) in place of their markers.
pub(super) async fn handle(
    broker: &Broker,
    req: FetchRequest,
    version: i16,
) -> (FetchResponse, Vec<Splice>) {
    let replica = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let wanted = resolve(broker, &req, version, (replica >= 0).then_some(replica));
    let throttles = &broker.replicas.throttles;
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0));
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let max_bytes = usize::try_from(req.max_bytes).unwrap_or(usize::MAX);
    // Waits are keyed by partition: only a change to a partition this fetch reads wakes it.
    let mut changes: Vec<tokio::sync::watch::Receiver<u64>> = wanted
        .iter()
        .filter_map(|w| w.hosted.as_ref().map(|p| p.subscribe()))
        .collect();
    loop {
        for rx in &mut changes {
            rx.borrow_and_update();
        }
        let (parts, total, any_error) =
            slow::timed(Phase::Local, read_all(&wanted, max_bytes, throttles)).await;
        let done =
            total >= min_bytes.max(1) || any_error || tokio::time::Instant::now() >= deadline;
        if done {
            broker
                .metrics
                .bytes_out
                .fetch_add(total as u64, Ordering::Relaxed);
            return respond(broker, version, wanted, parts);
        }
        // Wait for a change to one of the partitions (or the deadline), then read again.
        let waited = slow::timed(
            Phase::Remote,
            tokio::time::timeout_at(deadline, any_changed(&mut changes)),
        )
        .await;
        if !matches!(waited, Ok(true)) {
            let (parts, total, _) =
                slow::timed(Phase::Local, read_all(&wanted, max_bytes, throttles)).await;
            broker
                .metrics
                .bytes_out
                .fetch_add(total as u64, Ordering::Relaxed);
            return respond(broker, version, wanted, parts);
        }
    }
}

/// Resolves when any receiver sees a change (never, with none: the deadline ends the wait);
/// `false` when a partition went away (its sender dropped): answer now rather than wait.
async fn any_changed(rxs: &mut [tokio::sync::watch::Receiver<u64>]) -> bool {
    if rxs.is_empty() {
        std::future::pending::<()>().await;
    }
    let waits = rxs.iter_mut().map(|rx| Box::pin(rx.changed()));
    futures::future::select_all(waits).await.0.is_ok()
}

fn resolve(broker: &Broker, req: &FetchRequest, version: i16, replica: Option<i32>) -> Vec<Wanted> {
    let image = broker.metadata.image();
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
                None => Some(leader_hint::not_hosted(&image, &topic, p.partition)),
                Some(h) if h.leader.load(Ordering::Acquire) != broker.config.node_id => {
                    Some(ResponseError::NotLeaderOrFollower)
                }
                Some(h) => check_epoch(
                    p.current_leader_epoch,
                    h.leader_epoch.load(Ordering::Acquire),
                ),
            };
            let mut w = Wanted {
                topic: topic.clone(),
                topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                hosted,
                error,
                follower: replica.is_some(),
                diverging: None,
                throttled: false,
            };
            if let (Some(r), None, Some(h)) = (replica, w.error, w.hosted.clone()) {
                follower_fetched(
                    &mut w,
                    &h,
                    r,
                    p.current_leader_epoch,
                    p.last_fetched_epoch,
                    version,
                );
                w.throttled = h.leader_throttled.load(Ordering::Acquire)
                    && !h.with_state(|st| st.leader().is_some_and(|l| l.isr.contains(&r)));
            }
            out.push(w);
        }
    }
    out
}

/// A follower's fetch at `w.fetch_offset`: either its log diverged from ours (answered with the
/// diverging epoch), or its progress is recorded, which may move the high watermark.
fn follower_fetched(
    w: &mut Wanted,
    part: &Partition,
    replica: i32,
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
    version: i16,
) {
    let fetch_offset = Offset(w.fetch_offset);
    let (entries, leo) = {
        let log = part.log.read().expect("log lock poisoned");
        (log.epoch_entries(), log.log_end_offset())
    };
    if version >= 12 && last_fetched_epoch >= 0 {
        let epoch = LeaderEpoch(last_fetched_epoch);
        let end = divergence::end_offset_for(&entries, epoch, leo);
        match divergence::diverging_epoch(epoch, fetch_offset, end) {
            Ok(Some(d)) => {
                w.diverging = Some(d);
                return;
            }
            Ok(None) => {}
            Err(e) => {
                w.error = Some(e.kafka_error());
                return;
            }
        }
    }
    let now = tokio::time::Instant::now();
    let epoch = LeaderEpoch(current_leader_epoch);
    // A moved high watermark wakes the partition's waiting fetches (`publish_hw`).
    if let Err(e) =
        part.with_state(|st| st.on_follower_fetch(replica, fetch_offset, epoch, leo, now))
    {
        w.error = Some(e.kafka_error());
    }
}

/// KIP-320: a request naming a leader epoch must match ours.
pub(super) fn check_epoch(requested: i32, ours: i32) -> Option<ResponseError> {
    match requested {
        -1 => None,
        r if r < ours => Some(ResponseError::FencedLeaderEpoch),
        r if r > ours => Some(ResponseError::UnknownLeaderEpoch),
        _ => None,
    }
}

/// Records of a partition: in memory, or file ranges to send without copying.
enum Records {
    None,
    Inline(Bytes),
    Ranges(Vec<FileRange>, usize),
}

/// Per partition: error code, high watermark, log start offset, records.
type Read = (i16, i64, i64, Records);

/// Below this many bytes a partition's records are copied into the response: one `pread` is
/// cheaper than a `sendfile` call and a separate write.
const SPLICE_MIN_BYTES: usize = 16 * 1024;

/// What one partition's read needs, copied out of [`Wanted`] so it can move to the blocking
/// pool.
struct Job {
    hosted: Option<Arc<Partition>>,
    error: Option<ResponseError>,
    offset: i64,
    max_bytes: usize,
    follower: bool,
    diverged: bool,
    throttled: bool,
}

async fn read_all(
    wanted: &[Wanted],
    max_bytes: usize,
    throttles: &Arc<Throttles>,
) -> (Vec<Read>, usize, bool) {
    let jobs: Vec<Job> = wanted
        .iter()
        .map(|w| Job {
            hosted: w.hosted.clone(),
            error: w.error,
            offset: w.fetch_offset,
            max_bytes: w.max_bytes,
            follower: w.follower,
            diverged: w.diverging.is_some(),
            throttled: w.throttled,
        })
        .collect();
    // The lookup reads batch headers (and copies small ranges) from the pages this task then
    // sends with `sendfile` anyway, so when no log is being written it runs here, with no
    // hand-off to the blocking pool and back; a log an append holds sends the whole read there.
    if let Some(done) = read_now(&jobs, max_bytes, throttles) {
        return done;
    }
    let throttles = throttles.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut reads = Reads::new(jobs.len());
        for job in &jobs {
            match (&job.hosted, job.error) {
                (Some(part), None) => {
                    let hw = part.hw();
                    let log = part.log.read().expect("log lock poisoned");
                    reads.read(hw, &log, job, max_bytes, &throttles);
                }
                _ => reads.unreadable(job),
            }
        }
        reads.done()
    })
    .await;
    result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "fetch read task failed");
        (Vec::new(), 0, true)
    })
}

/// Fetches of at most this many partitions are read on the request's task ([`read_now`]): a
/// few microseconds each, so a large follower fetch still goes to the blocking pool.
const READ_NOW_MAX_PARTITIONS: usize = 64;

/// Reads every partition on the calling task if every log's read lock is free now, else
/// `None` having read nothing (all locks are taken before the first read).
fn read_now(
    jobs: &[Job],
    max_bytes: usize,
    throttles: &Throttles,
) -> Option<(Vec<Read>, usize, bool)> {
    if jobs.len() > READ_NOW_MAX_PARTITIONS {
        return None;
    }
    // The high watermark before the log, as on the blocking pool.
    let mut logs = Vec::with_capacity(jobs.len());
    for job in jobs {
        logs.push(match (&job.hosted, job.error) {
            (Some(part), None) => Some((part.hw(), part.log.try_read().ok()?)),
            _ => None,
        });
    }
    let mut reads = Reads::new(jobs.len());
    for (job, log) in jobs.iter().zip(&logs) {
        match log {
            Some((hw, log)) => reads.read(*hw, log, job, max_bytes, throttles),
            None => reads.unreadable(job),
        }
    }
    Some(reads.done())
}

/// The partitions read so far, the bytes they hold and whether any failed.
struct Reads {
    out: Vec<Read>,
    total: usize,
    any_error: bool,
}

impl Reads {
    fn new(n: usize) -> Reads {
        Reads {
            out: Vec::with_capacity(n),
            total: 0,
            any_error: false,
        }
    }

    fn done(self) -> (Vec<Read>, usize, bool) {
        (self.out, self.total, self.any_error)
    }

    /// A partition that is not hosted here or was refused before reading.
    fn unreadable(&mut self, job: &Job) {
        self.any_error = true;
        self.out
            .push((job.error.map_or(0, |e| e.code()), -1, -1, Records::None));
    }

    /// Reads one partition whose high watermark was `hw` before its log was locked.
    fn read(
        &mut self,
        hw: Offset,
        log: &tributary_log::Log,
        job: &Job,
        max_bytes: usize,
        throttles: &Throttles,
    ) {
        if job.diverged {
            // Answered at once: the follower must truncate before it reads anything.
            self.any_error = true;
            self.out.push((
                0,
                hw.0,
                log.log_start_offset().0,
                Records::Inline(Bytes::new()),
            ));
            return;
        }
        // A throttled follower gets nothing while the leader's budget is spent.
        if job.throttled && throttles.leader.exceeded() {
            self.out.push((
                0,
                hw.0,
                log.log_start_offset().0,
                Records::Inline(Bytes::new()),
            ));
            return;
        }
        // Consumers see the committed part; followers copy everything the leader has.
        let upper = if job.follower {
            log.log_end_offset()
        } else {
            hw
        };
        let mut budget = job.max_bytes.min(max_bytes.saturating_sub(self.total));
        if job.throttled {
            budget = budget.min(throttles.leader.available().unwrap_or(usize::MAX).max(1));
        }
        let offset = job.offset;
        match log.read_ranges(Offset(offset), budget, upper, self.total == 0) {
            Ok(r) => {
                self.total += r.bytes;
                if job.throttled {
                    throttles.leader.record(r.bytes as u64);
                }
                let records = if r.bytes == 0 {
                    Records::Inline(Bytes::new())
                } else if r.bytes < SPLICE_MIN_BYTES {
                    match r.copy() {
                        Ok(b) => Records::Inline(Bytes::from(b)),
                        Err(e) => {
                            tracing::warn!(error = %e, "reading fetched records failed");
                            self.any_error = true;
                            self.out.push((
                                ResponseError::KafkaStorageError.code(),
                                hw.0,
                                r.log_start_offset.0,
                                Records::None,
                            ));
                            return;
                        }
                    }
                } else {
                    Records::Ranges(r.ranges, r.bytes)
                };
                self.out.push((0, hw.0, r.log_start_offset.0, records));
            }
            Err(LogError::OffsetOutOfRange { log_start, .. })
                if offset <= upper.0 && offset >= log_start.0 =>
            {
                // Between the high watermark and the log end: nothing visible yet.
                self.out
                    .push((0, hw.0, log_start.0, Records::Inline(Bytes::new())));
            }
            Err(e) => {
                self.any_error = true;
                self.out.push((
                    e.kafka_error_code(),
                    hw.0,
                    log.log_start_offset().0,
                    Records::None,
                ));
            }
        }
    }
}

/// A marker no client can predict: random per process, numbered per partition and response.
fn marker(index: u32) -> Bytes {
    static PREFIX: OnceLock<[u8; 8]> = OnceLock::new();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let r = uuid::Uuid::new_v4();
        let mut p = [0u8; 8];
        p.copy_from_slice(&r.as_bytes()[..8]);
        p
    });
    let mut m = Vec::with_capacity(16);
    m.extend_from_slice(prefix);
    m.extend_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    m.extend_from_slice(&index.to_be_bytes());
    Bytes::from(m)
}

fn respond(
    broker: &Broker,
    version: i16,
    wanted: Vec<Wanted>,
    parts: Vec<Read>,
) -> (FetchResponse, Vec<Splice>) {
    let mut hints = LeaderHints::new(broker.metadata.image());
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut splices = Vec::new();
    for (w, (code, hw, log_start, records)) in wanted.into_iter().zip(parts) {
        let records = match records {
            Records::None => Bytes::new(),
            Records::Inline(b) => b,
            Records::Ranges(ranges, len) => {
                let m = marker(u32::try_from(splices.len()).unwrap_or(u32::MAX));
                splices.push(Splice {
                    marker: m.clone(),
                    ranges,
                    len,
                });
                m
            }
        };
        let mut data = PartitionData::default()
            .with_partition_index(w.partition)
            .with_error_code(code)
            .with_high_watermark(hw)
            .with_last_stable_offset(hw)
            .with_log_start_offset(log_start)
            .with_records(Some(records));
        if version >= 16 && LeaderHints::wanted(code) {
            if let Some((leader, epoch)) = hints.leader(&w.topic, w.partition) {
                data = data.with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(epoch),
                );
            }
        }
        if let Some(d) = w.diverging {
            data = data.with_diverging_epoch(
                kafka_protocol::messages::fetch_response::EpochEndOffset::default()
                    .with_epoch(d.epoch.0)
                    .with_end_offset(d.end_offset.0),
            );
        }
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
    let resp = FetchResponse::default()
        .with_session_id(0)
        .with_responses(topics)
        .with_node_endpoints(endpoints);
    (resp, splices)
}
