//! The admin client's day-2 calls against a real three-node cluster of this repository's broker
//! (combined nodes on loopback, `common::cluster`): what `observe` reports after data is
//! produced, cordoning and the replication throttle read back, the controller quorum, a
//! reassignment followed to its end, a refused one, preferred election, and unregistering a
//! stopped broker. Needs `target/debug/broker` (`cargo build -p broker --bins`) or
//! `TRIBUTARY_BROKER_BIN`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::cluster::{wait_for, Cluster};
use common::kafka::{create_topic_assigned, produce};
use operator::admin::client::KafkaAdminClient;
use operator::admin::{
    codes, throttle, ConfigChange, ConfigSource, KafkaAdmin, NewTopic, TopicPartition,
    MIN_INSYNC_REPLICAS,
};
use operator::day2::{ObservedKafka, PartitionView};
use tributary_planner::Move;

const WAIT: Duration = Duration::from_secs(15);

async fn observe(admin: &KafkaAdminClient) -> Result<ObservedKafka, String> {
    admin.observe().await.map_err(|e| e.to_string())
}

fn partition<'a>(k: &'a ObservedKafka, topic: &str, p: i32) -> &'a PartitionView {
    k.partitions
        .iter()
        .find(|x| x.topic == topic && x.partition == p)
        .unwrap_or_else(|| panic!("{topic}-{p} not observed"))
}

fn sorted(mut v: Vec<i32>) -> Vec<i32> {
    v.sort_unstable();
    v
}

