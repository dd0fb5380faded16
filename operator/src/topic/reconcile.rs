//! The `KafkaTopic` reconciler: finalizer first (so deletion always passes through us), then
//! observe the cluster and the topic through the admin client, plan (`plan::plan_topic`), act one
//! admin call per action, and report. Deleting the resource deletes the topic when
//! `deletionPolicy: Delete` (the default) and leaves it with `Retain`; the finalizer is removed
//! only once that is done.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Error as FinalizerError, Event as FinalizerEvent};
use kube::ResourceExt;
use serde_json::{json, Value};
use tracing::{info, instrument, warn};

use super::plan::{
    applied_status, config_drift, plan_topic, topic_name, ObservedTopic, TopicAction, TopicName,
};
use crate::admin::{topic_overrides, KafkaAdmin};
use crate::context::{now_rfc3339, Context};
use crate::crd::cluster::KafkaCluster;
use crate::crd::common::{finalize_conditions, find_condition, merge_patch, Condition};
use crate::crd::topic::{DeletionPolicy, KafkaTopic, KafkaTopicStatus, TOPIC_FINALIZER};
use crate::error::{Error, Result};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "kafkatopic";
/// Requeue while waiting for the cluster.
pub const REQUEUE_WAITING: Duration = Duration::from_secs(15);
/// Periodic drift check once in sync.
pub const REQUEUE_SYNCED: Duration = Duration::from_secs(300);

