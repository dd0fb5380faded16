//! The test bed of the operator binary's end-to-end tests: the test API server over HTTP
//! (`api_server`), the operator binary against it (`operator_process`), and, for scenarios with
//! a Kafka cluster, the test kubelet playing the pods with broker processes (`kubelet`).

use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use operator::cluster::build::pod_dns;
use operator::cluster::validate::{validate, ValidatedCluster};
use operator::crd::KafkaCluster;
use serde_json::{json, Value};

use super::api_server::ApiServer;
use super::coll;
use super::fake_api::FakeApi;
use super::kubelet::{broker_bin, Kubelet};
use super::operator_process::{OperatorConfig, OperatorProcess};

pub const NS: &str = "kafka";
pub const LEASE: &str = "tributary-operator";

/// Polls `check` every 50 ms until it returns `Some`, or fails after `within` with `what` and
/// `more()`.
pub async fn until_within<T>(
    what: &str,
    within: Duration,
    more: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}\n{}",
            more()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The operator binary against `server`, watching all namespaces (the chart's default), leader
/// election on under `identity`, its kubeconfig and log in `dir`.
pub fn start_operator(
    server: &ApiServer,
    dir: &Path,
    bootstrap: Option<String>,
    identity: &str,
) -> OperatorProcess {
    OperatorProcess::start(
        server,
        &OperatorConfig {
            namespace: NS,
            watch_namespace: None,
            bootstrap_override: bootstrap,
            lease: LEASE,
            identity,
            dir,
        },
    )
}

/// A kube client of the test's own, over HTTP through the kubeconfig the operator uses.
pub async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(cfg).expect("client")
}

