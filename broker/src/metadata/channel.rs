//! How a broker reaches the active controller: a local call when this node's own quorum
//! controller is the active one (a combined node), otherwise the same Kafka request sent to the
//! active controller's listener. Requests go where the leader hint points (this node's quorum,
//! or the metadata fetch answers); `NOT_CONTROLLER`, an unreachable node or a timeout moves on
//! to the next voter, with back-off, until the call's deadline.
//!
//! Only a `NOT_CONTROLLER` answer (nothing was done) or a failure before the request was sent
//! is certainly safe to retry; a request lost after it was sent is retried too, which can
//! answer, for example, TOPIC_ALREADY_EXISTS for a topic the lost attempt created (Kafka's
//! forwarding has the same property).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::protocol::Request;
use kafka_protocol::ResponseError;

use super::controller::{ApiError, QuorumController};
use super::follower::MetadataFollower;
use super::rpc::{Conn, RpcError};
use crate::config::BrokerConfig;

/// How long one attempt may wait for an answer from a controller before the channel tries the
/// next one. A paused or partitioned controller accepts connections and never answers, so this
/// bounds how long it can hold a request up (committing a metadata batch takes milliseconds).
/// Never more than a quarter of `broker.session.timeout.ms`: a broker whose heartbeat first
/// went to a controller that was cut off must still reach the new active one within its session.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// A Kafka API that the active controller serves.
pub trait ControllerApi: Request + Clone + Send + Sync + 'static
where
    Self::Response: Send,
{
    /// Serves the request on this node's quorum controller.
    fn serve(
        ctl: &QuorumController,
        cfg: &BrokerConfig,
        req: Self,
        version: i16,
    ) -> impl Future<Output = Self::Response> + Send;

    /// Whether the answer says the node was not the active controller (nothing was done).
    fn not_controller(resp: &Self::Response) -> bool;
}

/// The way to the active controller.
pub struct ControllerChannel {
    node_id: i32,
    local: Option<Arc<QuorumController>>,
    voters: Vec<(i32, String)>,
    follower: Arc<MetadataFollower>,
    config: BrokerConfig,
    /// Idle connections by address.
    idle: Mutex<Vec<Conn>>,
    /// The last address that failed or was not the active controller: the leader hint is not
    /// trusted while it points there (the hint lags a failover).
    last_failed: Mutex<Option<String>>,
}

impl ControllerChannel {
    /// A channel for a node with (`local`) or without a quorum controller of its own.
    pub fn new(
        config: &BrokerConfig,
        local: Option<Arc<QuorumController>>,
        follower: Arc<MetadataFollower>,
    ) -> ControllerChannel {
        ControllerChannel {
            node_id: config.node_id,
            local,
            voters: config.controller_voters.clone(),
            follower,
            config: config.clone(),
            idle: Mutex::new(Vec::new()),
            last_failed: Mutex::new(None),
        }
    }

    /// This node's quorum controller, on controller nodes.
    pub fn local(&self) -> Option<&Arc<QuorumController>> {
        self.local.as_ref()
    }

    /// The active controller as this node knows it.
    pub fn leader(&self) -> Option<i32> {
        match &self.local {
            Some(c) => c.leader(),
            None => self.follower.leader(),
        }
    }

