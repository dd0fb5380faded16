//! The day-2 pass of a `KafkaCluster` reconcile: observe the Kafka cluster through the admin
//! client, call `day2::decide` with the spec, the pods and the state kept in status, and carry
//! out the one action it returns (a cordon, a batch of reassignments with its throttle, a
//! throttle removal, the broker StatefulSet's replicas, an unregistration, one pod deletion).
//! It never fails the reconcile: an unreachable cluster or a failed action is reported in the
//! outcome, which `status` turns into conditions; the next pass decides again from what it
//! observes. Also here: connecting the admin client, the day-2 Events (recorded when something
//! changes, not every pass) and the requeue interval. Deciding is not done here (`day2`), nor
//! writing the status (`reconcile`).

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::ResourceExt;
use serde_json::json;
use tracing::{info, warn};

use super::build::pool_name;
use super::day2::{blocker_key, pod_ready, refusal_reason};
use super::reconcile::{CONTROLLER, REQUEUE_CONVERGING, REQUEUE_OPERATING, REQUEUE_READY};
use super::status::DAY2_CONDITION;
use super::validate::{Refusal, ValidatedCluster};
use crate::admin::{AdminError, KafkaAdmin, TopicPartition};
use crate::context::{Context, FIELD_MANAGER};
use crate::crd::cluster::{KafkaCluster, KafkaClusterStatus, OperationKind};
use crate::crd::common::find_condition;
use crate::day2::progress::left_to_copy;
use crate::day2::{
    decide, Day2Action, Day2Input, Day2State, Decision, DesiredCluster, ObservedKube,
    ReportedOperation,
};
use crate::runtime::metrics::ClusterGauges;

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

    /// The planner's refusal, as the `Degraded` condition reports it.
    pub fn refusal(&self) -> Option<Refusal> {
        let d = self.decision()?;
        match &d.action {
            Day2Action::Refuse { reason } => {
                Some(Refusal::new(refusal_reason(reason), d.message.clone()))
            }
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
    ctx.metrics.cluster(
        &pass.vc.namespace,
        &pass.vc.name,
        &gauges(&input, &decision),
    );
    let failed = match carry_out(ctx, pass.vc, admin, &decision.action).await {
        Ok(()) => None,
        Err(e) => {
            warn!(action = ?decision.action, error = %e, "day-2 action failed");
            ctx.metrics.failed(CONTROLLER, "day2_action");
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

/// The cluster's gauges from what this pass observed and decided.
fn gauges(input: &Day2Input, decision: &Decision) -> ClusterGauges {
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let ready = input.kube.pods.iter().filter(|p| p.broker && p.ready);
    let kafka = &input.kafka;
    let under = kafka.partitions.iter().filter(|p| !p.fully_in_sync());
    let moving: u64 = decision.bytes.as_ref().map_or_else(
        || kafka.partitions.iter().map(left_to_copy).sum(),
        |b| b.remaining,
    );
    ClusterGauges {
        brokers_ready: count(ready.count()),
        under_replicated_partitions: count(under.count()),
        operation_in_progress: i64::from(decision.operation != ReportedOperation::None),
        move_bytes_remaining: i64::try_from(moving).unwrap_or(i64::MAX),
        blocked_seconds: blocked_seconds(decision, &input.now),
    }
}

/// Seconds since the decision's step started waiting on a gate (0 when it does not wait).
fn blocked_seconds(decision: &Decision, now: &str) -> i64 {
    use k8s_openapi::jiff::Timestamp;
    let since = decision.state.blocked_since.as_deref();
    match (since.map(str::parse::<Timestamp>), now.parse::<Timestamp>()) {
        (Some(Ok(since)), Ok(now)) => now.duration_since(since).as_secs().max(0),
        _ => 0,
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
        Day2Action::RestartPod { pod, with } => {
            for p in std::iter::once(pod).chain(with) {
                restart_pod(ctx, vc, p).await?;
            }
            Ok(())
        }
        Day2Action::ElectLeaders { partitions } => {
            let partitions: Vec<TopicPartition> = partitions
                .iter()
                .map(|name| name.parse())
                .collect::<Result<_, _>>()?;
            admin
                .elect_preferred_leaders(Some(&partitions))
                .await
                .map(|_| ())
                .map_err(admin_failed("preferred leader election"))
        }
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

/// Sooner while a day-2 operation is under way, a step was taken or waits, or the last action
/// failed; a refusal waits at the usual pace (it changes with the spec, which triggers a pass).
pub(super) fn requeue_after(day2: &Day2Outcome, ready: bool) -> Duration {
    let operating = match day2 {
        Day2Outcome::Decided { decision, failed } => {
            failed.is_some()
                || decision.operation != crate::day2::ReportedOperation::None
                || !matches!(
                    decision.action,
                    Day2Action::None | Day2Action::Refuse { .. }
                )
        }
        _ => false,
    };
    if operating {
        REQUEUE_OPERATING
    } else if ready {
        REQUEUE_READY
    } else {
        REQUEUE_CONVERGING
    }
}

/// Events for the day-2 pass, recorded when something changes, not every pass: each action
/// carried out (or failed), a new set of blockers while a step waits, an operation finishing,
/// and day-2 becoming unable to observe Kafka. Refusals are recorded with the `Degraded`
/// condition's Event.
pub(super) async fn publish_day2_events(
    kc: &KafkaCluster,
    ctx: &Context,
    day2: &Day2Outcome,
    previous: &KafkaClusterStatus,
    status: &KafkaClusterStatus,
) {
    let (decision, failed) = match day2 {
        Day2Outcome::Decided { decision, failed } => (decision, failed),
        Day2Outcome::Unavailable(e) => {
            let was = find_condition(&previous.conditions, DAY2_CONDITION)
                .is_some_and(|c| c.reason == "KafkaUnreachable");
            if !was {
                let note = format!("day-2 operations wait: {e}");
                ctx.publish(
                    kc,
                    EventType::Warning,
                    "KafkaUnreachable",
                    "Observe",
                    Some(note),
                )
                .await;
            }
            return;
        }
        Day2Outcome::NotRun => return,
    };
    if let Some(e) = failed {
        ctx.publish(
            kc,
            EventType::Warning,
            "Day2ActionFailed",
            action_name(decision),
            Some(e.clone()),
        )
        .await;
        return;
    }
    let note = Some(decision.message.clone());
    match &decision.action {
        Day2Action::Wait => {
            let keys = |b: &[String]| -> Vec<String> {
                b.iter().map(|l| blocker_key(l).to_owned()).collect()
            };
            if keys(&status.operation.blockers) != keys(&previous.operation.blockers) {
                ctx.publish(kc, EventType::Normal, "Waiting", "Day2", note)
                    .await;
            }
        }
        Day2Action::None => {
            let day2_kinds = [
                OperationKind::Commissioning,
                OperationKind::Draining,
                OperationKind::Rolling,
            ];
            if day2_kinds.contains(&previous.operation.kind) {
                ctx.publish(kc, EventType::Normal, "OperationFinished", "Day2", note)
                    .await;
            }
        }
        Day2Action::Refuse { .. } => {}
        _ => {
            ctx.publish(kc, EventType::Normal, action_name(decision), "Day2", note)
                .await;
        }
    }
}

/// The Event reason of an action.
fn action_name(d: &Decision) -> &'static str {
    match d.action {
        Day2Action::None => "None",
        Day2Action::Wait => "Waiting",
        Day2Action::Refuse { .. } => "Refused",
        Day2Action::Cordon { .. } => "Cordoned",
        Day2Action::Uncordon { .. } => "Uncordoned",
        Day2Action::Reassign { .. } => "Reassigning",
        Day2Action::ClearThrottle => "ThrottleCleared",
        Day2Action::ScaleBrokers { .. } => "ScaledBrokers",
        Day2Action::Unregister { .. } => "Unregistered",
        Day2Action::RestartPod { .. } => "RestartingPod",
        Day2Action::ElectLeaders { .. } => "LeadersElected",
    }
}

/// The admin client, once a broker pod is ready (before that there is nothing to ask).
pub(super) async fn connect_admin(
    ctx: &Context,
    vc: &ValidatedCluster,
    pods: &[Pod],
) -> std::result::Result<Box<dyn KafkaAdmin>, String> {
    let broker_prefix = format!("{}-{}-", vc.name, vc.broker_pool().role.suffix());
    let any_broker_ready = pods
        .iter()
        .any(|p| pod_ready(p) && p.name_any().starts_with(&broker_prefix));
    if !any_broker_ready {
        return Err("no broker pod is ready".to_owned());
    }
    let bootstrap = ctx.bootstrap_for(vc);
    ctx.admin
        .connect(&bootstrap)
        .await
        .map_err(|e| format!("cannot connect to {bootstrap}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::day2::{Day2Action, Day2State, ReportedOperation};

    #[test]
    fn blocked_seconds_count_from_when_the_step_started_waiting() {
        let mut d = Decision {
            action: Day2Action::Wait,
            state: Day2State::default(),
            operation: ReportedOperation::Rolling,
            message: String::new(),
            blocked: Vec::new(),
            skipped: Vec::new(),
            done: 0,
            total: 0,
            bytes: None,
        };
        assert_eq!(blocked_seconds(&d, "2026-12-04T12:30:00Z"), 0);
        d.state.blocked_since = Some("2026-12-04T12:00:00Z".into());
        assert_eq!(blocked_seconds(&d, "2026-12-04T12:30:00Z"), 1800);
        assert_eq!(blocked_seconds(&d, "not a time"), 0);
    }
}
