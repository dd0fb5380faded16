//! The `KafkaCluster` reconciler: observe → validate → plan (build) → act, then the day-2 pass.
//! It applies every desired object with server-side apply under one field manager, deletes
//! labelled objects the spec no longer needs, reads pods and, through the admin client, the
//! Kafka cluster; then `operate::run_day2` asks `day2::decide` for the one next safe day-2 step
//! (commission new brokers, drain and remove leaving ones, restart outdated pods one at a time)
//! and carries it out, and the status (computed by `status::compute_status`) keeps the
//! planner's state in `status.day2` so a restarted operator resumes. Spec changes it cannot
//! carry out safely (a removed pool that still has nodes, a quorum size change, storage changes
//! the volumes cannot take, and the planner's own refusals such as a scale-down below a topic's
//! replication factor) are refused with a `Degraded` condition and an Event, and so is any write
//! the API server rejects permanently. A broker scale-down keeps the StatefulSet's replicas
//! until the planner has drained the leaving brokers (`day2::hold_broker_replicas`). When Kafka
//! cannot be reached, day-1 work still happens and the `Day2Operations` condition says why
//! day-2 waits. ConfigMap revisions that pods still mount are kept.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use tracing::{info, instrument, warn};

use super::build::configmap::dynamic_broker_configs;
use super::build::{build_all, DesiredObjects, DesiredPod, CLUSTER_LABEL, ROLE_LABEL};
use super::day2::{
    desired_cluster, desired_pods, hold_broker_replicas, observed_kube, pod_ready, pod_up_to_date,
};
use super::dynamic::sync_dynamic_configs;
use super::operate::{
    connect_admin, publish_day2_events, requeue_after, run_day2, Day2Outcome, Day2Pass,
};
use super::status::{compute_status, refusal_message, status_patch, Observed, PodObservation};
use super::validate::{
    refuse_pool_removal, refuse_unsafe_changes, validate, ExistingPool, Refusal, SpecError,
    ValidatedCluster,
};
use super::volumes::reconcile_storage;
use crate::admin::KafkaAdmin;
use crate::context::{now_rfc3339, Context, FIELD_MANAGER};
use crate::crd::cluster::{KafkaCluster, KafkaClusterStatus};
use crate::crd::common::{finalize_conditions, find_condition, Condition};
use crate::error::{Error, Result};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "kafkacluster";
/// Requeue interval while the cluster is converging.
pub const REQUEUE_CONVERGING: Duration = Duration::from_secs(10);
/// Requeue interval once ready (periodic drift check).
pub const REQUEUE_READY: Duration = Duration::from_secs(300);
/// Requeue interval while a day-2 operation (commissioning, draining, rolling) is under way.
pub const REQUEUE_OPERATING: Duration = Duration::from_secs(5);

/// One reconcile pass; counts it and its failure kind in the metrics.
#[instrument(skip_all, fields(namespace = kc.namespace().unwrap_or_default(), name = kc.name_any()))]
pub async fn reconcile(kc: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let result = reconcile_inner(&kc, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, start.elapsed());
    match &result {
        Ok(_) => ctx.backoff_reset(kc.as_ref()),
        Err(e) => ctx.metrics.failed(CONTROLLER, e.kind()),
    }
    result
}

/// Permanent errors wait for a spec change; transient ones requeue with per-object exponential
/// backoff (`runtime::backoff`).
pub fn error_policy(kc: Arc<KafkaCluster>, err: &Error, ctx: Arc<Context>) -> Action {
    if err.is_transient() {
        let delay = ctx.backoff_failed(kc.as_ref());
        warn!(name = kc.name_any(), error = %err, source = ?std::error::Error::source(err), ?delay, "transient failure, requeueing");
        Action::requeue(delay)
    } else {
        ctx.backoff_reset(kc.as_ref());
        warn!(name = kc.name_any(), error = %err, source = ?std::error::Error::source(err), "permanent failure, waiting for a spec change");
        Action::await_change()
    }
}

