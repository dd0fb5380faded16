//! What a node's `/readyz` and `/metrics` see: the node's parts as they come up, whether it is
//! ready, why it must stop, and the node-level part of the metrics text.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::broker::Broker;
use crate::metadata::{MetadataFollower, QuorumController};

/// What `/readyz` and `/metrics` report, for every role.
#[derive(Default)]
pub struct Health {
    /// Controller-only nodes: true while the quorum has a leader.
    pub controller_ready: AtomicBool,
    pub broker: OnceLock<Arc<Broker>>,
    pub controller: OnceLock<Arc<QuorumController>>,
    pub follower: OnceLock<Arc<MetadataFollower>>,
    pub is_broker: bool,
    /// Set when the node is stopping: never ready again.
    pub stopping: AtomicBool,
    /// Why the node cannot go on (the metadata quorum stopped on a storage error); `main`
    /// waits on `fatal_notify` and exits.
    pub fatal: std::sync::Mutex<Option<String>>,
    pub fatal_notify: tokio::sync::Notify,
}

impl Health {
    /// Records why the node cannot go on and wakes `main`, which exits (the process, not this
    /// library, decides to stop: CONVENTIONS 8).
    pub fn fail(&self, reason: String) {
        tracing::error!(%reason, "fatal: the node stops");
        let mut fatal = self.fatal.lock().expect("fatal lock poisoned");
        fatal.get_or_insert(reason);
        self.fatal_notify.notify_one();
    }

    /// Node-level gauges for `/metrics`: the metadata log position and role states.
    pub fn render_node(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        // Labelled series, after the unlabelled gauges.
        let mut labelled = String::from(
            "# HELP tributary_replication_throttled_bytes_total Bytes replicated for throttled replicas, by side.\n# TYPE tributary_replication_throttled_bytes_total counter\n# HELP tributary_replication_throttle_held_back_total Times a throttled replica was left out of a fetch, by side.\n# TYPE tributary_replication_throttle_held_back_total counter\n# HELP tributary_replication_throttle_rate_bytes The throttle rate in bytes per second (-1: unlimited).\n# TYPE tributary_replication_throttle_rate_bytes gauge\n",
        );
        let mut gauge = |name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        if let Some(f) = self.follower.get() {
            gauge(
                "tributary_metadata_applied_index",
                "Index of the last metadata log entry this node applied.",
                i64::try_from(f.applied_index()).unwrap_or(i64::MAX),
            );
        }
        if let Some(c) = self.controller.get() {
            gauge(
                "tributary_controller_active",
                "1 when this node is the active controller.",
                i64::from(c.is_active()),
            );
        }
        if let Some(b) = self.broker.get() {
            gauge(
                "tributary_broker_ready",
                "1 when this broker is registered, unfenced and caught up.",
                i64::from(b.lifecycle.ready()),
            );
            let r = b.replicas.replication_stats();
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            gauge(
                "tributary_leader_partitions",
                "Partitions this broker leads.",
                n(r.leaders),
            );
            gauge(
                "tributary_under_replicated_partitions",
                "Led partitions whose ISR is smaller than their replica set.",
                n(r.under_replicated),
            );
            gauge(
                "tributary_under_min_isr_partitions",
                "Led partitions whose ISR is below min.insync.replicas (acks=all refused).",
                n(r.under_min_isr),
            );
            gauge(
                "tributary_follower_lag_messages",
                "Messages the followers of led partitions are behind, summed.",
                n(r.follower_lag_messages),
            );
            let t = &b.replicas.throttles;
            for (side, q) in [("leader", &t.leader), ("follower", &t.follower)] {
                use std::sync::atomic::Ordering::Relaxed;
                let _ = writeln!(
                    labelled,
                    "tributary_replication_throttled_bytes_total{{side=\"{side}\"}} {}",
                    q.throttled_bytes.load(Relaxed)
                );
                let _ = writeln!(
                    labelled,
                    "tributary_replication_throttle_held_back_total{{side=\"{side}\"}} {}",
                    q.held_back.load(Relaxed)
                );
                let _ = writeln!(
                    labelled,
                    "tributary_replication_throttle_rate_bytes{{side=\"{side}\"}} {}",
                    q.rate()
                        .map_or(-1, |r| i64::try_from(r).unwrap_or(i64::MAX))
                );
            }
            if !r.lagging.is_empty() {
                let name = "tributary_partition_follower_lag_messages";
                let _ = writeln!(labelled, "# HELP {name} Messages a follower of a led partition is behind the leader's log end (only followers that are behind).\n# TYPE {name} gauge");
                for (tp, replica, behind) in &r.lagging {
                    let _ = writeln!(
                        labelled,
                        "{name}{{topic=\"{}\",partition=\"{}\",replica=\"{replica}\"}} {behind}",
                        tp.topic, tp.partition
                    );
                }
            }
        }
        if let Some(c) = self.controller.get().filter(|c| c.is_active()) {
            let offline = c
                .image()
                .topics
                .values()
                .flat_map(|t| t.partitions.values())
                .filter(|p| p.leader < 0)
                .count();
            gauge(
                "tributary_offline_partitions",
                "Partitions with no leader (active controller only).",
                i64::try_from(offline).unwrap_or(i64::MAX),
            );
        }
        out.push_str(&labelled);
        out
    }

    /// Ready: a broker is registered, unfenced and caught up with metadata; a controller-only
    /// node sees a quorum leader.
    pub fn ready(&self) -> bool {
        if self.stopping.load(Ordering::Acquire) {
            return false;
        }
        if self.is_broker {
            self.broker.get().is_some_and(|b| b.lifecycle.ready())
        } else {
            self.controller_ready.load(Ordering::Acquire)
        }
    }
}
