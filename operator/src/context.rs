//! What every reconcile pass shares: the Kubernetes client, the admin connector, metrics and the
//! Event reporter. Also the small helpers around them (publishing Events, the clock).

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use tracing::warn;

use crate::admin::AdminConnector;
use crate::cluster::build::bootstrap_address;
use crate::cluster::validate::ValidatedCluster;
use crate::runtime::backoff::Backoff;
use crate::runtime::metrics::Metrics;

/// Field manager of every server-side apply and the Events' reporting controller.
pub const FIELD_MANAGER: &str = "tributary-operator";

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub admin: Arc<dyn AdminConnector>,
    pub metrics: Arc<Metrics>,
    pub reporter: Reporter,
    /// Consecutive transient failures per object, for the requeue delay.
    pub backoff: Backoff,
    /// Replaces every cluster's bootstrap address (for an operator running outside the cluster,
    /// e.g. `127.0.0.1:9092` through a port-forward, and for tests).
    pub bootstrap_override: Option<String>,
}

impl Context {
    /// A context with the given client and admin connector.
    pub fn new(client: Client, admin: Arc<dyn AdminConnector>, metrics: Arc<Metrics>) -> Self {
        Context {
            client,
            admin,
            metrics,
            reporter: Reporter {
                controller: FIELD_MANAGER.to_owned(),
                instance: std::env::var("POD_NAME").ok(),
            },
            bootstrap_override: None,
            backoff: Backoff::default(),
        }
    }

    /// Records a transient failure of `obj`; returns the delay before retrying it (exponential
    /// per object with jitter, see `runtime::backoff`).
    pub fn backoff_failed<K>(&self, obj: &K) -> Duration
    where
        K: Resource<DynamicType = ()>,
    {
        self.backoff.failed(&backoff_key(obj))
    }

    /// Resets `obj`'s backoff (it reconciled, or failed permanently and waits for a change).
    pub fn backoff_reset<K>(&self, obj: &K)
    where
        K: Resource<DynamicType = ()>,
    {
        self.backoff.reset(&backoff_key(obj));
    }

    /// Where to reach the cluster's brokers.
    pub fn bootstrap_for(&self, vc: &ValidatedCluster) -> String {
        self.bootstrap_override
            .clone()
            .unwrap_or_else(|| bootstrap_address(vc))
    }

    /// Records a Kubernetes Event on `obj`. Failing to record is logged, never fatal.
    pub async fn publish<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: Option<String>,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            note,
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, &obj.object_ref(&())).await {
            warn!(error = %e, reason, "failed to record event");
        }
    }
}

/// `Kind/namespace/name`: one backoff per object.
fn backoff_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// The current time in RFC 3339, for condition transition times.
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}
