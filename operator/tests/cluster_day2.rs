//! The KafkaCluster reconciler carrying out day-2 decisions that move partitions, over many
//! passes (`common::world`: the in-memory API server, the fake admin's partitions and a small
//! kubelet): commissioning, decommissioning (refused, resumed, cancelled), and what happens
//! when Kafka is unreachable or an action fails. Every pass checks what users rely on: no
//! partition below min.insync.replicas, never a pod deleted while another is down or a
//! partition is not fully in sync, the StatefulSet shrunk only once the leaving brokers are
//! empty. Rolling restarts: `cluster_day2_rolls.rs`.

mod common;

use std::collections::BTreeSet;

use common::world::{per_broker, rf3, World, NS};
use common::{coll, context};
use kube::runtime::controller::Action;
use operator::cluster::reconcile::{REQUEUE_OPERATING, REQUEUE_READY};
use serde_json::json;

#[tokio::test]
async fn three_to_five_brokers_commissions_the_new_ones_until_balanced() {
    let mut w = World::ready(&[100, 101, 102], &rf3(&[100, 101, 102], 15)).await;
    w.edit_spec(|s| {
        s["brokers"]["replicas"] = json!(5);
        s["rebalance"] = json!({ "batchSize": 4, "throttleBytesPerSecond": 5_000_000 });
    });
    let mut saw_commissioning = false;
    let in_progress =
        r#"tributary_operator_cluster_operation_in_progress{namespace="kafka",name="demo"}"#;
    for _ in 0..60 {
        let r = w.step().await;
        if r.operation["kind"] == "Commissioning" {
            saw_commissioning = true;
            let metrics = w.ctx.metrics.render();
            assert!(metrics.contains(&format!("{in_progress} 1")), "{metrics}");
        }
        if saw_commissioning && r.operation["kind"] == "None" {
            break;
        }
    }
    assert!(saw_commissioning, "{}", w.status());
    let metrics = w.ctx.metrics.render();
    for line in [
        format!("{in_progress} 0").as_str(),
        r#"tributary_operator_cluster_brokers_ready{namespace="kafka",name="demo"} 5"#,
        r#"tributary_operator_cluster_under_replicated_partitions{namespace="kafka",name="demo"} 0"#,
        r#"tributary_operator_cluster_move_bytes_remaining{namespace="kafka",name="demo"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(w
        .history
        .iter()
        .filter(|r| r.operation["kind"] == "Commissioning")
        .all(|r| r.requeue == Action::requeue(REQUEUE_OPERATING)));
    assert_eq!(w.status()["operation"]["kind"], "None", "{}", w.status());
    assert_eq!(w.sts_replicas("demo-broker"), 5);
    // 45 replicas over 5 brokers: 9 each, give or take the planner's tolerance of one
    let counts: Vec<usize> = (100..=104).map(|id| per_broker(&w.admin, id)).collect();
    assert!(counts.iter().all(|n| (8..=10).contains(n)), "{counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 45);
    assert_eq!(
        w.status()["day2"],
        json!({ "knownBrokers": [100, 101, 102, 103, 104] }),
        "Commissioning cleared from the kept state too"
    );
    assert!(w
        .admin
        .lock()
        .calls
        .iter()
        .any(|c| c.starts_with("reassign orders-")));
    assert!(!w.events("Reassigning").is_empty());
    // in batches of at most 4, under the throttle, which is removed once the moves are done
    assert!(w.history.iter().all(|r| r.moves <= 4));
    assert!(w.history.iter().filter(|r| r.moves > 0).count() >= 3);
    let calls = w.admin.lock().calls.clone();
    let first_move = calls
        .iter()
        .position(|c| c.starts_with("reassign "))
        .expect("moved");
    let last_move = calls
        .iter()
        .rposition(|c| c.starts_with("reassign "))
        .expect("moved");
    let throttled = calls
        .iter()
        .position(|c| c == "set throttle 5000000")
        .expect("throttled");
    let cleared = calls
        .iter()
        .rposition(|c| c == "clear throttle")
        .expect("cleared");
    assert!(throttled < first_move && last_move < cleared, "{calls:?}");
    assert_eq!(w.admin.lock().throttle_rate, None);
    assert!(w.admin.lock().throttled_replicas.is_empty());
    assert_eq!(w.events("OperationFinished").len(), 1);
    assert_eq!(w.condition("Ready")["status"], "True");
    assert_eq!(w.condition("Day2Operations")["status"], "True");
}

#[tokio::test]
async fn five_to_three_drains_then_shrinks_then_unregisters() {
    let all = [100, 101, 102, 103, 104];
    let mut w = World::ready(&all, &rf3(&all, 15)).await;
    w.edit_spec(|s| s["brokers"]["replicas"] = json!(3));
    w.settle(80).await;
    let h = &w.history;
    let first_cordon = w
        .admin
        .lock()
        .calls
        .iter()
        .position(|c| c.starts_with("set_cordon [103, 104] true"));
    assert!(first_cordon.is_some(), "{:?}", w.admin.lock().calls);
    let shrink = h
        .iter()
        .position(|r| r.broker_replicas_after == 3)
        .expect("the StatefulSet shrank");
    assert!(h[..shrink].iter().all(|r| r.broker_replicas_after == 5));
    // it shrank only once 103 and 104 held nothing and everything was in sync
    assert!(!h[shrink].hosting_before.contains(&103));
    assert!(!h[shrink].hosting_before.contains(&104));
    assert!(h[shrink].all_in_sync_before);
    assert!(h[..shrink]
        .iter()
        .any(|r| r.operation["kind"] == "Draining"));
    // Bytes: 103 and 104 hold 9 replicas of 1 MB each; the status counts them moved, never
    // backwards, and the remaining bytes down to none.
    let reported: Vec<(u64, u64)> = h[..=shrink]
        .iter()
        .filter_map(|r| {
            let op = &r.operation;
            Some((op["bytesMoved"].as_u64()?, op["bytesRemaining"].as_u64()?))
        })
        .collect();
    assert_eq!(reported.first(), Some(&(0, 18_000_000)), "{reported:?}");
    assert_eq!(reported.last(), Some(&(18_000_000, 0)), "{reported:?}");
    assert!(
        reported
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 >= w[1].1),
        "{reported:?}"
    );
    assert!(reported.iter().all(|(m, r)| m + r == 18_000_000));
    let calls = w.admin.lock().calls.clone();
    let reassigned = calls
        .iter()
        .position(|c| c.starts_with("reassign "))
        .expect("moved");
    let cordoned = calls
        .iter()
        .position(|c| c.starts_with("set_cordon"))
        .expect("cordoned");
    let unregistered = calls
        .iter()
        .position(|c| c.starts_with("unregister_broker"))
        .expect("unregistered");
    assert!(
        cordoned < reassigned && reassigned < unregistered,
        "{calls:?}"
    );
    let s = w.admin.lock();
    assert_eq!(s.brokers, [100, 101, 102]);
    assert!(s.cordoned.is_empty());
    drop(s);
    assert_eq!(w.sts_replicas("demo-broker"), 3);
    assert!(!w
        .pods()
        .iter()
        .any(|p| p == "demo-broker-3" || p == "demo-broker-4"));
    assert_eq!(w.status()["day2"]["knownBrokers"], json!([100, 101, 102]));
    assert_eq!(
        w.status()["day2"],
        json!({ "knownBrokers": [100, 101, 102] }),
        "the finished operation is gone from status (a restart must not resume it)"
    );
    assert!(w.status()["operation"].get("blockers").is_none());
    assert_eq!(w.condition("Degraded")["status"], "False", "{}", w.status());
    for id in 100..=102 {
        assert_eq!(per_broker(&w.admin, id), 15, "broker {id}");
    }
    assert!(!w.events("ScaledBrokers").is_empty());
    assert!(!w.events("Unregistered").is_empty());
}

