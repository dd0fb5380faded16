//! Day-2 operations end to end: the real operator binary (its normal controller loop, over HTTP
//! to the test API server) runs a KafkaCluster whose pods are real broker processes (the test
//! kubelet), while the workload of `e2e/workload` (acks=all idempotent producers, consumers and
//! the history checker) runs against it and a sampler reads every partition's ISR every 100 ms.
//!
//! - scale out 3 → 5 (replicas end within 10 % of even), then in 5 → 3 with the operator killed
//!   mid-drain (a new operator resumes from status; the leaving brokers hold nothing before their
//!   pods go; no ISR below min.insync.replicas), then an unsafe scale-down refused;
//! - a cluster config change rolls every node with 0 failed acks=all sends; then, with one
//!   follower hung (SIGSTOP) and out of the ISRs, the next roll waits and says why, and proceeds
//!   once the follower is back;
//! - with racks (pods on nodes of three zones) and `maxUnavailablePerRack: 2`, a roll restarts
//!   the two brokers of one zone together, the others one at a time, with 0 failed sends and no
//!   ISR below min.insync.replicas.
//!
//! Each test needs the broker binary and the workload's Python (see `common::workload`); without
//! them it skips with a message (`scripts/test.sh` makes a missing Python a failure).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::bed::{Bed, LEASE, NS};
use common::kafka::create_topic_assigned;
use common::sampler::{replicas_per_broker, Sampler};
use common::workload::{self, python, Workload};
use common::{coll, fixture};
use operator::admin::client::KafkaAdminClient;
use operator::admin::KafkaAdmin;
use serde_json::{json, Value};

/// min.insync.replicas of the broker pool in `basic.yaml`.
const MIN_ISR: usize = 2;
/// Bound for one whole day-2 operation on this machine (debug brokers, two cores).
const OPERATION: Duration = Duration::from_secs(180);

async fn bed(kc: Value) -> Option<(Bed, PathBuf)> {
    bed_in_zones(kc, &[]).await
}

/// `bed` with the pods on nodes of `zones` (`Kubelet::start_in_zones`).
async fn bed_in_zones(kc: Value, zones: &[&str]) -> Option<(Bed, PathBuf)> {
    let Some(python) = python() else {
        eprintln!("SKIPPED: no Python for the workload (see common::workload)");
        return None;
    };
    Some((Bed::start_in_zones(kc, zones).await?, python))
}

