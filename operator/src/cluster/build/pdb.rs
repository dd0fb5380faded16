//! Builds a pool's PodDisruptionBudget: voluntary disruptions (node drains) take at most one pod
//! of a pool at a time, the same rule the operator's own restarts follow.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{object_meta, pool_labels, pool_name, selector_labels};
use crate::cluster::validate::{Pool, ValidatedCluster};

/// `maxUnavailable: 1` over the pool's pods.
pub fn build_pdb(vc: &ValidatedCluster, pool: &Pool) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: object_meta(vc, pool_name(vc, pool), pool_labels(vc, pool)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(vc, pool)),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::fixtures::cluster;
    use crate::cluster::validate::validate;

    #[test]
    fn pdb_allows_one_pod_down_per_pool() {
        let vc = validate(&cluster("basic.yaml")).expect("valid");
        let pdb = serde_json::to_value(build_pdb(&vc, vc.broker_pool())).expect("json");
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"]["kafka.tributary.dev/role"],
            "broker"
        );
    }
}
