//! Topic-level configuration: the names Kafka accepts per topic, the broker property that supplies
//! each one's default, validation of values, and the effective config of a topic (topic override,
//! else broker property) with its source, as DescribeConfigs reports it.

use std::collections::BTreeMap;

use crate::config::{BrokerConfig, Source};

/// The type of a config value, for validation and for DescribeConfigs' `config_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Long,
    Int,
    /// A floating-point number in `[min, 1]` (Kafka's ratios).
    Double,
    Bool,
    /// One of the listed words.
    Enum(&'static [&'static str]),
    /// A comma-separated list of the listed words.
    List(&'static [&'static str]),
    /// Replicas as `partition:broker` pairs separated by commas, or `*` for all (the
    /// replication throttle lists).
    Replicas,
    Str,
}

/// One topic config: its name, the broker property that gives its default, and its type.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub broker_key: &'static str,
    pub value_type: ValueType,
    /// Smallest allowed value for numeric types.
    pub min: i64,
}

const fn def(
    name: &'static str,
    broker_key: &'static str,
    value_type: ValueType,
    min: i64,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        broker_key,
        value_type,
        min,
    }
}

const COMPRESSION: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

/// Every topic config the broker accepts.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def(
        "cleanup.policy",
        "log.cleanup.policy",
        ValueType::List(&["delete", "compact"]),
        0,
    ),
    def(
        "compression.type",
        "compression.type",
        ValueType::Enum(COMPRESSION),
        0,
    ),
    def(
        "delete.retention.ms",
        "log.cleaner.delete.retention.ms",
        ValueType::Long,
        0,
    ),
    def(
        "file.delete.delay.ms",
        "log.segment.delete.delay.ms",
        ValueType::Long,
        0,
    ),
    def(
        "flush.messages",
        "log.flush.interval.messages",
        ValueType::Long,
        1,
    ),
    def("flush.ms", "log.flush.interval.ms", ValueType::Long, 0),
    def(
        "index.interval.bytes",
        "log.index.interval.bytes",
        ValueType::Int,
        0,
    ),
    def("max.message.bytes", "message.max.bytes", ValueType::Int, 0),
    def(
        "message.timestamp.type",
        "log.message.timestamp.type",
        ValueType::Enum(&["CreateTime", "LogAppendTime"]),
        0,
    ),
    def(
        "max.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        ValueType::Long,
        1,
    ),
    def(
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
        ValueType::Double,
        0,
    ),
    def(
        "min.compaction.lag.ms",
        "log.cleaner.min.compaction.lag.ms",
        ValueType::Long,
        0,
    ),
    def(
        "min.insync.replicas",
        "min.insync.replicas",
        ValueType::Int,
        1,
    ),
    def(
        "retention.bytes",
        "log.retention.bytes",
        ValueType::Long,
        -1,
    ),
    def("retention.ms", "log.retention.ms", ValueType::Long, -1),
    def("segment.bytes", "log.segment.bytes", ValueType::Int, 14),
    def(
        "segment.index.bytes",
        "log.index.size.max.bytes",
        ValueType::Int,
        4,
    ),
    def("segment.ms", "log.roll.ms", ValueType::Long, 1),
    def(
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        ValueType::Bool,
        0,
    ),
    // Topic-only (no broker default): the replicas whose replication the leader / follower
    // throttles, at the broker's `*.replication.throttled.rate`.
    def(
        "leader.replication.throttled.replicas",
        "",
        ValueType::Replicas,
        0,
    ),
    def(
        "follower.replication.throttled.replicas",
        "",
        ValueType::Replicas,
        0,
    ),
];

/// Topic configs Kafka 3.x/4.x still accepts although they no longer do anything (message format
/// v2 is the only one): accepted and ignored, with a log line, never stored.
pub const IGNORED_TOPIC_CONFIGS: &[&str] =
    &["message.format.version", "message.downconversion.enable"];

/// Whether `name` is a deprecated topic config that is accepted and ignored.
pub fn is_ignored(name: &str) -> bool {
    IGNORED_TOPIC_CONFIGS.contains(&name)
}

