//! A small in-memory Kubernetes API server behind a `kube::Client` (through `tower-test`'s mock
//! service), enough for the reconcilers and the leader election: get, list (label selectors),
//! create (409 when the name exists), replace (PUT, with the apiserver's optimistic concurrency:
//! a stale `metadata.resourceVersion` is a 409 Conflict), delete (with finalizers and
//! deletionTimestamp), server-side apply (approximated as a deep merge), merge patch, JSON patch,
//! and the status subresource. Every write gives the object a new resourceVersion. Faults can be
//! injected per request (`fail`, `hang`). Every request is logged as `VERB path`.
//! Cluster-scoped collections (`/apis/storage.k8s.io/v1/storageclasses`) work too.
//! It is not a conformance-grade apiserver: no watches, no field ownership (so apply never
//! removes fields another manager or an earlier apply set, and never conflicts), no validation
//! except the one that wedged the operator before: a StatefulSet update changing an immutable
//! field (`volumeClaimTemplates`, `selector`, `serviceName`, `podManagementPolicy`) is a 422.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

/// Handle to the fake server's state.
#[derive(Clone, Default)]
pub struct FakeApi {
    /// Objects by collection path (`/api/v1/namespaces/ns/services`) and name.
    pub objects: Arc<Mutex<BTreeMap<(String, String), Value>>>,
    pub log: Arc<Mutex<Vec<String>>>,
    /// Injected faults, checked in order against `VERB path`; see `fail` and `hang`.
    faults: Arc<Mutex<Vec<Fault>>>,
    /// Last resourceVersion handed out.
    version: Arc<Mutex<u64>>,
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

impl FakeApi {
    /// Starts the server; returns a client talking to it.
    pub fn start() -> (Client, FakeApi) {
        let api = FakeApi::default();
        (api.client(), api)
    }

