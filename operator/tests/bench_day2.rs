//! Benchmarks of day-2 operations carried out by the operator binary on broker processes (the
//! test bed of `e2e_day2`). Not run in CI (`#[ignore]`); run them with a release broker:
//!
//! ```sh
//! cargo build --release -p broker --bins
//! TRIBUTARY_BROKER_BIN=$PWD/target/release/broker cargo nextest run -p operator \
//!     --run-ignored only -E 'binary(bench_day2)' --no-capture
//! ```
//!
//! - drain: broker 103 of four holds `TRIBUTARY_BENCH_DRAIN_MIB` (default 1024) MiB; scaling to
//!   three brokers with `spec.rebalance.throttleBytesPerSecond` = `TRIBUTARY_BENCH_THROTTLE`
//!   (default 20,000,000) moves its replicas away. Reported: the time from the edit to the
//!   StatefulSet shrinking, against the throttle-bound time — the most bytes one broker must
//!   receive (follower throttle) or send as a leader (leader throttle), over the rate.
//! - roll: a broker config change restarts three brokers under the workload (2 producers at
//!   200 msg/s each, acks=all); reported: the roll's total time, the longest gap between two
//!   acknowledgements and the slowest acknowledgement a producer saw.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::bed::Bed;
use common::fixture;
use common::kafka::{create_topic_assigned, produce};
use common::sampler::Sampler;
use common::workload::{self, python, Workload};
use operator::admin::client::KafkaAdminClient;
use serde_json::{json, Value};