/// `configs` without the ignored deprecated ones, logging each one dropped.
pub fn without_ignored(
    topic: &str,
    configs: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    configs
        .iter()
        .filter(|(k, v)| {
            let ignored = is_ignored(k);
            if ignored {
                tracing::info!(%topic, config = %k, value = %v, "ignoring deprecated topic config (it has no effect since message format v2)");
            }
            !ignored
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The definition of a topic config, if the name is one.
pub fn lookup(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one topic config; the error text is what the client sees.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    if is_ignored(name) {
        return Ok(());
    }
    let def = lookup(name).ok_or_else(|| format!("unknown topic config name: {name}"))?;
    let bad = |why: &str| format!("invalid value {value} for configuration {name}: {why}");
    match def.value_type {
        ValueType::Long | ValueType::Int => {
            let n: i64 = value.trim().parse().map_err(|_| bad("not a number"))?;
            if def.value_type == ValueType::Int && i32::try_from(n).is_err() {
                return Err(bad("out of range for an int"));
            }
            if n < def.min {
                return Err(bad(&format!("value must be at least {}", def.min)));
            }
        }
        ValueType::Double => {
            let n: f64 = value.trim().parse().map_err(|_| bad("not a number"))?;
            if !(def.min as f64..=1.0).contains(&n) {
                return Err(bad(&format!("value must be in [{}, 1]", def.min)));
            }
        }
        ValueType::Bool => {
            value
                .trim()
                .parse::<bool>()
                .map_err(|_| bad("not a boolean"))?;
        }
        ValueType::Enum(words) => {
            if !words.contains(&value.trim()) {
                return Err(bad(&format!("string must be one of: {}", words.join(", "))));
            }
        }
        // An empty list is allowed (Kafka 4.1): an empty `cleanup.policy` neither deletes nor
        // compacts.
        ValueType::List(words) => {
            let mut items = value.split(',').map(str::trim).filter(|w| !w.is_empty());
            if items.any(|w| !words.contains(&w)) {
                return Err(bad(&format!("values must be among: {}", words.join(", "))));
            }
        }
        ValueType::Replicas => {
            let pair = |item: &str| {
                let (p, b) = item.trim().split_once(':')?;
                p.trim().parse::<i32>().ok().filter(|p| *p >= 0)?;
                b.trim().parse::<i32>().ok().filter(|b| *b >= 0)
            };
            let v = value.trim();
            if !(v.is_empty() || v == "*" || v.split(',').all(|i| pair(i).is_some())) {
                return Err(bad("must be * or a list of partition:broker pairs"));
            }
        }
        ValueType::Str => {}
    }
    Ok(())
}

/// Broker properties that may change without a restart although no topic config takes its
/// default from them: the replication throttle rates (bytes per second).
pub const BROKER_ONLY_DYNAMIC: &[&str] = &[
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "cordoned.log.dirs",
];

/// Checks a dynamic broker config (`key` is a broker property); `None` when the property may not
/// change without a restart (or is unknown).
pub fn validate_dynamic_broker(key: &str, value: &str) -> Option<Result<(), String>> {
    if let Some(def) = by_broker_key(key) {
        return Some(validate(def.name, value).map_err(|m| m.replace(def.name, key)));
    }
    if key == "cordoned.log.dirs" {
        // `*`, a list of directories, or empty (not cordoned).
        return Some(Ok(()));
    }
    BROKER_ONLY_DYNAMIC.contains(&key).then(|| {
        match value.trim().parse::<i64>() {
            Ok(n) if n >= 1 => Ok(()),
            _ => Err(format!(
                "invalid value {value} for configuration {key}: a rate in bytes per second, at least 1"
            )),
        }
    })
}

/// Whether broker property `key` may change without a restart.
pub fn is_dynamic_broker_key(key: &str) -> bool {
    by_broker_key(key).is_some() || BROKER_ONLY_DYNAMIC.contains(&key)
}

/// Whether `spec` (a `*.replication.throttled.replicas` value) names replica `broker` of
/// `partition`.
pub fn throttled(spec: &str, partition: i32, broker: i32) -> bool {
    let spec = spec.trim();
    spec == "*"
        || spec.split(',').any(|item| {
            item.trim().split_once(':').is_some_and(|(p, b)| {
                p.trim().parse() == Ok(partition) && b.trim().parse() == Ok(broker)
            })
        })
}

/// Where an effective topic config value comes from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicValueSource {
    TopicOverride,
    /// A dynamic config of this broker (metadata log).
    DynamicBroker,
    /// A dynamic config of every broker (the cluster default, metadata log).
    DynamicDefaultBroker,
    StaticBroker,
    Default,
}

/// The dynamic broker configs (from the metadata image) that apply on one broker: its own, and
/// the cluster-wide defaults, by broker property name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dynamic<'a> {
    pub broker: Option<&'a BTreeMap<String, String>>,
    pub default: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Dynamic<'a> {
    /// Broker `node_id`'s view of the image's dynamic broker configs.
    pub fn of(configs: &'a BTreeMap<Option<i32>, BTreeMap<String, String>>, node_id: i32) -> Self {
        Dynamic {
            broker: configs.get(&Some(node_id)),
            default: configs.get(&None),
        }
    }

    /// The cluster-wide defaults only (what the controller applies).
    pub fn cluster(configs: &'a BTreeMap<Option<i32>, BTreeMap<String, String>>) -> Self {
        Dynamic {
            broker: None,
            default: configs.get(&None),
        }
    }

    /// The dynamic value of a broker property, with its source.
    pub fn get(&self, key: &str) -> Option<(&'a str, TopicValueSource)> {
        if let Some(v) = self.broker.and_then(|m| m.get(key)) {
            return Some((v.as_str(), TopicValueSource::DynamicBroker));
        }
        self.default
            .and_then(|m| m.get(key))
            .map(|v| (v.as_str(), TopicValueSource::DynamicDefaultBroker))
    }
}

/// The topic config a broker property gives the default of: the broker properties that may be
/// changed without a restart (dynamic broker configs) are exactly these.
pub fn by_broker_key(key: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS
        .iter()
        .find(|d| !d.broker_key.is_empty() && d.broker_key == key)
}

/// The effective topic configuration: each value with its source (no dynamic broker configs).
pub fn effective(
    overrides: &BTreeMap<String, String>,
    broker: &BrokerConfig,
) -> BTreeMap<&'static str, (String, TopicValueSource)> {
    effective_with(overrides, broker, Dynamic::default())
}

