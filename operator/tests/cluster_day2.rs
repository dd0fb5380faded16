//! The KafkaCluster reconciler carrying out day-2 decisions, over many passes, against the
//! in-memory API server and the fake admin's partitions. Between passes a small "kubelet"
//! stands in for the StatefulSet controller and the brokers: a missing pod is noticed one step
//! (its broker stops: fenced, out of every ISR) and recreated the next from the StatefulSet's
//! current template (its broker starts: unfenced, back in the ISRs only after the fake's next
//! `tick`); pods beyond the StatefulSet's replicas are removed and their brokers stopped; new
//! brokers register when their pod first runs. Every pass checks what users rely on: no
//! partition below min.insync.replicas, never a pod deleted while another is down or a
//! partition is not fully in sync, the StatefulSet shrunk only once the leaving brokers are
//! empty.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::fake_api::FakeApi;
use common::{coll, context, fixture};
use kube::runtime::controller::Action;
use operator::admin::fake::FakeAdmin;
use operator::cluster::reconcile::{reconcile, REQUEUE_OPERATING, REQUEUE_READY};
use operator::context::Context;
use operator::crd::cluster::KafkaCluster;
use serde_json::{json, Value};

const NS: &str = "kafka";
const MIN_ISR: usize = 2;

struct World {
    api: FakeApi,
    admin: FakeAdmin,
    ctx: Arc<Context>,
    /// Pods noticed missing last step: recreated this step.
    gone: BTreeSet<String>,
    /// Everything each pass saw and did, for the assertions.
    history: Vec<PassRecord>,
}

#[derive(Debug, Clone)]
struct PassRecord {
    deleted_pods: Vec<String>,
    all_in_sync_before: bool,
    pods_down_before: usize,
    broker_replicas_after: i64,
    hosting_before: BTreeSet<i32>,
    operation: Value,
    /// `Degraded` condition status after the pass.
    degraded: Value,
    requeue: Action,
    /// Partition moves submitted this pass.
    moves: usize,
}

fn node_id(pod: &str) -> (bool, i32) {
    let ordinal: i32 = pod
        .rsplit('-')
        .next()
        .and_then(|o| o.parse().ok())
        .expect("ordinal");
    if pod.starts_with("demo-broker-") {
        (true, 100 + ordinal)
    } else {
        (false, ordinal)
    }
}

impl World {
    /// A ready `basic.yaml` cluster (3 controllers, brokers 100..=102, min ISR 2) whose fake
    /// Kafka holds `partitions` of topic `orders` (RF 3).
    async fn ready(brokers: &[i32], assignments: &[Vec<i32>]) -> World {
        let (client, api) = FakeApi::start();
        let mut kc = fixture("basic.yaml");
        kc["spec"]["brokers"]["replicas"] = json!(brokers.len());
        api.insert(&coll(NS, "kafkaclusters"), kc);
        let admin = FakeAdmin::with_brokers(brokers);
        {
            let mut s = admin.lock();
            s.controller = Some(1);
            s.add_partitions("orders", assignments, 1_000_000);
        }
        let ctx = context(client, admin.clone());
        let mut w = World {
            api,
            admin,
            ctx,
            gone: BTreeSet::new(),
            history: Vec::new(),
        };
        // the first pass creates the StatefulSets; their pods start together with the brokers
        // the fake already has registered
        w.reconcile_only().await;
        for sts in w.api.names(&coll(NS, "statefulsets")) {
            for ordinal in 0..w.sts_replicas(&sts) {
                run_pod(&w.api, &sts, ordinal);
            }
        }
        for _ in 0..2 {
            w.step().await;
        }
        assert_eq!(w.condition("Ready")["status"], "True", "{}", w.status());
        assert_eq!(w.status()["operation"]["kind"], "None", "{}", w.status());
        w
    }

    fn cluster(&self) -> Value {
        self.api
            .get(&coll(NS, "kafkaclusters"), "demo")
            .expect("cluster")
    }

    fn status(&self) -> Value {
        self.cluster()["status"].clone()
    }

