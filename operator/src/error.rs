//! The reconcilers' error type. Each variant says whether it is permanent (the spec or request
//! is wrong: record a condition and an Event, wait for the next change) or transient (API
//! conflict, timeout, unreachable cluster: requeue with backoff), and names its kind for the
//! `reconcile_errors_total` metric.

use thiserror::Error;

use crate::admin::AdminError;
use crate::cluster::validate::SpecError;

/// Why a reconcile pass failed.
#[derive(Debug, Error)]
pub enum Error {
    #[error("invalid spec")]
    InvalidSpec(#[source] SpecError),
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    #[error("kubernetes api call {action} failed")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("kafka admin call failed")]
    Admin(#[source] AdminError),
    #[error("finalizer handling failed: {0}")]
    Finalizer(String),
    /// A spec change the operator will not carry out (reported as a condition and an Event).
    #[error("spec change refused: {0}")]
    Refused(String),
}

impl Error {
    /// Wraps a Kubernetes API error with the action that failed.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }

    /// Whether retrying without a spec change can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::InvalidSpec(_) | Error::InvalidTopic(_) | Error::Refused(_) => false,
            Error::Admin(e) => e.is_transient(),
            Error::Kube { source, .. } => match source {
                // 4xx other than conflict / throttling / not found mean our request is wrong.
                kube::Error::Api(s) => {
                    !(400..500).contains(&s.code) || matches!(s.code, 404 | 409 | 429)
                }
                _ => true,
            },
            Error::Finalizer(_) => true,
        }
    }

    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::InvalidTopic(_) => "invalid_topic",
            Error::Kube { .. } => "kube_api",
            Error::Admin(e) if e.is_transient() => "kafka_unavailable",
            Error::Admin(_) => "kafka_rejected",
            Error::Finalizer(_) => "finalizer",
            Error::Refused(_) => "refused",
        }
    }
}

/// Result of one reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
