//! A cluster of real Tributary nodes as local processes on loopback, for tests of the admin
//! client and, later, end-to-end tests of the operator: the Rust side of
//! `e2e/cluster/harness.py`'s loopback mode (same `--override` keys, readiness from `/readyz`
//! on each node's HTTP port). Combined nodes only (ids 1..=n, every one a voter). Each node logs
//! to `<root>/node-<id>.log`; a node that does not become ready fails the test with the tail of
//! its log. Processes are killed when the cluster is dropped.
//!
//! Needs the broker binary: `TRIBUTARY_BROKER_BIN`, or `target/debug/broker` (built by
//! `cargo build -p broker --bins`).

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a node may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The broker binary under test.
pub fn broker_bin() -> PathBuf {
    std::env::var_os("TRIBUTARY_BROKER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/broker"))
}

/// Ports handed out by this process: never twice (a node may not have bound its port yet).
static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free loopback port below the ephemeral range: a port the OS hands out for outgoing
/// connections could be taken by a client before a node binds it (or while a stopped node is
/// away), as `harness.py` explains.
pub fn free_port() -> u16 {
    let top = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768)
        .min(32768);
    let mut given = GIVEN.lock().expect("port set lock");
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..200 {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = 10_000 + (random % u64::from(top - 10_000)) as u16;
        if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.insert(port);
        return port;
    }
    panic!("no free port found below the ephemeral range");
}

/// One node process.
pub struct Node {
    pub id: i32,
    pub kafka_port: u16,
    pub controller_port: u16,
    pub http_port: u16,
    pub log_path: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    /// `host:port` of its Kafka listener.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open node log");
        let child = Command::new(broker_bin())
            .args(&self.args)
            .stdout(Stdio::from(log.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn broker");
        self.child = Some(child);
    }

    /// Whether `/readyz` answers 200 (registered, unfenced, caught up with metadata).
    pub async fn ready(&self) -> bool {
        let get = async {
            let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).await?;
            s.write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .await?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head).await?;
            Ok::<bool, std::io::Error>(
                head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"),
            )
        };
        tokio::time::timeout(Duration::from_secs(1), get)
            .await
            .is_ok_and(|r| r.unwrap_or(false))
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.ready().await {
            let alive = self.alive();
            if !alive || Instant::now() > deadline {
                panic!(
                    "node {} did not become ready (alive: {alive}); log tail:\n{}",
                    self.id,
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM (controlled shutdown), then waits for the process to exit.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        super::signal(&child, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.wait();
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running cluster of combined nodes.
pub struct Cluster {
    pub nodes: Vec<Node>,
    root: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` combined (broker + controller) nodes with ids 1..=n, every one a voter, and
    /// waits until each is ready. `overrides` apply to every node.
    pub async fn combined(n: i32, overrides: &[(&str, &str)]) -> Cluster {
        let bin = broker_bin();
        assert!(
            bin.exists(),
            "{} missing: run `cargo build -p broker --bins` or set TRIBUTARY_BROKER_BIN",
            bin.display()
        );
        let root = tempfile::Builder::new()
            .prefix("tributary-cluster-")
            .tempdir()
            .expect("tempdir");
        let ports: Vec<(i32, u16, u16, u16)> = (1..=n)
            .map(|id| (id, free_port(), free_port(), free_port()))
            .collect();
        let voters = ports
            .iter()
            .map(|(id, _, c, _)| format!("{id}@127.0.0.1:{c}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = ports
            .iter()
            .map(|(id, k, c, h)| {
                let data = root.path().join(format!("node-{id}"));
                std::fs::create_dir_all(&data).expect("data dir");
                let mut config = vec![
                    ("node.id".to_owned(), id.to_string()),
                    ("process.roles".to_owned(), "broker,controller".to_owned()),
                    (
                        "listeners".to_owned(),
                        format!("PLAINTEXT://127.0.0.1:{k},CONTROLLER://127.0.0.1:{c}"),
                    ),
                    (
                        "controller.listener.names".to_owned(),
                        "CONTROLLER".to_owned(),
                    ),
                    ("controller.quorum.voters".to_owned(), voters.clone()),
                    ("http.listener".to_owned(), format!("127.0.0.1:{h}")),
                    ("log.dirs".to_owned(), data.display().to_string()),
                    // As harness.py: a stopped broker is fenced within seconds.
                    ("broker.heartbeat.interval.ms".to_owned(), "500".to_owned()),
                    ("broker.session.timeout.ms".to_owned(), "3000".to_owned()),
                    (
                        "group.initial.rebalance.delay.ms".to_owned(),
                        "0".to_owned(),
                    ),
                ];
                for (key, value) in overrides {
                    config.retain(|(k, _)| k != key);
                    config.push(((*key).to_owned(), (*value).to_owned()));
                }
                Node {
                    id: *id,
                    kafka_port: *k,
                    controller_port: *c,
                    http_port: *h,
                    log_path: root.path().join(format!("node-{id}.log")),
                    args: config
                        .into_iter()
                        .flat_map(|(k, v)| ["--override".to_owned(), format!("{k}={v}")])
                        .collect(),
                    child: None,
                }
            })
            .collect();
        let mut cluster = Cluster { nodes, root };
        // Every process first: a quorum needs a majority before anyone is ready.
        for node in &mut cluster.nodes {
            node.start();
        }
        for node in &mut cluster.nodes {
            node.wait_ready().await;
        }
        cluster
    }

    pub fn node(&self, id: i32) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    pub fn node_mut(&mut self, id: i32) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    /// Where the nodes keep their data and logs.
    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// Polls `check` until it returns `Some`, every 100 ms, failing the test with `what` and the
/// last value seen after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
