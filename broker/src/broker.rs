//! A Tributary node: wires configuration, the metadata follower, the controller quorum
//! (controller role), the replica manager, the Kafka listener and the broker lifecycle (broker
//! role) and the HTTP endpoint together, runs the background tasks, and stops cleanly — for a
//! broker, after a controlled shutdown has moved its leaderships away.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::BrokerConfig;
use crate::lifecycle::BrokerLifecycle;
use crate::metadata::channel::ControllerChannel;
use crate::metadata::controller::LifecycleConfig;
use crate::metadata::listener::{self, ControllerContext};
use crate::metadata::quorum::{Quorum, QuorumConfig, StartError};
use crate::metadata::{MetadataFollower, MetadataImage, NewTopic, QuorumController};
use crate::metrics::Metrics;
use crate::producer_ids::ProducerIdManager;
use crate::replica::ReplicaManager;
use crate::{http, meta_properties, server};

pub use crate::health::Health;

/// Shared state every request handler sees (broker role).
pub struct Broker {
    pub config: BrokerConfig,
    /// The committed metadata as this node has applied it.
    pub metadata: Arc<MetadataFollower>,
    /// The way to the active controller.
    pub channel: Arc<ControllerChannel>,
    pub replicas: Arc<ReplicaManager>,
    pub metrics: Metrics,
    /// Open connections of the Kafka listener and its limits.
    pub connections: Arc<crate::server::limits::ConnectionTracker>,
    pub producer_ids: ProducerIdManager,
    /// The group coordinator for the `__consumer_offsets` partitions led here.
    pub groups: Arc<crate::group::GroupCoordinator>,
    /// Registration, heartbeats, fencing state.
    pub lifecycle: Arc<BrokerLifecycle>,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("failed to prepare log directory {path}")]
    LogDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    MetaProperties(#[from] crate::meta_properties::MetaPropertiesError),
    #[error("failed to open the logs")]
    Logs(#[from] tributary_log::LogError),
    #[error("failed to start the metadata quorum")]
    Quorum(#[source] Box<StartError>),
    #[error("{0}")]
    ClusterId(String),
    #[error("failed to register this broker: {0}")]
    Register(String),
    #[error("failed to bind {what} on {addr}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl Broker {
    /// The cluster id (from the metadata log).
    pub fn cluster_id(&self) -> String {
        self.metadata.image().cluster_id.clone().unwrap_or_default()
    }

    /// The controller id given to clients: the active controller when it is also a broker
    /// they can reach, else an unfenced broker (as Kafka in KRaft mode does), else -1.
    pub fn controller_id_for_clients(&self) -> i32 {
        let image = self.metadata.image();
        let usable = |id: i32| image.brokers.get(&id).is_some_and(|b| !b.fenced);
        match self.channel.leader().filter(|l| usable(*l)) {
            Some(l) => l,
            None => image
                .brokers
                .values()
                .find(|b| !b.fenced)
                .map_or(-1, |b| b.broker_id),
        }
    }

    /// Creates topics that a client asked for by name (auto-creation), with broker defaults.
    pub async fn auto_create_topics(&self, names: Vec<String>) {
        if names.is_empty() {
            return;
        }
        let topics = names
            .into_iter()
            .map(|name| NewTopic {
                name,
                num_partitions: self.config.num_partitions,
                replication_factor: self.config.default_replication_factor,
                assignments: Default::default(),
                configs: Default::default(),
            })
            .collect();
        for (name, code, message) in self.create_topics(topics).await {
            if code != 0 && code != kafka_protocol::ResponseError::TopicAlreadyExists.code() {
                warn!(topic = %name, code, error = ?message, "auto-creating topic failed");
            }
        }
    }

    /// Creates topics through the active controller and waits (bounded) until this node's
    /// image has them; returns each topic's error code and message.
    pub async fn create_topics(&self, topics: Vec<NewTopic>) -> Vec<(String, i16, Option<String>)> {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(topics.iter().map(creatable).collect());
        let names: Vec<String> = topics.into_iter().map(|t| t.name).collect();
        let resp = self.channel.call(7, req, Duration::from_secs(30)).await;
        let results: Vec<(String, i16, Option<String>)> = match resp {
            Ok(r) => r
                .topics
                .iter()
                .map(|t| {
                    let msg = t.error_message.as_ref().map(ToString::to_string);
                    (t.name.0.to_string(), t.error_code, msg)
                })
                .collect(),
            Err(e) => names
                .iter()
                .map(|n| (n.clone(), e.code.code(), Some(e.message.clone())))
                .collect(),
        };
        let ok: Vec<String> = results
            .iter()
            .filter(|r| r.1 == 0)
            .map(|r| r.0.clone())
            .collect();
        self.await_metadata(|image| ok.iter().all(|n| image.topics.contains_key(n)))
            .await;
        results
    }

    /// Waits (at most a few seconds) until this node's image satisfies `done`, then brings
    /// the hosted partitions in line with it. Used after forwarding a change to the
    /// controller, so that a client sees its own change on this broker.
    pub async fn await_metadata(&self, done: impl Fn(&MetadataImage) -> bool) {
        let mut rx = self.metadata.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while !done(&rx.borrow_and_update()) {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        if self.lifecycle.caught_up_once() {
            self.sync_replicas().await;
        }
    }

    /// Brings the hosted partitions in line with what changed in the metadata.
    pub async fn sync_replicas(&self) {
        self.replicas.sync_changes(&self.metadata).await;
    }
}

fn creatable(t: &NewTopic) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(TopicName(crate::api::s(t.name.clone())))
        .with_num_partitions(t.num_partitions)
        .with_replication_factor(t.replication_factor)
        .with_configs(
            t.configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(crate::api::s(k.clone()))
                        .with_value(Some(crate::api::s(v.clone())))
                })
                .collect(),
        )
}

