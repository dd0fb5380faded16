//! The day-2 pass of a `KafkaCluster` reconcile: observe the Kafka cluster through the admin
//! client, call `day2::decide` with the spec, the pods and the state kept in status, and carry
//! out the one action it returns (a cordon, a batch of reassignments with its throttle, a
//! throttle removal, the broker StatefulSet's replicas, an unregistration, one pod deletion).
//! It never fails the reconcile: an unreachable cluster or a failed action is reported in the
//! outcome, which `status` turns into conditions; the next pass decides again from what it
//! observes. Deciding is not done here (`day2`), nor writing the status (`reconcile`).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use tracing::{info, warn};

use super::build::pool_name;
use super::validate::ValidatedCluster;
use crate::admin::{AdminError, KafkaAdmin};
use crate::context::{Context, FIELD_MANAGER};
use crate::day2::{
    decide, Day2Action, Day2Input, Day2State, Decision, DesiredCluster, ObservedKube,
};

/// What the day-2 pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Day2Outcome {
    /// Not run (day-1 status tests build `Observed` without it).
    #[default]
    NotRun,
    /// The Kafka cluster could not be reached or observed: nothing was decided.
    Unavailable(String),
    /// `decide` ran; its action was carried out unless `failed` says why not.
    Decided {
        decision: Box<Decision>,
        failed: Option<String>,
    },
}

impl Day2Outcome {
    /// The decision, when one was made.
    pub fn decision(&self) -> Option<&Decision> {
        match self {
            Day2Outcome::Decided { decision, .. } => Some(decision.as_ref()),
            _ => None,
        }
    }
}

/// Everything one day-2 pass needs besides the context.
pub struct Day2Pass<'a> {
    pub vc: &'a ValidatedCluster,
    /// The connected admin client, or why there is none.
    pub admin: Result<&'a dyn KafkaAdmin, String>,
    pub spec: DesiredCluster,
    pub kube: ObservedKube,
    pub state: Day2State,
    pub now: String,
}

/// Observes Kafka, decides and acts.
pub async fn run_day2(ctx: &Context, pass: Day2Pass<'_>) -> Day2Outcome {
    let admin = match pass.admin {
        Ok(a) => a,
        Err(e) => return Day2Outcome::Unavailable(e),
    };
    let kafka = match admin.observe().await {
        Ok(k) => k,
        Err(e) => {
            return Day2Outcome::Unavailable(format!("cannot observe the Kafka cluster: {e}"))
        }
    };
    let input = Day2Input {
        spec: pass.spec,
        kube: pass.kube,
        kafka,
        state: pass.state,
        now: pass.now,
    };
    let decision = decide(&input);
    let failed = match carry_out(ctx, pass.vc, admin, &decision.action).await {
        Ok(()) => None,
        Err(e) => {
            warn!(action = ?decision.action, error = %e, "day-2 action failed");
            Some(e)
        }
    };
    if !matches!(decision.action, Day2Action::None | Day2Action::Wait) {
        info!(action = ?decision.action, message = %decision.message, "day-2 step");
    }
    Day2Outcome::Decided {
        decision: Box::new(decision),
        failed,
    }
}

fn admin_failed(what: &str) -> impl Fn(AdminError) -> String + '_ {
    move |e| match std::error::Error::source(&e) {
        Some(s) => format!("{what}: {e}: {s}"),
        None => format!("{what}: {e}"),
    }
}

/// Carries out one action. `None`, `Wait` and `Refuse` do nothing here (a refusal is reported
/// in status by the caller).
async fn carry_out(
    ctx: &Context,
    vc: &ValidatedCluster,
    admin: &dyn KafkaAdmin,
    action: &Day2Action,
) -> Result<(), String> {
    match action {
        Day2Action::None | Day2Action::Wait | Day2Action::Refuse { .. } => Ok(()),
        Day2Action::Cordon { brokers } => admin
            .set_cordon(brokers, true)
            .await
            .map_err(admin_failed("cordon")),
        Day2Action::Uncordon { brokers } => admin
            .set_cordon(brokers, false)
            .await
            .map_err(admin_failed("uncordon")),
        Day2Action::Reassign {
            moves,
            throttle_bytes_per_second,
        } => {
            if let Some(rate) = throttle_bytes_per_second {
                admin
                    .set_replication_throttle(*rate, moves)
                    .await
                    .map_err(admin_failed("set replication throttle"))?;
            }
            admin
                .reassign(moves)
                .await
                .map_err(admin_failed("reassign partitions"))
        }
        Day2Action::ClearThrottle => admin
            .clear_replication_throttle()
            .await
            .map_err(admin_failed("clear replication throttle")),
        Day2Action::ScaleBrokers { replicas } => scale_brokers(ctx, vc, *replicas).await,
        Day2Action::Unregister { brokers } => {
            for b in brokers {
                admin
                    .unregister_broker(*b)
                    .await
                    .map_err(admin_failed(&format!("unregister broker {b}")))?;
            }
            Ok(())
        }
        Day2Action::RestartPod { pod } => restart_pod(ctx, vc, pod).await,
    }
}

/// Sets the broker StatefulSet's replicas (the next pass's apply agrees: `day2::hold_broker_replicas`
/// reads the same state).
async fn scale_brokers(ctx: &Context, vc: &ValidatedCluster, replicas: i32) -> Result<(), String> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &vc.namespace);
    let name = pool_name(vc, vc.broker_pool());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(
        &name,
        &params,
        &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("scale StatefulSet {name} to {replicas}: {e}"))
}

/// Deletes the pod; its StatefulSet (`OnDelete`) recreates it from the current template. A pod
/// already gone is fine.
async fn restart_pod(ctx: &Context, vc: &ValidatedCluster, pod: &str) -> Result<(), String> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &vc.namespace);
    match api.delete(pod, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(format!("delete pod {pod}: {e}")),
    }
}
