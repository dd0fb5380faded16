//! The KafkaTopic reconciler against the in-memory API server and the fake Kafka admin.

mod common;

use std::sync::Arc;

use common::fake_api::FakeApi;
use common::{coll, context};
use kube::runtime::controller::Action;
use operator::admin::fake::FakeAdmin;
use operator::crd::topic::KafkaTopic;
use operator::topic::reconcile::{error_policy, reconcile};
use serde_json::{json, Value};

const NS: &str = "kafka";

fn ready_cluster(api: &FakeApi) {
    api.insert(
        &coll(NS, "kafkaclusters"),
        json!({
            "apiVersion": "kafka.tributary.dev/v1alpha1", "kind": "KafkaCluster",
            "metadata": { "name": "demo", "namespace": NS },
            "spec": { "combined": true, "brokers": { "replicas": 3, "storage": { "size": "1Gi" } } },
            "status": { "bootstrap": "demo-bootstrap.kafka.svc:9092", "conditions": [{ "type": "Ready", "status": "True", "reason": "AllNodesReady", "message": "" }] }
        }),
    );
}

fn topic_obj(partitions: i32, config: Value) -> Value {
    json!({
        "apiVersion": "kafka.tributary.dev/v1alpha1", "kind": "KafkaTopic",
        "metadata": { "name": "orders", "namespace": NS },
        "spec": { "clusterRef": { "name": "demo" }, "partitions": partitions, "replicationFactor": 3, "config": config }
    })
}

async fn pass(
    api: &FakeApi,
    ctx: &Arc<operator::context::Context>,
) -> Result<Action, operator::error::Error> {
    let Some(obj) = api.get(&coll(NS, "kafkatopics"), "orders") else {
        panic!("topic resource is gone");
    };
    let kt: KafkaTopic = serde_json::from_value(obj).expect("parses");
    reconcile(Arc::new(kt), ctx.clone()).await
}

fn status(api: &FakeApi) -> Value {
    api.get(&coll(NS, "kafkatopics"), "orders")
        .map(|o| o["status"].clone())
        .unwrap_or(Value::Null)
}

fn condition(api: &FakeApi, type_: &str) -> Value {
    status(api)["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn topic_is_created_altered_and_deleted_through_the_admin_client() {
    let (client, api) = FakeApi::start();
    ready_cluster(&api);
    api.insert(
        &coll(NS, "kafkatopics"),
        topic_obj(3, json!({ "retention.ms": "60000" })),
    );
    let kafka = FakeAdmin::with_brokers(&[0, 1, 2]);
    let ctx = context(client, kafka.clone());

    // first pass only adds the finalizer
    pass(&api, &ctx).await.expect("finalizer pass");
    let obj = api.get(&coll(NS, "kafkatopics"), "orders").expect("topic");
    assert_eq!(
        obj["metadata"]["finalizers"],
        json!(["kafka.tributary.dev/topic"])
    );
    assert!(kafka.lock().topics.is_empty());

    pass(&api, &ctx).await.expect("create pass");
    {
        let k = kafka.lock();
        let t = &k.topics["orders"];
        assert_eq!((t.partitions, t.replication_factor), (3, 3));
        assert_eq!(t.config["retention.ms"], "60000");
    }
    assert_eq!(condition(&api, "Ready")["status"], "True");
    assert_eq!(
        status(&api)["topicId"],
        "00000000-0000-4000-8000-000000000001"
    );
    assert_eq!(status(&api)["partitions"], 3);

    // raise partitions, change one key and drop another
    let mut obj = api.get(&coll(NS, "kafkatopics"), "orders").expect("topic");
    obj["spec"]["partitions"] = json!(6);
    obj["spec"]["config"] = json!({ "cleanup.policy": "compact" });
    api.insert(&coll(NS, "kafkatopics"), obj);
    pass(&api, &ctx).await.expect("alter pass");
    {
        let k = kafka.lock();
        let t = &k.topics["orders"];
        assert_eq!(t.partitions, 6);
        assert_eq!(t.config.get("retention.ms"), None, "removed key is deleted");
        assert_eq!(t.config["cleanup.policy"], "compact");
    }
    assert_eq!(
        status(&api)["config"],
        json!({ "cleanup.policy": "compact" })
    );
    assert_eq!(status(&api)["partitions"], 6);

    // delete: the finalizer goes only after the topic is gone
    kafka.lock().unreachable = true;
    let mut obj = api.get(&coll(NS, "kafkatopics"), "orders").expect("topic");
    obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    api.insert(&coll(NS, "kafkatopics"), obj);
    let err = pass(&api, &ctx).await.expect_err("cluster unreachable");
    assert!(err.is_transient());
    assert!(
        api.get(&coll(NS, "kafkatopics"), "orders").is_some(),
        "finalizer kept while the topic exists"
    );
    assert!(kafka.lock().topics.contains_key("orders"));
    kafka.lock().unreachable = false;
    pass(&api, &ctx).await.expect("cleanup pass");
    assert!(!kafka.lock().topics.contains_key("orders"), "topic deleted");
    assert!(
        api.get(&coll(NS, "kafkatopics"), "orders").is_none(),
        "finalizer removed, resource gone"
    );
}

#[tokio::test]
async fn existing_topic_is_adopted_and_unsafe_changes_are_refused() {
    let (client, api) = FakeApi::start();
    ready_cluster(&api);
    let mut obj = topic_obj(2, json!({}));
    obj["metadata"]["finalizers"] = json!(["kafka.tributary.dev/topic"]);
    api.insert(&coll(NS, "kafkatopics"), obj);
    let kafka = FakeAdmin::with_brokers(&[0, 1, 2]);
    kafka.lock().topics.insert(
        "orders".into(),
        operator::admin::fake::FakeTopic {
            id: "keep-me".into(),
            partitions: 4,
            replication_factor: 1,
            config: Default::default(),
        },
    );
    let ctx = context(client, kafka.clone());
    pass(&api, &ctx).await.expect("pass");
    let calls = kafka.lock().calls.clone();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("create_topic") || c.starts_with("delete_topic")),
        "{calls:?}"
    );
    assert_eq!(kafka.lock().topics["orders"].id, "keep-me", "data kept");
    assert_eq!(status(&api)["topicId"], "keep-me");
    let degraded = condition(&api, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "PartitionsDecrease");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or("")
            .contains("replication factor 1"),
        "{degraded}"
    );
}