const OPERATION: Duration = Duration::from_secs(1800);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand with a release broker"]
async fn bench_drain_of_one_broker() {
    let mib = env_u64("TRIBUTARY_BENCH_DRAIN_MIB", 1024);
    let throttle = env_u64("TRIBUTARY_BENCH_THROTTLE", 20_000_000);
    let mut kc = fixture("basic.yaml");
    kc["spec"]["brokers"]["replicas"] = json!(4);
    kc["spec"]["rebalance"] = json!({ "throttleBytesPerSecond": throttle });
    let Some(bed) = Bed::start(kc).await else {
        return;
    };
    let sampler = Sampler::start((0..4).map(|i| bed.broker_addr(i)).collect());
    let admin = KafkaAdminClient::connect(&bed.broker_addr(0))
        .await
        .expect("admin");
    // Eight partitions, each with a replica on 103 and led by its first replica.
    let assignment: [&[i32]; 8] = [
        &[103, 100, 101],
        &[100, 103, 102],
        &[101, 102, 103],
        &[102, 103, 100],
        &[103, 101, 102],
        &[100, 101, 103],
        &[101, 103, 100],
        &[102, 100, 103],
    ];
    create_topic_assigned(&admin, "bulk", &assignment).await;
    let per_partition = mib * 1024 * 1024 / assignment.len() as u64;
    let started = Instant::now();
    for (p, replicas) in assignment.iter().enumerate() {
        let leader = bed.broker_addr(replicas[0] - 100);
        let mut written = 0;
        while written < per_partition {
            // 512 KiB a request: under the broker's message.max.bytes
            produce(&leader, "bulk", p as i32, 512, 1024).await;
            written += 512 * 1024;
        }
    }
    println!("produced {mib} MiB in {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = sampler.latest().expect("a sample");

    bed.patch(json!({ "spec": { "brokers": { "replicas": 3 } } }))
        .await;
    let edited = Instant::now();
    // What status.operation says on the way: (seconds since the edit, moved, remaining, rate,
    // seconds from then to its ETA).
    let mut reported: Vec<(f64, u64, u64, u64, f64)> = Vec::new();
    bed.until("the StatefulSet shrunk", OPERATION, || {
        let op = bed.status()["operation"].clone();
        let eta = op["eta"]
            .as_str()
            .and_then(|e| e.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .map(|e| {
                e.duration_since(k8s_openapi::jiff::Timestamp::now())
                    .as_secs_f64()
            });
        let figures = (
            op["bytesMoved"].as_u64(),
            op["bytesRemaining"].as_u64(),
            op["bytesPerSecond"].as_u64(),
            eta,
        );
        if let (Some(moved), Some(remaining), Some(rate), Some(eta)) = figures {
            reported.push((edited.elapsed().as_secs_f64(), moved, remaining, rate, eta));
        }
        (bed.broker_replicas() == 3).then_some(())
    })
    .await;
    let drained = edited.elapsed();
    // The ETA status gave once a quarter was moved, against when the drain really ended.
    if let Some((at, moved, remaining, rate, eta)) = reported
        .iter()
        .find(|(_, m, r, _, _)| *m * 4 >= m + r)
        .copied()
    {
        println!(
            "status at {at:.1} s: {moved} of {} bytes moved at {rate} B/s, its ETA {eta:.1} s later \
             (at {:.1} s); the StatefulSet shrank at {:.1} s",
            moved + remaining,
            at + eta,
            drained.as_secs_f64()
        );
    }
    bed.until("settled", OPERATION, || {
        let nodes = bed.status()["nodes"].as_array().map_or(0, Vec::len);
        (bed.settled() && nodes == 6).then_some(())
    })
    .await;
    let done = edited.elapsed();
    let after = sampler.latest().expect("a sample");

    // What each broker had to receive, and send as the partition's leader.
    let mut received: BTreeMap<i32, u64> = BTreeMap::new();
    let mut sent: BTreeMap<i32, u64> = BTreeMap::new();
    for p in before.parts.iter().filter(|p| p.topic == "bulk") {
        let now = after
            .parts
            .iter()
            .find(|a| a.topic == p.topic && a.partition == p.partition)
            .expect("partition");
        for added in now.replicas.iter().filter(|r| !p.replicas.contains(r)) {
            *received.entry(*added).or_default() += per_partition;
            *sent.entry(p.replicas[0]).or_default() += per_partition;
        }
    }
    let most = received
        .values()
        .chain(sent.values())
        .max()
        .copied()
        .unwrap_or(0);
    let bound = most as f64 / throttle as f64;
    println!(
        "drain of {mib} MiB at {throttle} B/s: StatefulSet shrunk after {:.1} s, settled after {:.1} s; \
         throttle-bound {:.1} s (most bytes through one broker: {most}; received {received:?}, sent {sent:?}); \
         ratio {:.2}",
        drained.as_secs_f64(),
        done.as_secs_f64(),
        bound,
        drained.as_secs_f64() / bound
    );
}

/// The longest gap between two acknowledgements and the slowest acknowledgement (ms) in a
/// workload history.
fn stalls(history: &str) -> (f64, f64) {
    let ops: Vec<Value> = history
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|op: &Value| op["f"] == "send")
        .collect();
    let mut invoked: BTreeMap<String, i64> = BTreeMap::new();
    let mut acks = Vec::new();
    let mut slowest = 0i64;
    for op in &ops {
        let key = format!("{}", op["value"]);
        let t = op["time_ns"].as_i64().unwrap_or(0);
        match op["type"].as_str() {
            Some("invoke") => {
                invoked.insert(key, t);
            }
            Some("ok") => {
                acks.push(t);
                if let Some(start) = invoked.get(&key) {
                    slowest = slowest.max(t - start);
                }
            }
            _ => {}
        }
    }
    acks.sort_unstable();
    let gap = acks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    (gap as f64 / 1e6, slowest as f64 / 1e6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand with a release broker"]
async fn bench_rolling_restart_of_three_brokers() {
    let Some(python) = python() else {
        return;
    };
    let Some(bed) = Bed::start(fixture("basic.yaml")).await else {
        return;
    };
    let out = bed.dir.path().join("workload");
    let workload = Workload::start(
        &python,
        &bed.broker_addr(0),
        &out,
        Duration::from_secs(1800),
        &workload::args("roll", 12, true, 200),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    bed.patch(
        json!({ "spec": { "brokers": { "config": { "log.cleaner.backoff.ms": "15001" } } } }),
    )
    .await;
    let edited = Instant::now();
    bed.until("the roll finished", OPERATION, || {
        bed.settled().then_some(())
    })
    .await;
    let roll = edited.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let verdict = workload.finish();
    verdict.assert_clean("roll benchmark");
    let history = std::fs::read_to_string(out.join("history.jsonl")).expect("history");
    let (gap, slowest) = stalls(&history);
    println!(
        "rolling restart of 3 brokers: {:.1} s; longest gap between acknowledgements {gap:.0} ms, \
         slowest acknowledgement {slowest:.0} ms; sends {} acknowledged, {} failed, {} indeterminate",
        roll.as_secs_f64(),
        verdict.count("acknowledged"),
        verdict.count("failed"),
        verdict.count("indeterminate")
    );
}