    /// Another client of the same server state (a restarted operator's new connection).
    pub fn client(&self) -> Client {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = self.clone();
        tokio::spawn(async move {
            let mut hung = Vec::new();
            while let Some((req, send)) = handle.next_request().await {
                let line = format!("{} {}", req.method(), req.uri().path());
                match server.fault_for(&line) {
                    Some(FaultKind::Hang) => {
                        server.log.lock().expect("lock").push(line);
                        hung.push(send); // keep the responder alive: the caller waits forever
                    }
                    Some(FaultKind::Status(code)) => {
                        server.log.lock().expect("lock").push(line);
                        send.send_response(respond(code, &status(code, "Injected", "fault")));
                    }
                    None => send.send_response(server.handle(req).await),
                }
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

    fn next_version(&self) -> String {
        let mut v = self.version.lock().expect("lock");
        *v += 1;
        v.to_string()
    }

    /// Puts an object (as YAML or JSON value) at its collection path, as a write would: it gets
    /// a new resourceVersion (and a uid and generation when new).
    pub fn insert(&self, collection: &str, obj: Value) {
        let name = obj["metadata"]["name"]
            .as_str()
            .expect("object has a name")
            .to_owned();
        let mut obj = stamp_new(obj);
        obj["metadata"]["resourceVersion"] = json!(self.next_version());
        self.objects
            .lock()
            .expect("lock")
            .insert((collection.to_owned(), name), obj);
    }

    /// The object at `collection`/`name`.
    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.objects
            .lock()
            .expect("lock")
            .get(&(collection.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Removes an object directly (as if someone ran `kubectl delete`).
    pub fn remove(&self, collection: &str, name: &str) -> Option<Value> {
        self.objects
            .lock()
            .expect("lock")
            .remove(&(collection.to_owned(), name.to_owned()))
    }

    /// Names in a collection.
    pub fn names(&self, collection: &str) -> Vec<String> {
        self.objects
            .lock()
            .expect("lock")
            .keys()
            .filter(|(c, _)| c == collection)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// Logged requests matching `prefix`.
    pub fn requests(&self, prefix: &str) -> Vec<String> {
        self.log
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let ctype = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.log
            .lock()
            .expect("lock")
            .push(format!("{method} {path}"));
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        };
        let (collection, name, sub) = split_path(&path);
        let (code, value) = match (method.as_str(), name) {
            ("GET", None) => (200, self.list(&collection, &query)),
            ("GET", Some(n)) => self
                .get(&collection, &n)
                .map_or_else(|| not_found(&n), |o| (200, o)),
            ("POST", _) => self.create(&collection, body),
            ("PUT", Some(n)) => self.replace(&collection, &n, body),
            ("PATCH", Some(n)) => self.patch(&collection, &n, sub.as_deref(), &ctype, body),
            ("DELETE", Some(n)) => self.delete(&collection, &n),
            _ => (405, status(405, "MethodNotAllowed", "unsupported")),
        };
        respond(code, &value)
    }

    fn list(&self, collection: &str, query: &str) -> Value {
        let selector = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("labelSelector="))
            .map(|s| {
                s.replace("%3D", "=")
                    .replace("%2F", "/")
                    .replace("%2C", ",")
            })
            .unwrap_or_default();
        let wanted: Vec<(String, String)> = selector
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let items: Vec<Value> = self
            .objects
            .lock()
            .expect("lock")
            .iter()
            .filter(|((c, _), o)| {
                c == collection
                    && wanted
                        .iter()
                        .all(|(k, v)| o["metadata"]["labels"][k] == json!(v))
            })
            .map(|(_, o)| o.clone())
            .collect();
        json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": "1" }, "items": items })
    }

    fn create(&self, collection: &str, obj: Value) -> (u16, Value) {
        let mut obj = obj;
        if obj["metadata"]["name"].is_null() {
            let prefix = obj["metadata"]["generateName"]
                .as_str()
                .unwrap_or("obj-")
                .to_owned();
            let n = self.objects.lock().expect("lock").len();
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
        obj["metadata"]["resourceVersion"] = json!(self.next_version());
        let key = (collection.to_owned(), name.to_owned());
        let mut objects = self.objects.lock().expect("lock");
        if !obj["metadata"]["deletionTimestamp"].is_null() && finalizers_empty {
            objects.remove(&key);
        } else {
            objects.insert(key, obj.clone());
        }
        (200, obj)
    }

    fn delete(&self, collection: &str, name: &str) -> (u16, Value) {
        let key = (collection.to_owned(), name.to_owned());
        let mut objects = self.objects.lock().expect("lock");
        let Some(obj) = objects.get_mut(&key) else {
            return not_found(name);
        };
        if obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            let obj = obj.clone();
            drop(objects);
            self.insert(collection, obj.clone());
            return (200, self.get(collection, name).unwrap_or(obj));
        }
        let obj = objects.remove(&key).unwrap_or_default();
        (200, obj)
    }
}

/// The API server's refusal of a StatefulSet update that changes a field other than the few
/// it allows (replicas, template, updateStrategy, …): `volumeClaimTemplates`, `selector`,
/// `serviceName`, `podManagementPolicy`.
fn immutable_change(
    collection: &str,
    name: &str,
    existing: &Value,
    patch: &Value,
) -> Option<String> {
    if !collection.ends_with("/statefulsets") || existing["spec"].is_null() {
        return None;
    }
    let changed = [
        "volumeClaimTemplates",
        "selector",
        "serviceName",
        "podManagementPolicy",
    ]
    .into_iter()
    .any(|f| !patch["spec"][f].is_null() && patch["spec"][f] != existing["spec"][f]);
    changed.then(|| format!("StatefulSet.apps \"{name}\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
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

fn respond(code: u16, value: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).expect("valid status"))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value).expect("json")))
        .expect("response")
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

/// RFC 7386 merge patch (also used to approximate server-side apply).
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// RFC 6902 subset: test, add, remove, replace.
fn json_patch(obj: &mut Value, ops: &Value) -> Result<(), String> {
    for op in ops.as_array().ok_or("patch is not a list")? {
        let path = op["path"].as_str().ok_or("op without path")?;
        let (parent_path, last) = path.rsplit_once('/').ok_or("bad path")?;
        let value = op["value"].clone();
        match op["op"].as_str() {
            Some("test") => {
                if obj.pointer(path).unwrap_or(&Value::Null) != &value {
                    return Err(format!("test failed at {path}"));
                }
            }
            Some("add") | Some("replace") => {
                if parent_path.is_empty() || obj.pointer(parent_path).is_none() {
                    merge_pointer(obj, parent_path);
                }
                let parent = obj.pointer_mut(parent_path).ok_or("no parent")?;
                match parent {
                    Value::Array(a) if last == "-" => a.push(value),
                    Value::Array(a) => {
                        let i: usize = last.parse().map_err(|_| "bad index")?;
                        if op["op"] == "add" {
                            a.insert(i, value)
                        } else {
                            a[i] = value
                        }
                    }
                    Value::Object(m) => {
                        m.insert(last.to_owned(), value);
                    }
                    _ => return Err("parent is not a container".into()),
                }
            }
            Some("remove") => {
                let parent = obj.pointer_mut(parent_path).ok_or("no parent")?;
                match parent {
                    Value::Array(a) => {
                        let i: usize = last.parse().map_err(|_| "bad index")?;
                        if i >= a.len() {
                            return Err("index out of range".into());
                        }
                        a.remove(i);
                    }
                    Value::Object(m) => {
                        m.remove(last);
                    }
                    _ => return Err("parent is not a container".into()),
                }
            }
            other => return Err(format!("unsupported op {other:?}")),
        }
    }
    Ok(())
}

fn merge_pointer(obj: &mut Value, pointer: &str) {
    let mut cur = obj;
    for seg in pointer.split('/').skip(1) {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .expect("object")
            .entry(seg.to_owned())
            .or_insert(json!({}));
    }
}
