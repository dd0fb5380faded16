//! Follower fetching: one fetcher task per leader broker, multiplexing every partition this
//! broker follows from it in one Fetch request (replica id set, as Kafka's followers send it,
//! v12 with the last fetched epoch). Records are appended as the leader wrote them
//! (`append_as_follower`); the leader's high watermark is learnt from each answer.
//!
//! Divergence is resolved the KIP-320 way, through Fetch: the follower names the epoch of its
//! last batch; a leader whose log ends that epoch earlier answers with the diverging epoch and
//! its end offset, and the follower truncates to where the two logs agree before fetching
//! again. An answer the leader cannot place (OFFSET_OUT_OF_RANGE) truncates to the high
//! watermark, below which every replica agrees. A refused partition (not leader, fenced or
//! unknown epoch) waits for the metadata to say who leads now.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::ResponseError;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tributary_log::{Offset, TopicPartition};

use super::partition::LeaderEpoch;
use super::throttle::Throttles;
use super::Partition;
use crate::metadata::rpc::Conn;
use crate::metadata::MetadataFollower;

/// The Fetch version followers send (flexible, names topics, carries the last fetched epoch).
const FOLLOWER_FETCH_VERSION: i16 = 12;
/// How long a leader may hold a follower's fetch when it has nothing new.
const MAX_WAIT: Duration = Duration::from_millis(500);
/// How long a refused partition waits before it is fetched again.
const REFUSED_PAUSE: Duration = Duration::from_millis(300);

/// One partition followed from a leader.
struct Followed {
    part: Arc<Partition>,
    leader_epoch: LeaderEpoch,
    paused_until: Option<Instant>,
}

/// The fetcher of one leader.
struct LeaderFetcher {
    leader: i32,
    partitions: Mutex<BTreeMap<TopicPartition, Followed>>,
    wake: Notify,
    stop: watch::Sender<bool>,
    throttles: Arc<Throttles>,
}

/// Every fetcher of this broker.
pub struct Fetchers {
    node_id: i32,
    metadata: OnceLock<Arc<MetadataFollower>>,
    by_leader: Mutex<HashMap<i32, Arc<LeaderFetcher>>>,
    throttles: Arc<Throttles>,
}

impl Fetchers {
    pub fn new(node_id: i32, throttles: Arc<Throttles>) -> Self {
        Fetchers {
            node_id,
            metadata: OnceLock::new(),
            by_leader: Mutex::new(HashMap::new()),
            throttles,
        }
    }

    /// Gives the fetchers the metadata they find leaders' addresses in.
    pub fn set_metadata(&self, metadata: Arc<MetadataFollower>) {
        let _ = self.metadata.set(metadata);
    }

    /// Follows `tp` from `leader` under `epoch` (moving it from any other leader's fetcher).
    pub fn follow(
        &self,
        tp: &TopicPartition,
        part: &Arc<Partition>,
        leader: i32,
        epoch: LeaderEpoch,
    ) {
        let Some(metadata) = self.metadata.get().cloned() else {
            tracing::warn!(partition = %tp, "no metadata for the follower fetchers yet");
            return;
        };
        let mut by_leader = self.by_leader.lock().expect("fetchers lock poisoned");
        for (l, f) in by_leader.iter() {
            if *l != leader {
                f.partitions
                    .lock()
                    .expect("fetcher lock poisoned")
                    .remove(tp);
            }
        }
        let fetcher = by_leader.entry(leader).or_insert_with(|| {
            let f = Arc::new(LeaderFetcher {
                leader,
                partitions: Mutex::new(BTreeMap::new()),
                wake: Notify::new(),
                stop: watch::channel(false).0,
                throttles: self.throttles.clone(),
            });
            tokio::spawn(f.clone().run(self.node_id, metadata));
            f
        });
        fetcher
            .partitions
            .lock()
            .expect("fetcher lock poisoned")
            .insert(
                tp.clone(),
                Followed {
                    part: part.clone(),
                    leader_epoch: epoch,
                    paused_until: None,
                },
            );
        fetcher.wake.notify_one();
    }

