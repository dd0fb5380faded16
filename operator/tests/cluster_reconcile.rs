//! The KafkaCluster reconciler against the in-memory API server and a fake Kafka cluster.

mod common;
#[path = "cluster_reconcile/storage.rs"]
mod storage;

use std::sync::Arc;

use common::fake_api::FakeApi;
use common::{coll, context, fixture};
use kube::runtime::controller::Action;
use operator::admin::fake::FakeAdmin;
use operator::cluster::reconcile::{error_policy, reconcile, REQUEUE_CONVERGING, REQUEUE_READY};
use operator::crd::cluster::KafkaCluster;
use serde_json::{json, Value};

const NS: &str = "kafka";

async fn reconcile_once(
    api: &FakeApi,
    ctx: &Arc<operator::context::Context>,
) -> Result<Action, operator::error::Error> {
    let obj = api
        .get(&coll(NS, "kafkaclusters"), "demo")
        .expect("cluster exists");
    let kc: KafkaCluster = serde_json::from_value(obj).expect("parses");
    reconcile(Arc::new(kc), ctx.clone()).await
}

fn condition(api: &FakeApi, type_: &str) -> Value {
    let kc = api
        .get(&coll(NS, "kafkaclusters"), "demo")
        .expect("cluster");
    kc["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(Value::Null)
}

/// Makes a ready pod for every StatefulSet replica, from the current template (what the
/// StatefulSet controller and kubelet would do for new or restarted pods).
fn run_pods(api: &FakeApi) {
    for sts in api.names(&coll(NS, "statefulsets")) {
        let s = api.get(&coll(NS, "statefulsets"), &sts).expect("sts");
        let replicas = s["spec"]["replicas"].as_i64().expect("replicas");
        for i in 0..replicas {
            run_pod(api, &sts, i);
        }
    }
}

/// (Re)creates one ready pod of `sts` (in the tests' namespace) from its current template.
fn run_pod(api: &FakeApi, sts: &str, ordinal: i64) {
    common::run_pod(api, NS, sts, ordinal);
}

/// The ConfigMap revision the StatefulSet's template mounts.
fn template_configmap(api: &FakeApi, sts: &str) -> String {
    let s = api.get(&coll(NS, "statefulsets"), sts).expect("sts");
    s["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
        .as_str()
        .expect("configmap volume")
        .to_owned()
}

fn configmap_names(api: &FakeApi, prefix: &str) -> Vec<String> {
    api.names(&coll(NS, "configmaps"))
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn new_cluster_gets_its_objects_then_becomes_ready() {
    let (client, api) = FakeApi::start();
    api.insert(&coll(NS, "kafkaclusters"), fixture("basic.yaml"));
    let admin = FakeAdmin::with_brokers(&[100, 101, 102]);
    let ctx = context(client, admin);

    let action = reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(action, Action::requeue(REQUEUE_CONVERGING));
    assert_eq!(
        api.names(&coll(NS, "statefulsets")),
        ["demo-broker", "demo-controller"]
    );
    assert_eq!(
        api.names(&coll(NS, "services")),
        ["demo-bootstrap", "demo-broker", "demo-controller"]
    );
    let cms = api.names(&coll(NS, "configmaps"));
    assert_eq!(cms.len(), 2, "{cms:?}");
    assert!(cms[0].starts_with("demo-broker-config-"), "{cms:?}");
    assert!(cms[1].starts_with("demo-controller-config-"), "{cms:?}");
    assert_eq!(template_configmap(&api, "demo-broker"), cms[0]);
    assert_eq!(
        api.names(&coll(NS, "poddisruptionbudgets")),
        ["demo-broker", "demo-controller"]
    );
    // every write is a server-side apply by our field manager
    let applies = api.requests("PATCH /apis/apps/v1/namespaces/kafka/statefulsets/");
    assert_eq!(applies.len(), 2);
    let sts = api
        .get(&coll(NS, "statefulsets"), "demo-broker")
        .expect("sts");
    assert_eq!(sts["spec"]["updateStrategy"]["type"], "OnDelete");
    assert_eq!(
        sts["metadata"]["ownerReferences"][0]["kind"],
        "KafkaCluster"
    );
    let ready = condition(&api, "Ready");
    assert_eq!(ready["status"], "False");
    let kc = api
        .get(&coll(NS, "kafkaclusters"), "demo")
        .expect("cluster");
    assert_eq!(kc["status"]["operation"]["kind"], "Creating");

    run_pods(&api);
    let action = reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(action, Action::requeue(REQUEUE_READY));
    let ready = condition(&api, "Ready");
    assert_eq!(ready["status"], "True", "{ready}");
    assert_eq!(ready["observedGeneration"], 3);
    let kc = api
        .get(&coll(NS, "kafkaclusters"), "demo")
        .expect("cluster");
    assert_eq!(kc["status"]["operation"]["kind"], "None");
    assert_eq!(kc["status"]["nodes"].as_array().map(Vec::len), Some(6));
    assert_eq!(kc["status"]["controllerLeader"], 100);
    // becoming ready is recorded as an Event
    let events = api.names(&coll(NS, "events"));
    assert!(!events.is_empty(), "an Event was recorded");
}

#[tokio::test]
async fn deleted_service_comes_back_and_unneeded_objects_go() {
    let (client, api) = FakeApi::start();
    api.insert(&coll(NS, "kafkaclusters"), fixture("basic.yaml"));
    let ctx = context(client, FakeAdmin::with_brokers(&[100, 101, 102]));
    reconcile_once(&api, &ctx).await.expect("reconcile");
    api.remove(&coll(NS, "services"), "demo-bootstrap")
        .expect("was there");
    // a leftover from an older spec, labelled as ours
    api.insert(
        &coll(NS, "configmaps"),
        json!({ "metadata": { "name": "demo-old-config", "namespace": NS, "labels": { "kafka.tributary.dev/cluster": "demo" } } }),
    );
    reconcile_once(&api, &ctx).await.expect("reconcile");
    assert!(
        api.get(&coll(NS, "services"), "demo-bootstrap").is_some(),
        "bootstrap Service restored"
    );
    assert!(
        api.get(&coll(NS, "configmaps"), "demo-old-config")
            .is_none(),
        "stale ConfigMap deleted"
    );
}

#[tokio::test]
async fn invalid_spec_is_degraded_with_an_event_and_waits_for_a_change() {
    let (client, api) = FakeApi::start();
    let mut kc = fixture("basic.yaml");
    kc["spec"]["controllers"]["replicas"] = json!(2);
    api.insert(&coll(NS, "kafkaclusters"), kc);
    let ctx = context(client, FakeAdmin::default());
    let err = reconcile_once(&api, &ctx).await.expect_err("invalid spec");
    assert!(!err.is_transient());
    let obj: KafkaCluster =
        serde_json::from_value(api.get(&coll(NS, "kafkaclusters"), "demo").expect("kc"))
            .expect("kc");
    assert_eq!(
        error_policy(Arc::new(obj), &err, ctx.clone()),
        Action::await_change()
    );
    let degraded = condition(&api, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or("")
            .contains("controllers.replicas is 2"),
        "{degraded}"
    );
    assert!(
        api.names(&coll(NS, "statefulsets")).is_empty(),
        "nothing built from an invalid spec"
    );
    let events: Vec<Value> = api
        .names(&coll(NS, "events"))
        .iter()
        .filter_map(|n| api.get(&coll(NS, "events"), n))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "InvalidSpec" && e["type"] == "Warning"),
        "{events:?}"
    );
    assert!(ctx.metrics.render().contains(r#"kind="invalid_spec"} 1"#));
}

#[tokio::test]
async fn scale_down_waits_for_the_planner_and_the_statefulset_keeps_its_nodes() {
    // No broker pod runs, so Kafka cannot be asked: the day-2 planner (which drains before a
    // shrink; see tests/cluster_day2.rs) cannot run, and nothing shrinks meanwhile.
    let (client, api) = FakeApi::start();
    api.insert(&coll(NS, "kafkaclusters"), fixture("basic.yaml"));
    let ctx = context(client, FakeAdmin::with_brokers(&[100, 101, 102]));
    reconcile_once(&api, &ctx).await.expect("reconcile");
    let mut kc = api.get(&coll(NS, "kafkaclusters"), "demo").expect("kc");
    kc["spec"]["brokers"]["replicas"] = json!(1);
    api.insert(&coll(NS, "kafkaclusters"), kc);
    reconcile_once(&api, &ctx).await.expect("reconcile");
    let sts = api
        .get(&coll(NS, "statefulsets"), "demo-broker")
        .expect("sts");
    assert_eq!(
        sts["spec"]["replicas"], 3,
        "brokers are not removed without draining"
    );
    let cm = api
        .get(
            &coll(NS, "configmaps"),
            &template_configmap(&api, "demo-broker"),
        )
        .expect("cm");
    assert!(
        cm["data"]["demo-broker-2.properties"].is_string(),
        "config of kept pods stays"
    );
    let day2 = condition(&api, "Day2Operations");
    assert_eq!(day2["status"], "False", "{day2}");
    assert_eq!(day2["reason"], "KafkaUnreachable", "{day2}");
    assert!(
        day2["message"]
            .as_str()
            .unwrap_or("")
            .contains("no broker pod is ready"),
        "{day2}"
    );
}

#[tokio::test]
async fn ready_pods_are_not_ready_until_the_cluster_lists_their_broker_as_registered() {
    let (client, api) = FakeApi::start();
    api.insert(&coll(NS, "kafkaclusters"), fixture("basic.yaml"));
    // the cluster's registration view (DescribeCluster) lacks broker 102
    let admin = FakeAdmin::with_brokers(&[100, 101]);
    let ctx = context(client, admin.clone());
    reconcile_once(&api, &ctx).await.expect("reconcile");
    run_pods(&api);
    let action = reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(action, Action::requeue(REQUEUE_CONVERGING));
    let ready = condition(&api, "Ready");
    assert_eq!(ready["status"], "False", "{ready}");
    let kc = api.get(&coll(NS, "kafkaclusters"), "demo").expect("kc");
    let node = |pod: &str| {
        kc["status"]["nodes"]
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["pod"] == pod).cloned())
            .unwrap_or_else(|| panic!("no node {pod}: {}", kc["status"]))
    };
    assert_eq!(node("demo-broker-2")["ready"], true);
    assert_eq!(node("demo-broker-2")["registered"], false);
    assert_eq!(node("demo-broker-1")["registered"], true);
    assert!(admin.lock().calls.iter().any(|c| c == "describe_cluster"));

    admin.lock().brokers.push(102);
    let action = reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(action, Action::requeue(REQUEUE_READY));
    assert_eq!(condition(&api, "Ready")["status"], "True");
}

fn events_with_reason(api: &FakeApi, reason: &str) -> Vec<Value> {
    api.names(&coll(NS, "events"))
        .iter()
        .filter_map(|n| api.get(&coll(NS, "events"), n))
        .filter(|e| e["reason"] == reason)
        .collect()
}

fn edit_spec(api: &FakeApi, f: impl FnOnce(&mut Value)) {
    let mut kc = api.get(&coll(NS, "kafkaclusters"), "demo").expect("kc");
    f(&mut kc["spec"]);
    let g = kc["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
    kc["metadata"]["generation"] = json!(g);
    api.insert(&coll(NS, "kafkaclusters"), kc);
}

#[tokio::test]
async fn flipping_combined_is_refused_and_nothing_is_pruned() {
    let (client, api) = FakeApi::start();
    api.insert(&coll(NS, "kafkaclusters"), fixture("basic.yaml"));
    let ctx = context(client, FakeAdmin::with_brokers(&[100, 101, 102]));
    reconcile_once(&api, &ctx).await.expect("reconcile");
    run_pods(&api);
    reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(condition(&api, "Ready")["status"], "True");
    // a CRD without the CEL rule lets this through: the reconciler must refuse it itself
    edit_spec(&api, |spec| {
        spec["combined"] = json!(true);
        spec.as_object_mut().expect("spec").remove("controllers");
    });
    for pass in 0..3 {
        let err = reconcile_once(&api, &ctx).await.expect_err("refused");
        assert!(!err.is_transient(), "pass {pass}: {err}");
        assert_eq!(
            api.names(&coll(NS, "statefulsets")),
            ["demo-broker", "demo-controller"],
            "pass {pass}: the running pools' StatefulSets stay and no combined pool is created"
        );
    }
    let degraded = condition(&api, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "PoolRemovalRefused", "{degraded}");
    assert_eq!(degraded["observedGeneration"], 4);
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or("")
            .contains("demo-controller (3 nodes)"),
        "{degraded}"
    );
    assert_eq!(
        condition(&api, "Ready")["status"],
        "True",
        "the nodes still run"
    );
    assert!(!events_with_reason(&api, "PoolRemovalRefused").is_empty());
    assert!(ctx.metrics.render().contains(r#"kind="refused"} 3"#));

    // back to the running shape: reconciled normally again
    edit_spec(&api, |spec| {
        spec["combined"] = json!(false);
        spec["controllers"] = json!({ "replicas": 3, "storage": { "size": "1Gi" } });
    });
    reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(condition(&api, "Degraded")["status"], "False");
}

#[tokio::test]
async fn a_changed_quorum_size_is_refused_over_several_passes() {
    let (client, api) = FakeApi::start();
    api.insert(&coll(NS, "kafkaclusters"), fixture("basic.yaml"));
    let ctx = context(client, FakeAdmin::with_brokers(&[100, 101, 102]));
    reconcile_once(&api, &ctx).await.expect("reconcile");
    run_pods(&api);
    edit_spec(&api, |spec| spec["controllers"]["replicas"] = json!(5));
    for _ in 0..3 {
        reconcile_once(&api, &ctx).await.expect("reconcile");
        let sts = api
            .get(&coll(NS, "statefulsets"), "demo-controller")
            .expect("sts");
        assert_eq!(sts["spec"]["replicas"], 3, "the voters stay");
        let cm = api
            .get(
                &coll(NS, "configmaps"),
                &template_configmap(&api, "demo-controller"),
            )
            .expect("cm");
        let props = cm["data"]["demo-controller-0.properties"]
            .as_str()
            .expect("props");
        assert!(!props.contains("3@"), "voters unchanged: {props}");
    }
    let degraded = condition(&api, "Degraded");
    assert_eq!(degraded["reason"], "QuorumChangeRefused", "{degraded}");
    assert_eq!(
        events_with_reason(&api, "QuorumChangeRefused").len(),
        1,
        "one Event, not one per pass"
    );
}

#[tokio::test]
async fn a_name_that_is_not_a_service_name_is_refused() {
    let (client, api) = FakeApi::start();
    let mut kc = fixture("basic.yaml");
    kc["metadata"]["name"] = json!("kafka.prod");
    api.insert(&coll(NS, "kafkaclusters"), kc);
    let ctx = context(client, FakeAdmin::default());
    let obj: KafkaCluster = serde_json::from_value(
        api.get(&coll(NS, "kafkaclusters"), "kafka.prod")
            .expect("kc"),
    )
    .expect("kc");
    let err = reconcile(Arc::new(obj), ctx.clone())
        .await
        .expect_err("refused");
    assert!(!err.is_transient());
    let kc = api
        .get(&coll(NS, "kafkaclusters"), "kafka.prod")
        .expect("kc");
    let degraded = kc["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Degraded").cloned())
        .expect("degraded");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a valid Service name"),
        "{degraded}"
    );
    assert!(api.names(&coll(NS, "services")).is_empty());
}

#[tokio::test]
async fn a_failed_node_keeps_the_cluster_degraded_over_passes_and_the_leader_stays_known() {
    let (client, api) = FakeApi::start();
    api.insert(&coll(NS, "kafkaclusters"), fixture("basic.yaml"));
    let admin = FakeAdmin::with_brokers(&[100, 101, 102]);
    let ctx = context(client, admin.clone());
    reconcile_once(&api, &ctx).await.expect("reconcile");
    run_pods(&api);
    reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(condition(&api, "Ready")["status"], "True");
    // broker 1 fails: its pod is not ready and the cluster fences it; later the cluster cannot
    // be asked at all
    let mut pod = api.get(&coll(NS, "pods"), "demo-broker-1").expect("pod");
    pod["status"]["conditions"][0]["status"] = json!("False");
    api.insert(&coll(NS, "pods"), pod);
    admin.lock().brokers.retain(|b| *b != 101);
    for pass in 0..4 {
        if pass == 2 {
            admin.lock().unreachable = true;
        }
        reconcile_once(&api, &ctx).await.expect("reconcile");
        let degraded = condition(&api, "Degraded");
        assert_eq!(degraded["status"], "True", "pass {pass}: {degraded}");
        assert_eq!(degraded["reason"], "NodesNotReady");
        let kc = api.get(&coll(NS, "kafkaclusters"), "demo").expect("kc");
        assert_eq!(
            kc["status"]["operation"]["kind"], "None",
            "pass {pass}: a failed node is not scaling"
        );
        assert_eq!(kc["status"]["controllerLeader"], 100, "pass {pass}");
    }
    admin.lock().unreachable = false;
    admin.lock().brokers.push(101);
    run_pods(&api);
    reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(condition(&api, "Degraded")["status"], "False");
    assert_eq!(condition(&api, "Ready")["status"], "True");
}

#[tokio::test]
async fn rack_awareness_without_zone_labels_is_reported() {
    let (client, api) = FakeApi::start();
    let mut kc = fixture("combined.yaml");
    kc["metadata"]["namespace"] = json!(NS);
    kc["metadata"]["name"] = json!("demo");
    api.insert(&coll(NS, "kafkaclusters"), kc);
    let ctx = context(client, FakeAdmin::with_brokers(&[0]));
    reconcile_once(&api, &ctx).await.expect("reconcile");
    run_pods(&api);
    for _ in 0..2 {
        reconcile_once(&api, &ctx).await.expect("reconcile");
        let rack = condition(&api, "RackAwareness");
        assert_eq!(rack["status"], "False", "{rack}");
        assert_eq!(rack["reason"], "ZoneLabelMissing");
        assert!(
            rack["message"]
                .as_str()
                .unwrap_or("")
                .contains("demo-node-0"),
            "{rack}"
        );
    }
    // the pod runs on a node without the label: the condition says to label the node
    let mut pod = api.get(&coll(NS, "pods"), "demo-node-0").expect("pod");
    pod["spec"]["nodeName"] = json!("worker-1");
    api.insert(&coll(NS, "pods"), pod);
    api.insert(
        &coll(NS, "nodes"),
        json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "worker-1", "labels": {} } }),
    );
    reconcile_once(&api, &ctx).await.expect("reconcile");
    let rack = condition(&api, "RackAwareness");
    assert!(
        rack["message"]
            .as_str()
            .unwrap_or("")
            .contains("nodes without it: worker-1"),
        "{rack}"
    );
    let mut pod = api.get(&coll(NS, "pods"), "demo-node-0").expect("pod");
    pod["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!("eu-1a");
    api.insert(&coll(NS, "pods"), pod);
    reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(condition(&api, "RackAwareness")["status"], "True");
}

