//! Times the planner on a large cluster: 10,000 partitions (RF 3) on 45 brokers in 3 racks,
//! commissioning 5 more (Balance), then, on the result, decommissioning those 5 again (Drain).
//! Run in release:
//!
//! ```sh
//! cargo run --release -p tributary-planner --example plan_large
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use tributary_planner::{plan, BrokerInfo, Goal, PartitionInfo, Plan};

const PARTITIONS: i32 = 10_000;
const OLD_BROKERS: i32 = 45;
const NEW_BROKERS: i32 = 5;

fn main() {
    let brokers: Vec<BrokerInfo> = (1..=OLD_BROKERS + NEW_BROKERS)
        .map(|id| BrokerInfo {
            id,
            rack: Some(format!("rack-{}", id % 3)),
            cordoned: false,
        })
        .collect();
    // Round-robin over the old brokers with a stride of 16, so the three replicas of a
    // partition sit in three racks; sizes vary so byte choices matter.
    let partitions: Vec<PartitionInfo> = (0..PARTITIONS)
        .map(|p| PartitionInfo {
            topic: format!("topic-{}", p % 100),
            partition: p / 100,
            replicas: (0..3).map(|r| 1 + (p + r * 16) % OLD_BROKERS).collect(),
            size_bytes: 1_000_000 + (p as u64 * 7919) % 50_000_000,
        })
        .collect();
    let commission = timed(&brokers, &partitions, &Goal::Balance);
    let balanced = apply(&partitions, &commission);
    let leaving: BTreeSet<i32> = (OLD_BROKERS + 1..=OLD_BROKERS + NEW_BROKERS).collect();
    timed(&brokers, &balanced, &Goal::Drain(leaving));
}

fn timed(brokers: &[BrokerInfo], partitions: &[PartitionInfo], goal: &Goal) -> Plan {
    let start = Instant::now();
    let result = plan(brokers, partitions, goal).expect("plannable");
    let elapsed = start.elapsed();
    let added: usize = result.moves.iter().map(|m| m.added().len()).sum();
    println!(
        "{goal:?}: {} partitions x {} brokers in {elapsed:?}",
        partitions.len(),
        brokers.len()
    );
    println!(
        "  {} moves, {added} replicas copied, {} MB",
        result.moves.len(),
        result.bytes_to_move / 1_000_000
    );
    println!(
        "  replicas per broker (min, max over brokers holding any): {:?} -> {:?}",
        spread(&result.replicas_per_broker_before),
        spread(&result.replicas_per_broker_after)
    );
    println!(
        "  leaders per broker: {:?} -> {:?}",
        spread(&result.leaders_per_broker_before),
        spread(&result.leaders_per_broker_after)
    );
    result
}

fn spread(counts: &BTreeMap<i32, usize>) -> (usize, usize) {
    let used = counts.values().copied().filter(|&c| c > 0);
    (used.clone().min().unwrap_or(0), used.max().unwrap_or(0))
}

fn apply(partitions: &[PartitionInfo], plan: &Plan) -> Vec<PartitionInfo> {
    let targets: BTreeMap<(&str, i32), &Vec<i32>> = plan
        .moves
        .iter()
        .map(|m| ((m.topic.as_str(), m.partition), &m.target))
        .collect();
    let mut out = partitions.to_vec();
    for p in &mut out {
        if let Some(t) = targets.get(&(p.topic.as_str(), p.partition)) {
            p.replicas = (*t).clone();
        }
    }
    out
}