#[tokio::test]
async fn an_unsafe_scale_down_is_refused_and_the_statefulset_is_untouched() {
    let mut w = World::ready(&[100, 101, 102], &rf3(&[100, 101, 102], 6)).await;
    w.edit_spec(|s| s["brokers"]["replicas"] = json!(2));
    for _ in 0..3 {
        let r = w.step().await;
        assert_eq!(w.sts_replicas("demo-broker"), 3);
        assert_eq!(r.requeue, Action::requeue(REQUEUE_READY), "no fast requeue");
    }
    let degraded = w.condition("Degraded");
    assert_eq!(degraded["status"], "True", "{degraded}");
    assert_eq!(degraded["reason"], "ScaleDownRefused", "{degraded}");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or("")
            .contains("orders (RF 3)"),
        "{degraded}"
    );
    assert_eq!(
        w.events("ScaleDownRefused").len(),
        1,
        "one Event, not one per pass"
    );
    {
        let s = w.admin.lock();
        assert!(s.cordoned.is_empty());
        assert!(!s.calls.iter().any(|c| c.starts_with("reassign")));
    }
    assert_eq!(
        w.pods()
            .iter()
            .filter(|p| p.starts_with("demo-broker-"))
            .count(),
        3
    );
    let cm = w.cluster()["status"]["nodes"].as_array().map(Vec::len);
    assert_eq!(cm, Some(6), "every running node stays listed");
    // back to 3: the refusal clears
    w.edit_spec(|s| s["brokers"]["replicas"] = json!(3));
    w.step().await;
    assert_eq!(w.condition("Degraded")["status"], "False");
}

