//! The `KafkaCluster` reconciler: observe → validate → plan (build) → act. It applies every
//! desired object with server-side apply under one field manager, deletes labelled objects the
//! spec no longer needs, reads pods and the cluster's own broker list, and writes a status
//! computed by `status::compute_status`. It does not restart pods (rolling restarts are a later
//! step; outdated pods are only reported).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
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

use super::build::{build_all, DesiredObjects, CLUSTER_LABEL, CONFIG_HASH_ANNOTATION, ROLE_LABEL};
use super::status::{compute_status, Observed, PodObservation};
use super::validate::{refuse_scale_down, validate, SpecError, ValidatedCluster};
use crate::context::{now_rfc3339, Context, FIELD_MANAGER};
use crate::crd::cluster::KafkaCluster;
use crate::crd::common::{finalize_conditions, find_condition, Condition};
use crate::error::{Error, Result};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "kafkacluster";
/// Requeue interval while the cluster is converging.
pub const REQUEUE_CONVERGING: Duration = Duration::from_secs(10);
/// Requeue interval once ready (periodic drift check).
pub const REQUEUE_READY: Duration = Duration::from_secs(300);

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
    let current = current_replicas(ctx, &vc).await?;
    let refusals = refuse_scale_down(&mut vc, &current);
    let desired = build_all(&vc);
    apply_all(ctx, &vc, &desired).await?;
    prune(ctx, kc, &vc, &desired).await?;
    let mut observed = observe(ctx, &vc, &desired).await?;
    if !refusals.is_empty()
        && find_condition(
            &kc.status.clone().unwrap_or_default().conditions,
            "Degraded",
        )
        .is_none_or(|c| c.reason != "ScaleDownRefused")
    {
        ctx.publish(
            kc,
            EventType::Warning,
            "ScaleDownRefused",
            "Plan",
            Some(refusals.join("; ")),
        )
        .await;
    }
    observed.refusals = refusals;
    let previous = kc.status.clone().unwrap_or_default();
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
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map_err(Error::kube("patch KafkaCluster status"))?;
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
    Ok(Action::requeue(if ready {
        REQUEUE_READY
    } else {
        REQUEUE_CONVERGING
    }))
}

async fn record_invalid_spec(kc: &KafkaCluster, ctx: &Context, e: &SpecError) -> Result<()> {
    let previous = kc.status.clone().unwrap_or_default();
    let conditions = finalize_conditions(
        vec![
            Condition::new("Ready", false, "InvalidSpec", e.to_string()),
            Condition::new(
                "Progressing",
                false,
                "InvalidSpec",
                "waiting for a corrected spec",
            ),
            Condition::new("Degraded", true, "InvalidSpec", e.to_string()),
        ],
        &previous.conditions,
        kc.metadata.generation,
        &now_rfc3339(),
    );
    let api: Api<KafkaCluster> =
        Api::namespaced(ctx.client.clone(), &kc.namespace().unwrap_or_default());
    let patch = json!({ "status": { "conditions": conditions, "observedGeneration": kc.metadata.generation } });
    api.patch_status(
        &kc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .map_err(Error::kube("patch KafkaCluster status"))?;
    ctx.publish(
        kc,
        EventType::Warning,
        "InvalidSpec",
        "Validate",
        Some(e.to_string()),
    )
    .await;
    Ok(())
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

/// Deletes objects labelled as this cluster's that the spec no longer produces.
async fn prune(
    ctx: &Context,
    kc: &KafkaCluster,
    vc: &ValidatedCluster,
    d: &DesiredObjects,
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
        d.config_maps.iter().map(ResourceExt::name_any).collect(),
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

/// Replicas of the pools' existing StatefulSets, by role suffix.
async fn current_replicas(
    ctx: &Context,
    vc: &ValidatedCluster,
) -> Result<std::collections::BTreeMap<String, i32>> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &vc.namespace);
    let mut out = std::collections::BTreeMap::new();
    for pool in &vc.pools {
        let name = super::build::pool_name(vc, pool);
        if let Some(sts) = api
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("get StatefulSet {name}")))?
        {
            out.insert(
                pool.role.suffix().to_owned(),
                sts.spec.and_then(|s| s.replicas).unwrap_or(0),
            );
        }
    }
    Ok(out)
}

/// Reads pods and, when a broker pod is ready, the cluster's broker list.
async fn observe(ctx: &Context, vc: &ValidatedCluster, d: &DesiredObjects) -> Result<Observed> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &vc.namespace);
    let lp = ListParams::default().labels(&format!("{CLUSTER_LABEL}={}", vc.name));
    let list = pods.list(&lp).await.map_err(Error::kube("list Pod"))?;
    let pods = list
        .items
        .iter()
        .map(|p| {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let hash = p.annotations().get(CONFIG_HASH_ANNOTATION).cloned();
            (p.name_any(), PodObservation { ready, hash })
        })
        .collect::<std::collections::BTreeMap<_, _>>();
    let desired_hashes = d
        .stateful_sets
        .iter()
        .filter_map(|s| {
            let role = s.labels().get(ROLE_LABEL)?.clone();
            let hash = s
                .spec
                .as_ref()?
                .template
                .metadata
                .as_ref()?
                .annotations
                .as_ref()?
                .get(CONFIG_HASH_ANNOTATION)?
                .clone();
            Some((role, hash))
        })
        .collect();
    let broker_prefix = format!("{}-{}-", vc.name, vc.broker_pool().role.suffix());
    let any_broker_ready = pods
        .iter()
        .any(|(n, p)| p.ready && n.starts_with(&broker_prefix));
    let cluster = if any_broker_ready {
        let bootstrap = ctx.bootstrap_for(vc);
        match ctx.admin.connect(&bootstrap).await {
            Ok(admin) => admin.describe_cluster().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    } else {
        Err("no broker pod is ready".to_owned())
    };
    Ok(Observed {
        pods,
        desired_hashes,
        cluster,
        refusals: Vec::new(),
    })
}
