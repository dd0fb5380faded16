//! `tributary`, the admin CLI for people without Kafka's Java tools: describe topics (leader,
//! replicas, ISR, like `kafka-topics.sh --describe`) and brokers (address, rack, log-dir bytes),
//! and drive reassignments — generate a plan with `tributary-planner` (drain brokers, or spread
//! partitions over all of them), execute it with an optional replication throttle, watch its
//! progress, cancel it. A plan is a JSON file, so it can be reviewed before it runs.

pub mod client;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use tributary_planner::{BrokerInfo, Goal, PartitionInfo, PartitionState, Plan};

use client::{Client, ClusterMeta};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Tributary's admin CLI.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about)]
pub struct Cli {
    /// Brokers to bootstrap from (host:port, comma-separated).
    #[arg(
        short,
        long,
        env = "TRIBUTARY_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Topics and their partitions.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// The brokers clients see.
    #[command(subcommand)]
    Brokers(BrokersCommand),
    /// Partition reassignments: plan, execute, status, cancel.
    #[command(subcommand)]
    Reassign(ReassignCommand),
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Every partition's leader, replicas, ISR and offline replicas (all topics when none named).
    Describe {
        topics: Vec<String>,
        /// Only partitions whose ISR is smaller than their replica set.
        #[arg(long)]
        under_replicated: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BrokersCommand {
    /// Id, address, rack, cordoned, replicas, leaders and log-dir bytes of every broker.
    List,
    /// Stops new replicas being placed on a broker (KIP-1066; its replicas keep serving): new
    /// topics and partitions and `reassign plan` leave it out.
    Cordon { id: i32 },
    /// Lets new replicas be placed on a broker again.
    Uncordon { id: i32 },
}

#[derive(Debug, Subcommand)]
pub enum ReassignCommand {
    /// Plans moves and writes them to a file (nothing changes in the cluster).
    Plan {
        /// Move every replica off these brokers (comma-separated ids).
        #[arg(long, value_delimiter = ',', conflicts_with = "balance")]
        drain: Vec<i32>,
        /// Spread replicas and preferred leaders evenly over all brokers (after adding some).
        #[arg(long)]
        balance: bool,
        /// Only these topics (default: every topic).
        #[arg(long, value_delimiter = ',')]
        topics: Vec<String>,
        /// Where to write the plan.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Submits a plan's moves, with an optional replication throttle.
    Execute {
        plan: PathBuf,
        /// Bytes per second for the moving replicas, leader and follower side.
        #[arg(long)]
        throttle: Option<u64>,
    },
    /// Progress of a plan; removes its throttle once every move is done.
    Status {
        plan: PathBuf,
        /// Poll every second until done, with the rate and time left.
        #[arg(long)]
        watch: bool,
    },
    /// Cancels the plan's moves that are still running (their partitions keep their original
    /// replicas) and removes its throttle.
    Cancel { plan: PathBuf },
}

/// A plan as written to its file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanFile {
    /// What was asked, for people reading the file.
    pub goal: String,
    pub plan: Plan,
    /// The throttle `execute` set (removed by `status` when done, or by `cancel`).
    #[serde(default)]
    pub throttle: Option<u64>,
}

/// Runs one command; what it prints goes to `out`.
pub async fn run(cli: Cli, out: &mut dyn std::io::Write) -> Result<()> {
    let mut client = Client::connect(&cli.bootstrap).await?;
    match cli.command {
        Command::Topics(TopicsCommand::Describe {
            topics,
            under_replicated,
        }) => describe_topics(&mut client, &topics, under_replicated, out).await,
        Command::Brokers(BrokersCommand::List) => list_brokers(&mut client, out).await,
        Command::Brokers(BrokersCommand::Cordon { id }) => {
            set_cordon(&mut client, id, true).await?;
            writeln!(
                out,
                "broker {id} cordoned: no new replicas will be placed on it"
            )?;
            Ok(())
        }
        Command::Brokers(BrokersCommand::Uncordon { id }) => {
            set_cordon(&mut client, id, false).await?;
            writeln!(out, "broker {id} uncordoned")?;
            Ok(())
        }
        Command::Reassign(ReassignCommand::Plan {
            drain,
            balance,
            topics,
            out: path,
        }) => plan(&mut client, drain, balance, &topics, &path, out).await,
        Command::Reassign(ReassignCommand::Execute { plan, throttle }) => {
            execute(&mut client, &plan, throttle, out).await
        }
        Command::Reassign(ReassignCommand::Status { plan, watch }) => {
            status(&mut client, &plan, watch, out).await
        }
        Command::Reassign(ReassignCommand::Cancel { plan }) => {
            cancel(&mut client, &plan, out).await
        }
    }
}

fn ids(v: &[i32]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

async fn describe_topics(
    client: &mut Client,
    topics: &[String],
    under_replicated: bool,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let meta = client
        .metadata((!topics.is_empty()).then_some(topics))
        .await?;
    let ongoing = client.ongoing().await?;
    for p in &meta.partitions {
        if under_replicated && p.isr.len() >= p.replicas.len() {
            continue;
        }
        write!(
            out,
            "Topic: {}\tPartition: {}\tLeader: {}\tLeaderEpoch: {}\tReplicas: {}\tIsr: {}\tOffline: {}",
            p.topic,
            p.partition,
            if p.leader < 0 { "none".to_owned() } else { p.leader.to_string() },
            p.leader_epoch,
            ids(&p.replicas),
            ids(&p.isr),
            ids(&p.offline)
        )?;
        if let Some((_, adding, removing)) = ongoing.get(&(p.topic.clone(), p.partition)) {
            write!(
                out,
                "\tAdding: {}\tRemoving: {}",
                ids(adding),
                ids(removing)
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Every partition's size: the largest any broker reports (the leader's, normally).
async fn sizes(meta: &ClusterMeta) -> Result<BTreeMap<(String, i32), u64>> {
    let mut out: BTreeMap<(String, i32), u64> = BTreeMap::new();
    for b in &meta.brokers {
        let (s, _, _) = Client::log_dir(&b.addr)
            .await
            .with_context(|| format!("log dirs of broker {}", b.id))?;
        for (k, v) in s {
            let e = out.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    Ok(out)
}

async fn list_brokers(client: &mut Client, out: &mut dyn std::io::Write) -> Result<()> {
    let meta = client.metadata(None).await?;
    writeln!(
        out,
        "Id\tAddress\tRack\tCordoned\tReplicas\tLeaders\tLogBytes\tDiskTotal\tDiskUsable"
    )?;
    for b in &meta.brokers {
        let replicas = meta
            .partitions
            .iter()
            .filter(|p| p.replicas.contains(&b.id))
            .count();
        let leaders = meta.partitions.iter().filter(|p| p.leader == b.id).count();
        let (sizes, total, usable) = Client::log_dir(&b.addr).await?;
        let cordoned = Client::cordoned(&b.addr, b.id).await?;
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{replicas}\t{leaders}\t{}\t{total}\t{usable}",
            b.id,
            b.addr,
            b.rack.as_deref().unwrap_or("-"),
            if cordoned { "yes" } else { "no" },
            sizes.values().sum::<u64>()
        )?;
    }
    Ok(())
}

async fn plan(
    client: &mut Client,
    drain: Vec<i32>,
    balance: bool,
    topics: &[String],
    path: &PathBuf,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let goal = match (drain.is_empty(), balance) {
        (false, false) => Goal::Drain(drain.iter().copied().collect::<BTreeSet<_>>()),
        (true, true) => Goal::Balance,
        _ => bail!("say what to plan: --drain <ids> or --balance"),
    };
    let meta = client.metadata(None).await?;
    let sizes = sizes(&meta).await?;
    let mut brokers: Vec<BrokerInfo> = Vec::new();
    for b in &meta.brokers {
        brokers.push(BrokerInfo {
            id: b.id,
            rack: b.rack.clone(),
            cordoned: Client::cordoned(&b.addr, b.id).await?,
        });
    }
    let partitions: Vec<PartitionInfo> = meta
        .partitions
        .iter()
        .filter(|p| topics.is_empty() || topics.contains(&p.topic))
        .map(|p| PartitionInfo {
            topic: p.topic.clone(),
            partition: p.partition,
            replicas: p.replicas.clone(),
            size_bytes: sizes
                .get(&(p.topic.clone(), p.partition))
                .copied()
                .unwrap_or(0),
        })
        .collect();
    let plan = tributary_planner::plan(&brokers, &partitions, &goal)?;
    let file = PlanFile {
        goal: match &goal {
            Goal::Drain(b) => format!(
                "drain brokers {}",
                ids(&b.iter().copied().collect::<Vec<_>>())
            ),
            _ => "balance replicas and leaders over every broker".into(),
        },
        plan,
        throttle: None,
    };
    std::fs::write(path, serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(
        out,
        "{}: {} partition moves, {} bytes to copy; written to {}",
        file.goal,
        file.plan.moves.len(),
        file.plan.bytes_to_move,
        path.display()
    )?;
    for m in &file.plan.moves {
        writeln!(
            out,
            "  {}-{}: {} -> {}",
            m.topic,
            m.partition,
            ids(&m.current),
            ids(&m.target)
        )?;
    }
    Ok(())
}

fn read_plan(path: &PathBuf) -> Result<PlanFile> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a plan file", path.display()))
}

/// The throttled-replica lists a plan's moves need, per topic: leader side, every current
/// replica of a moving partition (any of them may lead while it moves); follower side, the
/// replicas being added — as `kafka-reassign-partitions.sh` sets them.
fn throttle_lists(plan: &Plan) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut out: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for m in &plan.moves {
        let e = out.entry(m.topic.clone()).or_default();
        e.0.extend(m.current.iter().map(|b| format!("{}:{b}", m.partition)));
        e.1.extend(m.added().iter().map(|b| format!("{}:{b}", m.partition)));
    }
    out
}

async fn set_throttle(client: &mut Client, plan: &Plan, rate: Option<u64>) -> Result<()> {
    let rate_value = rate.map(|r| r.to_string());
    client
        .alter_configs(
            RESOURCE_BROKER,
            "",
            &[
                ("leader.replication.throttled.rate", rate_value.clone()),
                ("follower.replication.throttled.rate", rate_value),
            ],
        )
        .await?;
    for (topic, (leader, follower)) in throttle_lists(plan) {
        let (l, f) = match rate {
            Some(_) => (Some(leader.join(",")), Some(follower.join(","))),
            None => (None, None),
        };
        client
            .alter_configs(
                RESOURCE_TOPIC,
                &topic,
                &[
                    ("leader.replication.throttled.replicas", l),
                    ("follower.replication.throttled.replicas", f),
                ],
            )
            .await?;
    }
    Ok(())
}

/// KIP-1066: sets (`*`) or deletes broker `id`'s dynamic `cordoned.log.dirs`.
async fn set_cordon(client: &mut Client, id: i32, cordoned: bool) -> Result<()> {
    let value = cordoned.then(|| "*".to_owned());
    client
        .alter_configs(
            RESOURCE_BROKER,
            &id.to_string(),
            &[("cordoned.log.dirs", value)],
        )
        .await
}

async fn execute(
    client: &mut Client,
    path: &PathBuf,
    throttle: Option<u64>,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let mut file = read_plan(path)?;
    if file.plan.moves.is_empty() {
        writeln!(out, "nothing to move")?;
        return Ok(());
    }
    if let Some(rate) = throttle {
        set_throttle(client, &file.plan, Some(rate)).await?;
        file.throttle = Some(rate);
        std::fs::write(path, serde_json::to_vec_pretty(&file)?)?;
    }
    let targets: Vec<(String, i32, Option<Vec<i32>>)> = file
        .plan
        .moves
        .iter()
        .map(|m| (m.topic.clone(), m.partition, Some(m.target.clone())))
        .collect();
    client.alter_reassignments(&targets).await?;
    writeln!(
        out,
        "submitted {} partition moves ({} bytes){}",
        targets.len(),
        file.plan.bytes_to_move,
        throttle.map_or(String::new(), |r| format!(", throttled at {r} bytes/s"))
    )?;
    Ok(())
}

async fn progress_now(client: &mut Client, plan: &Plan) -> Result<tributary_planner::Progress> {
    let topics: Vec<String> = plan
        .moves
        .iter()
        .map(|m| m.topic.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let meta = client.metadata(Some(&topics)).await?;
    let ongoing = client.ongoing().await?;
    // What the new replicas of the running moves already hold: DescribeLogDirs of each broker
    // that receives one (a broker that does not answer counts as holding nothing yet).
    let receiving: BTreeSet<i32> = ongoing
        .values()
        .flat_map(|(_, adding, _)| adding.iter().copied())
        .collect();
    let mut held: BTreeMap<i32, BTreeMap<(String, i32), u64>> = BTreeMap::new();
    for b in meta.brokers.iter().filter(|b| receiving.contains(&b.id)) {
        if let Ok((sizes, _, _)) = Client::log_dir(&b.addr).await {
            held.insert(b.id, sizes);
        }
    }
    let states: Vec<PartitionState> = meta
        .partitions
        .iter()
        .map(|p| {
            let key = (p.topic.clone(), p.partition);
            let copied_bytes = ongoing.get(&key).map_or(0, |(_, adding, _)| {
                adding
                    .iter()
                    .filter_map(|b| held.get(b).and_then(|sizes| sizes.get(&key)))
                    .sum()
            });
            PartitionState {
                topic: p.topic.clone(),
                partition: p.partition,
                replicas: p.replicas.clone(),
                reassigning: ongoing.contains_key(&key),
                copied_bytes,
            }
        })
        .collect();
    Ok(tributary_planner::progress(plan, &states))
}

async fn status(
    client: &mut Client,
    path: &PathBuf,
    watch: bool,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let mut file = read_plan(path)?;
    let started = Instant::now();
    let mut first_remaining = None;
    loop {
        let p = progress_now(client, &file.plan).await?;
        let remaining = *first_remaining.get_or_insert(p.bytes_remaining);
        let moved = remaining.saturating_sub(p.bytes_remaining);
        let secs = started.elapsed().as_secs_f64();
        let eta = if moved > 0 && secs > 0.0 {
            format!(
                ", about {:.0} s left",
                p.bytes_remaining as f64 / (moved as f64 / secs)
            )
        } else {
            String::new()
        };
        writeln!(
            out,
            "{}/{} partitions done, {} bytes moved, {} bytes remaining{eta}",
            p.partitions_done, p.partitions_total, p.bytes_moved_estimate, p.bytes_remaining
        )?;
        if p.is_complete() {
            if file.throttle.take().is_some() {
                set_throttle(client, &file.plan, None).await?;
                std::fs::write(path, serde_json::to_vec_pretty(&file)?)?;
                writeln!(out, "done: throttle removed")?;
            } else {
                writeln!(out, "done")?;
            }
            return Ok(());
        }
        if !watch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn cancel(client: &mut Client, path: &PathBuf, out: &mut dyn std::io::Write) -> Result<()> {
    let mut file = read_plan(path)?;
    let ongoing = client.ongoing().await?;
    let running: Vec<(String, i32, Option<Vec<i32>>)> = file
        .plan
        .moves
        .iter()
        .filter(|m| ongoing.contains_key(&(m.topic.clone(), m.partition)))
        .map(|m| (m.topic.clone(), m.partition, None))
        .collect();
    if !running.is_empty() {
        client.alter_reassignments(&running).await?;
    }
    if file.throttle.take().is_some() {
        set_throttle(client, &file.plan, None).await?;
        std::fs::write(path, serde_json::to_vec_pretty(&file)?)?;
    }
    writeln!(
        out,
        "cancelled {} running moves ({} had finished)",
        running.len(),
        file.plan.moves.len() - running.len()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_planner::Move;

    #[test]
    fn throttle_lists_name_current_replicas_leader_side_and_new_ones_follower_side() {
        let plan = Plan {
            moves: vec![
                Move {
                    topic: "t".into(),
                    partition: 0,
                    current: vec![1, 2, 3],
                    target: vec![4, 2, 3],
                    size_bytes: 10,
                },
                Move {
                    topic: "t".into(),
                    partition: 1,
                    current: vec![2, 3, 1],
                    target: vec![2, 3, 5],
                    size_bytes: 10,
                },
            ],
            ..Plan::default()
        };
        let lists = throttle_lists(&plan);
        assert_eq!(lists["t"].0, ["0:1", "0:2", "0:3", "1:2", "1:3", "1:1"]);
        assert_eq!(lists["t"].1, ["0:4", "1:5"]);
    }

    #[test]
    fn the_command_line_parses_as_documented() {
        let cli = Cli::try_parse_from([
            "tributary",
            "-b",
            "h:1",
            "reassign",
            "plan",
            "--drain",
            "101,102",
            "--out",
            "p.json",
        ])
        .expect("parses");
        assert_eq!(cli.bootstrap, "h:1");
        assert!(matches!(
            cli.command,
            Command::Reassign(ReassignCommand::Plan { ref drain, balance: false, .. }) if drain == &[101, 102]
        ));
        assert!(Cli::try_parse_from([
            "tributary",
            "reassign",
            "plan",
            "--drain",
            "1",
            "--balance",
            "--out",
            "x"
        ])
        .is_err());
    }
}
