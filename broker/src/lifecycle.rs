//! The broker side of the lifecycle: registration with the active controller (BrokerRegistration,
//! fenced, with a fresh incarnation id), heartbeats every `broker.heartbeat.interval.ms`
//! (BrokerHeartbeat carrying the applied metadata index), and the controlled shutdown SIGTERM
//! starts (heartbeats with `want_shut_down` until the controller says every leadership moved).
//!
//! Ready means: registered, unfenced, caught up with the metadata log, and a heartbeat answered
//! within `broker.session.timeout.ms`; it becomes false again when any of that stops holding.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::broker_registration_request::Listener;
use kafka_protocol::messages::{BrokerHeartbeatRequest, BrokerId, BrokerRegistrationRequest};
use kafka_protocol::ResponseError;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::api::s;
use crate::config::BrokerConfig;
use crate::metadata::channel::ControllerChannel;
use crate::metadata::controller::api::{BROKER_HEARTBEAT_VERSION, BROKER_REGISTRATION_VERSION};
use crate::metadata::controller::lifecycle::led_by;
use crate::metadata::{ApiError, MetadataFollower};

/// Heartbeat period while fenced or catching up, so a starting broker is unfenced quickly.
const EAGER_HEARTBEAT: Duration = Duration::from_millis(100);

/// This broker's registration and session.
pub struct BrokerLifecycle {
    node_id: i32,
    cluster_id: String,
    incarnation_id: Uuid,
    host: String,
    port: u16,
    rack: Option<String>,
    heartbeat_interval: Duration,
    session_timeout: Duration,
    shutdown_timeout: Duration,
    channel: Arc<ControllerChannel>,
    follower: Arc<MetadataFollower>,
    /// The broker epoch of the current registration (-1: none).
    epoch: AtomicI64,
    fenced: AtomicBool,
    caught_up: watch::Sender<bool>,
    last_answer: Mutex<Option<Instant>>,
    shutting_down: AtomicBool,
    may_shut_down: watch::Sender<bool>,
    wake: Notify,
}

impl BrokerLifecycle {
    /// The lifecycle of this broker, advertised at `host:port`.
    pub fn new(
        config: &BrokerConfig,
        cluster_id: String,
        host: String,
        port: u16,
        channel: Arc<ControllerChannel>,
        follower: Arc<MetadataFollower>,
    ) -> Self {
        BrokerLifecycle {
            node_id: config.node_id,
            cluster_id,
            incarnation_id: Uuid::new_v4(),
            host,
            port,
            rack: config.get("broker.rack").map(|(v, _)| v.to_owned()),
            heartbeat_interval: config.heartbeat_interval,
            session_timeout: config.session_timeout,
            shutdown_timeout: config.controlled_shutdown_timeout,
            channel,
            follower,
            epoch: AtomicI64::new(-1),
            fenced: AtomicBool::new(true),
            caught_up: watch::channel(false).0,
            last_answer: Mutex::new(None),
            shutting_down: AtomicBool::new(false),
            may_shut_down: watch::channel(false).0,
            wake: Notify::new(),
        }
    }

    /// Whether the broker should receive traffic (`/readyz`).
    pub fn ready(&self) -> bool {
        let answered = self
            .last_answer
            .lock()
            .expect("lifecycle lock poisoned")
            .is_some_and(|t| t.elapsed() < self.session_timeout);
        self.epoch.load(Ordering::Acquire) >= 0
            && !self.fenced.load(Ordering::Acquire)
            && *self.caught_up.borrow()
            && answered
            && !self.shutting_down.load(Ordering::Acquire)
    }

    /// The broker epoch of the current registration (-1: none).
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether the broker has caught up with the metadata log since it started.
    pub fn caught_up_once(&self) -> bool {
        *self.caught_up.borrow()
    }

