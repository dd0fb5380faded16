//! Requeue delays after transient reconcile failures: exponential per object (1 s doubling to
//! 5 min) with jitter, reset when the object reconciles successfully. The delay rule
//! (`backoff_delay`) is pure; `Backoff` only keeps each object's count of consecutive failures.
//! It does not decide *whether* to retry (that is `Error::is_transient`).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

/// Delay after the first transient failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest delay, however many failures.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The delay before retrying after `failures` consecutive transient failures (1 = the first):
/// `BACKOFF_BASE * 2^(failures-1)` capped at `BACKOFF_MAX`, then "equal jitter": half of it
/// fixed, the other half scaled by `jitter` (clamped to `[0, 1]`), so retries of many objects
/// failing together spread out while each still waits at least half its step.
pub fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(31);
    let step = BACKOFF_BASE
        .checked_mul(1u32 << exp)
        .map_or(BACKOFF_MAX, |d| d.min(BACKOFF_MAX));
    let half = step / 2;
    let jittered = half + half.mul_f64(jitter.clamp(0.0, 1.0));
    // Whole milliseconds: finer precision means nothing to a requeue.
    Duration::from_millis(u64::try_from(jittered.as_millis()).unwrap_or(u64::MAX))
}

/// Consecutive transient failures per object (by key, e.g. `KafkaTopic/ns/name`).
#[derive(Debug, Default)]
pub struct Backoff {
    /// Failure counts; guards only the map, never held across an `.await`.
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records one more failure of `key`; returns how long to wait before retrying it.
    pub fn failed(&self, key: &str) -> Duration {
        let n = {
            let mut map = self.lock();
            let n = map.entry(key.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        backoff_delay(n, random_unit())
    }

    /// Forgets the failures of `key` (after a success, or a permanent error that waits for a
    /// spec change).
    pub fn reset(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Consecutive failures recorded for `key`.
    pub fn failures(&self, key: &str) -> u32 {
        self.lock().get(key).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // A panic while holding this lock leaves a valid map; keep using it.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A number in `[0, 1)` from std's randomly keyed hasher (no RNG dependency for jitter).
fn random_unit() -> f64 {
    let bits = RandomState::new().hash_one(0u8) >> 11; // 53 significant bits
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn delay_doubles_from_one_second_and_caps_at_five_minutes() {
        // jitter 1 = the full step
        let full: Vec<_> = (1..=10).map(|n| backoff_delay(n, 1.0)).collect();
        let want: Vec<_> = [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect();
        assert_eq!(full, want);
        assert_eq!(backoff_delay(u32::MAX, 1.0), BACKOFF_MAX);
        assert_eq!(backoff_delay(0, 1.0), BACKOFF_BASE, "0 is treated as 1");
    }

    #[test]
    fn jitter_spreads_the_upper_half_of_each_step() {
        assert_eq!(backoff_delay(1, 0.0), secs(0.5));
        assert_eq!(backoff_delay(4, 0.0), secs(4.0));
        assert_eq!(backoff_delay(4, 0.5), secs(6.0));
        assert_eq!(backoff_delay(20, 0.0), secs(150.0));
        assert_eq!(backoff_delay(3, 7.0), secs(4.0), "jitter is clamped");
        assert_eq!(backoff_delay(3, -1.0), secs(2.0), "jitter is clamped");
    }

    #[test]
    fn failures_are_counted_per_object_and_reset_on_success() {
        let b = Backoff::default();
        for n in 1..=4u32 {
            let d = b.failed("KafkaTopic/ns/a");
            let step = BACKOFF_BASE * (1 << (n - 1));
            assert!(d >= step / 2 && d <= step, "failure {n}: {d:?}");
        }
        assert_eq!(b.failures("KafkaTopic/ns/a"), 4);
        let d = b.failed("KafkaTopic/ns/b");
        assert!(
            d <= BACKOFF_BASE,
            "another object starts at the base: {d:?}"
        );
        b.reset("KafkaTopic/ns/a");
        assert_eq!(b.failures("KafkaTopic/ns/a"), 0);
        assert!(b.failed("KafkaTopic/ns/a") <= BACKOFF_BASE);
        assert_eq!(b.failures("KafkaTopic/ns/b"), 1);
    }

    #[test]
    fn random_jitter_is_a_unit_fraction_and_varies() {
        let xs: Vec<f64> = (0..64).map(|_| random_unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(
            xs.windows(2).any(|w| w[0] != w[1]),
            "jitter is not constant"
        );
    }
}