#[tokio::test]
async fn topic_waits_for_a_missing_or_unready_cluster_and_rejections_are_permanent() {
    let (client, api) = FakeApi::start();
    let mut obj = topic_obj(3, json!({ "retention.ms": "soon" }));
    obj["metadata"]["finalizers"] = json!(["kafka.tributary.dev/topic"]);
    api.insert(&coll(NS, "kafkatopics"), obj);
    let kafka = FakeAdmin::with_brokers(&[0, 1, 2]);
    let ctx = context(client, kafka.clone());
    let action = pass(&api, &ctx).await.expect("waits");
    assert_eq!(
        action,
        Action::requeue(operator::topic::reconcile::REQUEUE_WAITING)
    );
    assert_eq!(condition(&api, "Ready")["reason"], "ClusterNotFound");

    ready_cluster(&api);
    // the fake rejects a non-numeric *.ms value like a broker would (INVALID_CONFIG)
    let err = pass(&api, &ctx).await.expect_err("rejected");
    assert!(!err.is_transient(), "{err}");
    let kt: KafkaTopic =
        serde_json::from_value(api.get(&coll(NS, "kafkatopics"), "orders").expect("kt"))
            .expect("kt");
    assert_eq!(
        error_policy(Arc::new(kt), &err, ctx.clone()),
        Action::await_change()
    );
    assert_eq!(condition(&api, "Ready")["reason"], "KafkaRejected");
}