async fn reconcile_inner(kc: &KafkaCluster, ctx: &Context) -> Result<Action> {
    let mut vc = match validate(kc) {
        Ok(vc) => vc,
        Err(e) => {
            record_invalid_spec(kc, ctx, &e).await?;
            return Err(Error::InvalidSpec(e));
        }
    };
    let existing_sets = existing_statefulsets(ctx, &vc).await?;
    let existing: Vec<ExistingPool> = existing_sets.iter().filter_map(existing_pool).collect();
    if let Some(r) = refuse_pool_removal(&vc, &existing) {
        record_refusal(kc, ctx, &r).await?;
        return Err(Error::Refused(r.message));
    }
    let current = existing
        .iter()
        .map(|e| (e.suffix.clone(), e.replicas))
        .collect();
    let previous = latest_status(ctx, &vc).await?;
    let day2_state = previous.day2.clone().unwrap_or_default();
    let mut refusals = refuse_unsafe_changes(&mut vc, &current);
    let day2_spec = desired_cluster(&vc);
    hold_broker_replicas(&mut vc, &current, &day2_state);
    let mut desired = build_all(&vc);
    let storage = reconcile_storage(ctx, kc, &vc, &mut desired, &existing_sets).await;
    let storage = report_permanent(kc, ctx, storage).await?;
    refusals.extend(storage.refusals);
    report_permanent(kc, ctx, apply_all(ctx, &vc, &desired).await).await?;
    let pods = list_pods(ctx, &vc).await?;
    let in_use = mounted_configmaps(&pods);
    report_permanent(kc, ctx, prune(ctx, kc, &vc, &desired, &in_use).await).await?;
    let admin = connect_admin(ctx, &vc, &pods).await;
    if let Ok(a) = &admin {
        sync_dynamic_configs(ctx, kc, a.as_ref(), &dynamic_broker_configs(&vc)).await;
    }
    let desired_pods = desired_pods(&desired);
    let mut observed = observe(ctx, &vc, &desired_pods, &pods, &admin).await?;
    let pass = Day2Pass {
        vc: &vc,
        admin: admin.as_deref().map_err(Clone::clone),
        spec: day2_spec,
        kube: observed_kube(&vc, &pods, &desired_pods),
        state: day2_state,
        now: now_rfc3339(),
    };
    observed.day2 = run_day2(ctx, pass).await;
    refusals.extend(observed.day2.refusal());
    let message = refusal_message(&refusals);
    if let Some(first) = refusals.first() {
        let already = find_condition(&previous.conditions, "Degraded")
            .is_some_and(|c| c.is_true() && c.message == message);
        if !already {
            ctx.publish(kc, EventType::Warning, first.reason, "Plan", Some(message))
                .await;
        }
    }
    observed.refusals = refusals;
    observed.resizing = storage.resizing;
    let status = compute_status(
        &vc,
        &observed,
        &previous,
        kc.metadata.generation,
        &now_rfc3339(),
    );
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &vc.namespace);
    api.patch_status(
        &vc.name,
        &PatchParams::default(),
        &Patch::Merge(status_patch(&previous, &status)),
    )
    .await
    .map_err(Error::kube("patch KafkaCluster status"))?;
    publish_day2_events(kc, ctx, &observed.day2, &previous, &status).await;
    let was_ready = find_condition(&previous.conditions, "Ready").is_some_and(Condition::is_true);
    let ready = find_condition(&status.conditions, "Ready").is_some_and(Condition::is_true);
    if ready != was_ready {
        let (type_, reason) = if ready {
            (EventType::Normal, "Ready")
        } else {
            (EventType::Warning, "NotReady")
        };
        let note = find_condition(&status.conditions, "Ready").map(|c| c.message.clone());
        ctx.publish(kc, type_, reason, "Reconcile", note).await;
    }
    Ok(Action::requeue(requeue_after(&observed.day2, ready)))
}

/// The status as the API server has it now: the day-2 state must be the last one written (a
/// cached copy one write behind could have the planner repeat a step, e.g. restart a second pod
/// while the first is still gone).
async fn latest_status(ctx: &Context, vc: &ValidatedCluster) -> Result<KafkaClusterStatus> {
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &vc.namespace);
    let kc = api
        .get_status(&vc.name)
        .await
        .map_err(Error::kube("get KafkaCluster status"))?;
    Ok(kc.status.unwrap_or_default())
}

async fn record_invalid_spec(kc: &KafkaCluster, ctx: &Context, e: &SpecError) -> Result<()> {
    let conditions = vec![
        Condition::new("Ready", false, "InvalidSpec", e.to_string()),
        Condition::new(
            "Progressing",
            false,
            "InvalidSpec",
            "waiting for a corrected spec",
        ),
        Condition::new("Degraded", true, "InvalidSpec", e.to_string()),
    ];
    record_problem(
        kc,
        ctx,
        conditions,
        "InvalidSpec",
        "Validate",
        e.to_string(),
    )
    .await
}