    fn condition(&self, type_: &str) -> Value {
        self.status()["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
            .unwrap_or(Value::Null)
    }

    fn edit_spec(&self, f: impl FnOnce(&mut Value)) {
        let mut kc = self.cluster();
        f(&mut kc["spec"]);
        let g = kc["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        kc["metadata"]["generation"] = json!(g);
        self.api.insert(&coll(NS, "kafkaclusters"), kc);
    }

    fn sts_replicas(&self, name: &str) -> i64 {
        self.api
            .get(&coll(NS, "statefulsets"), name)
            .map_or(0, |s| s["spec"]["replicas"].as_i64().expect("replicas"))
    }

    fn pods(&self) -> Vec<String> {
        self.api.names(&coll(NS, "pods"))
    }

    fn events(&self, reason: &str) -> Vec<Value> {
        self.api
            .names(&coll(NS, "events"))
            .iter()
            .filter_map(|n| self.api.get(&coll(NS, "events"), n))
            .filter(|e| e["reason"] == reason)
            .collect()
    }

    async fn reconcile_only(&self) {
        let kc: KafkaCluster = serde_json::from_value(self.cluster()).expect("parses");
        reconcile(Arc::new(kc), self.ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("reconcile: {e}: {:?}", std::error::Error::source(&e)));
    }

    /// The StatefulSet controller, kubelet and brokers, one step.
    fn kubelet(&mut self) {
        for sts in self.api.names(&coll(NS, "statefulsets")) {
            let replicas = self.sts_replicas(&sts);
            for pod in self.pods().into_iter().filter(|p| {
                p.rsplit_once('-').map(|(s, _)| s) == Some(sts.as_str())
                    && node_id(p).1 % 100 >= replicas as i32
            }) {
                self.api.remove(&coll(NS, "pods"), &pod);
                let (broker, id) = node_id(&pod);
                if broker {
                    self.admin.lock().stop_broker(id);
                }
            }
            for ordinal in 0..replicas {
                let pod = format!("{sts}-{ordinal}");
                if self.api.get(&coll(NS, "pods"), &pod).is_some() {
                    continue;
                }
                let (broker, id) = node_id(&pod);
                if self.gone.remove(&pod) {
                    run_pod(&self.api, &sts, ordinal);
                    if broker {
                        let mut s = self.admin.lock();
                        if !s.brokers.contains(&id) {
                            s.brokers.push(id);
                        }
                        s.start_broker(id);
                    }
                } else {
                    self.gone.insert(pod);
                    let mut s = self.admin.lock();
                    if broker && s.brokers.contains(&id) {
                        s.stop_broker(id);
                    }
                }
            }
        }
    }

    /// One step: kubelet, a reconcile pass (checked), one tick of Kafka time.
    async fn step(&mut self) -> PassRecord {
        self.kubelet();
        let (all_in_sync_before, hosting_before) = {
            let s = self.admin.lock();
            let view = s.kafka_view();
            (
                view.partitions.iter().all(|p| p.fully_in_sync()),
                s.hosting_brokers(),
            )
        };
        let pods_down_before = self.gone.len();
        let deletes_before = self.api.requests("DELETE /api/v1/namespaces/kafka/pods/");
        let calls_before = self.admin.lock().calls.len();
        let kc: KafkaCluster = serde_json::from_value(self.cluster()).expect("parses");
        let requeue = reconcile(Arc::new(kc), self.ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("reconcile: {e}: {:?}", std::error::Error::source(&e)));
        let deleted_pods: Vec<String> = self
            .api
            .requests("DELETE /api/v1/namespaces/kafka/pods/")
            .into_iter()
            .skip(deletes_before.len())
            .map(|l| l.rsplit('/').next().unwrap_or_default().to_owned())
            .collect();
        let moves = self.admin.lock().calls[calls_before..]
            .iter()
            .filter(|c| c.starts_with("reassign "))
            .count();
        let below = self.admin.lock().below_min_isr(MIN_ISR);
        assert!(below.is_empty(), "below min ISR: {below:?}");
        self.admin.lock().tick();
        let record = PassRecord {
            deleted_pods,
            all_in_sync_before,
            pods_down_before,
            broker_replicas_after: self.sts_replicas("demo-broker"),
            hosting_before,
            operation: self.status()["operation"].clone(),
            degraded: self.condition("Degraded")["status"].clone(),
            requeue,
            moves,
        };
        self.history.push(record.clone());
        record
    }

    /// Steps until the operator reports no operation for two passes in a row.
    async fn settle(&mut self, max: usize) {
        let mut quiet = 0;
        for _ in 0..max {
            let r = self.step().await;
            quiet = if r.operation["kind"] == "None" && self.gone.is_empty() {
                quiet + 1
            } else {
                0
            };
            if quiet == 2 {
                return;
            }
        }
        panic!("not settled after {max} passes: {}", self.status());
    }
}

/// (Re)creates one ready pod of `sts` (in the tests' namespace) from its current template.
fn run_pod(api: &FakeApi, sts: &str, ordinal: i64) {
    common::run_pod(api, NS, sts, ordinal);
}

/// `n` partitions of RF 3 over `brokers`, round robin.
fn rf3(brokers: &[i32], n: usize) -> Vec<Vec<i32>> {
    (0..n)
        .map(|p| (0..3).map(|r| brokers[(p + r) % brokers.len()]).collect())
        .collect()
}

fn per_broker(admin: &FakeAdmin, id: i32) -> usize {
    admin
        .lock()
        .kafka_view()
        .partitions
        .iter()
        .filter(|p| p.replicas.contains(&id))
        .count()
}

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
        r#"tributary_operator_cluster_reassigning_bytes{namespace="kafka",name="demo"} 0"#,
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
async fn a_dynamic_config_value_is_applied_to_the_cluster_without_a_restart() {
    let mut w = World::ready(&[100, 101, 102], &rf3(&[100, 101, 102], 6)).await;
    // basic.yaml's brokers set min.insync.replicas 2: the spec's value is the cluster default
    assert_eq!(
        w.admin.lock().broker_defaults.get("min.insync.replicas"),
        Some(&"2".to_owned())
    );
    let first_revision = w.api.names("/api/v1/namespaces/kafka/configmaps");
    w.edit_spec(|s| s["brokers"]["config"]["log.cleaner.min.cleanable.ratio"] = json!("0.5"));
    w.settle(60).await; // a new key: restarts (its name is part of the hash)
    let deletes = w
        .api
        .requests("DELETE /api/v1/namespaces/kafka/pods/")
        .len();
    assert_eq!(deletes, 3);
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
    // the revision the pods mount carries the new value for a pod that restarts later
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
    // a key the spec drops is deleted from the cluster defaults (and restarts the brokers)
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
        w.api
            .requests("DELETE /api/v1/namespaces/kafka/pods/")
            .len(),
        deletes + 3
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
    w.edit_spec(|s| s["brokers"]["config"]["log.retention.ms"] = json!("1000"));
    w.settle(60).await;
    let deletions: Vec<&PassRecord> = w
        .history
        .iter()
        .filter(|r| !r.deleted_pods.is_empty())
        .collect();
    let deleted: Vec<String> = deletions
        .iter()
        .flat_map(|r| r.deleted_pods.clone())
        .collect();
    assert_eq!(deleted, ["demo-broker-0", "demo-broker-1", "demo-broker-2"]);
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
        s["brokers"]["config"]["log.retention.ms"] = json!("1000");
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
async fn an_image_change_restarts_controllers_first_the_active_one_last_then_brokers() {
    let mut w = World::ready(&[100, 101, 102], &rf3(&[100, 101, 102], 6)).await;
    w.edit_spec(|s| s["image"] = json!("tributary/broker:0.2.0"));
    w.settle(80).await;
    let deleted: Vec<String> = w
        .history
        .iter()
        .flat_map(|r| r.deleted_pods.clone())
        .collect();
    // the fake's active controller is node 1
    assert_eq!(
        deleted,
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
async fn a_failed_action_is_reported_and_decided_again_next_pass() {
    let mut w = World::ready(&[100, 101, 102], &rf3(&[100, 101, 102], 6)).await;
    w.api.fail("DELETE /api/v1/namespaces/kafka/pods/", 500);
    w.edit_spec(|s| s["brokers"]["config"]["log.retention.ms"] = json!("1000"));
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
