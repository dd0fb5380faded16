//! Limits of the Kafka listener, with Kafka's names: `max.connections`,
//! `max.connections.per.ip` (+ `max.connections.per.ip.overrides`), `connections.max.idle.ms`
//! and `max.connection.creation.rate`; the accept loop's back-off when the process runs out of
//! file descriptors or memory; and raising the open-files limit at start.
//!
//! Owns the count of open connections (total and per client address) and the counters of
//! refused ones. Pure parts (admission, back-off, rate, log limiting) take the time as an
//! argument and are unit-tested; the accept loop in `server` drives them. Deliberately not
//! here: the controller listener (unlimited) and dynamic changes of these settings.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The first pause after the accept loop ran out of descriptors or memory.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest pause; the back-off doubles up to it.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one warning per this interval for refused connections and for failed accepts.
pub const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The listener's limits, parsed from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionLimits {
    /// `max.connections`: open connections on the listener.
    pub max_connections: usize,
    /// `max.connections.per.ip`: open connections from one client address.
    pub max_per_ip: usize,
    /// `max.connections.per.ip.overrides`: per-address exceptions (`ip:count,...`).
    pub per_ip_overrides: BTreeMap<IpAddr, usize>,
    /// `connections.max.idle.ms`: a connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// `max.connection.creation.rate`: new connections per second (None: unlimited); the
    /// accept loop waits rather than accept faster, as Kafka's does.
    pub creation_rate: Option<u32>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: usize::MAX,
            max_per_ip: usize::MAX,
            per_ip_overrides: BTreeMap::new(),
            idle_timeout: Duration::from_secs(600),
            creation_rate: None,
        }
    }
}

impl ConnectionLimits {
    /// The limit for connections from `ip`.
    pub fn per_ip(&self, ip: IpAddr) -> usize {
        self.per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.max_per_ip)
    }
}

/// Parses `max.connections.per.ip.overrides`: `host:count` entries separated by commas, the
/// host an IP address (IPv6 in brackets or bare) or `localhost`.
pub fn parse_per_ip_overrides(v: &str) -> Result<BTreeMap<IpAddr, usize>, String> {
    let mut out = BTreeMap::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, count) = entry
            .rsplit_once(':')
            .ok_or_else(|| format!("expected host:count in {entry:?}"))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| format!("{count:?} is not a connection count"))?;
        let host = host.trim().trim_matches(['[', ']']);
        let ips: Vec<IpAddr> = if host == "localhost" {
            vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()]
        } else {
            vec![host.parse().map_err(|_| {
                format!("{host:?} is not an IP address (host names are not resolved)")
            })?]
        };
        for ip in ips {
            out.insert(ip, count);
        }
    }
    Ok(out)
}

/// Why a new connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("max.connections ({limit}) reached")]
    MaxConnections { limit: usize },
    #[error("max.connections.per.ip ({limit}) reached for {ip}")]
    MaxConnectionsPerIp { ip: IpAddr, limit: usize },
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Counts the listener's open connections and admits new ones under the limits.
pub struct ConnectionTracker {
    limits: ConnectionLimits,
    /// Guards the counts; held only to compare and update them.
    counts: Mutex<Counts>,
    accepted: AtomicU64,
    refused_total: AtomicU64,
    refused_per_ip: AtomicU64,
    idle_closed: AtomicU64,
    accept_failures: AtomicU64,
}