    /// Stops following `tp` (this broker leads it now, or no longer hosts it).
    pub fn stop_following(&self, tp: &TopicPartition) {
        let by_leader = self.by_leader.lock().expect("fetchers lock poisoned");
        for f in by_leader.values() {
            f.partitions
                .lock()
                .expect("fetcher lock poisoned")
                .remove(tp);
        }
    }

    /// Stops every fetcher (shutdown).
    pub fn stop_all(&self) {
        let mut by_leader = self.by_leader.lock().expect("fetchers lock poisoned");
        for f in by_leader.values() {
            f.stop.send_replace(true);
            f.wake.notify_one();
        }
        by_leader.clear();
    }
}

/// The most a follower asks of one partition per fetch (Kafka's `replica.fetch.max.bytes`
/// default).
const PARTITION_MAX_BYTES: usize = 1024 * 1024;

/// Whether the follower throttle applies to this replica: named by the topic's follower-side
/// list and not in the ISR (an in-sync replica is never slowed).
fn is_throttled(part: &Partition) -> bool {
    part.follower_throttled.load(Ordering::Acquire) && !part.in_isr.load(Ordering::Acquire)
}

/// What one partition of a fetch asked for.
struct Asked {
    tp: TopicPartition,
    part: Arc<Partition>,
    fetch_offset: Offset,
    leader_epoch: LeaderEpoch,
}