/// The effective topic configuration: a topic override, else this broker's dynamic config, else
/// the cluster's dynamic default, else the static property, else the built-in default.
pub fn effective_with(
    overrides: &BTreeMap<String, String>,
    broker: &BrokerConfig,
    dynamic: Dynamic<'_>,
) -> BTreeMap<&'static str, (String, TopicValueSource)> {
    TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let value = match overrides.get(d.name) {
                Some(v) => (v.clone(), TopicValueSource::TopicOverride),
                None => match dynamic.get(d.broker_key) {
                    Some((v, src)) => (v.to_owned(), src),
                    None => match broker.get(d.broker_key) {
                        Some((v, Source::Static)) => (v.to_owned(), TopicValueSource::StaticBroker),
                        Some((v, Source::Default)) => (v.to_owned(), TopicValueSource::Default),
                        None => (String::new(), TopicValueSource::Default),
                    },
                },
            };
            (d.name, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_types_and_bounds() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("segment.bytes", "99999999999").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("cleanup.policy", "").is_ok());
        assert!(validate("message.format.version", "2.8-IV1").is_ok());
        let kept = without_ignored(
            "t",
            &BTreeMap::from([
                ("message.format.version".to_owned(), "3.0".to_owned()),
                ("retention.ms".to_owned(), "1".to_owned()),
            ]),
        );
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["retention.ms"]);
        assert!(validate("min.cleanable.dirty.ratio", "0.01").is_ok());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "x").is_err());
        assert!(validate("min.compaction.lag.ms", "-1").is_err());
        assert!(validate("max.compaction.lag.ms", "0").is_err());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate("no.such.config", "1").is_err());
        assert!(validate("unclean.leader.election.enable", "maybe").is_err());
    }

    #[test]
    fn effective_config_layers_topic_over_broker_with_sources() {
        let broker = BrokerConfig::from_properties(BTreeMap::from([(
            "log.retention.bytes".to_owned(),
            "1000".to_owned(),
        )]))
        .expect("config");
        let topic = BTreeMap::from([("segment.bytes".to_owned(), "2048".to_owned())]);
        let eff = effective(&topic, &broker);
        assert_eq!(
            eff["segment.bytes"],
            ("2048".to_owned(), TopicValueSource::TopicOverride)
        );
        assert_eq!(
            eff["retention.bytes"],
            ("1000".to_owned(), TopicValueSource::StaticBroker)
        );
        assert_eq!(
            eff["retention.ms"],
            ("604800000".to_owned(), TopicValueSource::Default)
        );
    }

    #[test]
    fn dynamic_broker_configs_sit_between_topic_overrides_and_static_properties() {
        let broker = BrokerConfig::from_properties(BTreeMap::from([(
            "log.retention.bytes".to_owned(),
            "1000".to_owned(),
        )]))
        .expect("config");
        let map = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        let configs = BTreeMap::from([
            (None, map("log.retention.bytes", "2000")),
            (Some(7), map("log.retention.ms", "5")),
        ]);
        let topic = map("retention.ms", "9");
        let on7 = effective_with(&BTreeMap::new(), &broker, Dynamic::of(&configs, 7));
        assert_eq!(
            on7["retention.ms"],
            ("5".to_owned(), TopicValueSource::DynamicBroker)
        );
        assert_eq!(
            on7["retention.bytes"],
            ("2000".to_owned(), TopicValueSource::DynamicDefaultBroker)
        );
        let on8 = effective_with(&topic, &broker, Dynamic::of(&configs, 8));
        assert_eq!(
            on8["retention.ms"],
            ("9".to_owned(), TopicValueSource::TopicOverride)
        );
        assert_eq!(
            by_broker_key("log.retention.ms").map(|d| d.name),
            Some("retention.ms")
        );
        assert!(by_broker_key("log.dirs").is_none(), "needs a restart");
    }
}