impl ConnectionTracker {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(ConnectionTracker {
            limits,
            counts: Mutex::default(),
            accepted: AtomicU64::new(0),
            refused_total: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            accept_failures: AtomicU64::new(0),
        })
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Admits a connection from `ip`, or says which limit refuses it (and counts the refusal).
    /// The connection counts as open until the permit is dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let mut counts = self.counts.lock().expect("connection counts lock poisoned");
        let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        let refusal = if counts.total >= self.limits.max_connections {
            Some(Refusal::MaxConnections {
                limit: self.limits.max_connections,
            })
        } else if from_ip >= self.limits.per_ip(ip) {
            Some(Refusal::MaxConnectionsPerIp {
                ip,
                limit: self.limits.per_ip(ip),
            })
        } else {
            None
        };
        if let Some(r) = refusal {
            let counter = match r {
                Refusal::MaxConnections { .. } => &self.refused_total,
                Refusal::MaxConnectionsPerIp { .. } => &self.refused_per_ip,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return Err(r);
        }
        counts.total += 1;
        *counts.per_ip.entry(ip).or_default() += 1;
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionPermit {
            tracker: self.clone(),
            ip,
        })
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.counts
            .lock()
            .expect("connection counts lock poisoned")
            .total
    }

    /// Counts a connection closed for `connections.max.idle.ms`.
    pub fn idle_closed(&self) {
        self.idle_closed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed `accept`.
    pub fn accept_failed(&self) {
        self.accept_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text for the listener's connections.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP tributary_connections Open connections on the Kafka listener.\n\
             # TYPE tributary_connections gauge\ntributary_connections {}",
            self.open()
        );
        let _ = writeln!(
            out,
            "# HELP tributary_connections_accepted_total Connections accepted on the Kafka listener.\n\
             # TYPE tributary_connections_accepted_total counter\n\
             tributary_connections_accepted_total {}",
            load(&self.accepted)
        );
        let _ = writeln!(
            out,
            "# HELP tributary_connections_refused_total Connections closed at once because a limit was reached.\n\
             # TYPE tributary_connections_refused_total counter\n\
             tributary_connections_refused_total{{limit=\"max.connections\"}} {}\n\
             tributary_connections_refused_total{{limit=\"max.connections.per.ip\"}} {}",
            load(&self.refused_total),
            load(&self.refused_per_ip)
        );
        let _ = writeln!(
            out,
            "# HELP tributary_connections_idle_closed_total Connections closed after connections.max.idle.ms without a request.\n\
             # TYPE tributary_connections_idle_closed_total counter\n\
             tributary_connections_idle_closed_total {}",
            load(&self.idle_closed)
        );
        let _ = writeln!(
            out,
            "# HELP tributary_accept_failures_total Failed accepts on the Kafka listener (e.g. out of file descriptors).\n\
             # TYPE tributary_accept_failures_total counter\n\
             tributary_accept_failures_total {}",
            load(&self.accept_failures)
        );
        out
    }
}

/// An admitted connection; dropping it releases its place.
pub struct ConnectionPermit {
    tracker: Arc<ConnectionTracker>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self
            .tracker
            .counts
            .lock()
            .expect("connection counts lock poisoned");
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Whether a failed `accept` means the process or system is out of a resource (descriptors,
/// memory), so retrying at once would only spin.
pub fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
    )
}

/// The accept loop's pause after running out of a resource: 10 ms, doubling to 1 s, back to
/// 10 ms after a successful accept.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    last: Option<Duration>,
}

impl AcceptBackoff {
    /// The pause before the next accept.
    pub fn failed(&mut self) -> Duration {
        let next = self
            .last
            .map_or(ACCEPT_BACKOFF_MIN, |d| (d * 2).min(ACCEPT_BACKOFF_MAX));
        self.last = Some(next);
        next
    }

    pub fn succeeded(&mut self) {
        self.last = None;
    }
}

/// Lets one log line through per interval and counts the events in between.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    events: u64,
}

impl LogLimiter {
    pub fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            last: None,
            events: 0,
        }
    }

    /// Records an event; `Some(n)` when a line may be logged now, `n` being the events since
    /// the previous line (this one included).
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        self.events += 1;
        if self
            .last
            .is_some_and(|l| now.saturating_duration_since(l) < self.interval)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.events))
    }
}

