//! A test "kubelet" (and StatefulSet controller) for the test API server: every StatefulSet in
//! the store gets one broker process per replica, started from what the API holds — the pod
//! template's arguments and environment, and the `<pod>.properties` entry of the ConfigMap the
//! template mounts — and a Pod object whose Ready condition follows the process's `/readyz`
//! (probed every 200 ms until first ready, then every `periodSeconds` of the template's
//! readiness probe; `failureThreshold` failures in a row make it not ready).
//! A Pod deleted through the API (a restart) has its process sent SIGTERM, and SIGKILL after
//! the template's `terminationGracePeriodSeconds`; once it has exited, it is started again from
//! the current template. A process that exits by itself loses its Pod; replicas beyond the
//! StatefulSet's count are stopped the same graceful way, their Pod removed once they exited.
//! A test can pause and resume a pod's process (SIGSTOP, SIGCONT): a hung broker. What cannot exist on one machine is translated: a `<host>.svc:<port>`
//! address becomes `127.0.0.1:<local port>` (one local port per host and port, kept across
//! restarts), this pod's `0.0.0.0:<port>` listeners its local ports, the data mount a directory
//! kept across restarts (a PersistentVolumeClaim), the config mount a directory of its own.
//! Nodes: with zones (`start_in_zones`), pod ordinal i runs on a node of zone i mod n, whose
//! `topology.kubernetes.io/zone` label the pod carries (as Kubernetes' pod topology labels
//! admission copies it) and its `fieldRef: metadata.labels[...]` environment reads.
//! Not played: probes other than readiness, resources, scheduling, volumes other than these
//! two, owner-reference garbage collection, pod IPs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::fake_api::FakeApi;

/// The data and config mounts of the operator's pods.
const DATA_MOUNT: &str = operator::cluster::build::configmap::DATA_MOUNT;
const CONFIG_MOUNT: &str = operator::cluster::build::configmap::CONFIG_MOUNT;
/// How often the kubelet looks at the store.
const TICK: Duration = Duration::from_millis(200);

/// The broker binary: `TRIBUTARY_BROKER_BIN`, or `target/debug/broker`.
pub fn broker_bin() -> PathBuf {
    std::env::var_os("TRIBUTARY_BROKER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/broker"))
}

struct RunningPod {
    child: Child,
    http_port: u16,
    ready: bool,
    log: PathBuf,
    probe: Probe,
    /// Failed probes in a row since the pod was last ready.
    failures: u32,
    next_probe: Instant,
    grace: Duration,
}

/// The readiness probe's timing, from the pod template.
#[derive(Clone, Copy)]
struct Probe {
    period: Duration,
    failure_threshold: u32,
}

/// A process sent SIGTERM, killed at `deadline` if it has not exited by then.
struct Terminating {
    child: Child,
    deadline: Instant,
    /// The Pod object is removed once the process has exited (a scale-down); a deleted Pod's
    /// object is already gone.
    remove_object: bool,
}

struct State {
    api: FakeApi,
    bin: PathBuf,
    root: PathBuf,
    /// Local port of each `(host, port)` a pod listens on or is reached at.
    ports: BTreeMap<(String, u16), u16>,
    taken: BTreeSet<u16>,
    /// Running pods by (namespace, name).
    pods: BTreeMap<(String, String), RunningPod>,
    /// Pods stopping by (namespace, name); a pod is not started again before its old process
    /// has exited (a StatefulSet's pod identity).
    terminating: BTreeMap<(String, String), Terminating>,
    /// Zone of the node each pod ordinal runs on (ordinal mod len); none when empty.
    zones: Vec<String>,
}

