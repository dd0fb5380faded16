//! The world of the day-2 reconcile tests (`cluster_day2*.rs`): the KafkaCluster reconciler run
//! pass by pass against the in-memory API server and the fake admin's partitions, with a small
//! "kubelet" between passes standing in for the StatefulSet controller and the brokers (a
//! missing pod is noticed one step, its broker stopped, and recreated the next from the
//! StatefulSet's current template; pods beyond the replicas removed; new brokers registered when
//! their pod first runs). Every pass records what users rely on for the tests to check.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::runtime::controller::Action;
use operator::admin::fake::FakeAdmin;
use operator::cluster::reconcile::reconcile;
use operator::context::Context;
use operator::crd::cluster::KafkaCluster;
use serde_json::{json, Value};

use super::fake_api::FakeApi;
use super::{coll, context, fixture};

pub const NS: &str = "kafka";
pub const MIN_ISR: usize = 2;

pub struct World {
    pub api: FakeApi,
    pub admin: FakeAdmin,
    pub ctx: Arc<Context>,
    /// Pods noticed missing last step: recreated this step.
    pub gone: BTreeSet<String>,
    /// Everything each pass saw and did, for the assertions.
    pub history: Vec<PassRecord>,
}

#[derive(Debug, Clone)]
pub struct PassRecord {
    pub deleted_pods: Vec<String>,
    pub all_in_sync_before: bool,
    pub pods_down_before: usize,
    pub broker_replicas_after: i64,
    pub hosting_before: BTreeSet<i32>,
    pub operation: Value,
    /// `Degraded` condition status after the pass.
    pub degraded: Value,
    pub requeue: Action,
    /// Partition moves submitted this pass.
    pub moves: usize,
}

pub fn node_id(pod: &str) -> (bool, i32) {
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
    pub async fn ready(brokers: &[i32], assignments: &[Vec<i32>]) -> World {
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

    pub fn cluster(&self) -> Value {
        self.api
            .get(&coll(NS, "kafkaclusters"), "demo")
            .expect("cluster")
    }

    pub fn status(&self) -> Value {
        self.cluster()["status"].clone()
    }

    pub fn condition(&self, type_: &str) -> Value {
        self.status()["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
            .unwrap_or(Value::Null)
    }

    pub fn edit_spec(&self, f: impl FnOnce(&mut Value)) {
        let mut kc = self.cluster();
        f(&mut kc["spec"]);
        let g = kc["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        kc["metadata"]["generation"] = json!(g);
        self.api.insert(&coll(NS, "kafkaclusters"), kc);
    }

    /// The pods deleted by the passes from `from` on (an index into `history`), in order.
    pub fn deleted_since(&self, from: usize) -> Vec<String> {
        self.history[from..]
            .iter()
            .flat_map(|r| r.deleted_pods.clone())
            .collect()
    }

    pub fn sts_replicas(&self, name: &str) -> i64 {
        self.api
            .get(&coll(NS, "statefulsets"), name)
            .map_or(0, |s| s["spec"]["replicas"].as_i64().expect("replicas"))
    }

    pub fn pods(&self) -> Vec<String> {
        self.api.names(&coll(NS, "pods"))
    }

    pub fn events(&self, reason: &str) -> Vec<Value> {
        self.api
            .names(&coll(NS, "events"))
            .iter()
            .filter_map(|n| self.api.get(&coll(NS, "events"), n))
            .filter(|e| e["reason"] == reason)
            .collect()
    }

    pub async fn reconcile_only(&self) {
        let kc: KafkaCluster = serde_json::from_value(self.cluster()).expect("parses");
        reconcile(Arc::new(kc), self.ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("reconcile: {e}: {:?}", std::error::Error::source(&e)));
    }

    /// The StatefulSet controller, kubelet and brokers, one step.
    pub fn kubelet(&mut self) {
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
    pub async fn step(&mut self) -> PassRecord {
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
    pub async fn settle(&mut self, max: usize) {
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
pub fn run_pod(api: &FakeApi, sts: &str, ordinal: i64) {
    super::run_pod(api, NS, sts, ordinal);
}

/// `n` partitions of RF 3 over `brokers`, round robin.
pub fn rf3(brokers: &[i32], n: usize) -> Vec<Vec<i32>> {
    (0..n)
        .map(|p| (0..3).map(|r| brokers[(p + r) % brokers.len()]).collect())
        .collect()
}

pub fn per_broker(admin: &FakeAdmin, id: i32) -> usize {
    admin
        .lock()
        .kafka_view()
        .partitions
        .iter()
        .filter(|p| p.replicas.contains(&id))
        .count()
}
