//! The chart's documented `KafkaCluster` example (3 controllers + 3 brokers) run as six real
//! broker processes with exactly what the operator renders for its pods: each node's properties
//! file (the ConfigMap entry, built by `node_properties`), the container's arguments and its
//! environment (the downward-API rack variable). Only what cannot exist on one machine is
//! translated: pod DNS names become 127.0.0.1, the fixed ports become free ports per node, the
//! data and config mounts become temp dirs; the test asserts nothing else changed. It then checks
//! the cluster through the operator's own admin client: three brokers, their racks, a topic
//! created with the example's defaults. It does not cover the Kubernetes side (probes, volumes,
//! scheduling), which `check-chart.py` and the reconcile tests do.
//!
//! Needs `target/debug/broker` (built by `cargo build -p broker`) or `TRIBUTARY_BROKER_BIN`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use k8s_openapi::api::core::v1::Container;
use kafka_protocol::messages::{
    DescribeClusterRequest, DescribeClusterResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request};
use operator::admin::client::KafkaAdminClient;
use operator::admin::{codes, ConfigSource, KafkaAdmin, NewTopic};
use operator::cluster::build::configmap::{
    build_configmap, config_hash, node_properties, render_properties, CONFIG_MOUNT, DATA_MOUNT,
};
use operator::cluster::build::statefulset::build_statefulset;
use operator::cluster::build::{pod_dns, pod_name, CONTROLLER_PORT, HTTP_PORT};
use operator::cluster::validate::{validate, Role, ValidatedCluster};
use operator::crd::cluster::KafkaCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The example, relative to this crate.
const EXAMPLE: &str = "../charts/tributary-operator/examples/kafkacluster.yaml";
/// The namespace the API server gives the example (`docs/operations.md` applies it with
/// `kubectl -n kafka`).
const NAMESPACE: &str = "kafka";
/// The zone label of each pool's pods by ordinal: the topology spread constraint (max skew 1)
/// puts the three pods of a pool in three zones; which pod gets which is the scheduler's choice.
const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
/// Properties that hold a place (host, port, path) and so are translated; nothing else may be.
const PLACEMENT_PROPERTIES: &[&str] = &[
    "controller.quorum.voters",
    "http.listener",
    "listeners",
    "log.dirs",
];
/// How long the six nodes have to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a broker may take to show a change the controllers committed.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// One pod as the operator renders it.
struct RenderedNode {
    pod: String,
    role: Role,
    ordinal: i32,
    node_id: i32,
    /// The pod's stable DNS name, as other nodes address it.
    dns: String,
    properties: BTreeMap<String, String>,
    container: Container,
}

/// Where one node lives on this machine.
#[derive(Clone, Copy)]
struct Ports {
    client: u16,
    controller: u16,
    http: u16,
}

impl Ports {
    /// (rendered port, local port) pairs.
    fn pairs(self, client_port: i32) -> [(i32, u16); 3] {
        [
            (client_port, self.client),
            (CONTROLLER_PORT, self.controller),
            (HTTP_PORT, self.http),
        ]
    }
}

fn load_example() -> ValidatedCluster {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE);
    let text = std::fs::read_to_string(&path).expect("read the example");
    let mut kc: KafkaCluster = serde_yaml::from_str(&text).expect("the example parses");
    kc.metadata.namespace = Some(NAMESPACE.to_owned());
    validate(&kc).expect("the example passes the operator's validation")
}

/// Every pod of every pool, with its properties as the pool's ConfigMap carries them.
fn render(vc: &ValidatedCluster) -> Vec<RenderedNode> {
    let mut nodes = Vec::new();
    for pool in &vc.pools {
        let configmap = build_configmap(vc, pool).data.expect("configmap data");
        let sts = build_statefulset(vc, pool, &config_hash(vc, pool));
        let pod_spec = sts.spec.and_then(|s| s.template.spec).expect("pod spec");
        for ordinal in 0..pool.replicas {
            let pod = pod_name(vc, pool, ordinal);
            let properties = node_properties(vc, pool, ordinal);
            assert_eq!(
                configmap[&format!("{pod}.properties")],
                render_properties(&properties),
                "the ConfigMap carries node_properties for {pod}"
            );
            nodes.push(RenderedNode {
                role: pool.role,
                ordinal,
                node_id: pool.role.node_id(ordinal),
                dns: pod_dns(vc, pool, ordinal),
                properties,
                container: pod_spec.containers[0].clone(),
                pod,
            });
        }
    }
    nodes
}