/// Starts the workload on `topic` (12 partitions, created beforehand), lets it run 5 s, then
/// changes a static cluster-wide config (every node restarts) and waits until the roll has
/// finished. Returns the workload, still running, and when the roll started.
async fn roll_under_workload(bed: &Bed, python: &Path, topic: &str) -> (Workload, Instant) {
    let workload = Workload::start(
        python,
        &bed.broker_addr(0),
        &bed.dir.path().join(format!("workload-{topic}")),
        Duration::from_secs(900),
        &workload::args(topic, 12, false, 50),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    bed.patch(json!({ "spec": { "config": { "log.cleaner.backoff.ms": "15000" } } }))
        .await;
    let started = Instant::now();
    bed.until("the roll finished", OPERATION, || {
        bed.settled().then_some(())
    })
    .await;
    (workload, started)
}

fn operation(bed: &Bed) -> Value {
    bed.status()["operation"].clone()
}

/// `status.day2.knownBrokers`: the brokers the operator has commissioned.
fn known_brokers(bed: &Bed) -> Vec<i64> {
    let known = bed.status()["day2"]["knownBrokers"].clone();
    known
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

/// The pods deleted through the API so far whose name starts with `prefix`.
fn deletes(bed: &Bed, prefix: &str) -> Vec<String> {
    bed.api
        .requests(&format!("DELETE /api/v1/namespaces/{NS}/pods/{prefix}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_then_in_with_the_operator_killed_mid_drain() {
    let Some((mut bed, python)) = bed(fixture("basic.yaml")).await else {
        return;
    };
    let start = Instant::now();
    let addrs = |bed: &Bed, n: i32| (0..n).map(|i| bed.broker_addr(i)).collect::<Vec<_>>();
    let sampler = Sampler::start(addrs(&bed, 3));
    let workload = Workload::start(
        &python,
        &bed.broker_addr(0),
        &bed.dir.path().join("workload"),
        Duration::from_secs(900),
        &workload::args("day2", 30, true, 50),
    );
    bed.until("the workload's topic", Duration::from_secs(60), || {
        let latest = sampler.latest()?;
        (latest.parts.iter().filter(|p| p.topic == "day2").count() == 30).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 3 → 5: the new brokers register and receive their share.
    bed.patch(json!({ "spec": { "brokers": { "replicas": 5 } } }))
        .await;
    sampler.set_addresses(addrs(&bed, 5));
    bed.until("brokers 103 and 104 commissioned", OPERATION, || {
        let known = known_brokers(&bed);
        (bed.settled() && known.contains(&103) && known.contains(&104)).then_some(())
    })
    .await;
    let latest = sampler.latest().expect("a sample");
    let per_broker = replicas_per_broker(&latest.parts);
    let total: usize = per_broker.values().sum();
    let even = total as f64 / 5.0;
    println!("after 3 → 5: replicas per broker {per_broker:?} (even: {even:.1})");
    assert_eq!(per_broker.len(), 5, "{per_broker:?}");
    for (broker, n) in &per_broker {
        let off = (*n as f64 - even).abs() / even;
        assert!(
            off <= 0.10,
            "broker {broker} holds {n} replicas, {:.0} % off even ({even:.1}): {per_broker:?}",
            off * 100.0
        );
    }

    // 5 → 3, the operator killed once it has moved some partitions; a new one resumes.
    bed.patch(json!({ "spec": { "brokers": { "replicas": 3 } } }))
        .await;
    bed.until("a drain with moves submitted", OPERATION, || {
        let op = &bed.status()["day2"]["operation"];
        let moved = op["moved"].as_array().map_or(0, Vec::len);
        (op["kind"] == "decommissioning" && moved > 0).then_some(())
    })
    .await;
    let killed_at = Instant::now();
    bed.replace_operator();
    // Until the StatefulSet shrinks, the leaving brokers' pods run; when it does, the last
    // sample before shows them holding nothing and every partition fully in sync.
    let leaving: BTreeSet<i32> = [103, 104].into();
    let mut last_before_shrink = None;
    bed.until("the StatefulSet shrunk to 3", OPERATION, || {
        if bed.broker_replicas() == 3 {
            return Some(());
        }
        last_before_shrink = sampler.latest();
        None
    })
    .await;
    let before = last_before_shrink.expect("a sample before the shrink");
    for p in &before.parts {
        assert!(
            !p.replicas.iter().any(|r| leaving.contains(r)),
            "the StatefulSet shrank while {}-{} had replicas {:?}",
            p.topic,
            p.partition,
            p.replicas
        );
        assert_eq!(
            p.isr.len(),
            p.replicas.len(),
            "the StatefulSet shrank while {}-{} was not fully in sync: {p:?}",
            p.topic,
            p.partition
        );
    }
    sampler.set_addresses(addrs(&bed, 3));
    bed.until("brokers 103 and 104 decommissioned", OPERATION, || {
        let nodes = bed.status()["nodes"].as_array().map_or(0, Vec::len);
        (bed.settled() && nodes == 6).then_some(())
    })
    .await;
    let lease = bed.api.get(&coll(NS, "leases"), LEASE).expect("lease");
    assert_eq!(
        lease["spec"]["holderIdentity"], "operator-e2e-2",
        "the new operator finished the drain"
    );
    println!(
        "drain resumed by a new operator; done {:?} after the kill",
        killed_at.elapsed()
    );
    let pods = bed.api.names(&coll(NS, "pods"));
    assert!(
        !pods
            .iter()
            .any(|p| p == "demo-broker-3" || p == "demo-broker-4"),
        "{pods:?}"
    );

    // An unsafe scale-down (below the topics' replication factor 3) is refused and changes
    // nothing; reverting it clears the refusal.
    bed.patch(json!({ "spec": { "brokers": { "replicas": 2 } } }))
        .await;
    let refused = bed
        .until("the scale-down refused", Duration::from_secs(30), || {
            let c = bed.condition("Degraded");
            (c["reason"] == "ScaleDownRefused").then_some(c)
        })
        .await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("day2"),
        "the refusal names the topic: {refused}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bed.broker_replicas(), 3);
    bed.patch(json!({ "spec": { "brokers": { "replicas": 3 } } }))
        .await;
    bed.until("the refusal cleared", Duration::from_secs(30), || {
        (bed.condition("Degraded")["status"] == "False").then_some(())
    })
    .await;

    let below = sampler.below("day2", MIN_ISR, start);
    assert!(below.is_empty(), "ISR below min.insync.replicas: {below:?}");
    println!("{} ISR samples", sampler.since(start).len());
    let verdict = workload.finish();
    verdict.assert_clean("scale out and in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restarts_lose_no_send_and_wait_for_a_hung_follower() {
    let mut kc = fixture("basic.yaml");
    // A follower that stops fetching leaves the ISR after 3 s (not 30): the hung follower below
    // is out of the ISRs well before its pod's readiness probe fails.
    kc["spec"]["brokers"]["config"]["replica.lag.time.max.ms"] = json!("3000");
    let Some((bed, python)) = bed(kc).await else {
        return;
    };
    let start = Instant::now();
    let sampler = Sampler::start((0..3).map(|i| bed.broker_addr(i)).collect());
    // Broker 102 (demo-broker-2) is never a preferred leader, so hanging it stops only
    // replication: no partition loses its leader.
    let admin = KafkaAdminClient::connect(&bed.broker_addr(0))
        .await
        .expect("admin connection");
    let assignment: Vec<&[i32]> = (0..12)
        .map(|i| -> &[i32] {
            if i % 2 == 0 {
                &[100, 101, 102]
            } else {
                &[101, 100, 102]
            }
        })
        .collect();
    // One topic per workload run (the values a run writes are its producers' sequence numbers).
    for topic in ["roll", "hung"] {
        create_topic_assigned(&admin, topic, &assignment).await;
    }

    // A cluster-wide config change: every node restarts, the controllers (behind the quorum
    // gates) before the brokers (behind the ISR gates), and no acks=all send fails.
    let (first, roll_started) = roll_under_workload(&bed, &python, "roll").await;
    println!("roll of 6 nodes: {:?}", roll_started.elapsed());
    // Leadership moved away for each restart is back with the preferred replicas.
    let latest = bed
        .until("a sample after the roll", Duration::from_secs(5), || {
            sampler.latest().filter(|s| s.at > roll_started)
        })
        .await;
    let unled: Vec<String> = latest
        .parts
        .iter()
        .filter(|p| p.topic == "roll" && Some(&p.leader) != p.replicas.first())
        .map(|p| {
            format!(
                "{}-{} led by {} of {:?}",
                p.topic, p.partition, p.leader, p.replicas
            )
        })
        .collect();
    assert!(
        unled.is_empty(),
        "not led by the preferred replica after the roll: {unled:?}"
    );
    assert_eq!(deletes(&bed, "demo-broker-").len(), 3);
    assert_eq!(deletes(&bed, "demo-controller-").len(), 3);
    let verdict = first.finish();
    verdict.assert_every_send_acknowledged("rolling restart");

    // A dynamic config added (log.retention.ms) is applied to the brokers through the admin
    // API as the cluster default: no pod restarts.
    let deleted = deletes(&bed, "demo-").len();
    bed.patch(json!({ "spec": { "config": { "log.retention.ms": "604800002" } } }))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let admin = KafkaAdminClient::connect(&bed.broker_addr(0))
            .await
            .expect("admin connection");
        let defaults = admin.describe_broker_defaults().await.expect("describe");
        let applied = defaults
            .iter()
            .any(|e| e.name == "log.retention.ms" && e.value.as_deref() == Some("604800002"));
        if applied {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not applied: {defaults:?}\n{}",
            bed.more()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bed.until(
        "settled on the new generation",
        Duration::from_secs(30),
        || bed.settled().then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(deletes(&bed, "demo-").len(), deleted, "a pod restarted");

    // Broker 102 hangs; once it is out of every ISR, a config change rolls: no other broker may
    // restart while that would leave a partition below min.insync.replicas.
    let second = Workload::start(
        &python,
        &bed.broker_addr(0),
        &bed.dir.path().join("workload-hung"),
        Duration::from_secs(900),
        &workload::args("hung", 12, false, 50),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    bed.kubelet.pause("demo-broker-2");
    let paused = Instant::now();
    bed.until(
        "broker 102 out of every ISR",
        Duration::from_secs(30),
        || {
            let latest = sampler.latest()?;
            let roll = latest
                .parts
                .iter()
                .filter(|p| p.topic == "roll" || p.topic == "hung");
            roll.clone().all(|p| !p.isr.contains(&102)).then_some(())
        },
    )
    .await;
    println!(
        "102 out of every ISR {:?} after the pause",
        paused.elapsed()
    );
    let deleted_before = deletes(&bed, "demo-broker-").len();
    bed.patch(
        json!({ "spec": { "brokers": { "config": { "log.cleaner.backoff.ms": "15001" } } } }),
    )
    .await;
    let blockers = bed
        .until("the roll to wait", Duration::from_secs(20), || {
            let b = operation(&bed)["blockers"].as_array().cloned()?;
            (!b.is_empty()).then_some(b)
        })
        .await;
    println!(
        "blocked {:?} after the pause: {} blockers, the first {:?}",
        paused.elapsed(),
        blockers.len(),
        blockers.first()
    );
    let says_why = blockers.iter().filter_map(Value::as_str).any(|b| {
        b.contains("below min.insync.replicas") || b.contains("pod demo-broker-2 to be ready")
    });
    assert!(says_why, "{blockers:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let new_deletes = deletes(&bed, "demo-broker-")[deleted_before..].to_vec();
    assert!(
        new_deletes.iter().all(|d| d.ends_with("demo-broker-2")),
        "a broker restarted while 102 was out of the ISRs: {new_deletes:?}"
    );
    bed.kubelet.resume("demo-broker-2");
    bed.until("broker 102 back in every ISR", OPERATION, || {
        let latest = sampler.latest()?;
        let roll = latest
            .parts
            .iter()
            .filter(|p| p.topic == "roll" || p.topic == "hung");
        roll.clone().all(|p| p.isr.contains(&102)).then_some(())
    })
    .await;
    let new_deletes = deletes(&bed, "demo-broker-")[deleted_before..].to_vec();
    assert!(
        new_deletes.iter().all(|d| d.ends_with("demo-broker-2")),
        "a broker restarted while 102 was out of the ISRs: {new_deletes:?}"
    );
    bed.until("the roll finished", OPERATION, || {
        bed.settled().then_some(())
    })
    .await;
    let verdict = second.finish();
    verdict.assert_clean("rolling restart with a hung follower");

    for topic in ["roll", "hung"] {
        let below = sampler.below(topic, MIN_ISR, start);
        assert!(below.is_empty(), "ISR below min.insync.replicas: {below:?}");
    }
    let events = bed.api.names(&coll(NS, "events"));
    println!(
        "{} events; ISR samples: {}",
        events.len(),
        sampler.since(start).len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_racks_brokers_restart_together_and_no_send_fails() {
    // One controller and four brokers on nodes of three zones: broker-0 and broker-3 in zone-a,
    // broker-1 in zone-b, broker-2 in zone-c; a roll may take down two brokers of one rack.
    let mut kc = fixture("basic.yaml");
    kc["spec"]["controllers"]["replicas"] = json!(1);
    kc["spec"]["brokers"]["replicas"] = json!(4);
    kc["spec"]["rack"] = json!({ "topologyKey": "topology.kubernetes.io/zone" });
    kc["spec"]["rollingUpdate"] = json!({ "maxUnavailablePerRack": 2 });
    let Some((bed, python)) = bed_in_zones(kc, &["zone-a", "zone-b", "zone-c"]).await else {
        return;
    };
    let start = Instant::now();
    let sampler = Sampler::start((0..4).map(|i| bed.broker_addr(i)).collect());
    let admin = KafkaAdminClient::connect(&bed.broker_addr(0))
        .await
        .expect("admin connection");
    let racks: BTreeSet<(i32, Option<String>)> = admin
        .observe()
        .await
        .expect("observe")
        .brokers
        .into_iter()
        .map(|b| (b.id, b.rack))
        .collect();
    let zone = |z: &str| Some(z.to_owned());
    assert_eq!(
        racks,
        [
            (100, zone("zone-a")),
            (101, zone("zone-b")),
            (102, zone("zone-c")),
            (103, zone("zone-a"))
        ]
        .into(),
        "each broker registers the zone of its node as its rack"
    );
    // Rack-aware: one replica per zone, zone-a's on 100 or 103, leaders spread over the zones.
    let assignment: Vec<Vec<i32>> = (0..12)
        .map(|i: usize| {
            let in_zone = [if (i / 3).is_multiple_of(2) { 100 } else { 103 }, 101, 102];
            (0..3).map(|r| in_zone[(i + r) % 3]).collect()
        })
        .collect();
    let slices: Vec<&[i32]> = assignment.iter().map(Vec::as_slice).collect();
    create_topic_assigned(&admin, "racks", &slices).await;
    let (workload, roll_started) = roll_under_workload(&bed, &python, "racks").await;
    println!(
        "roll of 5 nodes, zone-a's two brokers together: {:?}",
        roll_started.elapsed()
    );
    let order: Vec<String> = deletes(&bed, "demo-broker-")
        .iter()
        .filter_map(|d| d.rsplit('/').next().map(str::to_owned))
        .collect();
    assert_eq!(
        order,
        [
            "demo-broker-0",
            "demo-broker-3",
            "demo-broker-1",
            "demo-broker-2"
        ],
        "zone-a's brokers restart together, then the others one at a time"
    );
    // Both zone-a brokers were down at the same time (each out of its partitions' ISRs).
    let together = sampler.since(roll_started).iter().any(|s| {
        let out = |id: i32| {
            s.parts
                .iter()
                .any(|p| p.topic == "racks" && p.replicas.contains(&id) && !p.isr.contains(&id))
        };
        out(100) && out(103)
    });
    assert!(
        together,
        "no sample shows 100 and 103 out of their ISRs at once"
    );
    let below = sampler.below("racks", MIN_ISR, start);
    assert!(below.is_empty(), "ISR below min.insync.replicas: {below:?}");
    let verdict = workload.finish();
    verdict.assert_every_send_acknowledged("rack roll");
}