/// A permanent failure (the API server refused a write as invalid or forbidden) is written as
/// `Degraded=True` with reason `KubernetesRejected` and an Event before it is returned, so the
/// status does not keep describing an older pass; transient ones are returned as they are.
async fn report_permanent<T>(kc: &KafkaCluster, ctx: &Context, result: Result<T>) -> Result<T> {
    let e = match result {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    if !e.is_transient() {
        let msg = match std::error::Error::source(&e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        };
        let conditions = vec![
            Condition::new("Progressing", false, "KubernetesRejected", msg.clone()),
            Condition::new("Degraded", true, "KubernetesRejected", msg.clone()),
        ];
        record_problem(kc, ctx, conditions, "KubernetesRejected", "Apply", msg).await?;
    }
    Err(e)
}

/// A refused spec change that stops the whole pass: nothing is applied or pruned; the nodes keep
/// running, so `Ready` keeps its last value.
async fn record_refusal(kc: &KafkaCluster, ctx: &Context, r: &Refusal) -> Result<()> {
    let conditions = vec![
        Condition::new(
            "Progressing",
            false,
            r.reason,
            "waiting for a spec the operator can carry out",
        ),
        Condition::new("Degraded", true, r.reason, r.message.clone()),
    ];
    record_problem(kc, ctx, conditions, r.reason, "Plan", r.message.clone()).await
}

/// Writes `conditions` over the previous ones (other condition types are kept), stamps the
/// generation and records a Warning Event: what every permanent failure leaves behind, so the
/// status never shows an older pass's picture as if it were current.
async fn record_problem(
    kc: &KafkaCluster,
    ctx: &Context,
    conditions: Vec<Condition>,
    reason: &str,
    action: &str,
    note: String,
) -> Result<()> {
    let previous = kc.status.clone().unwrap_or_default();
    let mut merged: Vec<Condition> = previous
        .conditions
        .iter()
        .filter(|p| !conditions.iter().any(|c| c.type_ == p.type_))
        .cloned()
        .collect();
    let generation = kc.metadata.generation;
    let now = now_rfc3339();
    merged.extend(finalize_conditions(
        conditions,
        &previous.conditions,
        generation,
        &now,
    ));
    merged.sort_by_key(|c| condition_order(&c.type_));
    let api: Api<KafkaCluster> =
        Api::namespaced(ctx.client.clone(), &kc.namespace().unwrap_or_default());
    let patch = json!({ "status": { "conditions": merged, "observedGeneration": generation } });
    api.patch_status(
        &kc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .map_err(Error::kube("patch KafkaCluster status"))?;
    ctx.publish(kc, EventType::Warning, reason, action, Some(note))
        .await;
    Ok(())
}

/// Conditions are listed Ready, Progressing, Degraded, then any other type.
fn condition_order(type_: &str) -> usize {
    ["Ready", "Progressing", "Degraded"]
        .iter()
        .position(|t| *t == type_)
        .unwrap_or(3)
}

async fn apply_all(ctx: &Context, vc: &ValidatedCluster, d: &DesiredObjects) -> Result<()> {
    for o in &d.config_maps {
        apply(ctx, vc, o).await?;
    }
    for o in &d.services {
        apply(ctx, vc, o).await?;
    }
    for o in &d.stateful_sets {
        apply(ctx, vc, o).await?;
    }
    for o in &d.pdbs {
        apply(ctx, vc, o).await?;
    }
    Ok(())
}

async fn apply<K>(ctx: &Context, vc: &ValidatedCluster, obj: &K) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &vc.namespace);
    let name = obj.name_any();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(Error::kube(format!("apply {} {name}", K::kind(&()))))?;
    Ok(())
}

/// Deletes objects labelled as this cluster's that the spec no longer produces. ConfigMap
/// revisions that a pod still mounts (`in_use`) are kept until no pod uses them.
async fn prune(
    ctx: &Context,
    kc: &KafkaCluster,
    vc: &ValidatedCluster,
    d: &DesiredObjects,
    in_use: &[String],
) -> Result<()> {
    prune_kind::<StatefulSet>(
        ctx,
        kc,
        vc,
        d.stateful_sets.iter().map(ResourceExt::name_any).collect(),
    )
    .await?;
    prune_kind::<Service>(
        ctx,
        kc,
        vc,
        d.services.iter().map(ResourceExt::name_any).collect(),
    )
    .await?;
    prune_kind::<ConfigMap>(
        ctx,
        kc,
        vc,
        d.config_maps
            .iter()
            .map(ResourceExt::name_any)
            .chain(in_use.iter().cloned())
            .collect(),
    )
    .await?;
    prune_kind::<PodDisruptionBudget>(
        ctx,
        kc,
        vc,
        d.pdbs.iter().map(ResourceExt::name_any).collect(),
    )
    .await?;
    Ok(())
}

