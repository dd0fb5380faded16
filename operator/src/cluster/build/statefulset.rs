//! Builds a pool's StatefulSet: `OnDelete` updates (the operator decides when each pod restarts),
//! parallel pod management (a quorum's voters must start together), PVCs from
//! `volumeClaimTemplates`, probes on the broker's `/readyz` and `/livez`, and a locked-down
//! non-root pod. The pod template carries a hash of its config and template so outdated pods can
//! be found.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecurityContext, TopologySpreadConstraint, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::configmap::{configmap_name, hex, CONFIG_MOUNT, DATA_MOUNT};
use super::{
    object_meta, pool_labels, pool_name, selector_labels, CONFIG_HASH_ANNOTATION, CONTROLLER_PORT,
    DYNAMIC_CONFIGS_ANNOTATION, HTTP_PORT, RESTART_TOKEN_ANNOTATION,
};
use crate::cluster::validate::{Pool, ValidatedCluster};
use crate::crd::cluster::ReclaimPolicy;

/// UID and GID the broker runs as (matches the image's `/etc/passwd`).
pub const BROKER_UID: i64 = 10001;
/// Seconds Kubernetes waits after SIGTERM: enough for controlled shutdown to move leaderships.
pub const TERMINATION_GRACE_SECONDS: i64 = 120;
/// Name of the broker container.
pub const CONTAINER_NAME: &str = "broker";

/// Builds the StatefulSet of `pool`; `config_hash` comes from `configmap::config_hash`.
pub fn build_statefulset(vc: &ValidatedCluster, pool: &Pool, config_hash: &str) -> StatefulSet {
    let name = pool_name(vc, pool);
    let mut template = pod_template(vc, pool);
    let hash = template_hash(config_hash, &template);
    template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_HASH_ANNOTATION.to_owned(), hash);
    if pool.role.is_broker() {
        // not hashed: a dynamic config added needs no restart (`DesiredPod::run_by`)
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(
                DYNAMIC_CONFIGS_ANNOTATION.to_owned(),
                super::configmap::dynamic_config_names(pool),
            );
    }
    let retention = match pool.spec.storage.reclaim_policy {
        ReclaimPolicy::Retain => "Retain",
        ReclaimPolicy::Delete => "Delete",
    };
    StatefulSet {
        metadata: object_meta(vc, name.clone(), pool_labels(vc, pool)),
        spec: Some(StatefulSetSpec {
            replicas: Some(pool.replicas),
            service_name: Some(name),
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(retention.to_owned()),
                    when_scaled: Some(retention.to_owned()),
                },
            ),
            selector: LabelSelector {
                match_labels: Some(selector_labels(vc, pool)),
                match_expressions: None,
            },
            template,
            volume_claim_templates: Some(vec![data_claim(pool)]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

/// The hash stored on each pod: the rendered config hash and the pod template, together. The
/// ConfigMap revision's name is left out: it changes with every pod's file (adding a broker adds
/// one), while what a restart would change for the pods already running is in `config_hash`.
pub fn template_hash(config_hash: &str, template: &PodTemplateSpec) -> String {
    let mut template = template.clone();
    for v in template
        .spec
        .iter_mut()
        .flat_map(|s| s.volumes.iter_mut().flatten())
    {
        if let Some(cm) = v.config_map.as_mut() {
            cm.name.clear();
        }
    }
    let mut h = Sha256::new();
    h.update(config_hash.as_bytes());
    h.update(serde_json::to_vec(&template).unwrap_or_default());
    hex(&h.finalize()[..8])
}

fn pod_template(vc: &ValidatedCluster, pool: &Pool) -> PodTemplateSpec {
    let mut labels = vc.pod_overrides.labels.clone();
    labels.extend(pool_labels(vc, pool));
    let mut annotations = vc.pod_overrides.annotations.clone();
    if let Some(token) = &vc.restart_token {
        annotations.insert(RESTART_TOKEN_ANNOTATION.to_owned(), token.clone());
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container(vc, pool)],
            volumes: Some(vec![
                Volume {
                    name: "config".to_owned(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: configmap_name(vc, pool),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "tmp".to_owned(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Volume::default()
                },
            ]),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(BROKER_UID),
                run_as_group: Some(BROKER_UID),
                fs_group: Some(BROKER_UID),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    localhost_profile: None,
                }),
                ..PodSecurityContext::default()
            }),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            node_selector: (!pool.spec.node_selector.is_empty())
                .then(|| pool.spec.node_selector.clone()),
            affinity: pool.spec.affinity.clone(),
            tolerations: (!pool.spec.tolerations.is_empty()).then(|| pool.spec.tolerations.clone()),
            topology_spread_constraints: vc.rack_key.as_ref().map(|key| {
                vec![TopologySpreadConstraint {
                    max_skew: 1,
                    topology_key: key.clone(),
                    when_unsatisfiable: "ScheduleAnyway".to_owned(),
                    label_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(vc, pool)),
                        match_expressions: None,
                    }),
                    ..TopologySpreadConstraint::default()
                }]
            }),
            priority_class_name: vc.pod_overrides.priority_class_name.clone(),
            enable_service_links: Some(false),
            ..PodSpec::default()
        }),
    }
}

