//! The broker process: wires configuration, the metadata quorum, the replica manager, the Kafka
//! listener and the HTTP endpoint together, runs the background tasks, and stops cleanly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::metadata::controller::StartError;
use crate::metadata::records::BrokerRegistration;
use crate::metadata::{Controller, NewTopic, QuorumConfig};
use crate::metrics::Metrics;
use crate::producer_ids::ProducerIdManager;
use crate::replica::ReplicaManager;
use crate::{http, meta_properties, server};

/// Shared state every request handler sees.
pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub controller: Arc<Controller>,
    pub replicas: ReplicaManager,
    pub metrics: Metrics,
    pub producer_ids: ProducerIdManager,
    /// The group coordinator for the `__consumer_offsets` partitions led here.
    pub groups: Arc<crate::group::GroupCoordinator>,
    /// True once registered and caught up with metadata (`/readyz`).
    pub ready: AtomicBool,
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("failed to prepare log directory {path}")]
    LogDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open the logs")]
    Logs(#[from] tributary_log::LogError),
    #[error("failed to start the metadata quorum")]
    Quorum(#[from] StartError),
    #[error("metadata quorum did not elect a leader within {0:?}")]
    NoQuorum(Duration),
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
        for r in self.controller.create_topics(topics, false).await {
            if let Err(e) = r {
                if e.code != kafka_protocol::ResponseError::TopicAlreadyExists {
                    warn!(error = %e.message, "auto-creating topic failed");
                }
            }
        }
        self.sync_replicas().await;
    }

    /// Brings the hosted partitions in line with the current metadata image.
    pub async fn sync_replicas(&self) {
        self.replicas.sync(&self.controller.image()).await;
    }
}

/// A running broker and the handles to stop it.
pub struct Running {
    pub broker: Arc<Broker>,
    pub kafka_addr: std::net::SocketAddr,
    pub http_addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

/// Starts a broker: metadata quorum, logs, registration, listeners, background tasks.
pub async fn start(config: BrokerConfig) -> Result<Running, BrokerError> {
    let started = Instant::now();
    let dir = config.log_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| BrokerError::LogDir {
        path: dir.clone(),
        source,
    })?;
    let cluster_id = meta_properties::load_or_create(&dir, config.node_id).map_err(|source| {
        BrokerError::LogDir {
            path: dir.clone(),
            source,
        }
    })?;
    let controller = Controller::start(QuorumConfig {
        node_id: config.node_id,
        dir: dir.join(format!("{}-0", crate::replica::METADATA_TOPIC)),
        voters: config.controller_voters.clone(),
    })
    .await?;
    let wait = Duration::from_secs(30);
    if !controller.wait_caught_up(wait).await {
        return Err(BrokerError::NoQuorum(wait));
    }
    let replicas = ReplicaManager::open(&config)?;
    let kafka = server::bind(config.listener)
        .await
        .map_err(|source| BrokerError::Bind {
            what: "kafka listener",
            addr: config.listener,
            source,
        })?;
    let kafka_addr = kafka.local_addr().map_err(|source| BrokerError::Bind {
        what: "kafka listener",
        addr: config.listener,
        source,
    })?;
    let http_listener = tokio::net::TcpListener::bind(config.http_listener)
        .await
        .map_err(|source| BrokerError::Bind {
            what: "http listener",
            addr: config.http_listener,
            source,
        })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| BrokerError::Bind {
            what: "http listener",
            addr: config.http_listener,
            source,
        })?;
    // An advertised port of 0 means "whatever we bound" (tests bind port 0).
    let (host, port) = config.advertised.clone();
    let port = if port == 0 { kafka_addr.port() } else { port };
    controller
        .register_broker(BrokerRegistration {
            broker_id: config.node_id,
            incarnation_id: Uuid::new_v4(),
            host,
            port,
            rack: config.get("broker.rack").map(|(v, _)| v.to_owned()),
        })
        .await
        .map_err(|e| BrokerError::Register(e.message))?;
    let group_config = crate::group::GroupConfig::from_broker(&config);
    let broker = Arc::new_cyclic(|me| Broker {
        groups: crate::group::GroupCoordinator::new(
            group_config,
            Arc::new(crate::group::storage::ReplicaGroupLog::new(me.clone())),
        ),
        config,
        cluster_id,
        controller,
        replicas,
        metrics: Metrics::default(),
        producer_ids: ProducerIdManager::default(),
        ready: AtomicBool::new(false),
    });
    broker.sync_replicas().await;
    crate::group::storage::follow_leadership(&broker);
    broker.ready.store(true, Ordering::Release);
    info!(elapsed_ms = started.elapsed().as_millis() as u64, kafka = %kafka_addr, http = %http_addr, "broker ready");

    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(server::serve(kafka, broker.clone(), stop_rx.clone()));
    tasks.spawn(http::serve(http_listener, broker.clone(), stop_rx.clone()));
    tasks.spawn(follow_metadata(broker.clone(), stop_rx.clone()));
    tasks.spawn(crate::group::coordinator::run_timers(
        broker.groups.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(housekeeping(broker.clone(), stop_rx));
    Ok(Running {
        broker,
        kafka_addr,
        http_addr,
        stop,
        tasks,
    })
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, flushes and closes the logs.
    pub async fn shutdown(mut self) {
        info!("shutting down");
        self.broker.ready.store(false, Ordering::Release);
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        let broker = self.broker.clone();
        let _ = tokio::task::spawn_blocking(move || broker.replicas.shutdown()).await;
        self.broker.controller.shutdown().await;
        info!("stopped");
    }
}

/// Applies every new metadata image to the hosted partitions.
async fn follow_metadata(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut images = broker.controller.subscribe();
    loop {
        tokio::select! {
            changed = images.changed() => {
                if changed.is_err() { return; }
                broker.sync_replicas().await;
                crate::group::storage::on_metadata(&broker).await;
            }
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