/// A running node and the handles to stop it.
pub struct Running {
    pub broker: Option<Arc<Broker>>,
    pub controller: Option<Arc<QuorumController>>,
    pub health: Arc<Health>,
    pub kafka_addr: Option<std::net::SocketAddr>,
    pub http_addr: std::net::SocketAddr,
    pub controller_addr: Option<std::net::SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
    /// Tasks that must outlive the broker's own (quorum, metadata following).
    infra: tokio::task::JoinSet<()>,
    infra_stop: watch::Sender<bool>,
}

fn bind_err(
    what: &'static str,
    addr: std::net::SocketAddr,
) -> impl Fn(std::io::Error) -> BrokerError {
    move |source| BrokerError::Bind { what, addr, source }
}

/// Starts a node in its roles: controller quorum and listener, metadata following, and for a
/// broker the logs, registration, Kafka listener and background tasks.
pub async fn start(config: BrokerConfig) -> Result<Running, BrokerError> {
    let started = Instant::now();
    let dir = config.log_dir.clone();
    let dir_err = |source| BrokerError::LogDir {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(dir_err)?;
    let stored_cluster_id = meta_properties::load(&dir, config.node_id)?;
    if let (Some(stored), Some(set)) = (&stored_cluster_id, &config.cluster_id) {
        if stored != set {
            return Err(BrokerError::ClusterId(format!(
                "cluster.id is set to {set}, but {} belongs to cluster {stored}; \
                 set cluster.id={stored} (or remove it), or give this node an empty log directory",
                dir.join("meta.properties").display()
            )));
        }
    }
    let health = Arc::new(Health {
        is_broker: config.is_broker,
        ..Default::default()
    });
    let http_listener = tokio::net::TcpListener::bind(config.http_listener)
        .await
        .map_err(bind_err("http listener", config.http_listener))?;
    let http_addr = http_listener
        .local_addr()
        .map_err(bind_err("http listener", config.http_listener))?;
    let follower = Arc::new(MetadataFollower::new(
        usize::try_from(config.metadata_snapshot_interval).unwrap_or(usize::MAX),
    ));
    let _ = health.follower.set(follower.clone());
    let (infra_stop, infra_rx) = watch::channel(false);
    let mut infra = tokio::task::JoinSet::new();
    infra.spawn(http::serve(http_listener, health.clone(), infra_rx.clone()));

    let (controller, controller_addr) = match config.controller_listener {
        Some(addr) => {
            let l = listener::bind(addr)
                .await
                .map_err(bind_err("controller listener", addr))?;
            let bound = l
                .local_addr()
                .map_err(bind_err("controller listener", addr))?;
            let quorum = Quorum::start(
                QuorumConfig {
                    node_id: config.node_id,
                    dir: dir.join(format!("{}-0", crate::replica::METADATA_TOPIC)),
                    voters: config.controller_voters.clone(),
                    snapshot_interval: config.metadata_snapshot_interval,
                },
                follower.clone(),
            )
            .await
            .map_err(|e| BrokerError::Quorum(Box::new(e)))?;
            let proposed = stored_cluster_id
                .clone()
                .or_else(|| config.cluster_id.clone())
                .unwrap_or_else(meta_properties::new_cluster_id);
            let ctl = QuorumController::new(
                quorum,
                follower.clone(),
                LifecycleConfig {
                    session_timeout: config.session_timeout,
                    leader_rebalance_interval: config.leader_rebalance_interval,
                    leader_imbalance_percentage: config.leader_imbalance_percentage,
                    unclean_leader_election: config
                        .get("unclean.leader.election.enable")
                        .is_some_and(|(v, _)| v.trim().eq_ignore_ascii_case("true")),
                },
                proposed,
            );
            let ctx = Arc::new(ControllerContext {
                controller: ctl.clone(),
                follower: follower.clone(),
                config: config.clone(),
            });
            infra.spawn(listener::serve(l, ctx, infra_rx.clone()));
            infra.spawn(ctl.clone().run(infra_rx.clone()));
            let _ = health.controller.set(ctl.clone());
            infra.spawn(watch_quorum(ctl.clone(), health.clone(), infra_rx.clone()));
            (Some(ctl), Some(bound))
        }
        None => {
            infra.spawn(crate::metadata::follower::follow_remote(
                follower.clone(),
                config.node_id,
                config.controller_voters.clone(),
                infra_rx.clone(),
            ));
            (None, None)
        }
    };

    let cluster_id = wait_cluster_id(&follower, &config).await;
    check_cluster_id(&config, stored_cluster_id.as_deref(), &cluster_id)?;
    // Rewritten at every start: a log directory that cannot be written (a full disk) stops
    // the start here, with a clear error, rather than at the first metadata write.
    meta_properties::store(&dir, config.node_id, &cluster_id)?;

    let channel = Arc::new(ControllerChannel::new(
        &config,
        controller.clone(),
        follower.clone(),
    ));
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut kafka_addr = None;
    let mut broker_handle = None;
    if config.is_broker {
        let (broker, addr, kafka) =
            start_broker(config.clone(), follower.clone(), channel, cluster_id).await?;
        let _ = health.broker.set(broker.clone());
        tasks.spawn(server::serve(kafka, broker.clone(), stop_rx.clone()));
        tasks.spawn(follow_metadata(broker.clone(), stop_rx.clone()));
        tasks.spawn(crate::group::coordinator::run_timers(
            broker.groups.clone(),
            stop_rx.clone(),
        ));
        tasks.spawn(housekeeping(broker.clone(), stop_rx.clone()));
        tasks.spawn(crate::replica::isr_manager::run(
            broker.clone(),
            stop_rx.clone(),
        ));
        kafka_addr = Some(addr);
        broker_handle = Some(broker);
    }
    info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        kafka = ?kafka_addr,
        controller = ?controller_addr,
        http = %http_addr,
        "node started"
    );
    Ok(Running {
        broker: broker_handle,
        controller,
        health,
        kafka_addr,
        http_addr,
        controller_addr,
        stop,
        tasks,
        infra,
        infra_stop,
    })
}