    /// Waits until the broker has caught up with the metadata log once.
    pub async fn wait_caught_up(&self) {
        let mut rx = self.caught_up.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Registers (retrying while no controller answers or the old registration is still
    /// alive), then keeps the session with heartbeats in a task of its own. Refusals that
    /// retrying cannot fix (another cluster) are returned.
    pub async fn register(self: &Arc<Self>) -> Result<(), ApiError> {
        self.register_once_or_retry().await?;
        tokio::spawn(self.clone().heartbeats());
        Ok(())
    }

    async fn register_once_or_retry(&self) -> Result<(), ApiError> {
        let mut last_log = Instant::now() - Duration::from_secs(10);
        loop {
            match self.try_register().await {
                Ok(epoch) => {
                    self.epoch.store(epoch, Ordering::Release);
                    self.fenced.store(true, Ordering::Release);
                    tracing::info!(
                        broker = self.node_id,
                        epoch,
                        "registered with the controller"
                    );
                    return Ok(());
                }
                Err(e) if e.code == ResponseError::InconsistentClusterId => return Err(e),
                Err(e) => {
                    if last_log.elapsed() >= Duration::from_secs(5) {
                        last_log = Instant::now();
                        tracing::warn!(broker = self.node_id, code = ?e.code, error = %e.message, "registration failed; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    async fn try_register(&self) -> Result<i64, ApiError> {
        let req = BrokerRegistrationRequest::default()
            .with_broker_id(BrokerId(self.node_id))
            .with_cluster_id(s(self.cluster_id.clone()))
            .with_incarnation_id(self.incarnation_id)
            .with_listeners(vec![Listener::default()
                .with_name(s("PLAINTEXT"))
                .with_host(s(self.host.clone()))
                .with_port(self.port)
                .with_security_protocol(0)])
            .with_rack(self.rack.clone().map(s))
            .with_previous_broker_epoch(self.epoch.load(Ordering::Acquire));
        let resp = self
            .channel
            .call(BROKER_REGISTRATION_VERSION, req, Duration::from_secs(5))
            .await?;
        if resp.error_code != 0 {
            let code = ResponseError::try_from_code(resp.error_code)
                .unwrap_or(ResponseError::UnknownServerError);
            return Err(ApiError::new(code, self.refusal(code)));
        }
        Ok(resp.broker_epoch)
    }

    /// What a registration refusal means (BrokerRegistration carries only a code).
    fn refusal(&self, code: ResponseError) -> String {
        match code {
            ResponseError::DuplicateBrokerRegistration => format!(
                "DuplicateBrokerRegistration: another process with node.id {} is registered and \
                 heartbeating (or this broker's previous incarnation's session has not expired yet)",
                self.node_id
            ),
            ResponseError::InconsistentClusterId => format!(
                "InconsistentClusterId: this broker belongs to cluster {}, the controllers to another",
                self.cluster_id
            ),
            other => format!("{other:?}"),
        }
    }

    async fn heartbeat(&self) -> Result<(), ApiError> {
        let want_shut_down = self.shutting_down.load(Ordering::Acquire);
        let applied = self.follower.applied_index();
        let req = BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(self.node_id))
            .with_broker_epoch(self.epoch.load(Ordering::Acquire))
            .with_current_metadata_offset(i64::try_from(applied).unwrap_or(i64::MAX))
            .with_want_shut_down(want_shut_down);
        let resp = self
            .channel
            .call(BROKER_HEARTBEAT_VERSION, req, self.session_timeout)
            .await?;
        if resp.error_code != 0 {
            let code = ResponseError::try_from_code(resp.error_code)
                .unwrap_or(ResponseError::UnknownServerError);
            return Err(ApiError::new(code, format!("{code:?}")));
        }
        *self.last_answer.lock().expect("lifecycle lock poisoned") = Some(Instant::now());
        let was_fenced = self.fenced.swap(resp.is_fenced, Ordering::AcqRel);
        if was_fenced != resp.is_fenced {
            tracing::info!(
                broker = self.node_id,
                fenced = resp.is_fenced,
                "broker fencing changed"
            );
        }
        if resp.is_caught_up {
            self.caught_up
                .send_if_modified(|c| !std::mem::replace(c, true));
        }
        if want_shut_down && resp.should_shut_down {
            self.may_shut_down.send_replace(true);
        }
        Ok(())
    }

    async fn heartbeats(self: Arc<Self>) {
        loop {
            match self.heartbeat().await {
                Ok(()) => {}
                Err(e)
                    if e.code == ResponseError::StaleBrokerEpoch
                        || e.code == ResponseError::BrokerIdNotRegistered =>
                {
                    tracing::warn!(broker = self.node_id, error = %e.message, "registration lost; registering again");
                    self.fenced.store(true, Ordering::Release);
                    if let Err(e) = self.register_once_or_retry().await {
                        tracing::error!(error = %e.message, "registration refused");
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(broker = self.node_id, error = %e.message, "heartbeat failed")
                }
            }
            if *self.may_shut_down.borrow() {
                return;
            }
            let eager = self.fenced.load(Ordering::Acquire)
                || !*self.caught_up.borrow()
                || self.shutting_down.load(Ordering::Acquire);
            let pause = if eager {
                EAGER_HEARTBEAT
            } else {
                self.heartbeat_interval
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Asks the controller to move this broker's leaderships away and waits until it says
    /// they have (or `controlled.shutdown.timeout.ms` passes: then says which partitions this
    /// broker still leads, and returns anyway).
    pub async fn controlled_shutdown(&self) {
        if self.epoch.load(Ordering::Acquire) < 0 {
            return;
        }
        self.shutting_down.store(true, Ordering::Release);
        self.wake.notify_one();
        let started = Instant::now();
        let mut rx = self.may_shut_down.subscribe();
        let done = tokio::time::timeout(self.shutdown_timeout, rx.wait_for(|d| *d)).await;
        match done {
            Ok(_) => tracing::info!(
                broker = self.node_id,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "controlled shutdown complete"
            ),
            Err(_) => tracing::warn!(
                broker = self.node_id,
                timeout_ms = self.shutdown_timeout.as_millis() as u64,
                still_leading = ?led_by(&self.follower.image(), self.node_id),
                "controlled shutdown timed out; stopping anyway"
            ),
        }
    }
}
