//! Helpers shared by the operator's integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod api_server;
pub mod bed;
pub mod cluster;
pub mod fake_api;
pub mod kafka;
pub mod kubelet;
pub mod operator_process;
pub mod sampler;
pub mod workload;
pub mod world;

use std::sync::Arc;

use operator::admin::fake::FakeAdmin;
use operator::context::Context;
use operator::runtime::metrics::Metrics;
use serde_json::{json, Value};

use fake_api::FakeApi;

/// Sends `signal` to `child`; whether it was delivered (not to a process already reaped).
pub fn signal(child: &std::process::Child, signal: rustix::process::Signal) -> bool {
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    pid.is_some_and(|pid| rustix::process::kill_process(pid, signal).is_ok())
}

/// Collection paths the reconcilers touch, in namespace `ns`.
pub fn coll(ns: &str, kind: &str) -> String {
    match kind {
        "kafkaclusters" | "kafkatopics" => {
            format!("/apis/kafka.tributary.dev/v1alpha1/namespaces/{ns}/{kind}")
        }
        "statefulsets" => format!("/apis/apps/v1/namespaces/{ns}/{kind}"),
        "poddisruptionbudgets" => format!("/apis/policy/v1/namespaces/{ns}/{kind}"),
        "leases" => format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/{kind}"),
        "events" => format!("/apis/events.k8s.io/v1/namespaces/{ns}/{kind}"),
        "storageclasses" => "/apis/storage.k8s.io/v1/storageclasses".to_owned(),
        "nodes" => "/api/v1/nodes".to_owned(),
        _ => format!("/api/v1/namespaces/{ns}/{kind}"),
    }
}

/// A fixture from `tests/fixtures/` as JSON.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

/// A context over the fake API and a fake Kafka cluster.
pub fn context(client: kube::Client, admin: FakeAdmin) -> Arc<Context> {
    Arc::new(Context::new(
        client,
        Arc::new(admin),
        Arc::new(Metrics::default()),
    ))
}

/// (Re)creates one ready pod of StatefulSet `sts` in `ns` from its current template, as the
/// StatefulSet controller and a kubelet would.
pub fn run_pod(api: &FakeApi, ns: &str, sts: &str, ordinal: i64) {
    let s = api.get(&coll(ns, "statefulsets"), sts).expect("sts");
    let meta = &s["spec"]["template"]["metadata"];
    api.insert(
        &coll(ns, "pods"),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": format!("{sts}-{ordinal}"), "namespace": ns, "labels": meta["labels"], "annotations": meta["annotations"] },
            "spec": s["spec"]["template"]["spec"],
            "status": { "conditions": [{ "type": "Ready", "status": "True" }] }
        }),
    );
}
