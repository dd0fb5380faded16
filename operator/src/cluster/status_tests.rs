//! Tests of `status`: conditions, nodes, the operation and the status patch over several passes.

use super::*;
use crate::cluster::fixtures::cluster;
use crate::cluster::validate::validate;

#[test]
fn status_lists_at_most_twenty_blockers() {
    let blocked = (0..25)
        .map(|i| crate::day2::Blocker {
            partition: format!("t-{i}"),
            reason: "ISR [1]".into(),
        })
        .collect();
    let d = Decision {
        action: crate::day2::Day2Action::Wait,
        state: crate::day2::Day2State::default(),
        operation: crate::day2::ReportedOperation::Rolling,
        message: "waiting".into(),
        blocked,
        skipped: Vec::new(),
        done: 0,
        total: 6,
        bytes: None,
    };
    let op = day2_operation(&d);
    assert_eq!(op.blockers.len(), 21);
    assert_eq!(op.blockers[0], "t-0: ISR [1]");
    assert_eq!(op.blockers[20], "… and 5 more");
}

fn observed(ready: &[&str], brokers: &[i32], hash: &str) -> Observed {
    Observed {
        pods: ready
            .iter()
            .map(|p| {
                (
                    p.to_string(),
                    PodObservation {
                        ready: true,
                        up_to_date: hash == "h1",
                    },
                )
            })
            .collect(),
        cluster: Ok(ClusterInfo {
            broker_ids: brokers.to_vec(),
            controller_id: Some(1),
        }),
        refusals: Vec::new(),
        pods_without_rack: Vec::new(),
        nodes_without_rack: Vec::new(),
        resizing: Vec::new(),
        day2: Day2Outcome::NotRun,
    }
}

/// Every pod ready on the current config, every broker registered.
fn healthy() -> Observed {
    observed(&ALL, &[100, 101, 102], "h1")
}

/// The status of a first pass that found the cluster healthy, at generation 3.
fn ready_status(vc: &ValidatedCluster) -> KafkaClusterStatus {
    compute_status(vc, &healthy(), &Default::default(), Some(3), "t1")
}

const ALL: [&str; 6] = [
    "demo-controller-0",
    "demo-controller-1",
    "demo-controller-2",
    "demo-broker-0",
    "demo-broker-1",
    "demo-broker-2",
];

#[test]
fn ready_only_when_every_pod_is_ready_and_every_broker_registered() {
    let vc = validate(&cluster("basic.yaml")).expect("valid");
    let s = compute_status(
        &vc,
        &observed(&ALL, &[100, 101], "h1"),
        &Default::default(),
        Some(3),
        "t",
    );
    let ready = find_condition(&s.conditions, "Ready").expect("ready");
    assert!(!ready.is_true());
    assert_eq!(s.operation.kind, OperationKind::Creating);
    assert_eq!((s.operation.done, s.operation.total), (5, 6));
    assert!(
        !s.nodes
            .iter()
            .find(|n| n.node_id == 102)
            .expect("node")
            .registered
    );

    let s2 = compute_status(&vc, &healthy(), &s, Some(3), "t2");
    let ready = find_condition(&s2.conditions, "Ready").expect("ready");
    assert!(ready.is_true());
    assert_eq!(ready.observed_generation, Some(3));
    assert_eq!(s2.operation.kind, OperationKind::None);
    assert_eq!(s2.controller_leader, Some(1));
    assert_eq!(
        s2.bootstrap.as_deref(),
        Some("demo-bootstrap.kafka.svc:9092")
    );

    // a broker pod goes away after the cluster was ready: Degraded
    let s3 = compute_status(
        &vc,
        &observed(&ALL[..5], &[100, 101], "h1"),
        &s2,
        Some(3),
        "t3",
    );
    assert!(find_condition(&s3.conditions, "Degraded")
        .expect("degraded")
        .is_true());
    assert_eq!(
        s3.operation.kind,
        OperationKind::None,
        "a failed node is not scaling"
    );
}

