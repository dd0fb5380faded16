//! The KafkaCluster reconciler carrying out rolling restarts over many passes
//! (`common::world`): a config or image change restarts pods one at a time behind the ISR gate,
//! controllers first and the active one last; a dynamic broker config is applied without a
//! restart; a pass from a stale cached object does not take a second pod down.

mod common;

use std::sync::Arc;

use common::coll;
use common::world::{rf3, run_pod, PassRecord, World, NS};
use operator::cluster::reconcile::reconcile;
use operator::crd::cluster::KafkaCluster;
use serde_json::json;

#[tokio::test]
async fn a_dynamic_config_added_or_changed_is_applied_without_a_restart_and_a_removed_one_rolls() {
    let mut w = World::ready(&[100, 101, 102], &rf3(&[100, 101, 102], 6)).await;
    // basic.yaml's brokers set min.insync.replicas 2: the spec's value is the cluster default
    assert_eq!(
        w.admin.lock().broker_defaults.get("min.insync.replicas"),
        Some(&"2".to_owned())
    );
    let first_revision = w.api.names("/api/v1/namespaces/kafka/configmaps");
    w.edit_spec(|s| s["brokers"]["config"]["log.cleaner.min.cleanable.ratio"] = json!("0.5"));
    w.settle(60).await; // a new key: applied as a cluster default, no restart
    let deletes = w
        .api
        .requests("DELETE /api/v1/namespaces/kafka/pods/")
        .len();
    assert_eq!(deletes, 0, "a dynamic config added restarted a pod");
    assert_eq!(
        w.admin
            .lock()
            .broker_defaults
            .get("log.cleaner.min.cleanable.ratio"),
        Some(&"0.5".to_owned())
    );
    w.edit_spec(|s| s["brokers"]["config"]["log.cleaner.min.cleanable.ratio"] = json!("0.25"));
    w.settle(20).await;
    assert_eq!(
        w.api
            .requests("DELETE /api/v1/namespaces/kafka/pods/")
            .len(),
        deletes,
        "a new value of a dynamic config restarted a pod"
    );
    assert_eq!(
        w.admin
            .lock()
            .broker_defaults
            .get("log.cleaner.min.cleanable.ratio"),
        Some(&"0.25".to_owned())
    );
    assert!(w.status()["outdatedPods"]
        .as_array()
        .is_some_and(Vec::is_empty));
    let applied = w.events("ConfigApplied");
    assert!(
        applied.iter().any(|e| e["note"]
            .as_str()
            .unwrap_or_default()
            .contains("log.cleaner.min.cleanable.ratio=0.25")),
        "{applied:?}"
    );
    // the revision the template names (a new one since the key was added) carries the new
    // value for a pod that starts later
    let cms = w.api.names("/api/v1/namespaces/kafka/configmaps");
    assert_ne!(cms, first_revision);
    let sts = w
        .api
        .get("/apis/apps/v1/namespaces/kafka/statefulsets", "demo-broker")
        .expect("sts");
    let mounted = sts["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .and_then(|v| {
            v.iter()
                .find_map(|v| v["configMap"]["name"].as_str().map(str::to_owned))
        })
        .expect("config volume");
    let cm = w
        .api
        .get("/api/v1/namespaces/kafka/configmaps", &mounted)
        .expect("configmap");
    assert!(cm["data"]["demo-broker-0.properties"]
        .as_str()
        .unwrap_or_default()
        .contains("log.cleaner.min.cleanable.ratio=0.25"));
    // demo-broker-0 restarts by itself (a crash): it starts from the new revision, with the key
    run_pod(&w.api, "demo-broker", 0);
    let pod0 = w
        .api
        .get("/api/v1/namespaces/kafka/pods", "demo-broker-0")
        .expect("pod");
    assert_eq!(
        pod0["metadata"]["annotations"]["kafka.tributary.dev/dynamic-configs"],
        "log.cleaner.min.cleanable.ratio,min.insync.replicas"
    );
    // a key the spec drops is deleted from the cluster defaults; of the brokers, only the one
    // that started with it in its properties restarts (the others run without it)
    w.edit_spec(|s| {
        s["brokers"]["config"]
            .as_object_mut()
            .expect("config")
            .remove("log.cleaner.min.cleanable.ratio");
    });
    w.settle(60).await;
    assert!(!w
        .admin
        .lock()
        .broker_defaults
        .contains_key("log.cleaner.min.cleanable.ratio"));
    assert_eq!(
        w.api.requests("DELETE /api/v1/namespaces/kafka/pods/"),
        ["DELETE /api/v1/namespaces/kafka/pods/demo-broker-0"]
    );
}

