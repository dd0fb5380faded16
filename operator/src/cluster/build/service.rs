//! Builds a pool's headless Service (stable pod DNS names, published before pods are ready so a
//! quorum can form) and the cluster's bootstrap Service (client entry point, brokers only).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    bootstrap_name, cluster_labels, object_meta, pool_labels, pool_name, selector_labels,
    CONTROLLER_PORT, HTTP_PORT,
};
use crate::cluster::validate::{Pool, ValidatedCluster};

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// Headless Service named like the StatefulSet, giving each pod `<pod>.<service>.<ns>.svc`.
pub fn build_headless_service(vc: &ValidatedCluster, pool: &Pool) -> Service {
    let mut ports = Vec::new();
    if pool.role.is_broker() {
        ports.push(port("kafka", vc.client_port));
    }
    if pool.role.is_controller() {
        ports.push(port("controller", CONTROLLER_PORT));
    }
    ports.push(port("http", HTTP_PORT));
    Service {
        metadata: object_meta(vc, pool_name(vc, pool), pool_labels(vc, pool)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(vc, pool)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// ClusterIP Service over every broker-role pod: what clients put in `bootstrap.servers`.
pub fn build_bootstrap_service(vc: &ValidatedCluster) -> Service {
    let pool = vc.broker_pool();
    let selector = selector_labels(vc, pool);
    Service {
        metadata: object_meta(vc, bootstrap_name(vc), cluster_labels(vc)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector),
            ports: Some(vec![port("kafka", vc.client_port)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::build::ROLE_LABEL;
    use crate::cluster::fixtures::cluster;
    use crate::cluster::validate::validate;

    #[test]
    fn headless_services_publish_not_ready_pods_and_bootstrap_selects_brokers() {
        let vc = validate(&cluster("basic.yaml")).expect("valid");
        let h = serde_json::to_value(build_headless_service(&vc, vc.voter_pool())).expect("json");
        assert_eq!(h["metadata"]["name"], "demo-controller");
        assert_eq!(h["spec"]["clusterIP"], "None");
        assert_eq!(h["spec"]["publishNotReadyAddresses"], true);
        assert_eq!(h["spec"]["ports"][0]["port"], 9093);
        let b = serde_json::to_value(build_bootstrap_service(&vc)).expect("json");
        assert_eq!(b["metadata"]["name"], "demo-bootstrap");
        assert_eq!(b["spec"]["selector"][ROLE_LABEL], "broker");
        assert_eq!(b["spec"]["ports"][0]["port"], 9092);
    }
}
