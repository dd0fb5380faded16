//! The operator process: logs, HTTP endpoint, optional leader election, and the KafkaCluster and
//! KafkaTopic controllers. Configuration comes from the environment (the Helm chart sets it):
//!
//! - `WATCH_NAMESPACE`: one namespace to watch; empty or unset watches all namespaces
//! - `LEADER_ELECTION` (`true`/`false`, default true), `LEASE_NAME` (default `tributary-operator`),
//!   `POD_NAMESPACE` (where the Lease lives), `POD_NAME` (this replica's identity); the Lease is
//!   released on SIGTERM/SIGINT once the controllers have stopped
//! - `HTTP_ADDR` (default `0.0.0.0:8080`): `/metrics`, `/healthz`, `/readyz`
//! - `KAFKA_BOOTSTRAP_OVERRIDE`: use this bootstrap address for every cluster (operator run
//!   outside Kubernetes' network, e.g. with a port-forward)
//! - `RUST_LOG`: log filter (default `info`)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::runtime::Controller;
use kube::{Api, Client, ResourceExt};
use operator::admin::client::TcpAdminConnector;
use operator::context::Context;
use operator::crd::{KafkaCluster, KafkaTopic};
use operator::runtime::http::{serve, HttpState};
use operator::runtime::leader::LeaderElector;
use operator::runtime::metrics::Metrics;
use operator::{cluster, topic};
use tracing::{error, info, warn};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let metrics = Arc::new(Metrics::default());
    let http_state = Arc::new(HttpState {
        metrics: metrics.clone(),
        ready: AtomicBool::new(false),
    });
    let addr = env("HTTP_ADDR")
        .unwrap_or_else(|| "0.0.0.0:8080".into())
        .parse()
        .context("HTTP_ADDR")?;
    let http = tokio::spawn(serve(addr, http_state.clone()));

    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?;
    client
        .apiserver_version()
        .await
        .context("cannot reach the Kubernetes API server")?;
    http_state.ready.store(true, Ordering::Relaxed);

    // The elector and its renewal task, kept to release the Lease after a clean shutdown.
    let leadership = if env("LEADER_ELECTION").is_none_or(|v| v != "false") {
        let ns = env("POD_NAMESPACE").unwrap_or_else(|| "default".into());
        let me = env("POD_NAME").unwrap_or_else(|| format!("operator-{}", std::process::id()));
        let lease = env("LEASE_NAME").unwrap_or_else(|| "tributary-operator".into());
        let elector = Arc::new(LeaderElector::new(client.clone(), &ns, &lease, &me));
        info!(%lease, %me, "waiting for leadership");
        let since = elector.acquire().await;
        metrics.leader.set(1);
        let holder = elector.clone();
        let renewals = tokio::spawn(async move {
            let lost = holder.hold(since).await;
            error!(
                ?lost,
                "lost leadership; exiting so a fresh process can follow"
            );
            std::process::exit(1);
        });
        Some((elector, renewals))
    } else {
        metrics.leader.set(1);
        None
    };

    let ns = env("WATCH_NAMESPACE");
    let mut ctx = Context::new(client.clone(), Arc::new(TcpAdminConnector), metrics.clone());
    ctx.bootstrap_override = env("KAFKA_BOOTSTRAP_OVERRIDE");
    let ctx = Arc::new(ctx);
    info!(
        namespace = ns.as_deref().unwrap_or("<all>"),
        "starting controllers"
    );
    let wc = watcher::Config::default();
    let owned = watcher::Config::default().labels(operator::cluster::build::CLUSTER_LABEL);
    let clusters = Controller::new(api::<KafkaCluster>(&client, &ns), wc.clone())
        .owns(api::<StatefulSet>(&client, &ns), owned.clone())
        .owns(api::<Service>(&client, &ns), owned.clone())
        .owns(api::<ConfigMap>(&client, &ns), owned.clone())
        .owns(api::<PodDisruptionBudget>(&client, &ns), owned.clone())
        // Pods are the StatefulSets', not the cluster's: a pod's readiness, its deletion or a
        // restart asked for on it (`kafka.tributary.dev/restart`) wakes its cluster by label.
        .watches(api::<Pod>(&client, &ns), owned, |pod| {
            let name = pod
                .labels()
                .get(operator::cluster::build::CLUSTER_LABEL)?
                .clone();
            Some(ObjectRef::<KafkaCluster>::new(&name).within(&pod.namespace()?))
        })
        .shutdown_on_signal()
        .run(
            cluster::reconcile::reconcile,
            cluster::reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                warn!(error = %e, "kafkacluster controller");
            }
        });
    let topics = Controller::new(api::<KafkaTopic>(&client, &ns), wc)
        .shutdown_on_signal()
        .run(
            topic::reconcile::reconcile,
            topic::reconcile::error_policy,
            ctx,
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                warn!(error = %e, "kafkatopic controller");
            }
        });
    tokio::select! {
        _ = futures::future::join(clusters, topics) => info!("controllers stopped"),
        r = http => r.context("http task")?.context("http server")?,
    }
    // Controllers stopped (SIGTERM/SIGINT, after their running reconciles finished): hand the
    // Lease over now rather than making the next replica wait for it to expire.
    if let Some((elector, renewals)) = leadership {
        renewals.abort();
        if let Err(e) = elector.release().await {
            warn!(error = %e, "could not release the Lease; it expires on its own");
        }
    }
    Ok(())
}