#[tokio::test]
async fn config_drift_is_corrected_from_what_the_broker_reports() {
    let (client, api) = FakeApi::start();
    ready_cluster(&api);
    let mut obj = topic_obj(
        3,
        json!({ "retention.ms": "60000", "segment.bytes": "1048576" }),
    );
    obj["metadata"]["finalizers"] = json!(["kafka.tributary.dev/topic"]);
    api.insert(&coll(NS, "kafkatopics"), obj);
    let kafka = FakeAdmin::with_brokers(&[0, 1, 2]);
    let ctx = context(client, kafka.clone());
    pass(&api, &ctx).await.expect("create pass");
    // status.config is read back from the broker: overrides only, not the fake's defaults
    assert_eq!(
        status(&api)["config"],
        json!({ "retention.ms": "60000", "segment.bytes": "1048576" })
    );
    assert_eq!(
        status(&api)["managedConfigKeys"],
        json!(["retention.ms", "segment.bytes"])
    );

    // someone changes a managed key and adds their own override behind the operator's back
    {
        let mut k = kafka.lock();
        let t = k.topics.get_mut("orders").expect("topic");
        t.config.insert("retention.ms".into(), "1".into());
        t.config.insert("max.message.bytes".into(), "2048".into());
        k.calls.clear();
    }
    pass(&api, &ctx).await.expect("drift pass");
    let calls = kafka.lock().calls.clone();
    let alters: Vec<_> = calls
        .iter()
        .filter(|c| c.starts_with("alter_topic_config"))
        .collect();
    assert_eq!(
        alters,
        [r#"alter_topic_config orders [Set { name: "retention.ms", value: "60000" }]"#],
        "only the difference is applied"
    );
    assert_eq!(
        kafka.lock().topics["orders"].config["retention.ms"],
        "60000"
    );
    assert_eq!(
        status(&api)["config"]["max.message.bytes"],
        "2048",
        "status shows foreign overrides too"
    );

    // in sync: no alter at all
    kafka.lock().calls.clear();
    pass(&api, &ctx).await.expect("steady pass");
    assert!(
        !kafka
            .lock()
            .calls
            .iter()
            .any(|c| c.starts_with("alter_topic_config")),
        "{:?}",
        kafka.lock().calls
    );

    // dropping a managed key deletes its override; the foreign one stays
    let mut obj = api.get(&coll(NS, "kafkatopics"), "orders").expect("topic");
    obj["spec"]["config"] = json!({ "retention.ms": "60000" });
    api.insert(&coll(NS, "kafkatopics"), obj);
    pass(&api, &ctx).await.expect("delete-key pass");
    let config = kafka.lock().topics["orders"].config.clone();
    assert_eq!(config.get("segment.bytes"), None);
    assert_eq!(config["max.message.bytes"], "2048");
    assert_eq!(
        status(&api)["config"],
        json!({ "retention.ms": "60000", "max.message.bytes": "2048" })
    );
    assert_eq!(condition(&api, "Ready")["reason"], "Synced");

    // a broker that acknowledges a change without keeping it is not reported as Synced
    kafka.lock().ignore_alters = true;
    let mut obj = api.get(&coll(NS, "kafkatopics"), "orders").expect("topic");
    obj["spec"]["config"] = json!({ "retention.ms": "120000" });
    api.insert(&coll(NS, "kafkatopics"), obj);
    let action = pass(&api, &ctx).await.expect("pass");
    assert_eq!(
        action,
        Action::requeue(operator::topic::reconcile::REQUEUE_WAITING)
    );
    let ready = condition(&api, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("ConfigDrift"))
    );
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or("")
            .contains("retention.ms=60000 (spec: 120000)"),
        "{ready}"
    );
}