/// `max.connection.creation.rate`: a token bucket holding one second of connections.
#[derive(Debug)]
pub struct CreationRate {
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl CreationRate {
    pub fn new(per_second: u32, now: Instant) -> Self {
        CreationRate {
            per_second: f64::from(per_second.max(1)),
            tokens: f64::from(per_second.max(1)),
            at: now,
        }
    }

    /// Takes a token for one new connection; returns how long to wait first when there is none
    /// (the token is then taken at the end of the wait).
    pub fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second) - 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_second)
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (each connection is a descriptor);
/// returns the soft and hard limits in effect (None: unlimited).
pub fn raise_open_files_limit() -> (std::io::Result<()>, Option<u64>, Option<u64>) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let raised = if now.current == now.maximum {
        Ok(())
    } else {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: now.maximum,
                maximum: now.maximum,
            },
        )
        .map_err(std::io::Error::from)
    };
    let after = getrlimit(Resource::Nofile);
    (raised, after.current, after.maximum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_listener_limit_and_the_per_address_limits_refuse_the_excess() {
        let limits = ConnectionLimits {
            max_connections: 3,
            max_per_ip: 2,
            per_ip_overrides: BTreeMap::from([(ip("10.0.0.9"), 0)]),
            ..Default::default()
        };
        let t = ConnectionTracker::new(limits);
        let a1 = t.admit(ip("10.0.0.1")).expect("first");
        let _a2 = t
            .admit(ip("10.0.0.1"))
            .expect("second from the same address");
        assert_eq!(
            t.admit(ip("10.0.0.1")).err(),
            Some(Refusal::MaxConnectionsPerIp {
                ip: ip("10.0.0.1"),
                limit: 2
            })
        );
        assert_eq!(
            t.admit(ip("10.0.0.9")).err(),
            Some(Refusal::MaxConnectionsPerIp {
                ip: ip("10.0.0.9"),
                limit: 0
            }),
            "an override of 0 refuses the address"
        );
        let _b = t.admit(ip("10.0.0.2")).expect("third, another address");
        assert_eq!(
            t.admit(ip("10.0.0.3")).err(),
            Some(Refusal::MaxConnections { limit: 3 })
        );
        assert_eq!(t.open(), 3);
        drop(a1);
        assert_eq!(t.open(), 2);
        let _c = t
            .admit(ip("10.0.0.3"))
            .expect("a closed connection frees its place");
        let text = t.render();
        assert!(text.contains("tributary_connections 3"), "{text}");
        assert!(text.contains("tributary_connections_refused_total{limit=\"max.connections\"} 1"));
        assert!(text
            .contains("tributary_connections_refused_total{limit=\"max.connections.per.ip\"} 2"));
    }

    #[test]
    fn overrides_parse_addresses_and_refuse_host_names() {
        let o = parse_per_ip_overrides("127.0.0.1:5, [::1]:7 ,10.1.2.3:0").expect("parse");
        assert_eq!(o.get(&ip("127.0.0.1")), Some(&5));
        assert_eq!(o.get(&ip("::1")), Some(&7));
        assert_eq!(o.get(&ip("10.1.2.3")), Some(&0));
        let o = parse_per_ip_overrides("localhost:9").expect("localhost");
        assert_eq!(o.len(), 2);
        assert!(parse_per_ip_overrides("").expect("empty").is_empty());
        assert!(parse_per_ip_overrides("broker-1.example:5").is_err());
        assert!(parse_per_ip_overrides("127.0.0.1").is_err());
        assert!(parse_per_ip_overrides("127.0.0.1:x").is_err());
    }

    #[test]
    fn the_back_off_doubles_from_10ms_to_1s_and_resets() {
        let mut b = AcceptBackoff::default();
        let delays: Vec<u64> = (0..9).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(), ACCEPT_BACKOFF_MIN);
    }

    #[test]
    fn one_line_per_interval_with_the_count_of_events() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(1));
        assert_eq!(l.hit(t0), Some(1));
        for i in 1..1000 {
            assert_eq!(l.hit(t0 + Duration::from_micros(i)), None);
        }
        assert_eq!(l.hit(t0 + Duration::from_secs(1)), Some(1000));
        assert_eq!(l.hit(t0 + Duration::from_millis(1500)), None);
        assert_eq!(l.hit(t0 + Duration::from_secs(3)), Some(2));
    }

    #[test]
    fn the_creation_rate_spaces_connections_past_a_second_of_burst() {
        let t0 = Instant::now();
        let mut r = CreationRate::new(10, t0);
        for _ in 0..10 {
            assert_eq!(r.take(t0), Duration::ZERO);
        }
        let wait = r.take(t0);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        // after waiting, the next one waits another tenth of a second
        let wait = r.take(t0 + Duration::from_millis(100));
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert_eq!(r.take(t0 + Duration::from_secs(5)), Duration::ZERO);
    }

    #[test]
    fn only_running_out_of_resources_backs_off() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS] {
            assert!(is_resource_exhaustion(&std::io::Error::from_raw_os_error(
                code
            )));
        }
        assert!(!is_resource_exhaustion(&std::io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