/// One reconcile pass, through the finalizer; counts it and its failure kind.
#[instrument(skip_all, fields(namespace = kt.namespace().unwrap_or_default(), name = kt.name_any()))]
pub async fn reconcile(kt: Arc<KafkaTopic>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let api: Api<KafkaTopic> =
        Api::namespaced(ctx.client.clone(), &kt.namespace().unwrap_or_default());
    let result = finalizer(&api, TOPIC_FINALIZER, kt.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(kt) => apply(&kt, &ctx).await,
            FinalizerEvent::Cleanup(kt) => cleanup(&kt, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics.reconciled(CONTROLLER, start.elapsed());
    match &result {
        Ok(_) => ctx.backoff_reset(kt.as_ref()),
        Err(e) => ctx.metrics.failed(CONTROLLER, e.kind()),
    }
    result
}

/// Permanent errors wait for a spec change; transient ones requeue with per-object exponential
/// backoff (`runtime::backoff`).
pub fn error_policy(kt: Arc<KafkaTopic>, err: &Error, ctx: Arc<Context>) -> Action {
    if err.is_transient() {
        let delay = ctx.backoff_failed(kt.as_ref());
        warn!(name = kt.name_any(), error = %err, source = ?std::error::Error::source(err), ?delay, "transient failure, requeueing");
        Action::requeue(delay)
    } else {
        ctx.backoff_reset(kt.as_ref());
        warn!(name = kt.name_any(), error = %err, source = ?std::error::Error::source(err), "permanent failure, waiting for a spec change");
        Action::await_change()
    }
}

/// Connects to the topic's cluster, or says why not (`Ok(Err(reason, message))` = wait).
async fn connect(
    kt: &KafkaTopic,
    ctx: &Context,
) -> Result<std::result::Result<Box<dyn KafkaAdmin>, (&'static str, String)>> {
    let ns = kt.namespace().unwrap_or_default();
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let name = &kt.spec.cluster_ref.name;
    let Some(kc) = clusters
        .get_opt(name)
        .await
        .map_err(Error::kube("get KafkaCluster"))?
    else {
        return Ok(Err((
            "ClusterNotFound",
            format!("KafkaCluster {name:?} does not exist in namespace {ns:?}"),
        )));
    };
    let status = kc.status.unwrap_or_default();
    if !find_condition(&status.conditions, "Ready").is_some_and(Condition::is_true) {
        return Ok(Err((
            "ClusterNotReady",
            format!("KafkaCluster {name:?} is not ready"),
        )));
    }
    let Some(bootstrap) = ctx.bootstrap_override.clone().or(status.bootstrap) else {
        return Ok(Err((
            "ClusterNotReady",
            format!("KafkaCluster {name:?} reports no bootstrap address"),
        )));
    };
    ctx.admin
        .connect(&bootstrap)
        .await
        .map(Ok)
        .map_err(Error::Admin)
}

async fn apply(kt: &KafkaTopic, ctx: &Context) -> Result<Action> {
    let name = match topic_name(kt) {
        Ok(n) => n,
        Err(msg) => {
            write_status(
                kt,
                ctx,
                None,
                vec![Condition::new(
                    "Ready",
                    false,
                    "InvalidTopicName",
                    msg.clone(),
                )],
                Pass::Reconciled,
            )
            .await?;
            ctx.publish(
                kt,
                EventType::Warning,
                "InvalidTopicName",
                "Validate",
                Some(msg.clone()),
            )
            .await;
            return Err(Error::InvalidTopic(msg));
        }
    };
    let admin = match connect(kt, ctx).await? {
        Ok(a) => a,
        Err((reason, msg)) => {
            write_status(
                kt,
                ctx,
                None,
                vec![Condition::new("Ready", false, reason, msg)],
                Pass::Waited,
            )
            .await?;
            return Ok(Action::requeue(REQUEUE_WAITING));
        }
    };
    let observed = observe(admin.as_ref(), &name).await?;
    let plan = plan_topic(kt, &name, observed.as_ref());
    if let Err(e) = act(kt, ctx, admin.as_ref(), &name, &plan.actions).await {
        if !e.is_transient() {
            let msg = format!(
                "{e}: {}",
                std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            write_status(
                kt,
                ctx,
                None,
                vec![Condition::new("Ready", false, "KafkaRejected", msg.clone())],
                Pass::Reconciled,
            )
            .await?;
            ctx.publish(kt, EventType::Warning, "KafkaRejected", "Apply", Some(msg))
                .await;
        }
        return Err(e);
    }
    // Read back what the broker now has: status reports it, and a change the broker accepted
    // but does not show is not "Synced".
    let after = observe(admin.as_ref(), &name).await?;
    let drift = after
        .as_ref()
        .map(|o| config_drift(&kt.spec.config, &o.overrides))
        .unwrap_or_default();
    let mut requeue = REQUEUE_SYNCED;
    let mut conditions = vec![Condition::new(
        "Ready",
        plan.refusals.is_empty(),
        "Synced",
        "topic matches its spec",
    )];
    if !drift.is_empty() {
        let msg = format!("the cluster reports {}", drift.join(", "));
        warn!(topic = name.as_str(), %msg, "config not applied");
        conditions = vec![Condition::new("Ready", false, "ConfigDrift", msg)];
        requeue = REQUEUE_WAITING;
    }
    if let Some(r) = plan.refusals.first() {
        let msg = plan
            .refusals
            .iter()
            .map(|r| r.message.clone())
            .collect::<Vec<_>>()
            .join("; ");
        conditions = vec![
            Condition::new("Ready", false, r.reason, msg.clone()),
            Condition::new("Degraded", true, r.reason, msg.clone()),
        ];
        ctx.publish(kt, EventType::Warning, r.reason, "Plan", Some(msg))
            .await;
    }
    write_status(
        kt,
        ctx,
        Some(applied_status(kt, &name, after.as_ref())),
        conditions,
        Pass::Reconciled,
    )
    .await?;
    Ok(Action::requeue(requeue))
}

/// The topic's metadata and overrides (Metadata, then DescribeConfigs), `None` when absent.
async fn observe(admin: &dyn KafkaAdmin, name: &TopicName) -> Result<Option<ObservedTopic>> {
    let Some(info) = admin
        .describe_topic(name.as_str())
        .await
        .map_err(Error::Admin)?
    else {
        return Ok(None);
    };
    let entries = admin
        .describe_topic_config(name.as_str())
        .await
        .map_err(Error::Admin)?;
    Ok(Some(ObservedTopic {
        info,
        overrides: topic_overrides(&entries),
    }))
}

async fn act(
    kt: &KafkaTopic,
    ctx: &Context,
    admin: &dyn KafkaAdmin,
    name: &TopicName,
    actions: &[TopicAction],
) -> Result<()> {
    for action in actions {
        let (reason, note) = match action {
            TopicAction::Create(t) => {
                admin.create_topic(t).await.map_err(Error::Admin)?;
                (
                    "Created",
                    format!("created topic {} with {} partitions", t.name, t.partitions),
                )
            }
            TopicAction::CreatePartitions(n) => {
                admin
                    .create_partitions(name.as_str(), *n)
                    .await
                    .map_err(Error::Admin)?;
                (
                    "PartitionsIncreased",
                    format!("raised partitions of {} to {n}", name.as_str()),
                )
            }
            TopicAction::AlterConfig(changes) => {
                admin
                    .alter_topic_config(name.as_str(), changes)
                    .await
                    .map_err(Error::Admin)?;
                (
                    "ConfigUpdated",
                    format!(
                        "applied {} config changes to {}",
                        changes.len(),
                        name.as_str()
                    ),
                )
            }
        };
        info!(topic = name.as_str(), reason, "{note}");
        ctx.publish(kt, EventType::Normal, reason, "Apply", Some(note))
            .await;
    }
    Ok(())
}

async fn cleanup(kt: &KafkaTopic, ctx: &Context) -> Result<Action> {
    if kt.spec.deletion_policy == DeletionPolicy::Retain {
        info!("deletionPolicy is Retain: leaving the Kafka topic");
        return Ok(Action::await_change());
    }
    let Ok(name) = topic_name(kt) else {
        return Ok(Action::await_change()); // an invalid name was never created
    };
    match connect(kt, ctx).await? {
        Ok(admin) => {
            admin
                .delete_topic(name.as_str())
                .await
                .map_err(Error::Admin)?;
            ctx.publish(
                kt,
                EventType::Normal,
                "Deleted",
                "Cleanup",
                Some(format!("deleted topic {}", name.as_str())),
            )
            .await;
            Ok(Action::await_change())
        }
        // No cluster: there is no topic left to delete.
        Err(("ClusterNotFound", _)) => Ok(Action::await_change()),
        // The cluster exists but cannot be asked: keep the finalizer and retry.
        Err((_, msg)) => Err(Error::Finalizer(format!("cannot delete topic yet: {msg}"))),
    }
}

/// What a pass did with the spec: only a pass that compared the spec with the cluster (and
/// acted on it, or refused it) may claim the generation as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The spec was compared with the topic and applied or refused.
    Reconciled,
    /// Nothing was done with the spec (waiting for the cluster).
    Waited,
}

/// Patches status: `status` fields (when given) and `conditions`, removing config keys the
/// cluster no longer reports (a merge patch needs explicit nulls for that). `observedGeneration`
/// moves only on a `Pass::Reconciled`; a patch that would change nothing is not sent.
async fn write_status(
    kt: &KafkaTopic,
    ctx: &Context,
    status: Option<KafkaTopicStatus>,
    conditions: Vec<Condition>,
    pass: Pass,
) -> Result<()> {
    let previous = kt.status.clone().unwrap_or_default();
    let conditions = finalize_conditions(
        conditions,
        &previous.conditions,
        kt.metadata.generation,
        &now_rfc3339(),
    );
    let mut patch = match status {
        Some(s) => {
            let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
            for k in previous
                .config
                .keys()
                .filter(|k| !s.config.contains_key(*k))
            {
                v["config"][k] = Value::Null;
            }
            v
        }
        None => json!({}),
    };
    patch["conditions"] = serde_json::to_value(conditions).unwrap_or(Value::Null);
    if pass == Pass::Reconciled {
        patch["observedGeneration"] = json!(kt.metadata.generation);
    } else if let Some(obj) = patch.as_object_mut() {
        obj.remove("observedGeneration");
    }
    if !changes(&previous, &patch) {
        return Ok(());
    }
    let api: Api<KafkaTopic> =
        Api::namespaced(ctx.client.clone(), &kt.namespace().unwrap_or_default());
    api.patch_status(
        &kt.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": patch })),
    )
    .await
    .map_err(Error::kube("patch KafkaTopic status"))?;
    Ok(())
}

/// Whether merging `patch` into `previous` changes anything.
fn changes(previous: &KafkaTopicStatus, patch: &Value) -> bool {
    let before = serde_json::to_value(previous).unwrap_or(Value::Null);
    let mut after = before.clone();
    merge_patch(&mut after, patch);
    before != after
}
