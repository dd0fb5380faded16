use std::collections::BTreeMap;
use std::time::Duration;

use tributary_log::LogConfig;

use super::partition::ReplicaSettings;
use super::*;
use crate::config::BrokerConfig;
use crate::topic_config;

fn cfg(overrides: &[(&str, &str)]) -> LogConfig {
    let broker = BrokerConfig::from_properties(BTreeMap::new()).expect("config");
    let topic = overrides
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    log_config(&topic_config::effective(&topic, &broker))
}

#[test]
fn topic_configs_become_log_configs() {
    let c = cfg(&[
        ("segment.bytes", "2048"),
        ("retention.bytes", "4096"),
        ("flush.messages", "1"),
    ]);
    assert_eq!(c.segment_bytes, 2048);
    assert_eq!(c.retention_bytes, Some(4096));
    assert_eq!(c.retention_ms, Some(Duration::from_millis(604_800_000)));
    assert_eq!(c.flush_messages, Some(1));
    assert_eq!(c.flush_ms, None, "Long.MAX_VALUE means never");
    assert_eq!(cfg(&[("retention.ms", "-1")]).retention_ms, None);
}

#[test]
fn compaction_settings_reach_the_log_config() {
    let c = cfg(&[
        ("cleanup.policy", "compact"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "100"),
        ("min.compaction.lag.ms", "5"),
    ]);
    assert!(c.compact);
    assert_eq!(c.min_cleanable_dirty_ratio, 0.01);
    assert_eq!(c.delete_retention, Duration::from_millis(100));
    assert_eq!(c.min_compaction_lag, Duration::from_millis(5));
    assert_eq!(c.max_compaction_lag, None, "Long.MAX_VALUE means never");
    let d = cfg(&[]);
    assert!(!d.compact);
    assert_eq!(d.min_cleanable_dirty_ratio, 0.5);
    assert_eq!(d.delete_retention, Duration::from_millis(86_400_000));
}

#[test]
fn compacted_topics_are_not_deleted_by_time_or_size() {
    let c = cfg(&[("cleanup.policy", "compact"), ("retention.bytes", "4096")]);
    assert_eq!((c.retention_ms, c.retention_bytes), (None, None));
    let both = cfg(&[
        ("cleanup.policy", "compact,delete"),
        ("retention.bytes", "4096"),
    ]);
    assert_eq!(both.retention_bytes, Some(4096));
}
/// A partition led by broker 1 in epoch 5, its log in `dir`.
pub(super) fn led_partition(dir: &std::path::Path) -> Partition {
    let log = Log::create(
        dir,
        &TopicPartition::new("t", 0),
        [7; 16],
        LogConfig::default(),
    )
    .expect("log");
    Partition {
        topic_id: Uuid::nil(),
        log: Arc::new(RwLock::new(log)),
        leader: AtomicI32::new(1),
        leader_epoch: AtomicI32::new(5),
        isr_len: AtomicUsize::new(3),
        min_insync_replicas: AtomicUsize::new(2),
        in_isr: AtomicBool::new(true),
        leader_throttled: AtomicBool::new(false),
        follower_throttled: AtomicBool::new(false),
        high_watermark: AtomicI64::new(0),
        state: Mutex::new(PartitionState::new(
            1,
            Offset(0),
            ReplicaSettings::default(),
        )),
        hw_moved: watch::channel(0).0,
        changed: watch::channel(0).0,
    }
}

#[tokio::test(start_paused = true)]
async fn a_delayed_produce_is_acknowledged_only_by_its_own_leadership() {
    let dir = tempfile::tempdir().expect("dir");
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(5);
    let part = Arc::new(led_partition(dir.path()));
    // Still leading in epoch 5 when the high watermark passes the batch.
    let waiting = tokio::spawn({
        let part = part.clone();
        async move { part.wait_hw(Offset(10), 1, 5, deadline()).await }
    });
    tokio::task::yield_now().await;
    part.publish_hw(Offset(12));
    assert_eq!(waiting.await.expect("wait"), HwWait::Reached);
    // Demoted, then the high watermark it learns as a follower (the new leader's, over a
    // log whose uncommitted tail was replaced) passes the batch before the wait looks:
    // leadership decides, not the high watermark.
    part.leader.store(2, Ordering::SeqCst);
    part.leader_epoch.store(6, Ordering::SeqCst);
    part.publish_hw(Offset(30));
    assert_eq!(
        part.wait_hw(Offset(20), 1, 5, deadline()).await,
        HwWait::NotLeader
    );
    // Leader again, in a later epoch: a batch of epoch 5 is still not acknowledged.
    part.leader.store(1, Ordering::SeqCst);
    part.leader_epoch.store(7, Ordering::SeqCst);
    assert_eq!(
        part.wait_hw(Offset(20), 1, 5, deadline()).await,
        HwWait::NotLeader
    );
    assert_eq!(
        part.wait_hw(Offset(20), 1, 7, deadline()).await,
        HwWait::Reached
    );
    // Nothing moves: the request's timeout.
    assert_eq!(
        part.wait_hw(Offset(40), 1, 7, deadline()).await,
        HwWait::TimedOut
    );
}

#[tokio::test(start_paused = true)]
async fn a_delayed_produce_ends_at_once_when_the_partition_leaves_the_broker() {
    let dir = tempfile::tempdir().expect("dir");
    let part = Arc::new(led_partition(dir.path()));
    let started = tokio::time::Instant::now();
    let waiting = tokio::spawn({
        let part = part.clone();
        let deadline = started + Duration::from_secs(5);
        async move { part.wait_hw(Offset(10), 1, 5, deadline).await }
    });
    tokio::task::yield_now().await;
    part.retire();
    assert_eq!(waiting.await.expect("wait"), HwWait::NotLeader);
    // Paused time only moves when every task waits: had the retirement woken nobody, the
    // wait would have ended at its deadline, 5 s later.
    assert_eq!(started.elapsed(), Duration::ZERO);
}