/// The requeue delay `action` asks for (kube's `Action` has no accessor; read its Debug form,
/// `Action { requeue_after: Some(1.234s) }`; backoff delays are whole milliseconds).
fn delay(action: &Action) -> std::time::Duration {
    let text = format!("{action:?}");
    let inner = text
        .split_once("Some(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(d, _)| d.to_owned())
        .unwrap_or_else(|| panic!("not a requeue: {text}"));
    let parsed = match inner.strip_suffix("ms") {
        Some(ms) => ms.parse::<f64>().map(|v| v / 1000.0),
        None => inner.trim_end_matches('s').parse::<f64>(),
    };
    let d = std::time::Duration::from_secs_f64(parsed.unwrap_or_else(|_| panic!("{text}")));
    assert_eq!(Action::requeue(d), *action, "parsed {text} exactly");
    d
}

#[tokio::test]
async fn transient_failures_back_off_per_object_and_reset_after_success() {
    let (client, api) = FakeApi::start();
    ready_cluster(&api);
    let mut obj = topic_obj(3, json!({}));
    obj["metadata"]["finalizers"] = json!(["kafka.tributary.dev/topic"]);
    api.insert(&coll(NS, "kafkatopics"), obj);
    let kafka = FakeAdmin::with_brokers(&[0, 1, 2]);
    let ctx = context(client, kafka.clone());
    let kt = || -> Arc<KafkaTopic> {
        Arc::new(
            serde_json::from_value(api.get(&coll(NS, "kafkatopics"), "orders").expect("kt"))
                .expect("kt"),
        )
    };

    kafka.lock().unreachable = true;
    let mut delays = Vec::new();
    for _ in 0..4 {
        let err = pass(&api, &ctx).await.expect_err("unreachable");
        assert!(err.is_transient());
        delays.push(delay(&error_policy(kt(), &err, ctx.clone())));
    }
    // 1 s doubling, each with jitter in the upper half of its step
    for (i, d) in delays.iter().enumerate() {
        let step = std::time::Duration::from_secs(1 << i);
        assert!(*d >= step / 2 && *d <= step, "failure {}: {d:?}", i + 1);
    }
    assert!(delays[3] > delays[0]);

    // another object's failures do not add to this one's
    let mut other = (*kt()).clone();
    other.metadata.name = Some("other".into());
    let err = pass(&api, &ctx).await.expect_err("unreachable");
    let d = delay(&error_policy(Arc::new(other), &err, ctx.clone()));
    assert!(d <= std::time::Duration::from_secs(1), "{d:?}");

    // a successful pass resets the backoff
    kafka.lock().unreachable = false;
    pass(&api, &ctx).await.expect("reachable again");
    kafka.lock().unreachable = true;
    let err = pass(&api, &ctx).await.expect_err("unreachable");
    let d = delay(&error_policy(kt(), &err, ctx.clone()));
    assert!(d <= std::time::Duration::from_secs(1), "reset: {d:?}");
}

#[tokio::test]
async fn observed_generation_moves_only_on_passes_that_handled_the_spec() {
    let (client, api) = FakeApi::start();
    let mut obj = topic_obj(3, json!({}));
    obj["metadata"]["finalizers"] = json!(["kafka.tributary.dev/topic"]);
    obj["metadata"]["generation"] = json!(1);
    api.insert(&coll(NS, "kafkatopics"), obj);
    let kafka = FakeAdmin::with_brokers(&[0, 1, 2]);
    let ctx = context(client, kafka.clone());
    // no cluster yet: the pass waits and does not claim generation 1 as observed
    pass(&api, &ctx).await.expect("waits");
    assert_eq!(condition(&api, "Ready")["reason"], "ClusterNotFound");
    assert!(
        status(&api)["observedGeneration"].is_null(),
        "{}",
        status(&api)
    );

    ready_cluster(&api);
    pass(&api, &ctx).await.expect("synced");
    assert_eq!(status(&api)["observedGeneration"], 1);
    let writes = api
        .requests(
            "PATCH /apis/kafka.tributary.dev/v1alpha1/namespaces/kafka/kafkatopics/orders/status",
        )
        .len();
    // a pass that finds the topic in sync writes nothing
    pass(&api, &ctx).await.expect("synced");
    pass(&api, &ctx).await.expect("synced");
    assert_eq!(
        api.requests(
            "PATCH /apis/kafka.tributary.dev/v1alpha1/namespaces/kafka/kafkatopics/orders/status"
        )
        .len(),
        writes,
        "no status write on passes that changed nothing"
    );

    // the spec moves to generation 2 while the cluster is not ready: 1 stays observed
    let mut kt = api.get(&coll(NS, "kafkatopics"), "orders").expect("kt");
    kt["spec"]["partitions"] = json!(6);
    kt["metadata"]["generation"] = json!(2);
    api.insert(&coll(NS, "kafkatopics"), kt);
    let mut kc = api.get(&coll(NS, "kafkaclusters"), "demo").expect("kc");
    kc["status"]["conditions"][0]["status"] = json!("False");
    api.insert(&coll(NS, "kafkaclusters"), kc);
    pass(&api, &ctx).await.expect("waits");
    assert_eq!(condition(&api, "Ready")["reason"], "ClusterNotReady");
    assert_eq!(status(&api)["observedGeneration"], 1);
    ready_cluster(&api);
    pass(&api, &ctx).await.expect("synced");
    assert_eq!(status(&api)["observedGeneration"], 2);
    assert_eq!(status(&api)["partitions"], 6);
}