/// Replaces every pod address with its loopback counterpart, this node's own wildcard ports with
/// its local ports, and the data mount with `data_dir`. Applied to every value, so a place the
/// operator renders into any other property would show up as a changed property.
fn translate(
    node: &RenderedNode,
    all: &[(&RenderedNode, Ports)],
    client_port: i32,
    data_dir: &Path,
) -> BTreeMap<String, String> {
    let mut subs = Vec::new();
    let mine = all.iter().find(|(n, _)| n.pod == node.pod).expect("self").1;
    for (other, ports) in all {
        for (rendered, local) in ports.pairs(client_port) {
            subs.push((
                format!("{}:{rendered}", other.dns),
                format!("127.0.0.1:{local}"),
            ));
        }
    }
    for (rendered, local) in mine.pairs(client_port) {
        subs.push((format!("0.0.0.0:{rendered}"), format!("0.0.0.0:{local}")));
    }
    subs.push((DATA_MOUNT.to_owned(), data_dir.display().to_string()));
    node.properties
        .iter()
        .map(|(k, v)| {
            let v = subs
                .iter()
                .fold(v.clone(), |v, (from, to)| v.replace(from, to));
            (k.clone(), v)
        })
        .collect()
}

/// The translation touched exactly the placement properties and left no pod name, fixed port
/// or mount path behind.
fn assert_only_placement_changed(
    node: &RenderedNode,
    local: &BTreeMap<String, String>,
    client_port: i32,
) {
    let rendered = &node.properties;
    assert_eq!(
        rendered.keys().collect::<Vec<_>>(),
        local.keys().collect::<Vec<_>>(),
        "{}: same properties",
        node.pod
    );
    let changed: BTreeSet<&str> = rendered
        .iter()
        .filter(|(k, v)| local[*k] != **v)
        .map(|(k, _)| k.as_str())
        .collect();
    let mut expected: BTreeSet<&str> = PLACEMENT_PROPERTIES.iter().copied().collect();
    if node.role.is_broker() {
        expected.insert("advertised.listeners");
    }
    assert_eq!(changed, expected, "{}: only placement changed", node.pod);
    for (k, v) in local {
        let fixed_port = [client_port, CONTROLLER_PORT, HTTP_PORT]
            .iter()
            .any(|p| v.contains(&format!(":{p}")));
        assert!(
            !v.contains(".svc") && !v.contains(DATA_MOUNT) && !fixed_port,
            "{}: {k}={v} still names a pod address, port or mount",
            node.pod
        );
    }
}

/// The container's environment as Kubernetes fills it in for this pod: plain values, the pod
/// name and the node's zone label through the downward API.
fn pod_env(vc: &ValidatedCluster, node: &RenderedNode) -> Vec<(String, String)> {
    let zone_field = vc
        .rack_key
        .as_ref()
        .map(|k| format!("metadata.labels['{k}']"));
    let env = node.container.env.clone().unwrap_or_default();
    env.into_iter()
        .map(|e| {
            let field = e.value_from.and_then(|f| f.field_ref).map(|f| f.field_path);
            let value = match (e.value, field) {
                (Some(v), _) => v,
                (None, Some(f)) if f == "metadata.name" => node.pod.clone(),
                (None, Some(f)) if Some(&f) == zone_field.as_ref() => {
                    ZONES[node.ordinal as usize % ZONES.len()].to_owned()
                }
                (None, other) => panic!("{}: unhandled env source {other:?}", node.pod),
            };
            (e.name, value)
        })
        .collect()
}

/// The container's arguments with `$(VAR)` expanded from `env` (as the kubelet does) and the
/// config mount moved to `config_dir`.
fn pod_args(node: &RenderedNode, env: &[(String, String)], config_dir: &Path) -> Vec<String> {
    let args = node.container.args.clone().expect("container args");
    args.into_iter()
        .map(|a| {
            let a = env
                .iter()
                .fold(a, |a, (k, v)| a.replace(&format!("$({k})"), v));
            a.replace(CONFIG_MOUNT, &config_dir.display().to_string())
        })
        .collect()
}

fn free_port(taken: &mut BTreeSet<u16>) -> u16 {
    loop {
        let port = TcpListener::bind("0.0.0.0:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        if taken.insert(port) {
            return port;
        }
    }
}

fn broker_bin() -> PathBuf {
    std::env::var_os("TRIBUTARY_BROKER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/broker"))
}

/// One running node.
struct Process {
    pod: String,
    node_id: i32,
    role: Role,
    ports: Ports,
    log: PathBuf,
    child: Child,
}

/// The six processes; dropping it kills them all, so a failing test leaves nothing running.
struct LocalCluster {
    nodes: Vec<Process>,
    /// Each node's data and config mounts and its log.
    root: tempfile::TempDir,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
        }
        for n in &mut self.nodes {
            let _ = n.child.wait();
        }
    }
}