/// The node label carrying the zone, copied onto pods.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The running kubelet; stops every process when dropped.
pub struct Kubelet {
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Kubelet {
    /// Plays the pods of `api`'s StatefulSets with `bin`, keeping mounts and logs under `root`.
    pub fn start(api: FakeApi, bin: PathBuf, root: &Path) -> Kubelet {
        Kubelet::start_in_zones(api, bin, root, &[])
    }

    /// `start`, with pod ordinal i on a node of `zones[i % zones.len()]`.
    pub fn start_in_zones(api: FakeApi, bin: PathBuf, root: &Path, zones: &[&str]) -> Kubelet {
        let state = Arc::new(Mutex::new(State {
            zones: zones.iter().map(|z| (*z).to_owned()).collect(),
            api,
            bin,
            root: root.to_owned(),
            ports: BTreeMap::new(),
            taken: BTreeSet::new(),
            pods: BTreeMap::new(),
            terminating: BTreeMap::new(),
        }));
        let looping = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let probes = looping.lock().expect("lock").sync();
                let mut ready = Vec::new();
                for (key, port) in probes {
                    ready.push((key, http_status(port, "/readyz").await == Some(200)));
                }
                looping.lock().expect("lock").set_ready(ready);
                tokio::time::sleep(TICK).await;
            }
        });
        Kubelet { state, task }
    }

    /// The local port standing for `host:port` (allocated now if new), e.g. a broker's client
    /// address for `KAFKA_BOOTSTRAP_OVERRIDE`.
    pub fn local_port(&self, host: &str, port: u16) -> u16 {
        self.state.lock().expect("lock").port(host, port)
    }

    /// Pauses the process of pod `name` (SIGSTOP): it still exists but answers nothing, as a
    /// hung broker. Panics if the pod does not run.
    pub fn pause(&self, name: &str) {
        self.signal(name, rustix::process::Signal::STOP);
    }

    /// Resumes a paused pod (SIGCONT).
    pub fn resume(&self, name: &str) {
        self.signal(name, rustix::process::Signal::CONT);
    }

    fn signal(&self, name: &str, signal: rustix::process::Signal) {
        let state = self.state.lock().expect("lock");
        // A pod being deleted still has its process until it exits.
        let child = state
            .pods
            .iter()
            .map(|(k, p)| (k, &p.child))
            .chain(state.terminating.iter().map(|(k, t)| (k, &t.child)))
            .find(|((_, n), _)| n == name)
            .map(|(_, c)| c);
        let Some(child) = child else {
            drop(state);
            panic!("pod {name} has no process");
        };
        super::signal(child, signal);
    }

    /// The last lines of every pod's log, for failure messages.
    pub fn log_tails(&self) -> String {
        let state = self.state.lock().expect("lock");
        let mut out = String::new();
        for ((_, pod), p) in &state.pods {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("\n--- {pod} ---\n"));
            out.push_str(&lines[lines.len().saturating_sub(10)..].join("\n"));
        }
        out
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
        // Also after a panic while the lock was held (a failed test): no process may outlive it.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let state = &mut *state;
        for child in state
            .pods
            .values_mut()
            .map(|p| &mut p.child)
            .chain(state.terminating.values_mut().map(|t| &mut t.child))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One StatefulSet's pods as the store describes them.
struct Wanted {
    namespace: String,
    pod: String,
    /// `<pod>.<serviceName>.<namespace>.svc`
    host: String,
    template: Value,
}

impl State {
    fn port(&mut self, host: &str, port: u16) -> u16 {
        if let Some(p) = self.ports.get(&(host.to_owned(), port)) {
            return *p;
        }
        let local = loop {
            let p = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            if self.taken.insert(p) {
                break p;
            }
        };
        self.ports.insert((host.to_owned(), port), local);
        local
    }

    /// Starts missing pods, stops unwanted ones; returns the pods to probe (key, http port).
    fn sync(&mut self) -> Vec<((String, String), u16)> {
        let wanted = self.wanted();
        let keys: BTreeSet<(String, String)> = wanted
            .iter()
            .map(|w| (w.namespace.clone(), w.pod.clone()))
            .collect();
        let running: Vec<(String, String)> = self.pods.keys().cloned().collect();
        for key in running {
            let pods = super::coll(&key.0, "pods");
            let object_gone = self.api.get(&pods, &key.1).is_none();
            let exited = self
                .pods
                .get_mut(&key)
                .is_some_and(|p| p.child.try_wait().ok().flatten().is_some());
            if exited {
                let mut p = self.pods.remove(&key).expect("running pod");
                let _ = p.child.wait();
                self.api.remove(&pods, &key.1);
            } else if object_gone || !keys.contains(&key) {
                let p = self.pods.remove(&key).expect("running pod");
                super::signal(&p.child, rustix::process::Signal::TERM);
                let stopping = Terminating {
                    child: p.child,
                    deadline: Instant::now() + p.grace,
                    remove_object: !object_gone,
                };
                self.terminating.insert(key, stopping);
            }
        }
        self.reap();
        for w in wanted {
            let key = (w.namespace.clone(), w.pod.clone());
            if !self.pods.contains_key(&key) && !self.terminating.contains_key(&key) {
                if let Some(p) = self.run(&w) {
                    self.pods.insert(key, p);
                }
            }
        }
        let now = Instant::now();
        self.pods
            .iter()
            .filter(|(_, p)| !p.ready || p.next_probe <= now)
            .map(|(k, p)| (k.clone(), p.http_port))
            .collect()
    }