#[test]
fn a_failed_node_stays_degraded_is_not_scaling_and_the_leader_is_kept() {
    let vc = validate(&cluster("basic.yaml")).expect("valid");
    let ready = ready_status(&vc);
    let mut status = ready;
    // broker 2 goes down for several passes, and the cluster cannot name a leader meanwhile
    for pass in 0..4 {
        let mut obs = observed(&ALL[..5], &[100, 101], "h1");
        if pass > 0 {
            obs.cluster = Err("timeout".into());
        }
        status = compute_status(&vc, &obs, &status, Some(3), &format!("t{}", pass + 2));
        let degraded = find_condition(&status.conditions, "Degraded").expect("degraded");
        assert!(degraded.is_true(), "pass {pass}: {degraded:?}");
        assert_eq!(degraded.reason, "NodesNotReady");
        assert!(
            degraded.message.contains("demo-broker-2"),
            "{}",
            degraded.message
        );
        assert_eq!(degraded.last_transition_time.as_deref(), Some("t2"));
        assert_eq!(status.operation.kind, OperationKind::None, "pass {pass}");
        assert_eq!(status.controller_leader, Some(1), "pass {pass}");
    }
    let back = compute_status(&vc, &healthy(), &status, Some(3), "t9");
    assert!(!find_condition(&back.conditions, "Degraded")
        .expect("degraded")
        .is_true());
}

#[test]
fn added_nodes_are_scaling_until_ready() {
    let kc = cluster("basic.yaml");
    let vc = validate(&kc).expect("valid");
    let ready = ready_status(&vc);
    let mut more = kc;
    more.spec.brokers.replicas = 4;
    let vc4 = validate(&more).expect("valid");
    let s = compute_status(&vc4, &healthy(), &ready, Some(4), "t2");
    assert_eq!(s.operation.kind, OperationKind::Scaling);
    // the next pass lists demo-broker-3 already: still scaling until it is ready
    let s = compute_status(&vc4, &healthy(), &s, Some(4), "t3");
    assert_eq!(s.operation.kind, OperationKind::Scaling);
    let mut all = ALL.to_vec();
    all.push("demo-broker-3");
    let s = compute_status(
        &vc4,
        &observed(&all, &[100, 101, 102, 103], "h1"),
        &s,
        Some(4),
        "t4",
    );
    assert_eq!(s.operation.kind, OperationKind::None);
}

#[test]
fn rack_awareness_warns_about_pods_without_the_zone_label() {
    let vc = validate(&cluster("combined.yaml")).expect("valid");
    let mut obs = observed(&["dev-node-0"], &[0], "h1");
    obs.pods_without_rack = vec!["dev-node-0".into()];
    let s = compute_status(&vc, &obs, &Default::default(), Some(1), "t");
    let c = find_condition(&s.conditions, "RackAwareness").expect("rack condition");
    assert!(!c.is_true());
    assert_eq!(c.reason, "ZoneLabelMissing");
    assert!(c.message.contains("dev-node-0"), "{}", c.message);
    assert!(
        c.message.contains("PodTopologyLabelsAdmission"),
        "{}",
        c.message
    );
    obs.nodes_without_rack = vec!["worker-1".into()];
    let s = compute_status(&vc, &obs, &s, Some(1), "t");
    let c = find_condition(&s.conditions, "RackAwareness").expect("rack condition");
    assert!(
        c.message.contains("nodes without it: worker-1"),
        "{}",
        c.message
    );
    obs.pods_without_rack.clear();
    obs.nodes_without_rack.clear();
    let s = compute_status(&vc, &obs, &s, Some(1), "t");
    assert!(find_condition(&s.conditions, "RackAwareness")
        .expect("rack condition")
        .is_true());
    let basic = validate(&cluster("basic.yaml")).expect("valid");
    let s = compute_status(
        &basic,
        &observed(&ALL, &[], "h1"),
        &Default::default(),
        Some(1),
        "t",
    );
    assert!(find_condition(&s.conditions, "RackAwareness").is_none());
}

