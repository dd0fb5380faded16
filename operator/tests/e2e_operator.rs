//! The real operator binary against the test API server over HTTP (`common::api_server`).
//! Without pods: it takes the Lease, lists and watches, builds a new KafkaCluster's objects and
//! status when the cluster arrives through its watch, rolls the broker ConfigMap revision when
//! the spec is edited, and releases the Lease on SIGTERM. With pods played by broker processes
//! (`common::kubelet`; needs the broker binary): the cluster becomes Ready (six nodes ready and
//! registered, as the operator's admin client sees them), and a broker config change restarts
//! the three brokers one at a time onto the new revision.

mod common;

use std::time::Duration;

use common::api_server::ApiServer;
use common::bed::{client, condition, start_operator, storage_class, until_within, LEASE, NS};
use common::fake_api::FakeApi;
use common::kubelet::{broker_bin, Kubelet};
use common::operator_process::OperatorProcess;
use common::{coll, fixture};
use kube::api::{Api, Patch, PatchParams};
use operator::cluster::build::pod_dns;
use operator::cluster::validate::validate;
use operator::crd::KafkaCluster;
use serde_json::{json, Value};

const ME: &str = "operator-e2e-0";
/// Bound for each step the operator takes (typically well under a second).
const STEP: Duration = Duration::from_secs(15);

/// Polls `check` every 50 ms until it returns `Some`, or fails with `what` and the operator log.
async fn until<T>(op: &OperatorProcess, what: &str, check: impl FnMut() -> Option<T>) -> T {
    until_within(what, STEP, || op.log_text(), check).await
}

fn broker_configmaps(api: &FakeApi) -> Vec<String> {
    api.names(&coll(NS, "configmaps"))
        .into_iter()
        .filter(|n| n.starts_with("demo-broker-config-"))
        .collect()
}

fn mounted_configmap(api: &FakeApi) -> Option<String> {
    let sts = api.get(&coll(NS, "statefulsets"), "demo-broker")?;
    let volumes = sts["spec"]["template"]["spec"]["volumes"].as_array()?;
    volumes
        .iter()
        .find_map(|v| v["configMap"]["name"].as_str().map(str::to_owned))
}

fn observed_generation(api: &FakeApi) -> Option<i64> {
    api.get(&coll(NS, "kafkaclusters"), "demo")?["status"]["observedGeneration"].as_i64()
}

