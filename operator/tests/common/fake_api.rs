//! A small in-memory Kubernetes API server, enough for the reconcilers, the leader election and
//! kube-runtime's watchers: get, list (label selectors; the list carries the store's
//! resourceVersion), watch (`?watch=true`: ADDED/MODIFIED/DELETED lines after a resourceVersion,
//! 410 Gone when that is older than the kept history; see `watch`), create (409 when the name
//! exists), replace (PUT, with the apiserver's optimistic concurrency: a stale
//! `metadata.resourceVersion` is a 409 Conflict), delete (with finalizers and
//! deletionTimestamp), server-side apply (approximated as a deep merge), merge patch, JSON patch,
//! the status subresource, and `GET /version`. Every write gives the object a new
//! resourceVersion from one counter. Faults can be injected per request (`fail`, `hang`). Every
//! request is logged as `VERB path` (`requests`) and with its query (`requests_with_query`).
//! Cluster-scoped collections (`/apis/storage.k8s.io/v1/storageclasses`) work too, and lists and
//! watches of a namespaced kind across all namespaces (`/api/v1/services`).
//!
//! One handler (`FakeApi::respond`) serves two transports: a `kube::Client` through
//! `tower-test`'s mock service (`client`), and real HTTP on loopback (`super::api_server`).
//!
//! It is not a conformance-grade apiserver: no field ownership (so apply never removes fields
//! another manager or an earlier apply set, and never conflicts), no pagination
//! (`limit` is ignored, lists are whole), no field selectors, no bookmarks, no admission, no
//! validation except the one that wedged the operator before: a StatefulSet update changing an
//! immutable field (`volumeClaimTemplates`, `selector`, `serviceName`, `podManagementPolicy`)
//! is a 422. Nothing plays the controllers or kubelets: no pods appear unless a test makes them.

mod patch;
mod query;
pub mod watch;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

use patch::{immutable_change, json_patch, merge};
use query::parse_query;
use watch::{Event, History, Selector, WatchRequest};

/// The response body both transports send.
pub type ReplyBody = UnsyncBoxBody<Bytes, Infallible>;

/// The objects, the resourceVersion counter and the change history, under one lock so a list's
/// resourceVersion always matches its items.
#[derive(Default)]
pub struct Store {
    /// Objects by collection path (`/api/v1/namespaces/ns/services`) and name.
    pub objects: BTreeMap<(String, String), Value>,
    /// Last resourceVersion handed out.
    pub version: u64,
    pub history: History,
}

/// Handle to the fake server's state.
#[derive(Clone)]
pub struct FakeApi {
    pub store: Arc<Mutex<Store>>,
    /// Bumped to the new resourceVersion after every write; open watches wait on it.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    pub log: Arc<Mutex<Vec<String>>>,
    log_with_query: Arc<Mutex<Vec<String>>>,
    /// Injected faults, checked in order against `VERB path`; see `fail` and `hang`.
    faults: Arc<Mutex<Vec<Fault>>>,
}

impl Default for FakeApi {
    fn default() -> Self {
        FakeApi {
            store: Arc::default(),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
            log: Arc::default(),
            log_with_query: Arc::default(),
            faults: Arc::default(),
        }
    }
}

/// What an injected fault does to a matching request.
#[derive(Clone, Debug)]
enum FaultKind {
    /// Answer with this HTTP status (a `Status` body).
    Status(u16),
    /// Never answer (an unresponsive API server).
    Hang,
}

#[derive(Clone, Debug)]
struct Fault {
    prefix: String,
    kind: FaultKind,
}

/// A request as the handler sees it, whatever the transport.
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub body: Value,
}

/// The handler's answer.
pub enum Reply {
    Json(u16, Value),
    /// A watch: `200` and a body of JSON lines, open until its timeout.
    Watch(BoxStream<'static, Bytes>),
    /// An injected hang: never answer.
    Hang,
}

impl FakeApi {
    /// Starts the server; returns a client talking to it.
    pub fn start() -> (Client, FakeApi) {
        let api = FakeApi::default();
        (api.client(), api)
    }