#[test]
fn pods_with_an_old_hash_are_listed_as_outdated() {
    let vc = validate(&cluster("basic.yaml")).expect("valid");
    let mut obs = healthy();
    obs.pods.get_mut("demo-broker-1").expect("pod").up_to_date = false;
    let s = compute_status(&vc, &obs, &Default::default(), Some(1), "t");
    assert_eq!(s.outdated_pods, vec!["demo-broker-1".to_owned()]);
    let p = find_condition(&s.conditions, "Progressing").expect("progressing");
    assert_eq!(p.reason, "RestartRequired");
}

#[test]
fn the_status_patch_removes_what_the_new_status_no_longer_has() {
    let previous = KafkaClusterStatus {
        day2: Some(crate::day2::Day2State {
            known_brokers: vec![100],
            operation: Some(Operation::Restarting {
                rack_peers: Vec::new(),
                pod: "demo-broker-0".into(),
                node_id: 100,
            }),
            blocked_since: Some("t".into()),
            throttled: true,
            leaders_elected: false,
            moves: None,
        }),
        operation: OperationStatus {
            kind: OperationKind::Rolling,
            blockers: vec!["orders-0: ISR [1]".into()],
            ..OperationStatus::default()
        },
        ..KafkaClusterStatus::default()
    };
    let status = KafkaClusterStatus {
        day2: Some(crate::day2::Day2State {
            known_brokers: vec![100],
            ..Default::default()
        }),
        ..KafkaClusterStatus::default()
    };
    let patch = status_patch(&previous, &status);
    let day2 = &patch["status"]["day2"];
    assert!(day2["operation"].is_null() && day2.get("operation").is_some());
    assert!(day2
        .get("blockedSince")
        .is_some_and(serde_json::Value::is_null));
    assert!(day2
        .get("throttled")
        .is_some_and(serde_json::Value::is_null));
    assert_eq!(day2["knownBrokers"], serde_json::json!([100]));
    let op = &patch["status"]["operation"];
    assert!(op.get("blockers").is_some_and(serde_json::Value::is_null));
    assert_eq!(op["kind"], "None");
}

#[test]
fn a_day2_operation_is_still_reported_while_kafka_cannot_be_observed() {
    let vc = validate(&cluster("basic.yaml")).expect("valid");
    let previous = KafkaClusterStatus {
        operation: OperationStatus {
            kind: OperationKind::Draining,
            message: "draining brokers [103]".into(),
            done: 3,
            total: 9,
            blockers: vec!["orders-1: moving".into()],
            ..OperationStatus::default()
        },
        day2: Some(crate::day2::Day2State {
            known_brokers: vec![100, 101, 102, 103],
            operation: Some(Operation::Decommissioning {
                brokers: vec![103],
                moved: vec!["orders-1".into()],
                scaled_down: false,
            }),
            ..Default::default()
        }),
        ..KafkaClusterStatus::default()
    };
    let mut obs = healthy();
    obs.day2 = Day2Outcome::Unavailable("connection refused".into());
    let s = compute_status(&vc, &obs, &previous, Some(1), "t");
    assert_eq!(s.operation.kind, OperationKind::Draining);
    assert_eq!((s.operation.done, s.operation.total), (3, 9));
    assert!(
        s.operation.message.contains("connection refused"),
        "{}",
        s.operation.message
    );
    assert_eq!(s.day2, previous.day2, "the state is kept");
    let c = find_condition(&s.conditions, DAY2_CONDITION).expect("condition");
    assert_eq!(c.reason, "KafkaUnreachable");
}

#[test]
fn unreachable_cluster_is_not_ready_and_says_why() {
    let vc = validate(&cluster("basic.yaml")).expect("valid");
    let mut obs = observed(&ALL, &[], "h1");
    obs.cluster = Err("connection refused".into());
    let s = compute_status(&vc, &obs, &Default::default(), Some(1), "t");
    let ready = find_condition(&s.conditions, "Ready").expect("ready");
    assert!(!ready.is_true());
    assert!(
        ready.message.contains("connection refused"),
        "{}",
        ready.message
    );
}