/// Claims as the StatefulSet controller would create them from the template.
fn create_claims(api: &FakeApi, sts: &str, replicas: i64, size: &str) {
    for i in 0..replicas {
        api.insert(
            &coll(NS, "persistentvolumeclaims"),
            json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": { "name": format!("data-{sts}-{i}"), "namespace": NS },
                "spec": { "storageClassName": "fast", "resources": { "requests": { "storage": size } } },
                "status": { "capacity": { "storage": size } }
            }),
        );
    }
}

async fn ready_basic_cluster() -> (FakeApi, Arc<operator::context::Context>) {
    let (client, api) = FakeApi::start();
    api.insert(&coll(NS, "kafkaclusters"), fixture("basic.yaml"));
    let ctx = context(client, FakeAdmin::with_brokers(&[100, 101, 102]));
    reconcile_once(&api, &ctx).await.expect("reconcile");
    run_pods(&api);
    create_claims(&api, "demo-broker", 3, "10Gi");
    reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(condition(&api, "Ready")["status"], "True");
    (api, ctx)
}

#[tokio::test]
async fn a_write_the_api_server_rejects_is_reported_in_status_and_an_event() {
    let (api, ctx) = ready_basic_cluster().await;
    api.fail(
        "PATCH /api/v1/namespaces/kafka/services/demo-bootstrap",
        422,
    );
    edit_spec(&api, |spec| {
        spec["config"]["log.cleaner.backoff.ms"] = json!("1000")
    });
    for _ in 0..2 {
        let err = reconcile_once(&api, &ctx).await.expect_err("rejected");
        assert!(!err.is_transient(), "{err}");
    }
    let degraded = condition(&api, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "KubernetesRejected", "{degraded}");
    assert_eq!(degraded["observedGeneration"], 4);
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or("")
            .contains("demo-bootstrap"),
        "{degraded}"
    );
    assert!(!events_with_reason(&api, "KubernetesRejected").is_empty());
    api.heal();
    reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(condition(&api, "Degraded")["status"], "False");
}

