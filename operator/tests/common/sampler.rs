//! Samples every partition's replicas and ISR every 100 ms (a Metadata request to the first
//! broker of a list that answers), so that a test can say what the cluster went through while
//! the operator worked: the smallest ISR any partition had, and where the replicas were.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::MetadataRequest;
use operator::admin::client::KafkaAdminClient;
use tokio::task::JoinHandle;

/// One partition in one sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1 without a leader.
    pub leader: i32,
}

/// One Metadata answer.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    pub parts: Vec<Part>,
}

/// The running sampler; stops when dropped.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    addresses: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Sampler {
    /// Samples through `addresses` (tried in order) every 100 ms.
    pub fn start(addresses: Vec<String>) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let addresses = Arc::new(Mutex::new(addresses));
        let (into, from) = (samples.clone(), addresses.clone());
        let task = tokio::spawn(async move {
            loop {
                let addrs = from.lock().expect("lock").clone();
                for addr in addrs {
                    if let Some(parts) = sample(&addr).await {
                        into.lock().expect("lock").push(Sample {
                            at: Instant::now(),
                            parts,
                        });
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Sampler {
            samples,
            addresses,
            task,
        }
    }

    /// Replaces the brokers sampled through (e.g. after a scale-out).
    pub fn set_addresses(&self, addresses: Vec<String>) {
        *self.addresses.lock().expect("lock") = addresses;
    }

    /// The latest sample.
    pub fn latest(&self) -> Option<Sample> {
        self.samples.lock().expect("lock").last().cloned()
    }

    /// Samples taken since `since`.
    pub fn since(&self, since: Instant) -> Vec<Sample> {
        let all = self.samples.lock().expect("lock");
        all.iter().filter(|s| s.at >= since).cloned().collect()
    }

    /// Every (sample time, partition, ISR) of topic `topic` with fewer than `min` in-sync
    /// replicas since `since`.
    pub fn below(&self, topic: &str, min: usize, since: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for s in self.since(since) {
            for p in s.parts.iter().filter(|p| p.topic == topic) {
                if p.isr.len() < min {
                    out.push(format!(
                        "{:?} after start: {}-{} ISR {:?} of {:?}",
                        s.at.duration_since(since),
                        p.topic,
                        p.partition,
                        p.isr,
                        p.replicas
                    ));
                }
            }
        }
        out
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Replicas hosted by each broker in `parts` (every topic).
pub fn replicas_per_broker(parts: &[Part]) -> BTreeMap<i32, usize> {
    let mut out = BTreeMap::new();
    for p in parts {
        for r in &p.replicas {
            *out.entry(*r).or_default() += 1;
        }
    }
    out
}

async fn sample(addr: &str) -> Option<Vec<Part>> {
    let once = async {
        let client = KafkaAdminClient::connect(addr).await.ok()?;
        let resp = client
            .send(&MetadataRequest::default().with_topics(None), 12)
            .await
            .ok()?;
        let mut parts: Vec<Part> = resp
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| Some((t.name.as_ref()?.0.to_string(), t)))
            .flat_map(|(topic, t)| {
                t.partitions.iter().map(move |p| Part {
                    topic: topic.clone(),
                    partition: p.partition_index,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    leader: p.leader_id.0,
                })
            })
            .collect();
        parts.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Some(parts)
    };
    tokio::time::timeout(Duration::from_secs(1), once)
        .await
        .ok()
        .flatten()
}