    /// Sends `req` to the active controller, retrying until `timeout` elapses.
    pub async fn call<R: ControllerApi>(
        &self,
        version: i16,
        req: R,
        timeout: Duration,
    ) -> Result<R::Response, ApiError>
    where
        R::Response: Send,
    {
        let deadline = Instant::now() + timeout;
        let mut attempt = 0usize;
        let mut last_error = String::from("no controller answered");
        // Addresses that failed or were not the active controller during this call: not tried
        // again until every voter has been (the leader hint lags a failover).
        let mut failed: Vec<String> = Vec::new();
        loop {
            if let Some(local) = self.local.as_ref().filter(|l| l.is_active()) {
                let resp = R::serve(local, &self.config, req.clone(), version).await;
                if !R::not_controller(&resp) {
                    return Ok(resp);
                }
                last_error = "this node lost the controller role".into();
            } else if let Some(addr) = self.target(attempt, &mut failed) {
                match self.send(&addr, version, &req).await {
                    Ok(resp) if !R::not_controller(&resp) => {
                        *self.last_failed.lock().expect("channel lock poisoned") = None;
                        return Ok(resp);
                    }
                    Ok(_) => last_error = format!("{addr} is not the active controller"),
                    Err(e) => last_error = e.to_string(),
                }
                *self.last_failed.lock().expect("channel lock poisoned") = Some(addr.clone());
                failed.push(addr);
            }
            attempt += 1;
            if Instant::now() >= deadline {
                return Err(ApiError::new(
                    ResponseError::RequestTimedOut,
                    format!("no active controller reached within {timeout:?}: {last_error}"),
                ));
            }
            let pause = Duration::from_millis((25u64 << attempt.min(5)).min(500));
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// Where attempt `n` goes: the known leader first, then the voters in turn, skipping the
    /// addresses in `failed` (this call's failures, and the channel's last one); once every
    /// voter failed, `failed` is cleared and the round starts again.
    fn target(&self, attempt: usize, failed: &mut Vec<String>) -> Option<String> {
        if let Some(last) = self
            .last_failed
            .lock()
            .expect("channel lock poisoned")
            .clone()
        {
            if attempt == 0 && !failed.contains(&last) {
                failed.push(last);
            }
        }
        let reachable = |v: &&(i32, String)| v.0 != self.node_id || self.local.is_none();
        let candidates = |failed: &[String]| -> Vec<(i32, String)> {
            self.voters
                .iter()
                .filter(reachable)
                .filter(|v| !failed.contains(&v.1))
                .cloned()
                .collect()
        };
        let mut left = candidates(failed);
        if left.is_empty() {
            failed.clear();
            left = candidates(failed);
        }
        let hinted = self
            .leader()
            .and_then(|l| left.iter().find(|v| v.0 == l).cloned());
        match hinted {
            Some(v) => Some(v.1),
            None => left.get(attempt % left.len().max(1)).map(|v| v.1.clone()),
        }
    }

    async fn send<R: ControllerApi>(
        &self,
        addr: &str,
        version: i16,
        req: &R,
    ) -> Result<R::Response, RpcError>
    where
        R::Response: Send,
    {
        let pooled = {
            let mut idle = self.idle.lock().expect("channel pool lock poisoned");
            idle.iter()
                .position(|c| c.addr() == addr)
                .map(|i| idle.swap_remove(i))
        };
        let attempt_timeout = ATTEMPT_TIMEOUT.min(self.config.session_timeout / 4);
        let mut conn = match pooled {
            Some(c) => c,
            None => Conn::connect(addr, attempt_timeout).await?,
        };
        let resp = conn.call_kafka(version, req, attempt_timeout).await?;
        let mut idle = self.idle.lock().expect("channel pool lock poisoned");
        if idle.len() < 8 {
            idle.push(conn);
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn channel() -> ControllerChannel {
        let mut config = BrokerConfig::from_properties(BTreeMap::new()).expect("config");
        config.node_id = 101;
        config.controller_voters = vec![
            (1, "a:9093".into()),
            (2, "b:9093".into()),
            (3, "c:9093".into()),
        ];
        let follower = Arc::new(MetadataFollower::new(16));
        follower.set_leader(Some(3));
        ControllerChannel::new(&config, None, follower)
    }

    #[test]
    fn a_call_tries_the_hinted_leader_then_every_other_voter_before_it_again() {
        let ch = channel();
        let mut failed = Vec::new();
        // The hint (a controller that was cut off) first.
        assert_eq!(ch.target(0, &mut failed).as_deref(), Some("c:9093"));
        failed.push("c:9093".into());
        // Then the others, each once, however stale the hint: a voter that is not the active
        // controller does not send the call back to the one that hung.
        let second = ch.target(1, &mut failed).expect("a voter");
        assert_ne!(second, "c:9093");
        failed.push(second.clone());
        let third = ch.target(2, &mut failed).expect("a voter");
        assert!(third != "c:9093" && third != second, "{third}");
        failed.push(third);
        // Every voter failed: a new round, from the hint.
        assert_eq!(ch.target(3, &mut failed).as_deref(), Some("c:9093"));
        assert!(failed.is_empty());
    }

    #[test]
    fn the_channels_last_failure_is_skipped_by_the_next_call() {
        let ch = channel();
        *ch.last_failed.lock().expect("lock") = Some("c:9093".into());
        let mut failed = Vec::new();
        let first = ch.target(0, &mut failed).expect("a voter");
        assert_ne!(first, "c:9093");
    }
}