#[tokio::test]
async fn a_config_change_makes_a_new_configmap_revision_that_only_restarted_pods_use() {
    let (api, ctx) = ready_basic_cluster().await;
    let first = template_configmap(&api, "demo-broker");
    let first_data = api.get(&coll(NS, "configmaps"), &first).expect("cm")["data"].clone();
    edit_spec(&api, |spec| {
        spec["brokers"]["config"]["log.cleaner.backoff.ms"] = json!("1000");
    });
    for _ in 0..2 {
        reconcile_once(&api, &ctx).await.expect("reconcile");
    }
    let second = template_configmap(&api, "demo-broker");
    assert_ne!(second, first);
    assert_eq!(
        configmap_names(&api, "demo-broker-config-").len(),
        2,
        "the running pods' revision is kept"
    );
    assert_eq!(
        api.get(&coll(NS, "configmaps"), &first).expect("cm")["data"],
        first_data,
        "the file under the running pods did not change"
    );
    let second_data = &api.get(&coll(NS, "configmaps"), &second).expect("cm")["data"];
    assert!(second_data["demo-broker-0.properties"]
        .as_str()
        .unwrap_or("")
        .contains("log.cleaner.backoff.ms=1000"));
    let kc = api.get(&coll(NS, "kafkaclusters"), "demo").expect("kc");
    assert_eq!(
        kc["status"]["outdatedPods"],
        json!(["demo-broker-1", "demo-broker-2"]),
        "the operator restarted demo-broker-0 first (nothing recreates it here)"
    );
    assert_eq!(
        api.requests("DELETE /api/v1/namespaces/kafka/pods/"),
        ["DELETE /api/v1/namespaces/kafka/pods/demo-broker-0"],
        "one pod at a time"
    );

    // a roll moves pods to the new revision one by one; the old one goes with its last user
    run_pod(&api, "demo-broker", 0);
    run_pod(&api, "demo-broker", 1);
    reconcile_once(&api, &ctx).await.expect("reconcile");
    assert!(
        api.get(&coll(NS, "configmaps"), &first).is_some(),
        "demo-broker-2 still mounts it"
    );
    let kc = api.get(&coll(NS, "kafkaclusters"), "demo").expect("kc");
    assert_eq!(kc["status"]["outdatedPods"], json!(["demo-broker-2"]));
    run_pod(&api, "demo-broker", 2);
    reconcile_once(&api, &ctx).await.expect("reconcile");
    assert!(
        api.get(&coll(NS, "configmaps"), &first).is_none(),
        "unused revision pruned"
    );
    assert_eq!(
        configmap_names(&api, "demo-broker-config-"),
        vec![second.clone()]
    );

    // adding a broker: a new revision for the new pod, the running ones stay up to date
    edit_spec(&api, |spec| spec["brokers"]["replicas"] = json!(4));
    reconcile_once(&api, &ctx).await.expect("reconcile");
    let third = template_configmap(&api, "demo-broker");
    assert_ne!(third, second);
    let kc = api.get(&coll(NS, "kafkaclusters"), "demo").expect("kc");
    assert_eq!(kc["status"]["outdatedPods"], json!([]), "{}", kc["status"]);
    assert_eq!(configmap_names(&api, "demo-broker-config-").len(), 2);
}