async fn prune_kind<K>(
    ctx: &Context,
    kc: &KafkaCluster,
    vc: &ValidatedCluster,
    keep: Vec<String>,
) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &vc.namespace);
    let lp = ListParams::default().labels(&format!("{CLUSTER_LABEL}={}", vc.name));
    let list = api
        .list(&lp)
        .await
        .map_err(Error::kube(format!("list {}", K::kind(&()))))?;
    for obj in list.items {
        let name = obj.name_any();
        if !keep.contains(&name) {
            api.delete(&name, &DeleteParams::default())
                .await
                .map_err(Error::kube(format!("delete {} {name}", K::kind(&()))))?;
            info!(kind = %K::kind(&()), object = %name, "deleted object the spec no longer needs");
            ctx.publish(
                kc,
                EventType::Normal,
                "Deleted",
                "Prune",
                Some(format!("deleted {} {name}", K::kind(&()))),
            )
            .await;
        }
    }
    Ok(())
}

/// Every StatefulSet labelled as this cluster's.
async fn existing_statefulsets(ctx: &Context, vc: &ValidatedCluster) -> Result<Vec<StatefulSet>> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &vc.namespace);
    let lp = ListParams::default().labels(&format!("{CLUSTER_LABEL}={}", vc.name));
    let list = api
        .list(&lp)
        .await
        .map_err(Error::kube("list StatefulSet"))?;
    Ok(list.items)
}

/// A StatefulSet's role and replica counts.
fn existing_pool(sts: &StatefulSet) -> Option<ExistingPool> {
    Some(ExistingPool {
        suffix: sts.labels().get(ROLE_LABEL)?.clone(),
        replicas: sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        running: sts.status.as_ref().map_or(0, |s| s.replicas),
    })
}

/// Pods without the rack label `key`, and the nodes they run on that lack it too. A node that
/// cannot be read (not found, or no RBAC for nodes) is left out: this only explains a warning.
async fn rack_gaps(ctx: &Context, pods: &[Pod], key: &str) -> (Vec<String>, Vec<String>) {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut bare_pods = Vec::new();
    let mut bare_nodes = std::collections::BTreeSet::new();
    for p in pods {
        if p.labels().get(key).is_some_and(|v| !v.is_empty()) {
            continue;
        }
        bare_pods.push(p.name_any());
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        match nodes.get_opt(&node).await {
            Ok(Some(n)) if n.labels().get(key).is_none_or(|v| v.is_empty()) => {
                bare_nodes.insert(node);
            }
            Ok(_) => {}
            Err(e) => warn!(node = %node, error = %e, "cannot read node for its rack label"),
        }
    }
    (bare_pods, bare_nodes.into_iter().collect())
}

/// The cluster's pods.
async fn list_pods(ctx: &Context, vc: &ValidatedCluster) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &vc.namespace);
    let lp = ListParams::default().labels(&format!("{CLUSTER_LABEL}={}", vc.name));
    Ok(pods.list(&lp).await.map_err(Error::kube("list Pod"))?.items)
}

/// Names of the ConfigMaps the pods mount.
fn mounted_configmaps(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| p.spec.as_ref()?.volumes.as_ref())
        .flatten()
        .filter_map(|v| Some(v.config_map.as_ref()?.name.clone()))
        .collect()
}

/// Reads the pods' state and, through `admin` when there is one, the cluster's broker list.
async fn observe(
    ctx: &Context,
    vc: &ValidatedCluster,
    desired: &BTreeMap<String, DesiredPod>,
    list: &[Pod],
    admin: &std::result::Result<Box<dyn KafkaAdmin>, String>,
) -> Result<Observed> {
    let pods = list
        .iter()
        .map(|p| {
            (
                p.name_any(),
                PodObservation {
                    ready: pod_ready(p),
                    up_to_date: pod_up_to_date(p, desired),
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    let (pods_without_rack, nodes_without_rack) = match &vc.rack_key {
        Some(key) => rack_gaps(ctx, list, key).await,
        None => (Vec::new(), Vec::new()),
    };
    let cluster = match admin {
        Ok(admin) => admin.describe_cluster().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.clone()),
    };
    Ok(Observed {
        pods,
        cluster,
        refusals: Vec::new(),
        pods_without_rack,
        nodes_without_rack,
        resizing: Vec::new(),
        day2: Day2Outcome::NotRun,
    })
}