impl LeaderFetcher {
    async fn run(self: Arc<Self>, node_id: i32, metadata: Arc<MetadataFollower>) {
        let mut conn: Option<Conn> = None;
        let mut stop = self.stop.subscribe();
        loop {
            if *stop.borrow() {
                return;
            }
            let (req, asked) = self.request(node_id);
            if asked.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(REFUSED_PAUSE) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            let addr = metadata
                .image()
                .brokers
                .get(&self.leader)
                .map(|b| format!("{}:{}", b.host, b.port));
            let Some(addr) = addr else {
                tokio::time::sleep(REFUSED_PAUSE).await;
                continue;
            };
            if conn.as_ref().is_none_or(|c| c.addr() != addr) {
                match Conn::connect(&addr, Duration::from_secs(2)).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        tracing::debug!(leader = self.leader, error = %e, "follower fetch: leader unreachable");
                        tokio::time::sleep(REFUSED_PAUSE).await;
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let answer = tokio::select! {
                a = c.call_kafka(FOLLOWER_FETCH_VERSION, &req, MAX_WAIT + Duration::from_secs(5)) => a,
                _ = stop.changed() => return,
            };
            match answer {
                Ok(resp) if resp.error_code == 0 => self.apply(resp, asked).await,
                Ok(resp) => {
                    tracing::debug!(
                        leader = self.leader,
                        code = resp.error_code,
                        "follower fetch refused"
                    );
                    tokio::time::sleep(REFUSED_PAUSE).await;
                }
                Err(e) => {
                    tracing::debug!(leader = self.leader, error = %e, "follower fetch failed");
                    conn = None;
                    tokio::time::sleep(REFUSED_PAUSE).await;
                }
            }
        }
    }

    /// The next Fetch: every followed partition that is not paused, from its log end.
    fn request(&self, node_id: i32) -> (FetchRequest, Vec<Asked>) {
        let now = Instant::now();
        let mut topics: Vec<FetchTopic> = Vec::new();
        let mut asked = Vec::new();
        let parts = self.partitions.lock().expect("fetcher lock poisoned");
        // What throttled replicas may still fetch: shared out among them in order, so that one
        // fetch overdraws the budget by at most a batch per partition.
        let mut throttled_budget = self.throttles.follower.available();
        for (tp, f) in parts.iter() {
            if f.paused_until.is_some_and(|t| t > now) {
                continue;
            }
            let mut max_bytes = PARTITION_MAX_BYTES;
            // A throttled replica catching up waits while the follower's budget is spent.
            if is_throttled(&f.part) {
                if let Some(left) = throttled_budget.as_mut() {
                    if *left == 0 {
                        self.throttles
                            .follower
                            .held_back
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    max_bytes = max_bytes.min(*left);
                    *left -= max_bytes;
                }
            }
            let (leo, last_epoch, log_start) = {
                let log = f.part.log.read().expect("log lock poisoned");
                (
                    log.log_end_offset(),
                    log.latest_epoch(),
                    log.log_start_offset(),
                )
            };
            let p = FetchPartition::default()
                .with_partition(tp.partition)
                .with_current_leader_epoch(f.leader_epoch.0)
                .with_fetch_offset(leo.0)
                .with_last_fetched_epoch(last_epoch.unwrap_or(-1))
                .with_log_start_offset(log_start.0)
                .with_partition_max_bytes(i32::try_from(max_bytes).unwrap_or(i32::MAX));
            match topics.last_mut() {
                Some(t) if t.topic.0.as_str() == tp.topic => t.partitions.push(p),
                _ => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(crate::api::s(tp.topic.clone())))
                        .with_partitions(vec![p]),
                ),
            }
            asked.push(Asked {
                tp: tp.clone(),
                part: f.part.clone(),
                fetch_offset: leo,
                leader_epoch: f.leader_epoch,
            });
        }
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(node_id))
            .with_max_wait_ms(i32::try_from(MAX_WAIT.as_millis()).unwrap_or(500))
            .with_min_bytes(1)
            .with_max_bytes(16 * 1024 * 1024)
            .with_isolation_level(0)
            .with_topics(topics);
        (req, asked)
    }

    async fn apply(&self, resp: kafka_protocol::messages::FetchResponse, asked: Vec<Asked>) {
        for t in resp.responses {
            for p in t.partitions {
                let tp = TopicPartition::new(t.topic.0.as_str(), p.partition_index);
                let Some(a) = asked.iter().find(|a| a.tp == tp) else {
                    continue;
                };
                if p.error_code != 0 {
                    self.on_refused(a, p.error_code, &p).await;
                    continue;
                }
                let part = a.part.clone();
                let epoch_asked = a.leader_epoch.0;
                let leader = self.leader;
                let diverging = (p.diverging_epoch.epoch >= 0).then_some((
                    p.diverging_epoch.epoch,
                    Offset(p.diverging_epoch.end_offset),
                ));
                let records = p.records.clone().filter(|r| !r.is_empty());
                let leader_hw = Offset(p.high_watermark);
                let tp2 = tp.clone();
                let throttles = self.throttles.clone();
                let result = tokio::task::spawn_blocking(move || {
                    let mut log = part.log.write().expect("log lock poisoned");
                    // Still following `leader` in the epoch the fetch was sent in, under the log
                    // lock: metadata stores a new leader and epoch before acting on them, and a
                    // broker that becomes leader takes this lock to start its epoch, so a late
                    // answer from a former leader never reaches a log this broker now leads or
                    // follows from someone else (`Partition::leads_in`).
                    if !part.leads_in(leader, epoch_asked) {
                        tracing::debug!(partition = %tp2, leader, "dropping a fetch answer from a former leader");
                        return Ok(None);
                    }
                    if let Some((epoch, end)) = diverging {
                        // Truncate to where both logs agree: the leader's end of that epoch,
                        // or ours if we end it earlier.
                        let ours = log.end_offset_for_epoch(epoch).map(|(_, o)| o);
                        let to = ours.map_or(end, |o| o.min(end));
                        tracing::info!(partition = %tp2, epoch, leader_end = end.0, to = to.0, "follower log diverged: truncating");
                        log.truncate_to(to)?;
                        return Ok(Some(log.log_end_offset()));
                    }
                    if let Some(r) = records {
                        log.append_as_follower(&r)?;
                        if is_throttled(&part) {
                            throttles.follower.record(r.len() as u64);
                        }
                    }
                    Ok::<_, tributary_log::LogError>(Some(log.log_end_offset()))
                })
                .await;
                match result {
                    Ok(Ok(None)) => {}
                    Ok(Ok(Some(leo))) => {
                        a.part.with_state(|st| {
                            st.on_log_truncated(leo);
                            st.on_leader_high_watermark(leader_hw, leo)
                        });
                        a.part.notify();
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(partition = %tp, error = %e, "follower append failed");
                        self.pause(&tp);
                    }
                    Err(e) => tracing::error!(error = %e, "follower append task failed"),
                }
            }
        }
    }

    async fn on_refused(
        &self,
        a: &Asked,
        code: i16,
        p: &kafka_protocol::messages::fetch_response::PartitionData,
    ) {
        let tp = &a.tp;
        if code == ResponseError::OffsetOutOfRange.code() {
            // Truncation is file work: on the blocking pool, never on a runtime thread (the
            // other partitions' tasks of this worker would wait for it).
            let part = a.part.clone();
            let (leader, epoch, fetch_offset) = (self.leader, a.leader_epoch.0, a.fetch_offset);
            let leader_log_start = Offset(p.log_start_offset);
            let result = tokio::task::spawn_blocking(move || {
                truncate_out_of_range(&part, leader, epoch, fetch_offset, leader_log_start)
            })
            .await;
            match result {
                Ok(Some(Ok(leo))) => {
                    tracing::info!(partition = %tp, log_end = leo.0, "follower offset out of range: truncated");
                    a.part.with_state(|st| st.on_log_truncated(leo));
                }
                Ok(Some(Err(e))) => {
                    tracing::warn!(partition = %tp, error = %e, "follower truncation failed")
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "follower truncation task failed"),
            }
            return;
        }
        tracing::debug!(partition = %tp, leader = self.leader, code, "follower fetch of partition refused");
        self.pause(tp);
    }

    fn pause(&self, tp: &TopicPartition) {
        if let Some(f) = self
            .partitions
            .lock()
            .expect("fetcher lock poisoned")
            .get_mut(tp)
        {
            f.paused_until = Some(Instant::now() + REFUSED_PAUSE);
        }
    }
}