    /// Forgets the stopping processes that exited; kills those past their grace period.
    fn reap(&mut self) {
        let now = Instant::now();
        let keys: Vec<(String, String)> = self.terminating.keys().cloned().collect();
        for key in keys {
            let t = self.terminating.get_mut(&key).expect("terminating");
            let exited = t.child.try_wait().ok().flatten().is_some();
            if !exited && now < t.deadline {
                continue;
            }
            let mut t = self.terminating.remove(&key).expect("terminating");
            let _ = t.child.kill();
            let _ = t.child.wait();
            if t.remove_object {
                self.api.remove(&super::coll(&key.0, "pods"), &key.1);
            }
        }
    }

    fn wanted(&self) -> Vec<Wanted> {
        let store = self.api.store.lock().expect("lock");
        let mut out = Vec::new();
        for ((collection, name), sts) in &store.objects {
            if !collection.starts_with("/apis/apps/v1/namespaces/")
                || !collection.ends_with("/statefulsets")
            {
                continue;
            }
            let namespace = sts["metadata"]["namespace"].as_str().unwrap_or_default();
            let service = sts["spec"]["serviceName"].as_str().unwrap_or_default();
            for ordinal in 0..sts["spec"]["replicas"].as_i64().unwrap_or(1) {
                let pod = format!("{name}-{ordinal}");
                let mut template = sts["spec"]["template"].clone();
                if !self.zones.is_empty() {
                    let zone =
                        &self.zones[usize::try_from(ordinal).unwrap_or(0) % self.zones.len()];
                    template["metadata"]["labels"][ZONE_LABEL] = json!(zone);
                }
                out.push(Wanted {
                    host: format!("{pod}.{service}.{namespace}.svc"),
                    namespace: namespace.to_owned(),
                    pod,
                    template,
                });
            }
        }
        out
    }

    /// Starts the pod's process and creates its (not yet ready) Pod object; `None` while its
    /// ConfigMap is not there yet.
    fn run(&mut self, w: &Wanted) -> Option<RunningPod> {
        let spec = &w.template["spec"];
        let volumes = spec["volumes"].as_array()?;
        let cm_name = volumes
            .iter()
            .find_map(|v| v["configMap"]["name"].as_str())?;
        let cm = self
            .api
            .get(&super::coll(&w.namespace, "configmaps"), cm_name)?;
        let props = cm["data"][format!("{}.properties", w.pod)]
            .as_str()?
            .to_owned();
        let dir = self.root.join(&w.namespace).join(&w.pod);
        let (data, config) = (dir.join("data-mount"), dir.join("config-mount"));
        std::fs::create_dir_all(&data).expect("data dir");
        std::fs::create_dir_all(&config).expect("config dir");
        let props = self.translate(&props, &w.host, &data);
        let file = config.join(format!("{}.properties", w.pod));
        std::fs::write(&file, props).expect("write properties");
        let container = &spec["containers"][0];
        let env = pod_env(container, &w.pod, &w.template["metadata"]["labels"]);
        let args = pod_args(container, &env, &config);
        let log = dir.join("pod.log");
        let out = std::fs::File::create(&log).expect("pod log");
        let child = Command::new(&self.bin)
            .args(&args)
            .env_clear()
            .envs(env)
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("spawn broker");
        let http_port = self.port(&w.host, http_port(container));
        self.api
            .insert(&super::coll(&w.namespace, "pods"), pod_object(w, false));
        let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
        Some(RunningPod {
            child,
            http_port,
            ready: false,
            log,
            probe: readiness_probe(container),
            failures: 0,
            next_probe: Instant::now(),
            grace: Duration::from_secs(grace),
        })
    }

    /// Applies probe results: the first success makes a pod ready, `failureThreshold` failures
    /// in a row make a ready pod not ready.
    fn set_ready(&mut self, probes: Vec<((String, String), bool)>) {
        let now = Instant::now();
        for (key, ok) in probes {
            let pods = super::coll(&key.0, "pods");
            let (Some(p), Some(mut obj)) = (self.pods.get_mut(&key), self.api.get(&pods, &key.1))
            else {
                continue;
            };
            let was = p.ready;
            if ok {
                p.failures = 0;
                p.ready = true;
            } else if p.ready {
                p.failures += 1;
                p.ready = p.failures < p.probe.failure_threshold;
            }
            if p.ready {
                p.next_probe = now + p.probe.period;
            }
            if p.ready != was {
                let status = if p.ready { "True" } else { "False" };
                obj["status"]["conditions"] = json!([{ "type": "Ready", "status": status }]);
                self.api.insert(&pods, obj);
            }
        }
    }