/// Config values of `entries` whose source is `source`, by name.
fn values(
    entries: &[operator::admin::ConfigEntry],
    source: ConfigSource,
) -> BTreeMap<String, String> {
    entries
        .iter()
        .filter(|e| e.source == source)
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_cordon_throttle_and_quorum_on_three_nodes() {
    let cluster = Cluster::combined(3, &[]).await;
    let admin = KafkaAdminClient::connect(&cluster.node(1).addr())
        .await
        .expect("connect");
    let topic = |name: &str, partitions: i32, rf: i16, config: &[(&str, &str)]| NewTopic {
        name: name.into(),
        partitions,
        replication_factor: rf,
        config: config
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    };
    admin
        .create_topic(&topic("observed", 3, 3, &[(MIN_INSYNC_REPLICAS, "2")]))
        .await
        .expect("create observed");
    admin
        .create_topic(&topic("plain", 1, 1, &[]))
        .await
        .expect("create plain");

    // Every partition led and fully in sync.
    let k = wait_for("4 partitions led and fully in sync", WAIT, || async {
        let k = observe(&admin).await?;
        let ready = k.partitions.len() == 4
            && k.partitions
                .iter()
                .all(|p| p.leader.is_some() && p.fully_in_sync());
        if ready {
            Ok(k)
        } else {
            Err(format!("{:?}", k.partitions))
        }
    })
    .await;
    for p in 0..3 {
        let leader = partition(&k, "observed", p).leader.expect("led");
        produce(&cluster.node(leader).addr(), "observed", p, 20, 1000).await;
    }

    // Sizes from every broker's own log directory: each holds a copy of every partition.
    let k = wait_for("every replica of observed holds data", WAIT, || async {
        let k = observe(&admin).await?;
        let every_broker =
            (1..=3).all(|b| k.log_dir_bytes.get(&b).is_some_and(|n| *n >= 3 * 20_000));
        if every_broker {
            Ok(k)
        } else {
            Err(format!("{:?}", k.log_dir_bytes))
        }
    })
    .await;
    let ids: Vec<i32> = k.brokers.iter().map(|b| b.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert!(
        k.brokers.iter().all(|b| !b.fenced && !b.cordoned),
        "{:?}",
        k.brokers
    );
    for p in 0..3 {
        let view = partition(&k, "observed", p);
        assert_eq!(sorted(view.replicas.clone()), [1, 2, 3]);
        assert_eq!(sorted(view.isr.clone()), [1, 2, 3]);
        assert!(view.size_bytes >= 20_000, "{view:?}");
        assert!(!view.reassigning());
    }
    assert_eq!(partition(&k, "plain", 0).size_bytes, 0);
    assert_eq!(k.topic_min_insync_replicas["observed"], 2, "the override");
    assert_eq!(
        k.topic_min_insync_replicas["plain"], 1,
        "the broker default"
    );

    // The active controller is the quorum's leader, and every voter catches up.
    let quorum = wait_for("every voter caught up", WAIT, || async {
        let q = admin.describe_quorum().await.map_err(|e| e.to_string())?;
        let caught_up = q.voters.len() == 3 && (1..=3).all(|v| q.lag(v) == Some(0));
        if caught_up {
            Ok(q)
        } else {
            Err(format!("{q:?}"))
        }
    })
    .await;
    let voters: Vec<i32> = quorum.voters.iter().map(|v| v.id).collect();
    assert_eq!(voters, [1, 2, 3]);
    assert!(quorum.high_watermark > 0);
    let leader = quorum.leader_id.expect("the quorum has a leader");
    assert_eq!(
        observe(&admin).await.expect("observe").active_controller,
        Some(leader)
    );

    // Cordon two brokers, uncordon one: read back from each broker's own config.
    admin.set_cordon(&[2, 3], true).await.expect("cordon");
    admin.set_cordon(&[3], false).await.expect("uncordon");
    let cordoned = wait_for("broker 2 alone cordoned", WAIT, || async {
        let k = observe(&admin).await?;
        let c: Vec<i32> = k
            .brokers
            .iter()
            .filter(|b| b.cordoned)
            .map(|b| b.id)
            .collect();
        if c == [2] {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    })
    .await;
    assert_eq!(cordoned, [2]);
    admin.set_cordon(&[2], false).await.expect("uncordon");
    let k = wait_for("no broker cordoned", WAIT, || async {
        let k = observe(&admin).await?;
        if k.brokers.iter().all(|b| !b.cordoned) {
            Ok(k)
        } else {
            Err(format!("{:?}", k.brokers))
        }
    })
    .await;

    // Throttle a (not submitted) move of plain-0 to another broker, then clear it.
    let from = partition(&k, "plain", 0).replicas[0];
    let to = if from == 3 { 1 } else { from + 1 };
    let m = Move {
        topic: "plain".into(),
        partition: 0,
        current: vec![from],
        target: vec![to],
        size_bytes: 0,
    };
    admin
        .set_replication_throttle(1_000_000, std::slice::from_ref(&m))
        .await
        .expect("throttle");
    // Read back from the broker we talk to, once its metadata image has the change.
    let expected = [
        (throttle::FOLLOWER_RATE, "1000000".to_owned()),
        (throttle::LEADER_RATE, "1000000".to_owned()),
        (throttle::FOLLOWER_REPLICAS, format!("0:{to}")),
        (throttle::LEADER_REPLICAS, format!("0:{from}")),
    ];
    let expected: BTreeMap<String, String> = expected
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    wait_for("the throttle read back", WAIT, || async {
        let now = throttle_read_back(&admin).await?;
        if now == expected {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await;
    admin.clear_replication_throttle().await.expect("clear");
    wait_for("the throttle gone", WAIT, || async {
        let now = throttle_read_back(&admin).await?;
        if now.is_empty() {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await;

    // Every config the operator applies without a restart is one the broker takes as a dynamic
    // cluster default, and the operator's sync sets and deletes them.
    let wanted: BTreeMap<String, String> =
        [("log.retention.ms", "7200000"), ("log.roll.ms", "3600000")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let current = admin.describe_broker_defaults().await.expect("describe");
    let changes = operator::cluster::dynamic::dynamic_changes(&current, &wanted);
    assert_eq!(changes.len(), 2, "{changes:?}");
    admin.alter_broker_defaults(&changes).await.expect("set");
    // The defaults reach the broker through the metadata log: read back until in sync.
    let in_sync = |wanted: BTreeMap<String, String>| {
        let admin = &admin;
        async move {
            let now = admin
                .describe_broker_defaults()
                .await
                .map_err(|e| e.to_string())?;
            let left = operator::cluster::dynamic::dynamic_changes(&now, &wanted);
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        }
    };
    wait_for("the defaults set", WAIT, || in_sync(wanted.clone())).await;
    let none = BTreeMap::new();
    let defaults = admin.describe_broker_defaults().await.expect("describe");
    let deletes = operator::cluster::dynamic::dynamic_changes(&defaults, &none);
    admin.alter_broker_defaults(&deletes).await.expect("delete");
    wait_for("the defaults deleted", WAIT, || in_sync(none.clone())).await;
    // Every key the operator applies without a restart is taken as a dynamic cluster default
    // by the broker (a static one is refused: it needs a restart). Set to the broker's own
    // defaults, then deleted.
    let defaults_of_the_broker = [
        ("compression.type", "producer"),
        ("log.cleaner.delete.retention.ms", "86400000"),
        ("log.cleaner.max.compaction.lag.ms", "9223372036854775807"),
        ("log.cleaner.min.cleanable.ratio", "0.5"),
        ("log.cleaner.min.compaction.lag.ms", "0"),
        ("log.cleanup.policy", "delete"),
        ("log.flush.interval.messages", "9223372036854775807"),
        ("log.flush.interval.ms", "9223372036854775807"),
        ("log.index.interval.bytes", "4096"),
        ("log.index.size.max.bytes", "10485760"),
        ("log.message.timestamp.type", "CreateTime"),
        ("log.retention.bytes", "-1"),
        ("log.retention.ms", "604800000"),
        ("log.roll.ms", "604800000"),
        ("log.segment.bytes", "1073741824"),
        ("log.segment.delete.delay.ms", "60000"),
        ("message.max.bytes", "1048588"),
        ("min.insync.replicas", "1"),
        ("unclean.leader.election.enable", "false"),
    ];
    let keys: Vec<&str> = defaults_of_the_broker.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        operator::cluster::build::configmap::DYNAMIC_BROKER_CONFIGS
    );
    let all: BTreeMap<String, String> = defaults_of_the_broker
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let current = admin.describe_broker_defaults().await.expect("describe");
    let changes = operator::cluster::dynamic::dynamic_changes(&current, &all);
    admin
        .alter_broker_defaults(&changes)
        .await
        .expect("every operator-applied key is dynamic on the broker");
    wait_for("every default set", WAIT, || in_sync(all.clone())).await;
    let defaults = admin.describe_broker_defaults().await.expect("describe");
    let deletes = operator::cluster::dynamic::dynamic_changes(&defaults, &none);
    assert_eq!(deletes.len(), all.len(), "{deletes:?}");
    admin.alter_broker_defaults(&deletes).await.expect("delete");
    wait_for("every default deleted", WAIT, || in_sync(none.clone())).await;
    let refused = admin
        .alter_broker_defaults(&[ConfigChange::Set {
            name: "log.dirs".into(),
            value: "/elsewhere".into(),
        }])
        .await;
    assert!(refused.is_err(), "a static key must be refused");
}

/// The throttle configs as the cluster reports them: the cluster-wide rates (dynamic broker
/// defaults) and topic plain's throttled-replica lists (topic overrides).
async fn throttle_read_back(admin: &KafkaAdminClient) -> Result<BTreeMap<String, String>, String> {
    let defaults = admin
        .describe_broker_defaults()
        .await
        .map_err(|e| e.to_string())?;
    let topic = admin
        .describe_topic_config("plain")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = values(&defaults, ConfigSource::DynamicDefaultBroker);
    out.extend(values(&topic, ConfigSource::DynamicTopic));
    out.retain(|k, _| k.contains("replication.throttled"));
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassign_elect_and_unregister_on_three_nodes() {
    // No automatic leader rebalance: preferred election happens only when asked for.
    let mut cluster = Cluster::combined(3, &[("auto.leader.rebalance.enable", "false")]).await;
    let admin = KafkaAdminClient::connect(&cluster.node(2).addr())
        .await
        .expect("connect");
    create_topic_assigned(&admin, "moving", &[&[1, 2]]).await;
    wait_for("moving-0 led by 1 with ISR [1, 2]", WAIT, || async {
        let k = observe(&admin).await?;
        let p = partition(&k, "moving", 0);
        if p.leader == Some(1) && sorted(p.isr.clone()) == [1, 2] {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    })
    .await;
    produce(&cluster.node(1).addr(), "moving", 0, 50, 1000).await;

    // [1, 2] -> [2, 3]: broker 3 copies the data, broker 1 lets go of it.
    let m = |current: Vec<i32>, target: Vec<i32>| Move {
        topic: "moving".into(),
        partition: 0,
        current,
        target,
        size_bytes: 50_000,
    };
    admin
        .reassign(&[m(vec![1, 2], vec![2, 3])])
        .await
        .expect("reassign");
    let k = wait_for(
        "moving-0 on [2, 3], in sync, data on 3 and gone from 1",
        WAIT,
        || async {
            let k = observe(&admin).await?;
            let p = partition(&k, "moving", 0);
            let done = p.replicas == [2, 3]
                && !p.reassigning()
                && sorted(p.isr.clone()) == [2, 3]
                && k.log_dir_bytes.get(&3).is_some_and(|n| *n >= 50_000)
                && k.log_dir_bytes.get(&1) == Some(&0);
            if done {
                Ok(k)
            } else {
                Err(format!("{p:?} {:?}", k.log_dir_bytes))
            }
        },
    )
    .await;
    assert!(partition(&k, "moving", 0).size_bytes >= 50_000);
    // Cancelling a partition that no longer moves is not an error.
    let tp = TopicPartition {
        topic: "moving".into(),
        partition: 0,
    };
    admin
        .cancel_reassignments(std::slice::from_ref(&tp))
        .await
        .expect("cancel of a finished move");

    // A target on a broker that does not exist is refused, naming the partition.
    let err = admin
        .reassign(&[m(vec![2, 3], vec![2, 9])])
        .await
        .expect_err("broker 9 does not exist");
    assert!(err.to_string().contains("moving-0"), "{err}");
    assert!(err.kafka_code().is_some(), "{err:?}");

    // Reordering the replicas makes 3 the preferred leader without moving data; leadership
    // moves only when asked for.
    admin
        .reassign(&[m(vec![2, 3], vec![3, 2])])
        .await
        .expect("reorder");
    let k = wait_for("moving-0 reordered to [3, 2]", WAIT, || async {
        let k = observe(&admin).await?;
        let p = partition(&k, "moving", 0);
        if p.replicas == [3, 2] && !p.reassigning() {
            Ok(k)
        } else {
            Err(format!("{p:?}"))
        }
    })
    .await;
    let before = partition(&k, "moving", 0).leader;
    let elected = admin
        .elect_preferred_leaders(Some(std::slice::from_ref(&tp)))
        .await
        .expect("preferred election");
    assert_eq!(before, Some(2), "a reorder keeps the leader");
    assert_eq!(elected, std::slice::from_ref(&tp));
    wait_for("moving-0 led by 3", WAIT, || async {
        let k = observe(&admin).await?;
        let p = partition(&k, "moving", 0);
        if p.leader == Some(3) {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    })
    .await;
    assert_eq!(
        admin
            .elect_preferred_leaders(None)
            .await
            .expect("election of all"),
        [],
        "every partition is led by its preferred replica"
    );

    // A broker that holds replicas cannot be unregistered; a stopped, empty one can.
    let err = admin
        .unregister_broker(2)
        .await
        .expect_err("2 holds replicas");
    assert_eq!(err.kafka_code(), Some(codes::INVALID_REQUEST), "{err}");
    cluster.node_mut(1).stop().await;
    wait_for("broker 1 fenced", WAIT, || async {
        let k = observe(&admin).await?;
        let fenced = k.brokers.iter().any(|b| b.id == 1 && b.fenced);
        if fenced {
            Ok(())
        } else {
            Err(format!("{:?}", k.brokers))
        }
    })
    .await;
    admin.unregister_broker(1).await.expect("unregister 1");
    let k = wait_for("broker 1 gone", WAIT, || async {
        let k = observe(&admin).await?;
        let ids: Vec<i32> = k.brokers.iter().map(|b| b.id).collect();
        if ids == [2, 3] {
            Ok(k)
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await;
    assert!(k.brokers.iter().all(|b| !b.fenced), "{:?}", k.brokers);
    let quorum = admin.describe_quorum().await.expect("quorum");
    assert!(matches!(quorum.leader_id, Some(2 | 3)), "{quorum:?}");
    assert_eq!(k.active_controller, quorum.leader_id);
}