/// Waits for the cluster id in the committed metadata, saying every few seconds what it waits
/// for (an unreachable quorum never fails the start: the node keeps trying, not ready).
async fn wait_cluster_id(follower: &MetadataFollower, config: &BrokerConfig) -> String {
    let mut rx = follower.subscribe();
    let mut last_log = Instant::now();
    loop {
        if let Some(id) = rx.borrow_and_update().cluster_id.clone() {
            return id;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
        if last_log.elapsed() >= Duration::from_secs(5) {
            last_log = Instant::now();
            warn!(
                voters = %config
                    .controller_voters
                    .iter()
                    .map(|(i, a)| format!("{i}@{a}"))
                    .collect::<Vec<_>>()
                    .join(","),
                "waiting for the controller quorum (controller.quorum.voters): no committed metadata yet"
            );
        }
    }
}

fn check_cluster_id(
    config: &BrokerConfig,
    stored: Option<&str>,
    actual: &str,
) -> Result<(), BrokerError> {
    if let Some(stored) = stored.filter(|s| *s != actual) {
        return Err(BrokerError::ClusterId(format!(
            "{} belongs to cluster {stored}, but the controller quorum ({}) is cluster {actual}; \
             point this node at its own cluster or give it an empty log directory",
            config.log_dir.join("meta.properties").display(),
            config
                .controller_voters
                .iter()
                .map(|(i, a)| format!("{i}@{a}"))
                .collect::<Vec<_>>()
                .join(",")
        )));
    }
    if let Some(set) = config.cluster_id.as_deref().filter(|s| *s != actual) {
        return Err(BrokerError::ClusterId(format!(
            "cluster.id is {set}, but the controller quorum is cluster {actual}; \
             set cluster.id={actual} (or remove it), or point controller.quorum.voters at cluster {set}"
        )));
    }
    Ok(())
}

async fn start_broker(
    config: BrokerConfig,
    follower: Arc<MetadataFollower>,
    channel: Arc<ControllerChannel>,
    cluster_id: String,
) -> Result<(Arc<Broker>, std::net::SocketAddr, tokio::net::TcpListener), BrokerError> {
    let replicas = ReplicaManager::open(&config)?;
    replicas.fetchers.set_metadata(follower.clone());
    let kafka = server::bind(config.listener)
        .await
        .map_err(bind_err("kafka listener", config.listener))?;
    let kafka_addr = kafka
        .local_addr()
        .map_err(bind_err("kafka listener", config.listener))?;
    // An advertised port of 0 means "whatever we bound" (tests bind port 0).
    let (host, port) = config.advertised.clone();
    let port = if port == 0 { kafka_addr.port() } else { port };
    let lifecycle = Arc::new(BrokerLifecycle::new(
        &config,
        cluster_id,
        host,
        port,
        channel.clone(),
        follower.clone(),
    ));
    lifecycle
        .register()
        .await
        .map_err(|e| BrokerError::Register(e.message))?;
    let group_config = crate::group::GroupConfig::from_broker(&config);
    let connections =
        crate::server::limits::ConnectionTracker::new(config.connection_limits.clone());
    let broker = Arc::new_cyclic(|me| Broker {
        groups: crate::group::GroupCoordinator::new(
            group_config,
            Arc::new(crate::group::storage::ReplicaGroupLog::new(me.clone())),
        ),
        config,
        metadata: follower,
        channel,
        replicas: Arc::new(replicas),
        metrics: Metrics::default(),
        connections,
        producer_ids: ProducerIdManager::default(),
        lifecycle,
    });
    Ok((broker, kafka_addr, kafka))
}

impl Running {
    /// Stops the node: a broker first completes a controlled shutdown (bounded by
    /// `controlled.shutdown.timeout.ms`), then stops accepting, lets in-flight requests finish,
    /// flushes and closes the logs; the quorum stops last.
    pub async fn shutdown(mut self) {
        info!("shutting down");
        self.health.stopping.store(true, Ordering::Release);
        if let Some(b) = &self.broker {
            b.lifecycle.controlled_shutdown().await;
        }
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        if let Some(b) = self.broker.clone() {
            let _ = tokio::task::spawn_blocking(move || b.replicas.shutdown()).await;
        }
        let _ = self.infra_stop.send(true);
        while self.infra.join_next().await.is_some() {}
        if let Some(c) = &self.controller {
            c.shutdown().await;
        }
        info!("stopped");
    }
}

/// Tracks whether the quorum has a leader (`/readyz` of a controller-only node).
async fn watch_quorum(
    ctl: Arc<QuorumController>,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) {
    let mut metrics = ctl.quorum().raft().metrics();
    let mut last_leader = None;
    loop {
        if let Err(fatal) = &metrics.borrow().running_state {
            health.fail(format!("the metadata quorum stopped: {fatal}"));
            return;
        }
        let leader = metrics.borrow_and_update().current_leader;
        health
            .controller_ready
            .store(leader.is_some(), Ordering::Release);
        if leader != last_leader {
            info!(leader = ?leader, "metadata quorum leader");
            last_leader = leader;
        }
        tokio::select! {
            r = metrics.changed() => if r.is_err() {
                if !health.stopping.load(Ordering::Acquire) {
                    health.fail("the metadata quorum stopped".to_owned());
                }
                return;
            },
            _ = stop.changed() => return,
        }
    }
}

/// Applies every new metadata image to the hosted partitions, once this broker has caught up
/// with the metadata log (before that, an image may lack topics that exist, and their logs
/// must not be mistaken for strays).
async fn follow_metadata(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    tokio::select! {
        _ = broker.lifecycle.wait_caught_up() => {}
        _ = stop.changed() => return,
    }
    let mut images = broker.metadata.subscribe();
    // Once, in full: the image is complete now, so logs it does not know are strays.
    let _ = broker.metadata.take_changes();
    broker.replicas.sync(&broker.metadata.image()).await;
    loop {
        broker.sync_replicas().await;
        crate::group::storage::on_metadata(&broker);
        tokio::select! {
            changed = images.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

/// Retention, log cleaning (compaction) and checkpoints on their intervals.
async fn housekeeping(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut retention = tokio::time::interval(broker.config.retention_check_interval);
    let mut checkpoint = tokio::time::interval(Duration::from_secs(5));
    let mut cleaner = tokio::time::interval(broker.config.cleaner_backoff);
    loop {
        tokio::select! {
            _ = retention.tick() => {
                let b = broker.clone();
                let now = now_ms();
                let expiration = broker.config.producer_id_expiration_ms;
                let _ = tokio::task::spawn_blocking(move || {
                    b.replicas.run_retention(now);
                    b.replicas.expire_producers(now, expiration);
                })
                .await;
            }
            _ = checkpoint.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.replicas.checkpoint()).await;
            }
            _ = cleaner.tick(), if broker.config.cleaner_enable => {
                let b = broker.clone();
                let now = now_ms();
                let _ = tokio::task::spawn_blocking(move || {
                    let removed = b.replicas.run_cleaner(now);
                    b.metrics.cleaner_run(removed);
                })
                .await;
            }
            _ = stop.changed() => return,
        }
    }
}

/// Wall-clock milliseconds since the epoch (Kafka timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
