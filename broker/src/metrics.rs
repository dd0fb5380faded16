//! Broker metrics, rendered in Prometheus text format by `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

#[derive(Default, Clone)]
struct ApiStats {
    count: u64,
    seconds: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Counters updated on the request path (atomics, or one short lock per request).
#[derive(Default)]
pub struct Metrics {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages_in: AtomicU64,
    /// ISR changes this broker proposed as leader and the controller committed: ones that
    /// removed a replica, and ones that added one (Kafka's IsrShrinksPerSec / IsrExpandsPerSec).
    pub isr_shrinks: AtomicU64,
    pub isr_expands: AtomicU64,
    connection_errors: AtomicU64,
    /// Set when an append to the log directory failed with an I/O error (a full disk), cleared
    /// by the next append that succeeds.
    log_dir_write_failing: AtomicBool,
    cleaner_runs: AtomicU64,
    cleaner_bytes_removed: AtomicU64,
    /// Produce appends done on the request's own task, and ones handed to the blocking pool
    /// (the log busy, too large, or one that may wait: a roll, a flush, a compacted topic).
    pub appends_inline: AtomicU64,
    pub appends_pool: AtomicU64,
    apis: Mutex<BTreeMap<i16, ApiStats>>,
}

impl Metrics {
    /// Records one served request.
    pub fn request_done(&self, api: ApiKey, took: Duration) {
        let mut apis = self.apis.lock().expect("metrics lock poisoned");
        let s = apis.entry(api as i16).or_default();
        let secs = took.as_secs_f64();
        s.count += 1;
        s.seconds += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    /// Counts a connection closed because of bad input or an I/O failure.
    pub fn connection_closed_on_error(&self) {
        self.connection_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Records whether an append reached the log directory (`false`: an I/O error such as a
    /// full disk), for `tributary_log_dir_writable`.
    pub fn log_dir_written(&self, ok: bool) {
        let was_failing = self.log_dir_write_failing.swap(!ok, Ordering::Relaxed);
        if was_failing == ok {
            if ok {
                tracing::info!("appends to the log directory succeed again");
            } else {
                tracing::error!("an append to the log directory failed (disk full or I/O error): produce answers KAFKA_STORAGE_ERROR until writes succeed again; reads keep working");
            }
        }
    }

    /// Counts one pass of the log cleaner and the bytes it removed.
    pub fn cleaner_run(&self, bytes_removed: u64) {
        self.cleaner_runs.fetch_add(1, Ordering::Relaxed);
        self.cleaner_bytes_removed
            .fetch_add(bytes_removed, Ordering::Relaxed);
    }

    /// Prometheus text exposition; `partitions` and `log_bytes` are read at scrape time.
    pub fn render(&self, partitions: usize, log_bytes: u64) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            &mut out,
            "tributary_bytes_in_total",
            "Record bytes appended by produce requests.",
            self.bytes_in.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tributary_bytes_out_total",
            "Record bytes returned by fetch requests.",
            self.bytes_out.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tributary_messages_in_total",
            "Records appended by produce requests.",
            self.messages_in.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tributary_isr_shrinks_total",
            "Committed ISR changes of led partitions that removed a replica.",
            self.isr_shrinks.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tributary_isr_expands_total",
            "Committed ISR changes of led partitions that added a replica.",
            self.isr_expands.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tributary_connection_errors_total",
            "Connections closed because of bad input or I/O errors.",
            self.connection_errors.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tributary_log_cleaner_runs_total",
            "Passes of the log cleaner over the compacted logs.",
            self.cleaner_runs.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tributary_log_cleaner_bytes_removed_total",
            "Bytes removed from compacted logs by the cleaner.",
            self.cleaner_bytes_removed.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP tributary_produce_appends_total Produce appends by where they ran: on the request's task, or handed to the blocking pool.\n# TYPE tributary_produce_appends_total counter\ntributary_produce_appends_total{{path=\"request_task\"}} {}\ntributary_produce_appends_total{{path=\"blocking_pool\"}} {}",
            self.appends_inline.load(Ordering::Relaxed),
            self.appends_pool.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP tributary_log_dir_writable 1 while appends to the log directory succeed, 0 after one failed with an I/O error (e.g. a full disk) until one succeeds again.\n# TYPE tributary_log_dir_writable gauge\ntributary_log_dir_writable {}", u8::from(!self.log_dir_write_failing.load(Ordering::Relaxed)));
        let _ = writeln!(out, "# HELP tributary_partitions Partitions hosted by this broker.\n# TYPE tributary_partitions gauge\ntributary_partitions {partitions}");
        let _ = writeln!(out, "# HELP tributary_log_size_bytes Bytes of all partition logs.\n# TYPE tributary_log_size_bytes gauge\ntributary_log_size_bytes {log_bytes}");
        let apis = self.apis.lock().expect("metrics lock poisoned").clone();
        let _ = writeln!(out, "# HELP tributary_request_duration_seconds Time to serve a request, by API.\n# TYPE tributary_request_duration_seconds histogram");
        for (key, s) in apis {
            let api = ApiKey::try_from(key).map_or_else(|()| key.to_string(), |k| format!("{k:?}"));
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tributary_request_duration_seconds_bucket{{api=\"{api}\",le=\"{b}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "tributary_request_duration_seconds_bucket{{api=\"{api}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "tributary_request_duration_seconds_sum{{api=\"{api}\"}} {}",
                s.seconds
            );
            let _ = writeln!(
                out,
                "tributary_request_duration_seconds_count{{api=\"{api}\"}} {}",
                s.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.bytes_in.fetch_add(100, Ordering::Relaxed);
        m.request_done(ApiKey::Produce, Duration::from_micros(700));
        let text = m.render(3, 4096);
        assert!(text.contains("tributary_bytes_in_total 100"));
        assert!(text.contains("tributary_partitions 3"));
        assert!(text.contains(
            "tributary_request_duration_seconds_bucket{api=\"Produce\",le=\"0.0005\"} 0"
        ));
        assert!(text
            .contains("tributary_request_duration_seconds_bucket{api=\"Produce\",le=\"0.001\"} 1"));
        assert!(text.contains("tributary_request_duration_seconds_count{api=\"Produce\"} 1"));
        m.appends_pool.fetch_add(2, Ordering::Relaxed);
        let text = m.render(3, 4096);
        assert!(text.contains("tributary_produce_appends_total{path=\"request_task\"} 0"));
        assert!(text.contains("tributary_produce_appends_total{path=\"blocking_pool\"} 2"));
    }
}