fn container(vc: &ValidatedCluster, pool: &Pool) -> Container {
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    let mut ports = Vec::new();
    if pool.role.is_broker() {
        ports.push(port("kafka", vc.client_port));
    }
    if pool.role.is_controller() {
        ports.push(port("controller", CONTROLLER_PORT));
    }
    ports.push(port("http", HTTP_PORT));
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(vc.image.clone()),
        image_pull_policy: vc.image_pull_policy.clone(),
        // Kubernetes expands $(POD_NAME) from the env below: each pod reads its own file.
        args: Some(vec![
            "--config".to_owned(),
            format!("{CONFIG_MOUNT}/$(POD_NAME).properties"),
        ]),
        env: Some(env(vc)),
        ports: Some(ports),
        resources: pool.spec.resources.clone(),
        readiness_probe: Some(probe("/readyz", 5, 3)),
        liveness_probe: Some(probe("/livez", 10, 6)),
        startup_probe: Some(probe("/livez", 2, 60)),
        volume_mounts: Some(vec![
            mount("data", DATA_MOUNT, false),
            mount("config", CONFIG_MOUNT, true),
            mount("tmp", "/tmp", false),
        ]),
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

fn env(vc: &ValidatedCluster) -> Vec<EnvVar> {
    let field = |name: &str, path: String| EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path,
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    };
    let mut env = vec![field("POD_NAME", "metadata.name".to_owned())];
    if let Some(key) = &vc.rack_key {
        // Kubernetes copies the node's topology labels onto the pod; the broker reads
        // TRIBUTARY_<PROPERTY> overrides, so this becomes `broker.rack`.
        env.push(field(
            "TRIBUTARY_BROKER_RACK",
            format!("metadata.labels['{key}']"),
        ));
    }
    env
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(3),
        ..Probe::default()
    }
}