    /// Another client of the same server state (a restarted operator's new connection),
    /// through `tower-test`'s mock service; each request is answered by its own task, so a hung
    /// request or an open watch does not hold up the others.
    pub fn client(&self) -> Client {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<ReplyBody>>();
        let server = self.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let server = server.clone();
                tokio::spawn(async move { send.send_response(server.respond(req).await) });
            }
        });
        Client::new(svc, "default")
    }

    /// From now on, requests whose `VERB path` starts with `prefix` fail with HTTP `code`.
    pub fn fail(&self, prefix: &str, code: u16) {
        self.add_fault(prefix, FaultKind::Status(code));
    }

    /// From now on, requests whose `VERB path` starts with `prefix` are never answered.
    pub fn hang(&self, prefix: &str) {
        self.add_fault(prefix, FaultKind::Hang);
    }

    /// Removes every injected fault.
    pub fn heal(&self) {
        self.faults.lock().expect("lock").clear();
    }

    fn add_fault(&self, prefix: &str, kind: FaultKind) {
        self.faults.lock().expect("lock").push(Fault {
            prefix: prefix.to_owned(),
            kind,
        });
    }

    fn fault_for(&self, line: &str) -> Option<FaultKind> {
        self.faults
            .lock()
            .expect("lock")
            .iter()
            .find(|f| line.starts_with(&f.prefix))
            .map(|f| f.kind.clone())
    }

    /// Writes (`Some`) or deletes (`None`) one object under a new resourceVersion, records the
    /// change for watches and wakes them; returns the object as stored (or as deleted). As the
    /// real API server, a write that changes nothing keeps the resourceVersion and sends no
    /// event (otherwise a controller's own no-op applies would wake its watches in a loop).
    fn commit(&self, collection: &str, name: &str, new: Option<Value>) -> Option<Value> {
        let mut store = self.store.lock().expect("lock");
        let key = (collection.to_owned(), name.to_owned());
        if let (Some(new), Some(old)) = (&new, store.objects.get(&key)) {
            let mut same = new.clone();
            same["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            if same == *old {
                return Some(same);
            }
        }
        store.version += 1;
        let version = store.version;
        let (kind, object) = match new {
            Some(mut obj) => {
                obj["metadata"]["resourceVersion"] = json!(version.to_string());
                let existed = store.objects.insert(key, obj.clone()).is_some();
                (if existed { "MODIFIED" } else { "ADDED" }, obj)
            }
            None => {
                let mut obj = store.objects.remove(&key)?;
                obj["metadata"]["resourceVersion"] = json!(version.to_string());
                ("DELETED", obj)
            }
        };
        store.history.push(Event {
            version,
            collection: collection.to_owned(),
            kind,
            object: object.clone(),
        });
        drop(store);
        self.changes.send_replace(version);
        Some(object)
    }

    /// Puts an object (as YAML or JSON value) at its collection path, as a write would: it gets
    /// a new resourceVersion (and a uid and generation when new).
    pub fn insert(&self, collection: &str, obj: Value) {
        let name = obj["metadata"]["name"]
            .as_str()
            .expect("object has a name")
            .to_owned();
        self.commit(collection, &name, Some(stamp_new(obj)));
    }

    /// The object at `collection`/`name`.
    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.store
            .lock()
            .expect("lock")
            .objects
            .get(&(collection.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Removes an object directly (as if someone ran `kubectl delete`).
    pub fn remove(&self, collection: &str, name: &str) -> Option<Value> {
        self.commit(collection, name, None)
    }

    /// Names in a collection.
    pub fn names(&self, collection: &str) -> Vec<String> {
        self.store
            .lock()
            .expect("lock")
            .objects
            .keys()
            .filter(|(c, _)| c == collection)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// The store's resourceVersion and the objects of `collection` matching `selector`.
    pub fn snapshot(&self, collection: &str, selector: &Selector) -> (u64, Vec<Value>) {
        let store = self.store.lock().expect("lock");
        let items = store
            .objects
            .iter()
            .filter(|((c, _), o)| watch::in_collection(collection, c) && selector.matches(o))
            .map(|(_, o)| o.clone())
            .collect();
        (store.version, items)
    }

    /// Logged requests (`VERB path`) matching `prefix`.
    pub fn requests(&self, prefix: &str) -> Vec<String> {
        filtered(&self.log, prefix)
    }

    /// Logged requests with their query (`VERB path?query`) matching `prefix`.
    pub fn requests_with_query(&self, prefix: &str) -> Vec<String> {
        filtered(&self.log_with_query, prefix)
    }

    /// Answers one HTTP request (either transport).
    pub async fn respond<B>(&self, req: Request<B>) -> Response<ReplyBody>
    where
        B: hyper::body::Body,
    {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let raw_query = parts.uri.query().unwrap_or("");
        let request = ApiRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parse_query(raw_query),
            content_type: parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        };
        self.log_with_query
            .lock()
            .expect("lock")
            .push(format!("{} {}?{raw_query}", request.method, request.path));
        match self.serve(&request) {
            Reply::Json(code, value) => json_response(code, &value),
            Reply::Watch(lines) => Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(StreamBody::new(lines.map(|l| Ok(Frame::data(l)))).boxed_unsync())
                .expect("response"),
            Reply::Hang => std::future::pending().await,
        }
    }

    /// The handler proper: routes one request over the shared state.
    pub fn serve(&self, req: &ApiRequest) -> Reply {
        let line = format!("{} {}", req.method, req.path);
        self.log.lock().expect("lock").push(line.clone());
        match self.fault_for(&line) {
            Some(FaultKind::Hang) => return Reply::Hang,
            Some(FaultKind::Status(code)) => {
                return Reply::Json(code, status(code, "Injected", "fault"))
            }
            None => {}
        }
        if req.path == "/version" {
            return Reply::Json(200, version());
        }
        let (collection, name, sub) = split_path(&req.path);
        let watching = matches!(
            req.query.get("watch").map(String::as_str),
            Some("true" | "1")
        );
        let body = req.body.clone();
        let (code, value) = match (req.method.as_str(), name) {
            ("GET", None) if watching => return self.watch(collection, &req.query),
            ("GET", None) => (200, self.list(&collection, &req.query)),
            ("GET", Some(n)) => self
                .get(&collection, &n)
                .map_or_else(|| not_found(&n), |o| (200, o)),
            ("POST", _) => self.create(&collection, body),
            ("PUT", Some(n)) => self.replace(&collection, &n, body),
            ("PATCH", Some(n)) => {
                self.patch(&collection, &n, sub.as_deref(), &req.content_type, body)
            }
            ("DELETE", Some(n)) => self.delete(&collection, &n),
            _ => (405, status(405, "MethodNotAllowed", "unsupported")),
        };
        Reply::Json(code, value)
    }

    fn watch(&self, collection: String, query: &BTreeMap<String, String>) -> Reply {
        let since = query
            .get("resourceVersion")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v != 0);
        let request = WatchRequest {
            collection,
            selector: Selector::parse(query.get("labelSelector").map_or("", String::as_str)),
            since,
            timeout: query
                .get("timeoutSeconds")
                .and_then(|t| t.parse().ok())
                .map(Duration::from_secs),
        };
        match watch::stream(self, request) {
            Ok(lines) => Reply::Watch(lines),
            Err(oldest) => {
                let msg = format!(
                    "too old resource version: {} ({oldest})",
                    since.unwrap_or_default()
                );
                Reply::Json(410, status(410, "Expired", &msg))
            }
        }
    }

    fn list(&self, collection: &str, query: &BTreeMap<String, String>) -> Value {
        let selector = Selector::parse(query.get("labelSelector").map_or("", String::as_str));
        let (version, items) = self.snapshot(collection, &selector);
        json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": version.to_string() }, "items": items })
    }

    fn create(&self, collection: &str, obj: Value) -> (u16, Value) {
        let mut obj = obj;
        if obj["metadata"]["name"].is_null() {
            let prefix = obj["metadata"]["generateName"]
                .as_str()
                .unwrap_or("obj-")
                .to_owned();
            let n = self.store.lock().expect("lock").objects.len();
            obj["metadata"]["name"] = json!(format!("{prefix}{n}"));
        }
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if self.get(collection, &name).is_some() {
            return (409, status(409, "AlreadyExists", &name));
        }
        self.insert(collection, obj);
        (201, self.get(collection, &name).unwrap_or_default())
    }

    /// PUT: the whole object, only when its resourceVersion is the current one (what makes
    /// read-modify-write safe, e.g. two candidates writing the same Lease).
    fn replace(&self, collection: &str, name: &str, mut obj: Value) -> (u16, Value) {
        let Some(current) = self.get(collection, name) else {
            return not_found(name);
        };
        if obj["metadata"]["name"] != json!(name) {
            return (
                400,
                status(400, "BadRequest", "name in body does not match the path"),
            );
        }
        let sent = &obj["metadata"]["resourceVersion"];
        if !sent.is_null() && *sent != current["metadata"]["resourceVersion"] {
            let msg = format!("the object has been modified; please apply your changes to the latest version and try again ({name})");
            return (409, status(409, "Conflict", &msg));
        }
        obj["metadata"]["uid"] = current["metadata"]["uid"].clone();
        obj["metadata"]["generation"] = current["metadata"]["generation"].clone();
        if obj["spec"] != current["spec"] {
            let g = current["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            obj["metadata"]["generation"] = json!(g);
        }
        self.insert(collection, obj);
        (200, self.get(collection, name).unwrap_or_default())
    }

    fn patch(
        &self,
        collection: &str,
        name: &str,
        sub: Option<&str>,
        ctype: &str,
        body: Value,
    ) -> (u16, Value) {
        let existing = self.get(collection, name);
        let is_apply = ctype.starts_with("application/apply-patch");
        let Some(mut obj) = existing.or_else(|| is_apply.then(|| stamp_new(json!({})))) else {
            return not_found(name);
        };
        let before_spec = obj["spec"].clone();
        if let Some(refusal) = immutable_change(collection, name, &obj, &body) {
            return (422, status(422, "Invalid", &refusal));
        }
        match (ctype, sub) {
            (c, _) if c.starts_with("application/json-patch") => {
                if let Err(e) = json_patch(&mut obj, &body) {
                    return (422, status(422, "Invalid", &e));
                }
            }
            (_, Some("status")) => merge(&mut obj["status"], &body["status"]),
            _ => merge(&mut obj, &body),
        }
        if obj["spec"] != before_spec {
            let g = obj["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            obj["metadata"]["generation"] = json!(g);
        }
        let finalizers_empty = obj["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
        let gone = !obj["metadata"]["deletionTimestamp"].is_null() && finalizers_empty;
        let stored = self.commit(collection, name, (!gone).then_some(obj.clone()));
        (200, if gone { obj } else { stored.unwrap_or(obj) })
    }

    fn delete(&self, collection: &str, name: &str) -> (u16, Value) {
        let Some(mut obj) = self.get(collection, name) else {
            return not_found(name);
        };
        if obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            let stored = self.commit(collection, name, Some(obj.clone()));
            return (200, stored.unwrap_or(obj));
        }
        (200, self.commit(collection, name, None).unwrap_or_default())
    }
}

/// `GET /version`, as a recent apiserver answers it.
fn version() -> Value {
    json!({ "major": "1", "minor": "33", "gitVersion": "v1.33.0-tributary-fake", "platform": "linux/amd64" })
}

fn json_response(code: u16, value: &Value) -> Response<ReplyBody> {
    Response::builder()
        .status(StatusCode::from_u16(code).expect("valid status"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(value).expect("json"))).boxed_unsync())
        .expect("response")
}

fn filtered(log: &Mutex<Vec<String>>, prefix: &str) -> Vec<String> {
    log.lock()
        .expect("lock")
        .iter()
        .filter(|l| l.starts_with(prefix))
        .cloned()
        .collect()
}

fn stamp_new(mut obj: Value) -> Value {
    let meta = &mut obj["metadata"];
    if meta["uid"].is_null() {
        meta["uid"] = json!("00000000-0000-4000-8000-00000000aaaa");
    }
    if meta["generation"].is_null() {
        meta["generation"] = json!(1);
    }
    obj
}

/// `(collection, name, subresource)` of an API path.
fn split_path(path: &str) -> (String, Option<String>, Option<String>) {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    // /api/v1/namespaces/ns/kind[/name[/sub]]  or  /apis/g/v/namespaces/ns/kind[/name[/sub]];
    // cluster-scoped: /api/v1/kind[/name]  or  /apis/g/v/kind[/name]
    let core = parts.get(1) == Some(&"api");
    let namespaced = parts.get(if core { 3 } else { 4 }) == Some(&"namespaces");
    let base = match (core, namespaced) {
        (true, true) => 6,
        (false, true) => 7,
        (true, false) => 4,
        (false, false) => 5,
    };
    let collection = parts[..base.min(parts.len())].join("/");
    (
        collection,
        parts.get(base).map(|s| (*s).to_owned()),
        parts.get(base + 1).map(|s| (*s).to_owned()),
    )
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message, "metadata": {} })
}

fn not_found(name: &str) -> (u16, Value) {
    (404, status(404, "NotFound", &format!("{name} not found")))
}
