//! The fake API server's object edits, pure functions over JSON values: RFC 7386 merge patch
//! (also used to approximate server-side apply), an RFC 6902 subset, and the one validation the
//! fake enforces (StatefulSet immutable fields).

use serde_json::{json, Value};

/// The API server's refusal of a StatefulSet update that changes a field other than the few
/// it allows (replicas, template, updateStrategy, …): `volumeClaimTemplates`, `selector`,
/// `serviceName`, `podManagementPolicy`.
pub(super) fn immutable_change(
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

/// RFC 7386 merge patch (also used to approximate server-side apply): the operator's own.
pub(super) use operator::crd::common::merge_patch as merge;

/// RFC 6902 subset: test, add, remove, replace.
pub(super) fn json_patch(obj: &mut Value, ops: &Value) -> Result<(), String> {
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
