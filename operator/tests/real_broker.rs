//! The KafkaTopic reconcile path (plan + our kafka-protocol admin client) against the real
//! broker binary from this repository: create, raise partitions, alter config (read back with
//! DescribeConfigs, drift undone, a key removed from the spec deleted), delete. The
//! Kubernetes side is the in-memory API server. Needs `target/debug/broker` (built by
//! `cargo build --workspace --bins`) or `TRIBUTARY_BROKER_BIN`.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::broker_bin;
use common::coll;
use common::fake_api::FakeApi;
use operator::admin::client::{KafkaAdminClient, TcpAdminConnector};
use operator::admin::{topic_overrides, ConfigChange, ConfigSource, KafkaAdmin};
use operator::context::Context;
use operator::crd::topic::KafkaTopic;
use operator::runtime::metrics::Metrics;
use operator::topic::reconcile::reconcile;
use serde_json::json;

const NS: &str = "kafka";

struct Broker {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn start_broker() -> Broker {
    let bin = broker_bin();
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p broker` first",
        bin.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (kafka, controller, http) = (free_port(), free_port(), free_port());
    let set = |kv: String| ["--override".to_owned(), kv];
    let mut args = Vec::new();
    args.extend(set(format!("listeners=PLAINTEXT://127.0.0.1:{kafka}")));
    args.extend(set(format!(
        "controller.quorum.voters=1@127.0.0.1:{controller}"
    )));
    args.extend(set(format!("http.listener=127.0.0.1:{http}")));
    args.extend(set(format!("log.dirs={}", dir.path().display())));
    let child = Command::new(&bin)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn broker");
    let broker = Broker {
        child,
        addr: format!("127.0.0.1:{kafka}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(c) = KafkaAdminClient::connect(&broker.addr).await {
            if c.describe_cluster()
                .await
                .is_ok_and(|i| !i.broker_ids.is_empty())
            {
                return broker;
            }
        }
        assert!(
            Instant::now() < deadline,
            "broker did not become ready on {}",
            broker.addr
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pass(api: &FakeApi, ctx: &Arc<Context>) {
    let obj = api
        .get(&coll(NS, "kafkatopics"), "orders")
        .expect("topic resource");
    let kt: KafkaTopic = serde_json::from_value(obj).expect("parses");
    reconcile(Arc::new(kt), ctx.clone())
        .await
        .expect("reconcile succeeds");
}

/// The topic's overrides as the broker reports them (DescribeConfigs), as JSON.
async fn overrides(admin: &KafkaAdminClient) -> serde_json::Value {
    let entries = admin
        .describe_topic_config("orders")
        .await
        .expect("describe configs");
    json!(topic_overrides(&entries))
}

fn edit(api: &FakeApi, f: impl FnOnce(&mut serde_json::Value)) {
    let mut obj = api
        .get(&coll(NS, "kafkatopics"), "orders")
        .expect("topic resource");
    f(&mut obj);
    api.insert(&coll(NS, "kafkatopics"), obj);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_lifecycle_against_the_real_broker() {
    let broker = start_broker().await;
    let admin = KafkaAdminClient::connect(&broker.addr)
        .await
        .expect("connect");
    let info = admin.describe_cluster().await.expect("describe cluster");
    assert_eq!(info.broker_ids, vec![1], "single combined node 1");

    let (client, api) = FakeApi::start();
    api.insert(
        &coll(NS, "kafkaclusters"),
        json!({
            "apiVersion": "kafka.tributary.dev/v1alpha1", "kind": "KafkaCluster",
            "metadata": { "name": "local", "namespace": NS },
            "spec": { "combined": true, "brokers": { "replicas": 1, "storage": { "size": "1Gi" } } },
            "status": { "conditions": [{ "type": "Ready", "status": "True", "reason": "AllNodesReady", "message": "" }] }
        }),
    );
    api.insert(
        &coll(NS, "kafkatopics"),
        json!({
            "apiVersion": "kafka.tributary.dev/v1alpha1", "kind": "KafkaTopic",
            "metadata": { "name": "orders", "namespace": NS },
            "spec": { "clusterRef": { "name": "local" }, "partitions": 2, "replicationFactor": 1, "config": { "retention.ms": "60000" } }
        }),
    );
    let mut ctx = Context::new(
        client,
        Arc::new(TcpAdminConnector),
        Arc::new(Metrics::default()),
    );
    ctx.bootstrap_override = Some(broker.addr.clone());
    let ctx = Arc::new(ctx);

    pass(&api, &ctx).await; // adds the finalizer
    pass(&api, &ctx).await; // creates the topic
    let t = admin
        .describe_topic("orders")
        .await
        .expect("describe")
        .expect("topic exists");
    assert_eq!((t.partitions, t.replication_factor), (2, 1));
    let status = api.get(&coll(NS, "kafkatopics"), "orders").expect("kt")["status"].clone();
    assert_eq!(
        status["topicId"],
        json!(t.id),
        "status reports the broker's topic id"
    );
    assert!(t.id.is_some(), "broker reports a topic id");

    edit(&api, |o| {
        o["spec"]["partitions"] = json!(4);
        o["spec"]["config"] = json!({ "retention.ms": "120000", "cleanup.policy": "delete" });
    });
    pass(&api, &ctx).await;
    let t2 = admin
        .describe_topic("orders")
        .await
        .expect("describe")
        .expect("topic exists");
    assert_eq!(t2.partitions, 4);
    assert_eq!(t2.id, t.id, "same topic, not recreated");
    let status = api.get(&coll(NS, "kafkatopics"), "orders").expect("kt")["status"].clone();
    assert_eq!(
        status["config"],
        json!({ "retention.ms": "120000", "cleanup.policy": "delete" })
    );
    assert_eq!(status["conditions"][0]["status"], "True", "{status}");
    assert_eq!(
        overrides(&admin).await,
        json!({ "retention.ms": "120000", "cleanup.policy": "delete" }),
        "the broker holds exactly the spec's overrides"
    );

    // drift made behind the operator's back is read back and undone; a foreign override stays
    admin
        .alter_topic_config(
            "orders",
            &[
                ConfigChange::Set {
                    name: "retention.ms".into(),
                    value: "1000".into(),
                },
                ConfigChange::Set {
                    name: "max.message.bytes".into(),
                    value: "2048".into(),
                },
            ],
        )
        .await
        .expect("out-of-band alter");
    pass(&api, &ctx).await;
    assert_eq!(
        overrides(&admin).await,
        json!({ "retention.ms": "120000", "cleanup.policy": "delete", "max.message.bytes": "2048" })
    );

    // removing a key from the spec deletes the override: the broker falls back to a
    // non-override source for it
    edit(&api, |o| {
        o["spec"]["config"] = json!({ "retention.ms": "120000" });
    });
    pass(&api, &ctx).await;
    assert_eq!(
        overrides(&admin).await,
        json!({ "retention.ms": "120000", "max.message.bytes": "2048" })
    );
    let entries = admin
        .describe_topic_config("orders")
        .await
        .expect("describe configs");
    let cleanup = entries
        .iter()
        .find(|e| e.name == "cleanup.policy")
        .expect("cleanup.policy is described");
    assert_ne!(cleanup.source, ConfigSource::DynamicTopic, "{cleanup:?}");
    let status = api.get(&coll(NS, "kafkatopics"), "orders").expect("kt")["status"].clone();
    assert_eq!(
        status["config"],
        json!({ "retention.ms": "120000", "max.message.bytes": "2048" }),
        "status reports the broker's overrides"
    );
    assert_eq!(status["managedConfigKeys"], json!(["retention.ms"]));

    // deleting the resource deletes the topic, then releases the finalizer
    edit(&api, |o| {
        o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z")
    });
    pass(&api, &ctx).await;
    assert!(
        api.get(&coll(NS, "kafkatopics"), "orders").is_none(),
        "finalizer removed"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin
        .describe_topic("orders")
        .await
        .expect("describe")
        .is_some()
    {
        assert!(Instant::now() < deadline, "topic still listed after delete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