#[tokio::test]
async fn a_restarted_operator_resumes_a_drain_from_status() {
    let all = [100, 101, 102, 103];
    let mut w = World::ready(&all, &rf3(&all, 12)).await;
    w.edit_spec(|s| {
        s["brokers"]["replicas"] = json!(3);
        s["rebalance"] = json!({ "batchSize": 3, "throttleBytesPerSecond": 1_000_000 });
    });
    // cordon and the first batch, then the operator process goes away mid-drain
    for _ in 0..3 {
        w.step().await;
    }
    assert_eq!(w.admin.lock().throttle_rate, Some(1_000_000));
    let status = w.status();
    assert_eq!(status["operation"]["kind"], "Draining", "{status}");
    assert_eq!(status["day2"]["operation"]["kind"], "decommissioning");
    let moved_before = status["day2"]["operation"]["moved"].clone();
    assert!(moved_before.as_array().is_some_and(|m| !m.is_empty()));
    // a fresh operator: a new context (new connection, no memory) over the same API and Kafka
    w.ctx = context(w.api.client(), w.admin.clone());
    w.step().await;
    // it goes on with the same operation: the partitions submitted before are still counted
    let moved_after = w.status()["day2"]["operation"]["moved"].clone();
    for m in moved_before.as_array().into_iter().flatten() {
        assert!(
            moved_after.as_array().is_some_and(|a| a.contains(m)),
            "{m} forgotten: {moved_after}"
        );
    }
    w.settle(80).await;
    // the throttle set before the restart is known from status and removed at the end
    assert_eq!(w.admin.lock().throttle_rate, None, "throttle left behind");
    let s = w.admin.lock();
    assert_eq!(s.brokers, [100, 101, 102]);
    let calls = s.calls.clone();
    drop(s);
    // the cordon was not repeated (it resumed), and every partition was moved once
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("set_cordon [103] true"))
            .count(),
        1,
        "{calls:?}"
    );
    let moves: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("reassign "))
        .collect();
    let distinct: BTreeSet<String> = moves
        .iter()
        .map(|c| c.split(' ').nth(1).unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        moves.len(),
        distinct.len(),
        "a partition moved twice: {moves:?}"
    );
    assert_eq!(w.sts_replicas("demo-broker"), 3);
    assert_eq!(w.status()["operation"]["kind"], "None");
}