#[tokio::test]
async fn a_config_change_restarts_pods_one_at_a_time_behind_the_isr_gate() {
    let mut w = World::ready(&[100, 101, 102], &rf3(&[100, 101, 102], 6)).await;
    {
        // topics with min.insync.replicas 1: the gate before a restart would let the next broker
        // go while the previous one is still out of its ISRs; only the gate after the restart
        // (back in every ISR) holds it, which is what this test watches
        let mut s = w.admin.lock();
        s.add_partitions("logs", &rf3(&[100, 101, 102], 3), 1_000);
        s.topic_min_isr.insert("logs".to_owned(), 1);
        s.topic_min_isr.insert("orders".to_owned(), 1);
    }
    w.edit_spec(|s| s["brokers"]["config"]["log.cleaner.backoff.ms"] = json!("1000"));
    w.settle(60).await;
    let deletions: Vec<&PassRecord> = w
        .history
        .iter()
        .filter(|r| !r.deleted_pods.is_empty())
        .collect();
    assert_eq!(
        w.deleted_since(0),
        ["demo-broker-0", "demo-broker-1", "demo-broker-2"]
    );
    for r in &deletions {
        assert_eq!(r.deleted_pods.len(), 1, "{r:?}");
        assert_eq!(r.pods_down_before, 0, "a pod was down: {r:?}");
        assert!(
            r.all_in_sync_before,
            "a partition was not fully in sync: {r:?}"
        );
    }
    // the gate held at least one pass after each restarted pod came back
    let restarts: Vec<usize> = w
        .history
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.deleted_pods.is_empty())
        .map(|(i, _)| i)
        .collect();
    for pair in restarts.windows(2) {
        assert!(pair[1] - pair[0] >= 3, "restarts too close: {restarts:?}");
    }
    let st = w.status();
    assert_eq!(st["outdatedPods"], json!([]), "{st}");
    assert_eq!(st["operation"]["kind"], "None");
    assert!(w.history.iter().any(|r| r.operation["kind"] == "Rolling"));
    assert!(w.history.iter().any(|r| r.operation["blockers"]
        .as_array()
        .is_some_and(|b| !b.is_empty())));
    assert_eq!(w.events("RestartingPod").len(), 3);
    // a pod restarted on purpose is not a failure
    assert!(
        w.history.iter().all(|r| r.degraded == "False"),
        "{:?}",
        w.history.iter().map(|r| &r.degraded).collect::<Vec<_>>()
    );
    // the controllers' config did not change: they were not restarted
    assert!(w.pods().iter().any(|p| p == "demo-controller-0"));
}

/// Every pod was restarted once, one at a time, controllers first (the fake's active
/// controller, node 1, last of them), then the brokers; never with a pod down or a partition
/// not fully in sync.
fn assert_whole_roll(w: &World) {
    assert_eq!(
        w.deleted_since(0),
        [
            "demo-controller-0",
            "demo-controller-2",
            "demo-controller-1",
            "demo-broker-0",
            "demo-broker-1",
            "demo-broker-2"
        ]
    );
    for r in w.history.iter().filter(|r| !r.deleted_pods.is_empty()) {
        assert_eq!(r.deleted_pods.len(), 1, "{r:?}");
        assert_eq!(r.pods_down_before, 0, "a pod was down: {r:?}");
        assert!(r.all_in_sync_before, "not fully in sync: {r:?}");
    }
}

#[tokio::test]
async fn an_image_change_restarts_controllers_first_the_active_one_last_then_brokers() {
    let mut w = World::ready(&[100, 101, 102], &rf3(&[100, 101, 102], 6)).await;
    w.edit_spec(|s| s["image"] = json!("tributary/broker:0.2.0"));
    w.settle(80).await;
    assert_whole_roll(&w);
    for name in w.pods() {
        let pod = w.api.get(&coll(NS, "pods"), &name).expect("pod");
        assert_eq!(
            pod["spec"]["containers"][0]["image"], "tributary/broker:0.2.0",
            "{name}"
        );
    }
    assert_eq!(w.status()["outdatedPods"], json!([]));
}

#[tokio::test]
async fn a_pass_from_a_stale_cached_object_does_not_restart_a_second_pod() {
    let mut w = World::ready(&[100, 101, 102], &rf3(&[100, 101, 102], 6)).await;
    w.edit_spec(|s| s["image"] = json!("tributary/broker:0.2.0"));
    // what a controller's cache could still hold after the next status write
    let stale: KafkaCluster = serde_json::from_value(w.cluster()).expect("parses");
    let r = w.step().await;
    assert_eq!(r.deleted_pods, ["demo-controller-0"]);
    w.kubelet(); // the deleted pod is noticed gone; not recreated yet
    let deletes = w
        .api
        .requests("DELETE /api/v1/namespaces/kafka/pods/")
        .len();
    reconcile(Arc::new(stale), w.ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        w.api
            .requests("DELETE /api/v1/namespaces/kafka/pods/")
            .len(),
        deletes,
        "a second pod was deleted while demo-controller-0 is gone"
    );
    assert_eq!(w.status()["day2"]["operation"]["pod"], "demo-controller-0");
}

#[tokio::test]
async fn a_restart_asked_for_by_annotation_rolls_the_cluster_or_one_pod_behind_the_gates() {
    let mut w = World::ready(&[100, 101, 102], &rf3(&[100, 101, 102], 6)).await;
    // on the KafkaCluster: every pod, one at a time, controllers first
    let mut kc = w.cluster();
    kc["metadata"]["annotations"] =
        json!({ "kafka.tributary.dev/restart": "2026-12-04T12:00:00Z" });
    w.api.insert(&coll(NS, "kafkaclusters"), kc);
    w.settle(80).await;
    assert_whole_roll(&w);
    // the same value again restarts nothing
    let before = w.history.len();
    w.settle(10).await;
    assert!(w.history[before..]
        .iter()
        .all(|r| r.deleted_pods.is_empty()));
    // on one pod: that pod only
    let mut pod = w.api.get(&coll(NS, "pods"), "demo-broker-1").expect("pod");
    pod["metadata"]["annotations"]["kafka.tributary.dev/restart"] = json!("true");
    w.api.insert(&coll(NS, "pods"), pod);
    let before = w.history.len();
    w.settle(30).await;
    assert_eq!(w.deleted_since(before), ["demo-broker-1"]);
    let recreated = w.api.get(&coll(NS, "pods"), "demo-broker-1").expect("pod");
    assert!(recreated["metadata"]["annotations"]
        .get("kafka.tributary.dev/restart")
        .is_none());
    assert_eq!(w.status()["outdatedPods"], json!([]));
}