    /// Every `<host>.svc[...]:<port>` becomes `127.0.0.1:<local>`, this pod's `0.0.0.0:<port>`
    /// becomes `0.0.0.0:<local>`, the data mount `data`.
    fn translate(&mut self, text: &str, own_host: &str, data: &Path) -> String {
        let mut out = String::new();
        for line in text.lines() {
            let mut line = line.replace(DATA_MOUNT, &data.display().to_string());
            for (host, port) in addresses(&line) {
                let local = self.port(&host, port);
                line = line.replace(&format!("{host}:{port}"), &format!("127.0.0.1:{local}"));
            }
            for port in wildcard_ports(&line) {
                let local = self.port(own_host, port);
                line = line.replace(&format!("0.0.0.0:{port}"), &format!("0.0.0.0:{local}"));
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-'
}

/// `(host, port)` of every `host:port` in `text` whose host is a cluster DNS name (`.svc`).
fn addresses(text: &str) -> Vec<(String, u16)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(".svc").map(|i| i + from) {
        let start = text[..i].rfind(|c| !host_char(c)).map_or(0, |p| p + 1);
        let end = text[i..]
            .find(|c| !host_char(c))
            .map_or(text.len(), |p| i + p);
        let digits: String = text[end..]
            .strip_prefix(':')
            .unwrap_or("")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(port) = digits.parse() {
            found.push((text[start..end].to_owned(), port));
        }
        from = end;
    }
    found
}

/// The ports of every `0.0.0.0:<port>` in `text`.
fn wildcard_ports(text: &str) -> Vec<u16> {
    text.match_indices("0.0.0.0:")
        .filter_map(|(i, m)| {
            let digits: String = text[i + m.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

/// The container's environment; `fieldRef: metadata.name` is the pod's name,
/// `metadata.labels['k']` its label `k` (empty when it has none, as Kubernetes does); other
/// sources are left out.
fn pod_env(container: &Value, pod: &str, labels: &Value) -> Vec<(String, String)> {
    let env = container["env"].as_array().cloned().unwrap_or_default();
    env.iter()
        .filter_map(|e| {
            let name = e["name"].as_str()?.to_owned();
            if let Some(v) = e["value"].as_str() {
                return Some((name, v.to_owned()));
            }
            let path = e["valueFrom"]["fieldRef"]["fieldPath"].as_str()?;
            if path == "metadata.name" {
                return Some((name, pod.to_owned()));
            }
            let label = path.strip_prefix("metadata.labels['")?.strip_suffix("']")?;
            Some((name, labels[label].as_str().unwrap_or_default().to_owned()))
        })
        .collect()
}

/// The container's arguments with `$(VAR)` expanded and the config mount moved to `config`.
fn pod_args(container: &Value, env: &[(String, String)], config: &Path) -> Vec<String> {
    let args = container["args"].as_array().cloned().unwrap_or_default();
    args.iter()
        .filter_map(Value::as_str)
        .map(|a| {
            let a = env
                .iter()
                .fold(a.to_owned(), |a, (k, v)| a.replace(&format!("$({k})"), v));
            a.replace(CONFIG_MOUNT, &config.display().to_string())
        })
        .collect()
}

/// The timing of the container's readiness probe (Kubernetes' defaults where unset).
fn readiness_probe(container: &Value) -> Probe {
    let probe = &container["readinessProbe"];
    Probe {
        period: Duration::from_secs(probe["periodSeconds"].as_u64().unwrap_or(10)),
        failure_threshold: probe["failureThreshold"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(3),
    }
}

/// The container port named `http`.
fn http_port(container: &Value) -> u16 {
    let ports = container["ports"].as_array().cloned().unwrap_or_default();
    ports
        .iter()
        .find(|p| p["name"] == "http")
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(operator::cluster::build::HTTP_PORT as u16)
}

fn pod_object(w: &Wanted, ready: bool) -> Value {
    let meta = &w.template["metadata"];
    let status = if ready { "True" } else { "False" };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": w.pod, "namespace": w.namespace, "labels": meta["labels"], "annotations": meta["annotations"] },
        "spec": w.template["spec"],
        "status": { "conditions": [{ "type": "Ready", "status": status }] }
    })
}

/// The status code of `GET path` on 127.0.0.1:`port`, `None` while nothing answers.
async fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}