impl Process {
    /// The Kafka client address.
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports.client)
    }
}

impl LocalCluster {
    /// Starts every rendered node on this machine, each on its own free ports.
    fn start(vc: &ValidatedCluster, rendered: &[RenderedNode]) -> LocalCluster {
        let bin = broker_bin();
        assert!(bin.exists(), "{} missing: build the broker", bin.display());
        let mut taken = BTreeSet::new();
        let placed: Vec<(&RenderedNode, Ports)> = rendered
            .iter()
            .map(|n| {
                let ports = Ports {
                    client: free_port(&mut taken),
                    controller: free_port(&mut taken),
                    http: free_port(&mut taken),
                };
                (n, ports)
            })
            .collect();
        // Built before the first spawn so that a panic part-way still kills what started.
        let mut cluster = LocalCluster {
            nodes: Vec::new(),
            root: tempfile::tempdir().expect("tempdir"),
        };
        for (node, ports) in &placed {
            let process = cluster.spawn(&bin, vc, node, *ports, &placed);
            cluster.nodes.push(process);
        }
        cluster
    }

    /// Writes the node's translated properties where its `--config` points and starts it with
    /// the pod's arguments and environment only.
    fn spawn(
        &self,
        bin: &Path,
        vc: &ValidatedCluster,
        node: &RenderedNode,
        ports: Ports,
        placed: &[(&RenderedNode, Ports)],
    ) -> Process {
        let dir = self.root.path().join(&node.pod);
        let (data_dir, config_dir) = (dir.join("data-mount"), dir.join("config-mount"));
        std::fs::create_dir_all(&data_dir).expect("data dir");
        std::fs::create_dir_all(&config_dir).expect("config dir");
        let local = translate(node, placed, vc.client_port, &data_dir);
        assert_only_placement_changed(node, &local, vc.client_port);
        let file = config_dir.join(format!("{}.properties", node.pod));
        std::fs::write(&file, render_properties(&local)).expect("write properties");
        let env = pod_env(vc, node);
        let args = pod_args(node, &env, &config_dir);
        assert_eq!(args, ["--config".to_owned(), file.display().to_string()]);
        let log = dir.join("node.log");
        let out = File::create(&log).expect("log file");
        let child = Command::new(bin)
            .args(&args)
            .env_clear()
            .envs(env)
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("spawn broker");
        Process {
            pod: node.pod.clone(),
            node_id: node.node_id,
            role: node.role,
            ports,
            log,
            child,
        }
    }

    fn brokers(&self) -> impl Iterator<Item = &Process> {
        self.nodes.iter().filter(|n| n.role.is_broker())
    }

