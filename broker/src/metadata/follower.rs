//! The metadata follower, on every node: holds the image built from the committed metadata log,
//! publishes each new image to the node's components, knows how far it has applied, and keeps
//! the most recent committed batches so that brokers can fetch them from a controller.
//!
//! On a controller node the quorum's state machine feeds it (committed entries, snapshots). On
//! a broker-only node [`follow_remote`] feeds it by fetching committed batches from the
//! controllers, as Kafka's brokers fetch the metadata log as observers. It never decides
//! anything: it applies what was committed, in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::image::{Changes, MetadataImage};
use super::records::MetadataRecord;
use super::rpc::{Conn, MetadataFetch, MetadataFetched, METADATA_FETCH};

/// The most committed batches a controller keeps in memory for fetching brokers; a broker
/// further behind receives the whole image instead.
pub const RECENT_BATCHES: usize = 4096;

/// How long a metadata fetch may go unanswered (its long poll is 500 ms).
const FETCH_TIMEOUT: Duration = Duration::from_millis(2_000);

/// Batches one fetch answer carries at most.
const MAX_BATCHES_PER_FETCH: usize = 1024;

struct State {
    image: MetadataImage,
    recent: VecDeque<(u64, Arc<Vec<MetadataRecord>>)>,
    /// What changed since the consumer last took the changes.
    changes: Changes,
}

/// The image and its recent history; one per node.
pub struct MetadataFollower {
    state: Mutex<State>,
    /// How many recent batches to keep (at most [`RECENT_BATCHES`]).
    keep: usize,
    publish: watch::Sender<Arc<MetadataImage>>,
    /// The active controller as last learnt (-1: unknown).
    leader: AtomicI32,
}

impl Default for MetadataFollower {
    fn default() -> Self {
        MetadataFollower::new(RECENT_BATCHES)
    }
}

impl MetadataFollower {
    /// A follower that keeps the last `keep` batches (as many as the quorum keeps entries
    /// between snapshots, at most [`RECENT_BATCHES`]).
    pub fn new(keep: usize) -> Self {
        MetadataFollower {
            keep: keep.clamp(1, RECENT_BATCHES),
            state: Mutex::new(State {
                image: MetadataImage::default(),
                recent: VecDeque::new(),
                changes: Changes::default(),
            }),
            publish: watch::channel(Arc::new(MetadataImage::default())).0,
            leader: AtomicI32::new(-1),
        }
    }
}

/// What a fetch from `after` gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Since {
    /// Nothing newer than `after`.
    UpToDate,
    /// The batches after `after`, in order.
    Batches(Vec<(u64, Vec<MetadataRecord>)>),
    /// The batches after `after` are no longer kept: the whole image.
    Snapshot(Arc<MetadataImage>),
}

