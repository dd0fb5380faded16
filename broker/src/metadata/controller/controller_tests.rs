//! Quorum controller tests on a real single-voter quorum in a temporary directory.

use super::*;

fn new_topic(name: &str, partitions: i32) -> NewTopic {
    NewTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: 1,
        assignments: BTreeMap::new(),
        configs: BTreeMap::new(),
    }
}

use crate::metadata::controller::lifecycle::{Heartbeat, Registration};
use crate::metadata::quorum::QuorumConfig;

/// A one-voter quorum controller, active, with its cluster id written.
async fn start(dir: &std::path::Path) -> Arc<QuorumController> {
    let follower = Arc::new(MetadataFollower::default());
    let quorum = Quorum::start(
        QuorumConfig {
            node_id: 1,
            dir: dir.to_path_buf(),
            voters: vec![(1, "127.0.0.1:0".into())],
            snapshot_interval: 1000,
        },
        follower.clone(),
    )
    .await
    .expect("start");
    assert!(quorum.wait_leader_caught_up(Duration::from_secs(10)).await);
    let c = QuorumController::new(
        quorum,
        follower,
        LifecycleConfig {
            session_timeout: Duration::from_secs(9),
            leader_rebalance_interval: None,
            leader_imbalance_percentage: 10,
            unclean_leader_election: false,
        },
        "test-cluster".into(),
    );
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(c.clone().run(rx));
    for _ in 0..200 {
        if c.image().cluster_id.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(c.image().cluster_id.is_some(), "cluster id written");
    c
}

/// Registers broker `id` and unfences it with a caught-up heartbeat.
async fn add_broker(c: &QuorumController, id: i32) {
    let epoch = c
        .register_broker(Registration {
            broker_id: id,
            cluster_id: "test-cluster".into(),
            incarnation_id: Uuid::new_v4(),
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
        })
        .await
        .expect("register");
    let answer = c
        .heartbeat(Heartbeat {
            broker_id: id,
            broker_epoch: epoch,
            metadata_offset: i64::MAX,
            want_fence: false,
            want_shut_down: false,
        })
        .await
        .expect("heartbeat");
    assert!(!answer.is_fenced);
}

#[tokio::test]
async fn topics_survive_a_restart_through_the_raft_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start(dir.path()).await;
    add_broker(&c, 1).await;
    let mut t = new_topic("orders", 3);
    t.configs.insert("retention.ms".into(), "1000".into());
    let res = c
        .create_topics(
            vec![t, new_topic("orders", 1), new_topic("bad name", 1)],
            false,
        )
        .await;
    assert!(res[0].is_ok());
    assert_eq!(
        res[1].as_ref().expect_err("dup").code,
        ResponseError::TopicAlreadyExists
    );
    assert_eq!(
        res[2].as_ref().expect_err("name").code,
        ResponseError::InvalidTopicException
    );
    c.create_partitions("orders", 5, vec![], false)
        .await
        .expect("grow");
    c.alter_topic_configs("orders", false, |cur| {
        let mut m = cur.clone();
        m.insert("segment.bytes".into(), "4096".into());
        Ok(m)
    })
    .await
    .expect("alter");
    let id = c.image().topics["orders"].topic_id;
    c.shutdown().await;
    drop(c);

    let c = start(dir.path()).await;
    let image = c.image();
    let t = &image.topics["orders"];
    assert_eq!(t.topic_id, id);
    assert_eq!(t.partitions.len(), 5);
    assert_eq!(t.configs["retention.ms"], "1000");
    assert_eq!(t.configs["segment.bytes"], "4096");
    assert_eq!(image.brokers[&1].port, 9092);
    let del = c.delete_topics(vec!["orders".into(), "nope".into()]).await;
    assert_eq!(del[0], Ok(id));
    assert_eq!(
        del[1].as_ref().expect_err("unknown").code,
        ResponseError::UnknownTopicOrPartition
    );
    assert!(c.image().topics.is_empty());
    c.shutdown().await;
}

#[tokio::test]
async fn producer_id_blocks_never_repeat_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start(dir.path()).await;
    let a = c.allocate_producer_ids(1, 1000).await.expect("a");
    let b = c.allocate_producer_ids(1, 1000).await.expect("b");
    assert_eq!((a.clone(), b.clone()), (0..1000, 1000..2000));
    c.shutdown().await;
    drop(c);
    let c = start(dir.path()).await;
    assert_eq!(c.allocate_producer_ids(1, 10).await.expect("c"), 2000..2010);
    c.shutdown().await;
}

#[tokio::test]
async fn validate_only_and_bad_requests_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start(dir.path()).await;
    add_broker(&c, 1).await;
    assert!(c.create_topics(vec![new_topic("t", 2)], true).await[0].is_ok());
    assert!(c.image().topics.is_empty());
    let mut bad = new_topic("t", 1);
    bad.replication_factor = 3;
    let res = c.create_topics(vec![bad], false).await;
    assert_eq!(
        res[0].as_ref().expect_err("rf").code,
        ResponseError::InvalidReplicationFactor
    );
    let mut bad = new_topic("t", 1);
    bad.configs.insert("retention.ms".into(), "soon".into());
    let res = c.create_topics(vec![bad], false).await;
    assert_eq!(
        res[0].as_ref().expect_err("config").code,
        ResponseError::InvalidConfig
    );
    assert!(c.create_topics(vec![new_topic("t", 2)], false).await[0].is_ok());
    let err = c
        .create_partitions("t", 2, vec![], false)
        .await
        .expect_err("not larger");
    assert_eq!(err.code, ResponseError::InvalidPartitions);
    c.shutdown().await;
}
