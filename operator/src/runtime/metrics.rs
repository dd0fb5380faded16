//! Prometheus metrics of the operator: reconcile counts and durations per controller, failures
//! by controller and error kind, whether this replica leads, and per KafkaCluster what its last
//! day-2 pass saw (brokers ready, under-replicated partitions, an operation in progress, bytes
//! being moved). Rendered in the text format by `runtime::http`. A deleted cluster's gauges keep
//! their last values until the operator restarts (KafkaCluster has no finalizer that would
//! tell the operator of its deletion).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of per-controller metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// Labels of the failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub kind: String,
}

/// Labels of per-cluster gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub namespace: String,
    pub name: String,
}

/// What one day-2 pass saw of a cluster, for its gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterGauges {
    pub brokers_ready: i64,
    pub under_replicated_partitions: i64,
    /// 1 while a commissioning, drain or rolling restart is in progress.
    pub operation_in_progress: i64,
    /// Bytes the partition moves still have to copy: the operation's moves in flight and not
    /// yet submitted, or, with no operation of the operator's, the moves in flight.
    pub move_bytes_remaining: i64,
    /// Seconds the current day-2 step has waited on a gate (0 when it does not wait): what to
    /// alert on for a stuck roll or drain.
    pub blocked_seconds: i64,
}

/// The operator's metrics and their registry.
pub struct Metrics {
    pub registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    failures: Family<ErrorLabels, Counter>,
    durations: Family<ControllerLabels, Histogram>,
    pub leader: Gauge,
    brokers_ready: Family<ClusterLabels, Gauge>,
    under_replicated: Family<ClusterLabels, Gauge>,
    operation: Family<ClusterLabels, Gauge>,
    move_bytes_remaining: Family<ClusterLabels, Gauge>,
    blocked_seconds: Family<ClusterLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tributary_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let durations = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let leader = Gauge::default();
        registry.register("reconciles", "Reconcile passes started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconcile passes that failed, by error kind",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconcile passes",
            durations.clone(),
        );
        registry.register(
            "leader",
            "1 when this replica holds the leader lease",
            leader.clone(),
        );
        let cluster_gauge = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<ClusterLabels, Gauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let brokers_ready = cluster_gauge(
            &mut registry,
            "cluster_brokers_ready",
            "Broker pods ready, per KafkaCluster",
        );
        let under_replicated = cluster_gauge(
            &mut registry,
            "cluster_under_replicated_partitions",
            "Partitions whose ISR is smaller than their replica set, per KafkaCluster",
        );
        let operation = cluster_gauge(
            &mut registry,
            "cluster_operation_in_progress",
            "1 while a commissioning, drain or rolling restart is in progress, per KafkaCluster",
        );
        let move_bytes_remaining = cluster_gauge(
            &mut registry,
            "cluster_move_bytes_remaining",
            "Bytes the partition moves still have to copy (the operation's batch in flight and the moves not yet submitted), per KafkaCluster",
        );
        let blocked_seconds = cluster_gauge(
            &mut registry,
            "cluster_blocked_seconds",
            "Seconds the current day-2 step has waited on a gate (0 when it does not wait), per KafkaCluster",
        );
        Metrics {
            registry,
            reconciles,
            failures,
            durations,
            leader,
            brokers_ready,
            under_replicated,
            operation,
            move_bytes_remaining,
            blocked_seconds,
        }
    }
}

impl Metrics {
    /// Counts one finished reconcile of `controller` that took `elapsed`.
    pub fn reconciled(&self, controller: &str, elapsed: Duration) {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one failure of `controller` with error `kind`.
    pub fn failed(&self, controller: &str, kind: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                controller: controller.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Sets the gauges of cluster `namespace`/`name`.
    pub fn cluster(&self, namespace: &str, name: &str, g: &ClusterGauges) {
        let labels = ClusterLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.brokers_ready
            .get_or_create(&labels)
            .set(g.brokers_ready);
        self.under_replicated
            .get_or_create(&labels)
            .set(g.under_replicated_partitions);
        self.operation
            .get_or_create(&labels)
            .set(g.operation_in_progress);
        self.move_bytes_remaining
            .get_or_create(&labels)
            .set(g.move_bytes_remaining);
        self.blocked_seconds
            .get_or_create(&labels)
            .set(g.blocked_seconds);
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_kind() {
        let m = Metrics::default();
        m.reconciled("kafkacluster", Duration::from_millis(20));
        m.failed("kafkacluster", "invalid_spec");
        let text = m.render();
        assert!(text.contains(r#"tributary_operator_reconcile_errors_total{controller="kafkacluster",kind="invalid_spec"} 1"#), "{text}");
        assert!(
            text.contains(r#"tributary_operator_reconciles_total{controller="kafkacluster"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn cluster_gauges_are_labelled_per_cluster() {
        let m = Metrics::default();
        let g = ClusterGauges {
            brokers_ready: 3,
            under_replicated_partitions: 2,
            operation_in_progress: 1,
            move_bytes_remaining: 4096,
            blocked_seconds: 42,
        };
        m.cluster("kafka", "demo", &g);
        let text = m.render();
        for line in [
            r#"tributary_operator_cluster_brokers_ready{namespace="kafka",name="demo"} 3"#,
            r#"tributary_operator_cluster_under_replicated_partitions{namespace="kafka",name="demo"} 2"#,
            r#"tributary_operator_cluster_operation_in_progress{namespace="kafka",name="demo"} 1"#,
            r#"tributary_operator_cluster_move_bytes_remaining{namespace="kafka",name="demo"} 4096"#,
            r#"tributary_operator_cluster_blocked_seconds{namespace="kafka",name="demo"} 42"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