impl MetadataFollower {
    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.publish.borrow().clone()
    }

    /// A receiver that sees every newly published image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.publish.subscribe()
    }

    /// Index of the last applied entry of the metadata log.
    pub fn applied_index(&self) -> u64 {
        self.publish.borrow().applied_index
    }

    /// The active controller as last learnt.
    pub fn leader(&self) -> Option<i32> {
        Some(self.leader.load(Ordering::Acquire)).filter(|l| *l >= 0)
    }

    /// Records who the active controller is.
    pub fn set_leader(&self, leader: Option<i32>) {
        self.leader.store(leader.unwrap_or(-1), Ordering::Release);
    }

    /// Applies committed batches in order and publishes the result once. Batches at or below
    /// the applied index are skipped (a re-delivery).
    pub fn apply(&self, batches: impl IntoIterator<Item = (u64, Arc<Vec<MetadataRecord>>)>) {
        let mut st = self.state.lock().expect("follower lock poisoned");
        let mut changed = false;
        for (index, records) in batches {
            if index <= st.image.applied_index && st.image.applied_index > 0 {
                continue;
            }
            let State { image, changes, .. } = &mut *st;
            for r in records.iter() {
                image.apply_tracked(r, changes);
            }
            st.image.applied_index = index;
            st.recent.push_back((index, records));
            if st.recent.len() > self.keep {
                st.recent.pop_front();
            }
            changed = true;
        }
        if changed {
            self.publish.send_replace(Arc::new(st.image.clone()));
        }
    }

    /// Replaces the image wholesale (a snapshot was installed or restored).
    pub fn reset(&self, image: MetadataImage) {
        let mut st = self.state.lock().expect("follower lock poisoned");
        st.image = image;
        st.recent.clear();
        st.changes.all = true;
        self.publish.send_replace(Arc::new(st.image.clone()));
    }

    /// Takes what changed since the last call (one consumer: the broker's replica sync).
    pub fn take_changes(&self) -> Changes {
        let mut st = self.state.lock().expect("follower lock poisoned");
        std::mem::take(&mut st.changes)
    }

    /// What a broker that applied up to `after` is missing.
    pub fn since(&self, after: u64) -> Since {
        let st = self.state.lock().expect("follower lock poisoned");
        if after >= st.image.applied_index {
            return Since::UpToDate;
        }
        // The kept history must start right after `after` (or earlier).
        match st.recent.front() {
            Some((first, _)) if *first <= after + 1 => Since::Batches(
                st.recent
                    .iter()
                    .filter(|(i, _)| *i > after)
                    .take(MAX_BATCHES_PER_FETCH)
                    .map(|(i, r)| (*i, r.as_ref().clone()))
                    .collect(),
            ),
            _ => Since::Snapshot(Arc::new(st.image.clone())),
        }
    }

    /// Serves a broker's fetch: waits up to `max_wait` for something after `after`.
    pub async fn serve_fetch(&self, req: &MetadataFetch, leader: Option<i32>) -> MetadataFetched {
        let mut rx = self.subscribe();
        let wait = Duration::from_millis(req.max_wait_ms.min(5_000));
        let _ = tokio::time::timeout(wait, async {
            while rx.borrow_and_update().applied_index <= req.after {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        let (batches, snapshot) = match self.since(req.after) {
            Since::UpToDate => (Vec::new(), None),
            Since::Batches(b) => (b, None),
            Since::Snapshot(image) => (Vec::new(), Some(image.as_ref().clone())),
        };
        MetadataFetched {
            leader,
            batches,
            snapshot,
        }
    }
}

/// Follows the committed metadata log from the controllers until `stop` flips: long-polls one
/// controller at a time (the active one when known), moving to the next on any failure.
pub async fn follow_remote(
    follower: Arc<MetadataFollower>,
    node_id: i32,
    voters: Vec<(i32, String)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conn: Option<Conn> = None;
    // The voter the connection goes to.
    let mut connected: Option<i32> = None;
    let mut next_voter = 0usize;
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        if conn.is_none() {
            let (target_id, target) = match follower
                .leader()
                .and_then(|l| voters.iter().find(|v| v.0 == l))
            {
                Some(v) if failures == 0 => v.clone(),
                _ => {
                    next_voter = (next_voter + 1) % voters.len().max(1);
                    match voters.get(next_voter) {
                        Some(v) => v.clone(),
                        None => return,
                    }
                }
            };
            match Conn::connect(&target, Duration::from_secs(2)).await {
                Ok(c) => {
                    conn = Some(c);
                    connected = Some(target_id);
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(error = %e, "metadata fetch: controller unreachable");
                    // Try every other voter at once; back off only when a whole round failed.
                    if failures as usize >= voters.len() {
                        backoff(failures, &mut stop).await;
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let req = MetadataFetch {
            node_id,
            after: follower.applied_index(),
            max_wait_ms: 500,
        };
        // The long poll plus a margin: a paused or cut-off controller holds the connection open
        // and never answers, and must not hold the broker's metadata up for long.
        let answer = tokio::select! {
            a = c.call_json::<_, MetadataFetched>(METADATA_FETCH, &req, FETCH_TIMEOUT) => a,
            _ = stop.changed() => return,
        };
        match answer {
            Ok(fetched) => {
                // Follow the active controller: its log is the newest. A voter that knows of
                // none (an election, or a leader cut off from its quorum, which then stops
                // calling itself leader) is left for the next voter.
                let elsewhere = fetched.leader != connected;
                let unknown = fetched.leader.is_none();
                failures = if unknown { failures + 1 } else { 0 };
                follower.set_leader(fetched.leader);
                if let Some(image) = fetched.snapshot {
                    tracing::info!(index = image.applied_index, "metadata: applied a snapshot");
                    follower.reset(image);
                }
                follower.apply(fetched.batches.into_iter().map(|(i, r)| (i, Arc::new(r))));
                if elsewhere {
                    conn = None;
                }
                if unknown && failures as usize >= voters.len() {
                    backoff(failures, &mut stop).await;
                }
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(error = %e, "metadata fetch failed");
                conn = None;
                if failures as usize >= voters.len() {
                    backoff(failures, &mut stop).await;
                }
            }
        }
    }
}

async fn backoff(failures: u32, stop: &mut watch::Receiver<bool>) {
    let ms = (50u64 << failures.min(5)).min(1_000);
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
        _ = stop.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::records::BrokerRegistration;

    fn reg(id: i32) -> Arc<Vec<MetadataRecord>> {
        Arc::new(vec![MetadataRecord::RegisterBroker(BrokerRegistration {
            broker_id: id,
            incarnation_id: uuid::Uuid::nil(),
            host: "h".into(),
            port: 1,
            rack: None,
            epoch: i64::from(id),
            fenced: true,
            in_controlled_shutdown: false,
        })])
    }

    #[test]
    fn batches_apply_in_order_and_history_answers_fetches() {
        let f = MetadataFollower::default();
        f.apply([(1, reg(1)), (2, reg(2))]);
        assert_eq!(f.applied_index(), 2);
        assert_eq!(f.image().brokers.len(), 2);
        // A re-delivered batch is skipped.
        f.apply([(2, reg(9))]);
        assert!(!f.image().brokers.contains_key(&9));
        assert_eq!(f.since(2), Since::UpToDate);
        match f.since(1) {
            Since::Batches(b) => assert_eq!(b.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2]),
            other => panic!("expected batches, got {other:?}"),
        }
        match f.since(0) {
            Since::Batches(b) => assert_eq!(b.len(), 2),
            other => panic!("expected batches, got {other:?}"),
        }
    }

    #[test]
    fn a_broker_behind_the_kept_history_gets_the_image() {
        let f = MetadataFollower::default();
        let many = (1..=(RECENT_BATCHES as u64 + 10)).map(|i| (i, Arc::new(Vec::new())));
        f.apply(many);
        match f.since(3) {
            Since::Snapshot(img) => assert_eq!(img.applied_index, RECENT_BATCHES as u64 + 10),
            other => panic!("expected a snapshot, got {other:?}"),
        }
        // After a reset the history is empty: everything behind gets the image.
        f.reset(MetadataImage {
            applied_index: 50_000,
            ..Default::default()
        });
        assert!(matches!(f.since(49_999), Since::Snapshot(_)));
        assert_eq!(f.since(50_000), Since::UpToDate);
    }
}