/// Condition `type_` of KafkaCluster `demo`, or null.
pub fn condition(api: &FakeApi, type_: &str) -> Value {
    let kc = api.get(&coll(NS, "kafkaclusters"), "demo");
    let conditions = kc.map(|kc| kc["status"]["conditions"].clone());
    conditions
        .and_then(|cs| cs.as_array()?.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(Value::Null)
}

/// A StorageClass `fast` that allows expansion (the fixtures' brokers use it).
pub fn storage_class(api: &FakeApi) {
    api.insert(
        &coll(NS, "storageclasses"),
        json!({ "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": { "name": "fast" }, "provisioner": "test", "allowVolumeExpansion": true }),
    );
}

/// A KafkaCluster run by the operator binary, its pods broker processes.
pub struct Bed {
    pub api: FakeApi,
    pub kubelet: Kubelet,
    pub op: OperatorProcess,
    pub vc: ValidatedCluster,
    pub kcs: Api<KafkaCluster>,
    server: ApiServer,
    operators: usize,
    // last: the processes above write into it
    pub dir: tempfile::TempDir,
}

impl Bed {
    /// Starts the API server, the kubelet and the operator, creates `kc` and waits until the
    /// cluster is Ready; `None` (the test skips) when the broker binary is absent.
    pub async fn start(kc: Value) -> Option<Bed> {
        Bed::start_in_zones(kc, &[]).await
    }

    /// `start`, with the pods on nodes of `zones` (see `Kubelet::start_in_zones`).
    pub async fn start_in_zones(mut kc: Value, zones: &[&str]) -> Option<Bed> {
        let bin = broker_bin();
        if !bin.exists() {
            eprintln!(
                "SKIPPED: broker binary {} absent (cargo build -p broker --bins, or TRIBUTARY_BROKER_BIN)",
                bin.display()
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let server = ApiServer::start(FakeApi::default()).await;
        let api = server.api.clone();
        storage_class(&api);
        let kubelet = Kubelet::start_in_zones(api.clone(), bin, dir.path(), zones);
        if let Some(meta) = kc["metadata"].as_object_mut() {
            meta.remove("generation");
        }
        let vc = validate(&serde_json::from_value::<KafkaCluster>(kc.clone()).expect("parses"))
            .expect("valid cluster");
        let port = u16::try_from(vc.client_port).expect("port");
        let broker0 = pod_dns(&vc, vc.broker_pool(), 0);
        let bootstrap = format!("127.0.0.1:{}", kubelet.local_port(&broker0, port));
        let op = start_operator(&server, dir.path(), Some(bootstrap), "operator-e2e-0");
        let kubeconfig = dir.path().join("kubeconfig");
        let kcs = Api::namespaced(client(&kubeconfig).await, NS);
        api.insert(&coll(NS, "kafkaclusters"), kc);
        let bed = Bed {
            api,
            kubelet,
            op,
            vc,
            kcs,
            server,
            operators: 1,
            dir,
        };
        bed.until("Ready=True", Duration::from_secs(90), || {
            (condition(&bed.api, "Ready")["status"] == "True").then_some(())
        })
        .await;
        Some(bed)
    }

    /// `127.0.0.1:<port>` of broker `ordinal`'s client listener.
    pub fn broker_addr(&self, ordinal: i32) -> String {
        let port = u16::try_from(self.vc.client_port).expect("port");
        let host = pod_dns(&self.vc, self.vc.broker_pool(), ordinal);
        format!("127.0.0.1:{}", self.kubelet.local_port(&host, port))
    }

    /// The end of the operator's log (without its DEBUG lines) and of every pod's, for failure
    /// messages.
    pub fn more(&self) -> String {
        let log = self.op.log_text();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains(" DEBUG ")).collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        format!(
            "status: {}\noperator log (end):\n{tail}\npods:{}",
            self.status(),
            self.kubelet.log_tails()
        )
    }

    /// `until_within` with the bed's failure details.
    pub async fn until<T>(
        &self,
        what: &str,
        within: Duration,
        check: impl FnMut() -> Option<T>,
    ) -> T {
        until_within(what, within, || self.more(), check).await
    }

    /// A merge patch of KafkaCluster `demo`, over HTTP as `kubectl patch` sends it.
    pub async fn patch(&self, patch: Value) {
        self.kcs
            .patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch KafkaCluster");
    }

    /// KafkaCluster `demo`'s status.
    pub fn status(&self) -> Value {
        self.api
            .get(&coll(NS, "kafkaclusters"), "demo")
            .map(|kc| kc["status"].clone())
            .unwrap_or(Value::Null)
    }

    pub fn condition(&self, type_: &str) -> Value {
        condition(&self.api, type_)
    }

    /// Whether the operator has acted on the latest spec and reports nothing in progress: no
    /// day-2 operation, every pod ready and up to date.
    pub fn settled(&self) -> bool {
        let status = self.status();
        let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
        let kc = self.api.get(&coll(NS, "kafkaclusters"), "demo");
        let generation = kc.map(|kc| kc["metadata"]["generation"].clone());
        Some(&status["observedGeneration"]) == generation.as_ref()
            && status["operation"]["kind"] == "None"
            && status["day2"]["operation"].is_null()
            && nodes
                .iter()
                .all(|n| n["ready"] == true && n["upToDate"] == true)
    }

    /// The broker StatefulSet's replica count.
    pub fn broker_replicas(&self) -> i64 {
        let sts = self.api.get(&coll(NS, "statefulsets"), "demo-broker");
        sts.and_then(|s| s["spec"]["replicas"].as_i64())
            .unwrap_or(-1)
    }

    /// Kills the operator (SIGKILL) and starts a new one under a new identity, as a replaced
    /// operator pod: it takes the Lease once the old holder's expires, and resumes from status.
    pub fn replace_operator(&mut self) {
        self.op.kill();
        self.operators += 1;
        let identity = format!("operator-e2e-{}", self.operators);
        let bootstrap = Some(self.broker_addr(0));
        self.op = start_operator(&self.server, self.dir.path(), bootstrap, &identity);
    }
}
