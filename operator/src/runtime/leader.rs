//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas can run and only
//! one reconciles. The rule (`decide`) is pure: take the lease when it is free or expired, renew
//! it while we hold it, follow otherwise. Writes use the Lease's resourceVersion, so two
//! candidates racing for an expired lease cannot both win. A leader steps down (`hold` returns;
//! the binary exits and restarts as a follower) when a renewal finds another holder, or when no
//! renewal has succeeded within `RENEW_DEADLINE` — shorter than `LEASE_DURATION`, so it has
//! stopped before anyone else may take the lease.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::{Error, Result};

/// How long a lease is valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews (well inside the duration); also how often followers retry.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);
/// How soon a leader retries a failed renewal.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// A leader whose last successful renewal began this long ago steps down. Measured from when
/// the renewal was sent (the lease's renewTime is taken then) and below `LEASE_DURATION`, so the
/// leader stops before other candidates consider the lease expired (clock skew aside).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// Why a leader stopped leading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostLeadership {
    /// A renewal found the lease held by someone else (or lost a write race for it).
    Taken,
    /// No renewal succeeded within `RENEW_DEADLINE` (errors or an unresponsive API server).
    RenewalFailed { last_error: String },
}

/// What a candidate should do with the lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Take the lease (absent, unheld or expired); increments transitions.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a live lease.
    Follow { holder: String },
}

/// Decides from the lease's spec (`None` = no lease yet).
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let last = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    let expired = match last {
        Some(t) => t + SignedDuration::from_secs(duration) < now,
        None => true,
    };
    if holder.is_empty() || expired {
        Decision::Acquire
    } else {
        Decision::Follow { holder }
    }
}

/// The lease spec after `decision` by `me` at `now`.
pub fn next_spec(
    previous: Option<&LeaseSpec>,
    decision: &Decision,
    me: &str,
    now: Timestamp,
) -> LeaseSpec {
    let mut spec = previous.cloned().unwrap_or_default();
    if *decision == Decision::Acquire {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions =
            Some(spec.lease_transitions.unwrap_or(0) + i32::from(previous.is_some()));
    }
    spec.holder_identity = Some(me.to_owned());
    spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
    spec.renew_time = Some(MicroTime(now));
    spec
}

/// The wall clock written into the Lease (replaceable in tests).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// A candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    me: String,
    clock: Clock,
}

impl LeaderElector {
    /// A candidate named `me` for lease `name` in `namespace`.
    pub fn new(client: Client, namespace: &str, name: &str, me: &str) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            me: me.to_owned(),
            clock: Arc::new(Timestamp::now),
        }
    }

    /// Uses `clock` instead of the system clock for lease times.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Waits until this candidate holds the lease, trying every `RENEW_INTERVAL`; returns when
    /// the successful attempt started (the base for `hold`'s deadline).
    pub async fn acquire(&self) -> Instant {
        loop {
            let started = Instant::now();
            match self.try_lead().await {
                Ok(true) => return started,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election round failed"),
            }
            tokio::time::sleep(RENEW_INTERVAL).await;
        }
    }

    /// Leads from `since` (when the last successful write began): renews every
    /// `RENEW_INTERVAL` (retrying failures every `RETRY_INTERVAL`) and returns as soon as leadership is lost. Each renewal may take only
    /// what is left until `RENEW_DEADLINE`, so a hanging API server cannot keep a stale leader.
    pub async fn hold(&self, since: Instant) -> LostLeadership {
        let mut last_renewal = since;
        let mut wait = RENEW_INTERVAL;
        let mut last_error = String::new();
        loop {
            tokio::time::sleep(wait).await;
            let started = Instant::now();
            let left = RENEW_DEADLINE.saturating_sub(started.duration_since(last_renewal));
            if left.is_zero() {
                return LostLeadership::RenewalFailed { last_error };
            }
            match tokio::time::timeout(left, self.try_lead()).await {
                Ok(Ok(true)) => {
                    last_renewal = started;
                    wait = RENEW_INTERVAL;
                    continue;
                }
                Ok(Ok(false)) => return LostLeadership::Taken,
                Ok(Err(e)) => {
                    let source = std::error::Error::source(&e).map(ToString::to_string);
                    last_error = format!("{e}: {}", source.unwrap_or_default());
                }
                Err(_) => last_error = "lease renewal timed out".to_owned(),
            }
            warn!(error = %last_error, "lease renewal failed");
            wait = RETRY_INTERVAL.min(RENEW_DEADLINE.saturating_sub(last_renewal.elapsed()));
        }
    }

    /// Gives the lease up on a clean shutdown, if we still hold it: clears the holder and
    /// shortens the duration to one second (as client-go's `ReleaseOnCancel` does), so a
    /// successor takes over at once instead of after `LEASE_DURATION`. Call it only after the
    /// controllers have stopped. Returns whether a release was written; a lost write race
    /// (409) means someone else wrote the lease, so there is nothing to release.
    pub async fn release(&self) -> Result<bool> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(Error::kube("get Lease"))?;
        let Some(mut lease) = current else {
            return Ok(false);
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(false);
        };
        if spec.holder_identity.as_deref() != Some(self.me.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime((self.clock)()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                info!(lease = %self.name, identity = %self.me, "released leadership");
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(Error::Kube {
                action: "release Lease".to_owned(),
                source: e,
            }),
        }
    }

    /// One election round: returns whether we hold the lease afterwards. A lost write race
    /// (409 Conflict) counts as "not leader", not as an error.
    pub async fn try_lead(&self) -> Result<bool> {
        let now = (self.clock)();
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(Error::kube("get Lease"))?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.me,
            now,
        );
        if let Decision::Follow { holder } = &decision {
            tracing::debug!(%holder, "following");
            return Ok(false);
        }
        let spec = next_spec(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &decision,
            &self.me,
            now,
        );
        let result = match current {
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
        };
        match result {
            Ok(_) => {
                if decision == Decision::Acquire {
                    info!(lease = %self.name, identity = %self.me, "acquired leadership");
                }
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(Error::Kube {
                action: "write Lease".to_owned(),
                source: e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("valid time")
    }

    #[test]
    fn free_or_expired_leases_are_taken_live_ones_followed() {
        assert_eq!(decide(None, "a", at(0)), Decision::Acquire);
        let held = next_spec(None, &Decision::Acquire, "b", at(0));
        assert_eq!(held.lease_transitions, Some(0));
        assert_eq!(decide(Some(&held), "b", at(1)), Decision::Renew);
        assert_eq!(
            decide(Some(&held), "a", at(10)),
            Decision::Follow { holder: "b".into() }
        );
        // 15 s duration: expired at 16 s without renewal
        assert_eq!(decide(Some(&held), "a", at(16)), Decision::Acquire);
        let taken = next_spec(Some(&held), &Decision::Acquire, "a", at(16));
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(1));
        let renewed = next_spec(Some(&taken), &Decision::Renew, "a", at(20));
        assert_eq!(
            renewed.acquire_time, taken.acquire_time,
            "renewal keeps the acquire time"
        );
        assert_eq!(
            decide(Some(&renewed), "b", at(30)),
            Decision::Follow { holder: "a".into() }
        );
    }
}