fn lease_holder(api: &FakeApi) -> Option<Value> {
    api.get(&coll(NS, "leases"), LEASE)
        .map(|l| l["spec"]["holderIdentity"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_binary_reconciles_through_watches_and_releases_its_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ApiServer::start(FakeApi::default()).await;
    let api = server.api.clone();
    storage_class(&api);
    let mut op = start_operator(&server, dir.path(), None, ME);

    // It leads, then lists and watches KafkaClusters; only then does the cluster appear, so the
    // operator can learn of it only through its watch.
    until(&op, "the Lease held by the operator", || {
        (lease_holder(&api)? == json!(ME)).then_some(())
    })
    .await;
    // All namespaces (the chart's default): lists and watches on `/apis/<group>/<version>/<kind>`.
    let all_clusters = "/apis/kafka.tributary.dev/v1alpha1/kafkaclusters";
    until(&op, "a KafkaCluster watch", || {
        let watches = api.requests_with_query(&format!("GET {all_clusters}?"));
        watches
            .iter()
            .any(|r| r.contains("watch=true"))
            .then_some(())
    })
    .await;
    let mut kc = fixture("basic.yaml");
    kc["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("generation");
    api.insert(&coll(NS, "kafkaclusters"), kc);

    let first = until(&op, "day-1 objects and a status", || {
        let sets = api.names(&coll(NS, "statefulsets"));
        let services = api.names(&coll(NS, "services"));
        let cm = mounted_configmap(&api)?;
        let done = sets == ["demo-broker", "demo-controller"]
            && services == ["demo-bootstrap", "demo-broker", "demo-controller"]
            && api.names(&coll(NS, "poddisruptionbudgets")).len() == 2
            && broker_configmaps(&api) == [cm.clone()]
            && observed_generation(&api) == Some(1);
        done.then_some(cm)
    })
    .await;

    // A broker config edit, as `kubectl patch` would send it over HTTP: a MODIFIED event.
    let kubeconfig = dir.path().join("kubeconfig");
    let kcs: Api<KafkaCluster> = Api::namespaced(client(&kubeconfig).await, NS);
    let edit =
        json!({ "spec": { "brokers": { "config": { "log.cleaner.backoff.ms": "15001" } } } });
    let edited = kcs
        .patch("demo", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("patch KafkaCluster");
    assert_eq!(edited.metadata.generation, Some(2));
    let second = until(&op, "a new broker ConfigMap revision", || {
        let cm = mounted_configmap(&api).filter(|cm| *cm != first)?;
        let done = broker_configmaps(&api).contains(&cm) && observed_generation(&api) == Some(2);
        done.then_some(cm)
    })
    .await;
    assert_ne!(first, second);

    // Everything after the first list came through watches: one list per watched kind.
    let lists: Vec<String> = api
        .requests_with_query(&format!("GET {all_clusters}?"))
        .into_iter()
        .filter(|r| !r.contains("watch="))
        .collect();
    assert_eq!(lists.len(), 1, "{lists:?}");

    let status = op.terminate(Duration::from_secs(10));
    let log = op.log_text();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}; log:\n{log}"
    );
    assert_eq!(lease_holder(&api), Some(Value::Null), "log:\n{log}");
    let lease = api.get(&coll(NS, "leases"), LEASE).expect("lease");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 1);
    // For whoever grows the next scenario (shown with --nocapture): what the binary asked for,
    // and what it complained about.
    for line in api.requests_with_query("") {
        println!("{line}");
    }
    for line in log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
    {
        println!("operator: {line}");
    }
}

/// The pods played by broker processes (`common::kubelet`): the operator's StatefulSets become
/// six real processes started from the ConfigMaps and templates it wrote, and the operator,
/// reaching them through `KAFKA_BOOTSTRAP_OVERRIDE`, reports the cluster Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_binary_brings_broker_processes_to_a_ready_cluster() {
    let bin = broker_bin();
    if !bin.exists() {
        eprintln!(
            "SKIPPED: broker binary {} absent (cargo build -p broker --bins, or TRIBUTARY_BROKER_BIN)",
            bin.display()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ApiServer::start(FakeApi::default()).await;
    let api = server.api.clone();
    storage_class(&api);
    let kubelet = Kubelet::start(api.clone(), bin, dir.path());
    let mut kc = fixture("basic.yaml");
    kc["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("generation");
    let vc = validate(&serde_json::from_value::<KafkaCluster>(kc.clone()).expect("parses"))
        .expect("valid fixture");
    let broker0 = pod_dns(&vc, vc.broker_pool(), 0);
    let port = u16::try_from(vc.client_port).expect("port");
    let bootstrap = format!("127.0.0.1:{}", kubelet.local_port(&broker0, port));
    let mut op = start_operator(&server, dir.path(), Some(bootstrap), ME);
    api.insert(&coll(NS, "kafkaclusters"), kc);

    until_within(
        "Ready=True",
        Duration::from_secs(60),
        || op.log_text() + &kubelet.log_tails(),
        || (condition(&api, "Ready")["status"] == "True").then_some(()),
    )
    .await;
    assert_eq!(condition(&api, "Ready")["reason"], "AllNodesReady");
    assert_eq!(condition(&api, "Degraded")["status"], "False");
    assert_eq!(api.names(&coll(NS, "pods")).len(), 6);

    // A broker config change: a new ConfigMap revision, and the operator restarts the three
    // broker processes (deleting their pods one at a time; the kubelet starts them again from
    // the new template) until every broker pod mounts it and the cluster is Ready again.
    let first = mounted_configmap(&api).expect("broker template");
    let kubeconfig = dir.path().join("kubeconfig");
    let kcs: Api<KafkaCluster> = Api::namespaced(client(&kubeconfig).await, NS);
    let edit =
        json!({ "spec": { "brokers": { "config": { "log.cleaner.backoff.ms": "15001" } } } });
    kcs.patch("demo", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("patch KafkaCluster");
    let second = until_within(
        "the brokers restarted on the new revision",
        Duration::from_secs(90),
        || op.log_text() + &kubelet.log_tails(),
        || {
            let cm = mounted_configmap(&api).filter(|cm| *cm != first)?;
            let on_new = (0..3).all(|i| {
                let pod = api.get(&coll(NS, "pods"), &format!("demo-broker-{i}"));
                pod.is_some_and(|p| {
                    p["spec"]["volumes"][0]["configMap"]["name"] == json!(cm)
                        && p["status"]["conditions"][0]["status"] == "True"
                })
            });
            let ready = condition(&api, "Ready")["status"] == "True"
                && observed_generation(&api) == Some(2);
            (on_new && ready).then_some(cm)
        },
    )
    .await;
    assert_ne!(first, second);
    let deletes = api.requests("DELETE /api/v1/namespaces/kafka/pods/demo-broker-");
    assert_eq!(deletes.len(), 3, "one restart per broker: {deletes:?}");
    assert!(api
        .requests("DELETE /api/v1/namespaces/kafka/pods/demo-controller-")
        .is_empty());

    let status = op.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "exit {status:?}");
}