#[tokio::test]
async fn day_one_work_goes_on_while_kafka_is_unreachable() {
    let mut w = World::ready(&[100, 101, 102], &rf3(&[100, 101, 102], 6)).await;
    // (the first pass of `ready` had no broker pod to ask yet: one Event then)
    let unreachable_before = w.events("KafkaUnreachable").len();
    w.admin.lock().unreachable = true;
    w.edit_spec(|s| s["brokers"]["replicas"] = json!(2));
    for _ in 0..3 {
        w.step().await;
    }
    let c = w.condition("Day2Operations");
    assert_eq!(c["status"], "False", "{c}");
    assert_eq!(c["reason"], "KafkaUnreachable");
    assert_eq!(
        w.sts_replicas("demo-broker"),
        3,
        "no shrink without the planner"
    );
    assert_eq!(
        w.events("KafkaUnreachable").len(),
        unreachable_before + 1,
        "one Event, not one per pass"
    );
    // a day-1 change still applies: a new ConfigMap revision
    w.edit_spec(|s| {
        s["brokers"]["replicas"] = json!(3);
        s["brokers"]["config"]["log.cleaner.backoff.ms"] = json!("1000");
    });
    w.step().await;
    let cms = w.api.names(&coll(NS, "configmaps"));
    assert!(
        cms.iter()
            .filter(|c| c.starts_with("demo-broker-config-"))
            .count()
            >= 2,
        "{cms:?}"
    );
    assert_eq!(
        w.api
            .requests("DELETE /api/v1/namespaces/kafka/pods/")
            .len(),
        0
    );
    w.admin.lock().unreachable = false;
    w.settle(60).await;
    assert_eq!(w.condition("Day2Operations")["status"], "True");
    assert_eq!(w.status()["outdatedPods"], json!([]));
}

#[tokio::test]
async fn a_failed_action_is_reported_and_decided_again_next_pass() {
    let mut w = World::ready(&[100, 101, 102], &rf3(&[100, 101, 102], 6)).await;
    w.api.fail("DELETE /api/v1/namespaces/kafka/pods/", 500);
    w.edit_spec(|s| s["brokers"]["config"]["log.cleaner.backoff.ms"] = json!("1000"));
    for _ in 0..2 {
        let r = w.step().await;
        assert_eq!(r.requeue, Action::requeue(REQUEUE_OPERATING));
    }
    let c = w.condition("Day2Operations");
    assert_eq!(c["status"], "False", "{c}");
    assert_eq!(c["reason"], "ActionFailed", "{c}");
    assert!(
        c["message"]
            .as_str()
            .unwrap_or("")
            .contains("delete pod demo-broker-0"),
        "{c}"
    );
    // the failed restart is not recorded as under way: the state is the one before it
    assert!(
        w.status()["day2"].get("operation").is_none(),
        "{}",
        w.status()
    );
    assert!(!w.events("Day2ActionFailed").is_empty());
    assert!(w.ctx.metrics.render().contains(r#"kind="day2_action"}"#));
    assert_eq!(w.pods().len(), 6, "nothing was deleted");
    w.api.heal();
    w.settle(60).await;
    assert_eq!(w.condition("Day2Operations")["status"], "True");
    assert_eq!(w.status()["outdatedPods"], json!([]));
}

#[tokio::test]
async fn a_drain_cancelled_before_the_shrink_uncordons_and_keeps_every_broker() {
    let all = [100, 101, 102, 103, 104];
    let mut w = World::ready(&all, &rf3(&all, 15)).await;
    w.edit_spec(|s| s["brokers"]["replicas"] = json!(3));
    for _ in 0..3 {
        w.step().await;
    }
    assert_eq!(w.status()["operation"]["kind"], "Draining");
    assert_eq!(
        w.admin.lock().cordoned.iter().copied().collect::<Vec<_>>(),
        [103, 104]
    );
    w.edit_spec(|s| s["brokers"]["replicas"] = json!(5));
    w.settle(60).await;
    assert!(w.admin.lock().cordoned.is_empty());
    assert!(w
        .admin
        .lock()
        .calls
        .iter()
        .any(|c| c == "set_cordon [103, 104] false"));
    assert_eq!(w.sts_replicas("demo-broker"), 5);
    assert!(w.history.iter().all(|r| r.broker_replicas_after == 5));
    assert_eq!(w.admin.lock().brokers, all);
    assert!(!w.events("Uncordoned").is_empty());
    assert_eq!(w.condition("Degraded")["status"], "False");
}
