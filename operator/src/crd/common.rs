//! Types shared by both custom resources: status conditions and the helpers that keep their
//! transition times honest, and the merge patch their status writes are. This module does not decide *which* conditions a resource has; the
//! reconcilers' pure status functions do.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// RFC 7386 merge patch, as the API server applies one: objects merge key by key, a `null`
/// removes the key, anything else replaces the target.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Some(t) = target.as_object_mut() {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The API group of every Tributary custom resource.
pub const API_GROUP: &str = "kafka.tributary.dev";

/// A status condition, shaped like `metav1.Condition` so that `kubectl wait --for=condition=Ready`
/// and generic tooling understand it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: `Ready`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// The `metadata.generation` of the resource this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the condition last changed status (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// A CamelCase reason for the condition's last transition.
    pub reason: String,
    /// A human-readable explanation.
    #[serde(default)]
    pub message: String,
}

impl Condition {
    /// A condition of `type_` that is `True` when `status` holds, `False` otherwise.
    pub fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Condition {
            type_: type_.to_owned(),
            status: if status { "True" } else { "False" }.to_owned(),
            observed_generation: None,
            last_transition_time: None,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// Whether the condition's status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Stamps `generation` on every condition and keeps `lastTransitionTime` from `previous` when a
/// condition's status did not change, so the time says when it *changed*, not when we looked.
pub fn finalize_conditions(
    mut next: Vec<Condition>,
    previous: &[Condition],
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    for c in &mut next {
        c.observed_generation = generation;
        let unchanged = previous
            .iter()
            .find(|p| p.type_ == c.type_ && p.status == c.status);
        c.last_transition_time = match unchanged.and_then(|p| p.last_transition_time.clone()) {
            Some(t) => Some(t),
            None => Some(now.to_owned()),
        };
    }
    next
}

/// Finds a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let old = finalize_conditions(
            vec![Condition::new("Ready", false, "Creating", "")],
            &[],
            Some(1),
            "t1",
        );
        let same = finalize_conditions(
            vec![Condition::new("Ready", false, "Creating", "")],
            &old,
            Some(2),
            "t2",
        );
        assert_eq!(same[0].last_transition_time.as_deref(), Some("t1"));
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = finalize_conditions(
            vec![Condition::new("Ready", true, "AllReady", "")],
            &same,
            Some(2),
            "t3",
        );
        assert_eq!(flipped[0].last_transition_time.as_deref(), Some("t3"));
    }
}