/// A follower's answer to OFFSET_OUT_OF_RANGE (blocking file work): below the leader's log start
/// (`leader_log_start`), the log starts over there; otherwise the leader cannot place our last
/// epoch, so only what is committed is kept (the high watermark is agreed by all). Nothing is
/// done (`None`) unless the partition still follows `leader` in `leader_epoch`, checked under
/// the log's write lock. Returns the new log end.
fn truncate_out_of_range(
    part: &Partition,
    leader: i32,
    leader_epoch: i32,
    fetch_offset: Offset,
    leader_log_start: Offset,
) -> Option<Result<Offset, tributary_log::LogError>> {
    let mut log = part.log.write().expect("log lock poisoned");
    if !part.leads_in(leader, leader_epoch) {
        return None;
    }
    let result = if fetch_offset < leader_log_start {
        log.truncate_fully_and_start_at(leader_log_start)
    } else {
        let hw = part.hw().min(log.log_end_offset());
        log.truncate_to(hw)
    };
    Some(result.map(|()| log.log_end_offset()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap (CONVENTIONS 8)

    use super::*;

    #[test]
    fn out_of_range_truncates_to_the_high_watermark_or_starts_at_the_leaders_log_start() {
        let dir = tempfile::tempdir().unwrap();
        let part = crate::replica::tests::led_partition(dir.path());
        for _ in 0..3 {
            let mut b = tributary_log::testing::simple_batch(2, 0);
            part.log
                .write()
                .unwrap()
                .append_as_leader(&mut b, 5, 0)
                .unwrap();
        }
        part.high_watermark.store(4, Ordering::Release);
        // Led by broker 1, so not following broker 2: nothing happens.
        assert!(truncate_out_of_range(&part, 2, 5, Offset(6), Offset(0)).is_none());
        assert_eq!(part.log.read().unwrap().log_end_offset(), Offset(6));
        part.leader.store(2, Ordering::SeqCst);
        let leo = truncate_out_of_range(&part, 2, 5, Offset(6), Offset(0));
        assert_eq!(
            leo.unwrap().unwrap(),
            Offset(4),
            "cut to the high watermark"
        );
        let leo = truncate_out_of_range(&part, 2, 5, Offset(4), Offset(10));
        assert_eq!(
            leo.unwrap().unwrap(),
            Offset(10),
            "below the leader's log start"
        );
        assert_eq!(part.log.read().unwrap().log_start_offset(), Offset(10));
    }
}
