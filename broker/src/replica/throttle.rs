//! Replication throttles, as Kafka's `leader.replication.throttled.rate` and
//! `follower.replication.throttled.rate`: a byte budget per second for the replication of the
//! replicas that a topic's `*.replication.throttled.replicas` lists name, so a reassignment does
//! not take the disks and network from clients. Only replicas outside the ISR are ever held
//! back (an in-sync follower is never slowed, so acks=all never waits on a throttle).
//!
//! Each side is a token bucket holding at most one second of its rate: bytes sent (leader) or
//! fetched (follower) for throttled replicas take tokens, and while the bucket is empty the
//! throttled partitions are left out of fetches. The long-run rate is the configured one; a
//! fetch asks for (follower) or returns (leader) at most the tokens left, so it overdraws the
//! bucket by at most one batch (a fetch always gets its first batch whole), and the bucket then
//! stays empty until the debt is repaid.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// One side's throttle.
pub struct Quota {
    /// Bytes per second; `u64::MAX`: unlimited.
    rate: AtomicU64,
    bucket: Mutex<Bucket>,
    /// Bytes replicated under this throttle, and times a throttled partition was held back.
    pub throttled_bytes: AtomicU64,
    pub held_back: AtomicU64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            rate: AtomicU64::new(u64::MAX),
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                at: Instant::now(),
            }),
            throttled_bytes: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }
}

impl Quota {
    /// Sets the rate (bytes per second; `u64::MAX` for none).
    pub fn set_rate(&self, rate: u64) {
        let old = self.rate.swap(rate.max(1), Ordering::AcqRel);
        if old != rate {
            let mut b = self.bucket.lock().expect("throttle lock poisoned");
            b.tokens = b.tokens.min(rate as f64);
        }
    }

    /// The rate in bytes per second, if limited.
    pub fn rate(&self) -> Option<u64> {
        Some(self.rate.load(Ordering::Acquire)).filter(|r| *r != u64::MAX)
    }

    fn refill(&self, b: &mut Bucket, now: Instant, rate: f64) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.at = now;
    }

    /// Whether throttled replicas must wait (the budget is spent); counts a hold-back.
    pub fn exceeded_at(&self, now: Instant) -> bool {
        let Some(rate) = self.rate() else {
            return false;
        };
        let mut b = self.bucket.lock().expect("throttle lock poisoned");
        self.refill(&mut b, now, rate as f64);
        let exceeded = b.tokens <= 0.0;
        if exceeded {
            self.held_back.fetch_add(1, Ordering::Relaxed);
        }
        exceeded
    }

    /// The bytes the throttled replicas may still take now (`None`: no limit). A fetch caps
    /// its throttled partitions at this, so a single fetch overdraws the budget by at most one
    /// batch instead of a whole fetch's worth.
    pub fn available_at(&self, now: Instant) -> Option<usize> {
        let rate = self.rate()?;
        let mut b = self.bucket.lock().expect("throttle lock poisoned");
        self.refill(&mut b, now, rate as f64);
        Some(b.tokens.max(0.0) as usize)
    }

    /// [`Quota::available_at`] now.
    pub fn available(&self) -> Option<usize> {
        self.available_at(Instant::now())
    }

    /// [`Quota::exceeded_at`] now.
    pub fn exceeded(&self) -> bool {
        self.exceeded_at(Instant::now())
    }

    /// Records `bytes` replicated for throttled replicas.
    pub fn record_at(&self, bytes: u64, now: Instant) {
        self.throttled_bytes.fetch_add(bytes, Ordering::Relaxed);
        let Some(rate) = self.rate() else {
            return;
        };
        let mut b = self.bucket.lock().expect("throttle lock poisoned");
        self.refill(&mut b, now, rate as f64);
        b.tokens -= bytes as f64;
    }

    /// [`Quota::record_at`] now.
    pub fn record(&self, bytes: u64) {
        self.record_at(bytes, Instant::now());
    }
}

/// The broker's two throttles.
#[derive(Default)]
pub struct Throttles {
    pub leader: Quota,
    pub follower: Quota,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_long_run_rate_is_the_configured_one() {
        let q = Quota::default();
        let t0 = Instant::now();
        assert!(!q.exceeded_at(t0), "unlimited");
        q.set_rate(1000);
        // Fetch whenever allowed, 250 bytes at a time, over 10 simulated seconds.
        let mut sent = 0u64;
        for ms in 0..10_000u64 {
            let now = t0 + Duration::from_millis(ms);
            if !q.exceeded_at(now) {
                q.record_at(250, now);
                sent += 250;
            }
        }
        assert!(
            (9_000..=11_250).contains(&sent),
            "{sent} bytes in 10 s at 1000 B/s"
        );
        assert_eq!(q.throttled_bytes.load(Ordering::Relaxed), sent);
        assert!(q.held_back.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn one_big_fetch_overdraws_and_waits_its_debt_out() {
        let q = Quota::default();
        q.set_rate(1000);
        let t0 = Instant::now();
        q.record_at(5000, t0);
        assert!(q.exceeded_at(t0 + Duration::from_secs(4)));
        assert!(!q.exceeded_at(t0 + Duration::from_millis(5100)));
        q.set_rate(u64::MAX);
        q.record_at(1 << 30, t0);
        assert!(!q.exceeded_at(t0), "unlimited again");
    }

    #[test]
    fn what_is_available_grows_with_time_up_to_one_second_of_rate() {
        let q = Quota::default();
        let t0 = Instant::now();
        assert_eq!(q.available_at(t0), None, "unlimited");
        q.set_rate(1000);
        let start = q.available_at(t0).expect("limited");
        q.record_at(start as u64, t0);
        assert_eq!(q.available_at(t0), Some(0));
        assert_eq!(q.available_at(t0 + Duration::from_millis(500)), Some(500));
        assert_eq!(q.available_at(t0 + Duration::from_secs(10)), Some(1000));
        q.record_at(3000, t0 + Duration::from_secs(10));
        assert_eq!(
            q.available_at(t0 + Duration::from_secs(11)),
            Some(0),
            "in debt"
        );
    }
}