    /// The last lines of every node's log, for failure messages.
    fn log_tails(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("\n--- {} (node {}) ---\n", n.pod, n.node_id));
            out.push_str(&lines[lines.len().saturating_sub(15)..].join("\n"));
        }
        out
    }

    /// Waits until every node answers `/readyz` with 200; fails early when a node exits.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut waiting: Vec<usize> = (0..self.nodes.len()).collect();
        while !waiting.is_empty() {
            for &i in &waiting {
                if let Ok(Some(status)) = self.nodes[i].child.try_wait() {
                    let pod = self.nodes[i].pod.clone();
                    panic!("{pod} exited with {status}{}", self.log_tails());
                }
            }
            let mut still = Vec::new();
            for i in waiting {
                if http_status(self.nodes[i].ports.http, "/readyz").await != Some(200) {
                    still.push(i);
                }
            }
            waiting = still;
            if !waiting.is_empty() && Instant::now() > deadline {
                let pods: Vec<&str> = waiting
                    .iter()
                    .map(|&i| self.nodes[i].pod.as_str())
                    .collect();
                panic!(
                    "not ready after {READY_TIMEOUT:?}: {pods:?}{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The status code of `GET path` on the node's HTTP listener, `None` while it does not answer.
async fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Each broker's rack as DescribeCluster (v0) reports it; the operator's client does not expose
/// racks, so this one request is made by hand.
async fn broker_racks(addr: &str) -> BTreeMap<i32, Option<String>> {
    let version = 0;
    let header = RequestHeader::default()
        .with_request_api_key(DescribeClusterRequest::KEY)
        .with_request_api_version(version)
        .with_correlation_id(1);
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    let header_version = DescribeClusterRequest::header_version(version);
    header.encode(&mut buf, header_version).expect("encode");
    let req = DescribeClusterRequest::default();
    req.encode(&mut buf, version).expect("encode");
    let len = i32::try_from(buf.len() - 4).expect("small request");
    buf[..4].copy_from_slice(&len.to_be_bytes());
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&buf).await.expect("send");
    let len = s.read_i32().await.expect("length");
    let mut body = vec![0u8; usize::try_from(len).expect("length")];
    s.read_exact(&mut body).await.expect("body");
    let mut body = Bytes::from(body);
    ResponseHeader::decode(&mut body, DescribeClusterResponse::header_version(version))
        .expect("header");
    let resp = DescribeClusterResponse::decode(&mut body, version).expect("response");
    assert_eq!(body.remaining(), 0);
    resp.brokers
        .iter()
        .map(|b| (b.broker_id.0, b.rack.as_ref().map(|r| r.to_string())))
        .collect()
}

/// Polls `check` until it returns `Some`, for at most `SETTLE_TIMEOUT`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let last = match check().await {
            Ok(Some(v)) => return v,
            Ok(None) => "not yet".to_owned(),
            Err(e) => e,
        };
        assert!(Instant::now() < deadline, "{what}: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every broker reports the three brokers (DescribeCluster through the operator's client) and a
/// controller id clients can reach; returns the broker ids.
async fn assert_every_broker_sees_the_brokers(cluster: &LocalCluster) -> Vec<i32> {
    let broker_ids: Vec<i32> = cluster.brokers().map(|b| b.node_id).collect();
    assert_eq!(broker_ids, [100, 101, 102]);
    for b in cluster.brokers() {
        let admin = KafkaAdminClient::connect(&b.addr()).await.expect("connect");
        let info = eventually(&format!("{} sees every broker", b.pod), || async {
            let info = admin.describe_cluster().await.map_err(|e| e.to_string())?;
            Ok((info.broker_ids == broker_ids).then_some(info))
        })
        .await;
        let controller = info.controller_id.expect("a controller id for clients");
        assert!(broker_ids.contains(&controller), "{info:?}");
    }
    broker_ids
}

/// A topic created with the brokers' defaults gets the example's `num.partitions` and
/// `default.replication.factor` on every broker, and the example's `min.insync.replicas`.
async fn assert_topics_get_the_example_defaults(cluster: &LocalCluster, admin: &KafkaAdminClient) {
    let topic = NewTopic {
        name: "orders".to_owned(),
        partitions: -1,
        replication_factor: -1,
        config: BTreeMap::new(),
    };
    admin.create_topic(&topic).await.expect("create topic");
    for b in cluster.brokers() {
        let client = KafkaAdminClient::connect(&b.addr()).await.expect("connect");
        let t = eventually(&format!("{} shows the topic", b.pod), || async {
            client
                .describe_topic("orders")
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        assert_eq!((t.partitions, t.replication_factor), (3, 3), "{}", b.pod);
    }
    let entries = admin
        .describe_topic_config("orders")
        .await
        .expect("configs");
    let min_isr = entries
        .iter()
        .find(|e| e.name == "min.insync.replicas")
        .expect("min.insync.replicas described");
    assert_eq!(min_isr.value.as_deref(), Some("2"));
    assert_eq!(min_isr.source, ConfigSource::StaticBroker);

    // A replication factor above the brokers there are is refused.
    let rf4 = NewTopic {
        name: "too-many-replicas".to_owned(),
        replication_factor: 4,
        ..topic
    };
    let err = admin
        .create_topic(&rf4)
        .await
        .expect_err("RF 4 > 3 brokers");
    assert_eq!(err.kafka_code(), Some(codes::INVALID_REPLICATION_FACTOR));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_cluster_runs_with_the_rendered_node_properties() {
    let vc = load_example();
    let rendered = render(&vc);
    let nodes: Vec<(Role, i32)> = rendered.iter().map(|n| (n.role, n.node_id)).collect();
    let (c, b) = (Role::Controller, Role::Broker);
    assert_eq!(
        nodes,
        [(c, 0), (c, 1), (c, 2), (b, 100), (b, 101), (b, 102)],
        "3 controllers + 3 brokers"
    );

    let mut cluster = LocalCluster::start(&vc, &rendered);
    cluster.wait_ready().await;

    let broker_ids = assert_every_broker_sees_the_brokers(&cluster).await;
    let bootstrap = cluster.brokers().next().expect("a broker").addr();
    let expected: BTreeMap<i32, Option<String>> = broker_ids
        .iter()
        .zip(ZONES)
        .map(|(id, zone)| (*id, Some(zone.to_owned())))
        .collect();
    assert_eq!(
        broker_racks(&bootstrap).await,
        expected,
        "broker.rack comes from the zone label"
    );

    let admin = KafkaAdminClient::connect(&bootstrap)
        .await
        .expect("connect");
    assert_topics_get_the_example_defaults(&cluster, &admin).await;
}