fn data_claim(pool: &Pool) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: pool.spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(pool.spec.storage.size.clone()),
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::build::configmap::config_hash;
    use crate::cluster::build::RESTART_ANNOTATION;
    use crate::cluster::fixtures::cluster;
    use crate::cluster::validate::validate;

    fn broker_sts(fixture: &str) -> serde_json::Value {
        let vc = validate(&cluster(fixture)).expect("valid");
        let pool = vc.broker_pool();
        let sts = build_statefulset(&vc, pool, &config_hash(&vc, pool));
        serde_json::to_value(sts).expect("json")
    }

    #[test]
    fn statefulset_is_on_delete_with_claims_and_locked_down_pods() {
        let s = broker_sts("basic.yaml");
        let spec = &s["spec"];
        assert_eq!(spec["updateStrategy"]["type"], "OnDelete");
        assert_eq!(spec["podManagementPolicy"], "Parallel");
        assert_eq!(spec["serviceName"], "demo-broker");
        assert_eq!(spec["replicas"], 3);
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"],
            "Delete"
        );
        let claim = &spec["volumeClaimTemplates"][0]["spec"];
        assert_eq!(claim["resources"]["requests"]["storage"], "10Gi");
        assert_eq!(claim["storageClassName"], "fast");
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["terminationGracePeriodSeconds"], 120);
        let c = &pod["containers"][0];
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["args"][1], "/etc/tributary/$(POD_NAME).properties");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
        assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
        assert_eq!(c["ports"][0]["containerPort"], 9092);
        let hash = &spec["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION];
        assert_eq!(hash.as_str().map(str::len), Some(16));
    }

    #[test]
    fn rack_awareness_spreads_pods_and_passes_the_zone() {
        let s = broker_sts("combined.yaml");
        let pod = &s["spec"]["template"]["spec"];
        assert_eq!(
            pod["topologySpreadConstraints"][0]["topologyKey"],
            "topology.kubernetes.io/zone"
        );
        let env = &pod["containers"][0]["env"][1];
        assert_eq!(env["name"], "TRIBUTARY_BROKER_RACK");
        assert_eq!(
            env["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.labels['topology.kubernetes.io/zone']"
        );
        assert_eq!(
            s["spec"]["template"]["metadata"]["labels"]["team"],
            "streaming"
        );
        assert_eq!(
            s["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
            "Retain"
        );
    }

    #[test]
    fn adding_a_broker_changes_the_configmap_revision_but_not_the_pod_hash() {
        let base = broker_sts("basic.yaml");
        let mut kc = cluster("basic.yaml");
        kc.spec.brokers.replicas = 4;
        let vc = validate(&kc).expect("valid");
        let pool = vc.broker_pool();
        let more = serde_json::to_value(build_statefulset(&vc, pool, &config_hash(&vc, pool)))
            .expect("json");
        let cm = |v: &serde_json::Value| {
            v["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"].clone()
        };
        let hash = |v: &serde_json::Value| {
            v["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION].clone()
        };
        assert_ne!(cm(&base), cm(&more), "new pods mount the new revision");
        assert_eq!(hash(&base), hash(&more), "running pods are not outdated");
    }

    #[test]
    fn template_changes_change_the_pod_hash() {
        let base = broker_sts("basic.yaml");
        let mut kc = cluster("basic.yaml");
        kc.spec.image = "tributary/broker:0.2.0".into();
        let vc = validate(&kc).expect("valid");
        let pool = vc.broker_pool();
        let new = serde_json::to_value(build_statefulset(&vc, pool, &config_hash(&vc, pool)))
            .expect("json");
        let path = |v: &serde_json::Value| {
            v["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION].clone()
        };
        assert_ne!(path(&base), path(&new));
    }

    #[test]
    fn a_restart_annotation_on_the_cluster_changes_the_pod_hash_and_one_on_a_pod_outdates_it() {
        let base = broker_sts("basic.yaml");
        let mut kc = cluster("basic.yaml");
        kc.metadata.annotations = Some(
            [(RESTART_ANNOTATION.to_owned(), "2026-12-04".to_owned())]
                .into_iter()
                .collect(),
        );
        let vc = validate(&kc).expect("valid");
        let pool = vc.broker_pool();
        let new = serde_json::to_value(build_statefulset(&vc, pool, &config_hash(&vc, pool)))
            .expect("json");
        let annotations =
            |v: &serde_json::Value| v["spec"]["template"]["metadata"]["annotations"].clone();
        assert_eq!(annotations(&new)[RESTART_TOKEN_ANNOTATION], "2026-12-04");
        assert_ne!(
            annotations(&base)[CONFIG_HASH_ANNOTATION],
            annotations(&new)[CONFIG_HASH_ANNOTATION]
        );
        // a pod of the desired template is up to date until it is asked to restart
        let desired = crate::cluster::build::DesiredPod {
            hash: annotations(&new)[CONFIG_HASH_ANNOTATION]
                .as_str()
                .expect("hash")
                .to_owned(),
            dynamic_configs: ["min.insync.replicas".to_owned()].into(),
        };
        let mut pod: BTreeMap<String, String> =
            serde_json::from_value(annotations(&new)).expect("annotations");
        assert!(desired.run_by(&pod));
        pod.insert(RESTART_ANNOTATION.to_owned(), "true".to_owned());
        assert!(!desired.run_by(&pod));
    }
}
