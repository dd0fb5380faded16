//! The slow-request log: a request that takes longer than `request.slow.log.ms` from the end of
//! its frame to the end of its response's write is logged once, with where its time went.
//!
//! Phases are Kafka's request-log ones where they apply: `local` (the append or read on this
//! broker, waiting for the log lock and the blocking pool included), `remote` (an acks=all
//! produce waiting for the followers, a fetch waiting for data), `send` (writing the response),
//! and `other` (the rest of the handling: decoding, checks, encoding). Handlers add to the
//! request they run for with [`add`]; outside a request it does nothing.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The phases a handler can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Local,
    Remote,
}

/// Time spent per phase by the current request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    pub local: Duration,
    pub remote: Duration,
}

tokio::task_local! {
    static CURRENT: RefCell<Phases>;
}

/// Adds `took` to `phase` of the request this task is serving.
pub fn add(phase: Phase, took: Duration) {
    let _ = CURRENT.try_with(|p| {
        let mut p = p.borrow_mut();
        match phase {
            Phase::Local => p.local += took,
            Phase::Remote => p.remote += took,
        }
    });
}

/// Runs `fut`, adding its duration to `phase`.
pub async fn timed<T>(phase: Phase, fut: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = fut.await;
    add(phase, started.elapsed());
    out
}

/// Runs a request's handling with its phase counters; returns its output and the phases.
pub async fn scope<T>(fut: impl Future<Output = T>) -> (T, Phases) {
    CURRENT
        .scope(RefCell::new(Phases::default()), async move {
            let out = fut.await;
            (out, CURRENT.with(|p| *p.borrow()))
        })
        .await
}

/// One request's timing, for the log line.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Handling, from the decoded header to the response ready (phases included).
    pub handle: Duration,
    pub phases: Phases,
    pub send: Duration,
}

impl Timing {
    pub fn total(&self) -> Duration {
        self.handle + self.send
    }

    /// Handling time not reported as a phase.
    pub fn other(&self) -> Duration {
        self.handle
            .saturating_sub(self.phases.local)
            .saturating_sub(self.phases.remote)
    }

    /// Whether it is slower than `threshold` (`None`: the log is off).
    pub fn is_slow(&self, threshold: Option<Duration>) -> bool {
        threshold.is_some_and(|t| self.total() >= t)
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// Logs one slow request.
pub fn log(
    api: kafka_protocol::messages::ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    peer: Option<std::net::SocketAddr>,
    t: &Timing,
) {
    tracing::warn!(
        api = ?api,
        version,
        correlation_id,
        client_id = client_id.unwrap_or(""),
        peer = ?peer,
        total_ms = ms(t.total()),
        local_ms = ms(t.phases.local),
        remote_ms = ms(t.phases.remote),
        other_ms = ms(t.other()),
        send_ms = ms(t.send),
        "slow request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn phases_add_up_inside_a_request_and_are_ignored_outside() {
        add(Phase::Local, Duration::from_secs(9));
        let ((), phases) = scope(async {
            timed(Phase::Local, tokio::time::sleep(Duration::from_millis(30))).await;
            timed(Phase::Remote, tokio::time::sleep(Duration::from_millis(70))).await;
            add(Phase::Local, Duration::from_millis(5));
        })
        .await;
        // The paused clock advances exactly by the sleeps.
        assert_eq!(phases.local, Duration::from_millis(35));
        assert_eq!(phases.remote, Duration::from_millis(70));
        let t = Timing {
            handle: Duration::from_millis(110),
            phases,
            send: Duration::from_millis(2),
        };
        assert_eq!(t.other(), Duration::from_millis(5));
        assert!(t.is_slow(Some(Duration::from_millis(100))));
        assert!(!t.is_slow(Some(Duration::from_millis(200))));
        assert!(!t.is_slow(None));
    }
}
