//! Broker configuration with Kafka's property names.
//!
//! Sources, later overriding earlier: embedded defaults (a combined single-node broker +
//! controller on loopback), a Java-style properties file (`--config FILE`), environment variables
//! `TRIBUTARY_<NAME>` (`log.dirs` → `TRIBUTARY_LOG_DIRS`), and `--override name=value` flags.
//! Every known property is typed and checked once here; unknown properties are kept (and
//! reported by DescribeConfigs) so that configs written for Kafka load unchanged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::logging::LogFormat;
use crate::server::limits::{parse_per_ip_overrides, ConnectionLimits};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid value {value:?} for {name}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("invalid command-line argument {0:?} (usage: broker [--config FILE] [--override name=value]...)")]
    Usage(String),
}

/// Where a configured value came from, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Built-in default.
    Default,
    /// Set in the file, environment or flags at start.
    Static,
}

/// Built-in defaults: a single combined node that a developer can run with no arguments.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("node.id", "1"),
    ("process.roles", "broker,controller"),
    ("listeners", "PLAINTEXT://127.0.0.1:9092"),
    ("controller.quorum.voters", "1@127.0.0.1:9093"),
    ("controller.listener.names", "CONTROLLER"),
    ("log.dirs", "./data"),
    ("http.listener", "127.0.0.1:9644"),
    ("num.partitions", "1"),
    ("default.replication.factor", "1"),
    ("min.insync.replicas", "1"),
    ("auto.create.topics.enable", "true"),
    ("socket.request.max.bytes", "104857600"),
    ("message.max.bytes", "1048588"),
    ("log.segment.bytes", "1073741824"),
    ("log.roll.ms", "604800000"),
    ("log.retention.ms", "604800000"),
    ("log.retention.bytes", "-1"),
    ("log.retention.check.interval.ms", "300000"),
    ("log.index.interval.bytes", "4096"),
    ("log.index.size.max.bytes", "10485760"),
    ("log.message.timestamp.type", "CreateTime"),
    ("log.cleanup.policy", "delete"),
    ("log.segment.delete.delay.ms", "60000"),
    ("log.cleaner.delete.retention.ms", "86400000"),
    ("log.cleaner.enable", "true"),
    ("log.cleaner.backoff.ms", "15000"),
    ("log.cleaner.dedupe.buffer.size", "134217728"),
    ("log.cleaner.min.cleanable.ratio", "0.5"),
    ("log.cleaner.min.compaction.lag.ms", "0"),
    ("log.cleaner.max.compaction.lag.ms", "9223372036854775807"),
    ("log.flush.interval.messages", "9223372036854775807"),
    ("log.flush.interval.ms", "9223372036854775807"),
    ("compression.type", "producer"),
    ("unclean.leader.election.enable", "false"),
    // Replication throttles (bytes/s), applied to the replicas the topics' throttled-replica
    // lists name; unlimited by default. Usually set dynamically for the time of a move.
    ("leader.replication.throttled.rate", "9223372036854775807"),
    ("follower.replication.throttled.rate", "9223372036854775807"),
    ("replica.lag.time.max.ms", "30000"),
    ("group.initial.rebalance.delay.ms", "3000"),
    ("producer.id.expiration.ms", "86400000"),
    ("broker.heartbeat.interval.ms", "2000"),
    ("broker.session.timeout.ms", "9000"),
    // Tributary's own: how long SIGTERM waits for the controller to move leadership away.
    ("controlled.shutdown.timeout.ms", "30000"),
    // Tributary's own: metadata log entries between snapshots (the log before is purged).
    ("metadata.snapshot.interval.entries", "1000"),
    ("auto.leader.rebalance.enable", "true"),
    ("leader.imbalance.check.interval.seconds", "300"),
    ("leader.imbalance.per.broker.percentage", "10"),
    // Tributary's own: `text`, or `json` for one JSON object per line (`logging`).
    ("log.format", "text"),
    // Tributary's own: a request slower than this is logged with the time of each phase
    // (`server::slow`); 0 turns the log off.
    ("request.slow.log.ms", "100"),
    // Limits of the Kafka listener (`server::limits`), unlimited by default as in Kafka.
    ("max.connections", "2147483647"),
    ("max.connections.per.ip", "2147483647"),
    ("max.connections.per.ip.overrides", ""),
    ("max.connection.creation.rate", "2147483647"),
    ("connections.max.idle.ms", "600000"),
];

/// The broker's typed configuration, plus every raw property for DescribeConfigs.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub is_controller: bool,
    pub is_broker: bool,
    pub listener: SocketAddr,
    /// The controller listener (controller nodes): the `listeners` entry named in
    /// `controller.listener.names`, else this node's `controller.quorum.voters` address.
    pub controller_listener: Option<SocketAddr>,
    /// Host and port advertised to clients.
    pub advertised: (String, u16),
    pub controller_voters: Vec<(i32, String)>,
    pub log_dir: PathBuf,
    pub http_listener: SocketAddr,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics: bool,
    pub socket_request_max_bytes: usize,
    pub retention_check_interval: Duration,
    /// `producer.id.expiration.ms`: a partition forgets an idempotent producer this long after
    /// its last batch (checked with retention).
    pub producer_id_expiration_ms: i64,
    /// `log.cleaner.enable`: whether compacted topics are cleaned.
    pub cleaner_enable: bool,
    /// `log.cleaner.backoff.ms`: pause between cleaner passes over the logs.
    pub cleaner_backoff: Duration,
    /// `log.cleaner.dedupe.buffer.size`: memory for the cleaner's key map, per log cleaned.
    pub cleaner_dedupe_buffer_bytes: u64,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout: Duration,
    /// `controlled.shutdown.timeout.ms`: the longest SIGTERM waits for leadership to move.
    pub controlled_shutdown_timeout: Duration,
    /// `metadata.snapshot.interval.entries`.
    pub metadata_snapshot_interval: u64,
    /// `request.slow.log.ms`: requests slower than this are logged with their phases (`None`:
    /// never).
    pub slow_request: Option<Duration>,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max: Duration,
    /// `auto.leader.rebalance.enable` and `leader.imbalance.check.interval.seconds`.
    pub leader_rebalance_interval: Option<Duration>,
    /// `leader.imbalance.per.broker.percentage`.
    pub leader_imbalance_percentage: u32,
    /// `cluster.id`, when set: the id a new cluster takes and every node must match.
    pub cluster_id: Option<String>,
    /// `log.format`: text or JSON lines.
    pub log_format: LogFormat,
    /// `max.connections`, `max.connections.per.ip(.overrides)`, `connections.max.idle.ms`,
    /// `max.connection.creation.rate`.
    pub connection_limits: ConnectionLimits,
    props: BTreeMap<String, (String, Source)>,
}

impl BrokerConfig {
    /// Whether `name` is a property this broker reads (one with a built-in default).
    pub fn is_known(name: &str) -> bool {
        DEFAULTS.iter().any(|(k, _)| *k == name)
    }

    /// Loads from the command line and the environment (see the module docs).
    pub fn from_args_and_env(
        args: impl IntoIterator<Item = String>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut overrides = BTreeMap::new();
        let mut args = args.into_iter();
        let mut file_props = BTreeMap::new();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--config" => {
                    let path = PathBuf::from(args.next().ok_or(ConfigError::Usage(arg))?);
                    let text = std::fs::read_to_string(&path)
                        .map_err(|source| ConfigError::Read { path, source })?;
                    file_props = parse_properties(&text);
                }
                "--override" => {
                    let kv = args.next().ok_or_else(|| ConfigError::Usage(arg.clone()))?;
                    let (k, v) = kv.split_once('=').ok_or(ConfigError::Usage(kv.clone()))?;
                    overrides.insert(k.trim().to_owned(), v.trim().to_owned());
                }
                _ => return Err(ConfigError::Usage(arg)),
            }
        }
        let mut all = file_props;
        for (k, v) in env {
            if let Some(name) = k.strip_prefix("TRIBUTARY_") {
                all.insert(name.to_lowercase().replace('_', "."), v);
            }
        }
        all.extend(overrides);
        Self::from_properties(all)
    }

    /// Builds the typed config from explicitly set properties layered over [`DEFAULTS`].
    pub fn from_properties(set: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut props: BTreeMap<String, (String, Source)> = DEFAULTS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ((*v).to_owned(), Source::Default)))
            .collect();
        for (k, v) in set {
            props.insert(k, (v, Source::Static));
        }
        let get = |k: &str| props.get(k).map(|(v, _)| v.as_str()).unwrap_or("");
        let roles = get("process.roles");
        let controller_names: Vec<&str> = get("controller.listener.names")
            .split(',')
            .map(str::trim)
            .collect();
        let listener = parse_listener(
            "listeners",
            client_listener(get("listeners"), &controller_names),
        )?;
        let advertised = match props.get("advertised.listeners") {
            Some((v, _)) => split_host_port(
                "advertised.listeners",
                strip_scheme(client_listener(v, &controller_names)),
            )?,
            None => (listener.ip().to_string(), listener.port()),
        };
        let voters = get("controller.quorum.voters")
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|v| {
                let (id, addr) = v.trim().split_once('@').ok_or_else(|| {
                    invalid("controller.quorum.voters", v, "expected id@host:port")
                })?;
                Ok((parse_num("controller.quorum.voters", id)?, addr.to_owned()))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let node_id: i32 = parse_num("node.id", get("node.id"))?;
        let is_controller = roles.split(',').any(|r| r.trim() == "controller");
        let is_broker = roles.split(',').any(|r| r.trim() == "broker");
        if !is_controller && !is_broker {
            return Err(invalid(
                "process.roles",
                roles,
                "expected broker, controller or broker,controller",
            ));
        }
        let controller_listener = if is_controller {
            Some(controller_listener(
                get("listeners"),
                &controller_names,
                &voters,
                node_id,
            )?)
        } else {
            None
        };
        let ms = |name: &str| -> Result<Duration, ConfigError> {
            Ok(Duration::from_millis(parse_num(name, get(name))?))
        };
        let log_dir = get("log.dirs")
            .split(',')
            .next()
            .unwrap_or("./data")
            .trim()
            .into();
        Ok(BrokerConfig {
            node_id,
            is_controller,
            is_broker,
            listener,
            controller_listener,
            advertised,
            controller_voters: voters,
            log_dir,
            http_listener: get("http.listener")
                .parse()
                .map_err(|e| invalid("http.listener", get("http.listener"), e))?,
            num_partitions: parse_num("num.partitions", get("num.partitions"))?,
            default_replication_factor: parse_num(
                "default.replication.factor",
                get("default.replication.factor"),
            )?,
            auto_create_topics: parse_num::<bool>(
                "auto.create.topics.enable",
                get("auto.create.topics.enable"),
            )?,
            socket_request_max_bytes: parse_num(
                "socket.request.max.bytes",
                get("socket.request.max.bytes"),
            )?,
            retention_check_interval: Duration::from_millis(parse_num(
                "log.retention.check.interval.ms",
                get("log.retention.check.interval.ms"),
            )?),
            producer_id_expiration_ms: parse_num(
                "producer.id.expiration.ms",
                get("producer.id.expiration.ms"),
            )?,
            cleaner_enable: parse_num::<bool>("log.cleaner.enable", get("log.cleaner.enable"))?,
            cleaner_backoff: Duration::from_millis(parse_num(
                "log.cleaner.backoff.ms",
                get("log.cleaner.backoff.ms"),
            )?),
            cleaner_dedupe_buffer_bytes: parse_num(
                "log.cleaner.dedupe.buffer.size",
                get("log.cleaner.dedupe.buffer.size"),
            )?,
            heartbeat_interval: ms("broker.heartbeat.interval.ms")?,
            session_timeout: ms("broker.session.timeout.ms")?,
            controlled_shutdown_timeout: ms("controlled.shutdown.timeout.ms")?,
            slow_request: Some(ms("request.slow.log.ms")?).filter(|d| !d.is_zero()),
            replica_lag_time_max: ms("replica.lag.time.max.ms")?,
            leader_rebalance_interval: parse_num::<bool>(
                "auto.leader.rebalance.enable",
                get("auto.leader.rebalance.enable"),
            )?
            .then(|| {
                parse_num::<u64>(
                    "leader.imbalance.check.interval.seconds",
                    get("leader.imbalance.check.interval.seconds"),
                )
                .map(Duration::from_secs)
            })
            .transpose()?,
            leader_imbalance_percentage: parse_num(
                "leader.imbalance.per.broker.percentage",
                get("leader.imbalance.per.broker.percentage"),
            )?,
            metadata_snapshot_interval: parse_num(
                "metadata.snapshot.interval.entries",
                get("metadata.snapshot.interval.entries"),
            )?,
            cluster_id: props
                .get("cluster.id")
                .map(|(v, _)| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
            log_format: parse_num("log.format", get("log.format"))?,
            connection_limits: connection_limits(&get)?,
            props,
        })
    }

    /// The raw value of a property and where it came from.
    pub fn get(&self, name: &str) -> Option<(&str, Source)> {
        self.props.get(name).map(|(v, s)| (v.as_str(), *s))
    }

    /// Every property, for DescribeConfigs and the start-up log line.
    pub fn all(&self) -> impl Iterator<Item = (&str, &str, Source)> {
        self.props
            .iter()
            .map(|(k, (v, s))| (k.as_str(), v.as_str(), *s))
    }
}

/// The Kafka listener's limits; Kafka's "no limit" (2147483647) is no limit.
fn connection_limits<'a>(get: &impl Fn(&str) -> &'a str) -> Result<ConnectionLimits, ConfigError> {
    let overrides = "max.connections.per.ip.overrides";
    let idle_ms: u64 = parse_num("connections.max.idle.ms", get("connections.max.idle.ms"))?;
    if idle_ms == 0 {
        return Err(invalid(
            "connections.max.idle.ms",
            get("connections.max.idle.ms"),
            "must be positive",
        ));
    }
    let rate: u32 = parse_num(
        "max.connection.creation.rate",
        get("max.connection.creation.rate"),
    )?;
    Ok(ConnectionLimits {
        max_connections: parse_num("max.connections", get("max.connections"))?,
        max_per_ip: parse_num("max.connections.per.ip", get("max.connections.per.ip"))?,
        per_ip_overrides: parse_per_ip_overrides(get(overrides))
            .map_err(|reason| invalid(overrides, get(overrides), reason))?,
        idle_timeout: Duration::from_millis(idle_ms),
        creation_rate: (rate < i32::MAX as u32).then_some(rate),
    })
}

fn invalid(name: &str, value: &str, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        value: value.to_owned(),
        reason: reason.to_string(),
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError>
where
    T::Err: ToString,
{
    v.trim().parse().map_err(|e: T::Err| invalid(name, v, e))
}

/// The client-facing entry of a listener list: the first whose name is not a controller
/// listener (`NAME://host:port`), else the first.
fn client_listener<'a>(list: &'a str, controller_names: &[&str]) -> &'a str {
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    entries
        .iter()
        .find(|e| {
            let name = e.split_once("://").map_or("", |(n, _)| n);
            !controller_names.contains(&name)
        })
        .or(entries.first())
        .copied()
        .unwrap_or("")
}

/// The controller listener's address: the `listeners` entry whose name is a controller
/// listener name, else this node's entry in `controller.quorum.voters`.
fn controller_listener(
    list: &str,
    controller_names: &[&str],
    voters: &[(i32, String)],
    node_id: i32,
) -> Result<SocketAddr, ConfigError> {
    let named = list.split(',').map(str::trim).find(|e| {
        e.split_once("://")
            .is_some_and(|(n, _)| controller_names.contains(&n))
    });
    match named {
        Some(entry) => parse_listener("listeners", entry),
        None => match voters.iter().find(|(id, _)| *id == node_id) {
            Some((_, addr)) => parse_listener("controller.quorum.voters", addr),
            None => Err(invalid(
                "controller.quorum.voters",
                &voters
                    .iter()
                    .map(|(i, a)| format!("{i}@{a}"))
                    .collect::<Vec<_>>()
                    .join(","),
                format!("node {node_id} has the controller role, so it must be one of the voters"),
            )),
        },
    }
}

fn strip_scheme(v: &str) -> &str {
    v.split_once("://").map_or(v, |(_, rest)| rest)
}

fn split_host_port(name: &str, v: &str) -> Result<(String, u16), ConfigError> {
    let (host, port) = v
        .rsplit_once(':')
        .ok_or_else(|| invalid(name, v, "expected host:port"))?;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Ok((
        host.trim_matches(['[', ']']).to_owned(),
        parse_num(name, port)?,
    ))
}

fn parse_listener(name: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    let (host, port) = split_host_port(name, strip_scheme(v))?;
    let host = if host == "localhost" {
        "127.0.0.1".to_owned()
    } else {
        host
    };
    let ip: std::net::IpAddr = host.parse().map_err(|e| invalid(name, v, e))?;
    Ok(SocketAddr::new(ip, port))
}

/// Parses Java properties text: `key=value` or `key: value` lines, `#`/`!` comments.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let idx = l.find(['=', ':'])?;
            Some((l[..idx].trim().to_owned(), l[idx + 1..].trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_single_combined_node_on_loopback() {
        let c = BrokerConfig::from_properties(BTreeMap::new()).expect("defaults");
        assert_eq!(c.node_id, 1);
        assert!(c.is_broker && c.is_controller);
        assert_eq!(c.listener, "127.0.0.1:9092".parse().expect("addr"));
        assert_eq!(c.advertised, ("127.0.0.1".to_owned(), 9092));
        assert_eq!(c.controller_voters, vec![(1, "127.0.0.1:9093".to_owned())]);
        assert_eq!(
            c.get("log.retention.ms"),
            Some(("604800000", Source::Default))
        );
    }

    #[test]
    fn file_env_and_overrides_layer_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.properties");
        std::fs::write(
            &path,
            "# c\nnode.id=3\ncontroller.quorum.voters=3@127.0.0.1:19093\nlisteners=PLAINTEXT://:19092\nnum.partitions: 4\n",
        )
        .expect("write");
        let args = [
            "--config",
            path.to_str().expect("utf8"),
            "--override",
            "num.partitions=6",
        ];
        let env = [("TRIBUTARY_LOG_DIRS".to_owned(), "/tmp/x".to_owned())];
        let c = BrokerConfig::from_args_and_env(args.map(String::from), env).expect("load");
        assert_eq!(c.node_id, 3);
        assert_eq!(c.num_partitions, 6);
        assert_eq!(c.log_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.listener.port(), 19092);
        assert_eq!(c.get("node.id"), Some(("3", Source::Static)));
    }

    #[test]
    fn the_client_listener_is_not_the_controller_listener() {
        let set = BTreeMap::from([
            (
                "listeners".to_owned(),
                "CONTROLLER://0.0.0.0:9093,PLAINTEXT://0.0.0.0:9092".to_owned(),
            ),
            (
                "advertised.listeners".to_owned(),
                "PLAINTEXT://b-1.b.kafka.svc:9092".to_owned(),
            ),
        ]);
        let c = BrokerConfig::from_properties(set).expect("config");
        assert_eq!(c.listener, "0.0.0.0:9092".parse().expect("addr"));
        assert_eq!(c.advertised, ("b-1.b.kafka.svc".to_owned(), 9092));
    }

    #[test]
    fn roles_decide_the_controller_listener() {
        let props = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        // A broker-only node is not a voter and needs no controller listener.
        let b = BrokerConfig::from_properties(props(&[
            ("node.id", "7"),
            ("process.roles", "broker"),
            ("controller.quorum.voters", "1@c1:9093,2@c2:9093,3@c3:9093"),
        ]))
        .expect("broker-only");
        assert!(b.is_broker && !b.is_controller);
        assert_eq!(b.controller_listener, None);
        // A controller takes the CONTROLLER entry of `listeners`.
        let c = BrokerConfig::from_properties(props(&[
            ("node.id", "2"),
            ("process.roles", "controller"),
            ("listeners", "CONTROLLER://127.0.0.1:19093"),
            ("controller.quorum.voters", "1@c1:9093,2@c2:9093,3@c3:9093"),
        ]))
        .expect("controller-only");
        assert_eq!(
            c.controller_listener,
            Some("127.0.0.1:19093".parse().expect("addr"))
        );
        // The controller role with a node id that is not a voter is refused, naming the setting.
        let err = BrokerConfig::from_properties(props(&[
            ("node.id", "4"),
            ("process.roles", "controller"),
            ("controller.quorum.voters", "1@c1:9093"),
        ]))
        .expect_err("not a voter");
        assert!(
            err.to_string().contains("controller.quorum.voters"),
            "{err}"
        );
        let err = BrokerConfig::from_properties(props(&[("process.roles", "observer")]))
            .expect_err("bad role");
        assert!(err.to_string().contains("process.roles"), "{err}");
    }

    #[test]
    fn log_format_comes_from_the_property_or_the_environment() {
        let c = BrokerConfig::from_properties(BTreeMap::new()).expect("defaults");
        assert_eq!(c.log_format, LogFormat::Text);
        let env = [("TRIBUTARY_LOG_FORMAT".to_owned(), "json".to_owned())];
        let c = BrokerConfig::from_args_and_env(Vec::new(), env).expect("env");
        assert_eq!(c.log_format, LogFormat::Json);
        let set = BTreeMap::from([("log.format".to_owned(), "xml".to_owned())]);
        let err = BrokerConfig::from_properties(set).expect_err("invalid");
        assert!(err.to_string().contains("log.format"), "{err}");
    }

    #[test]
    fn connection_limits_default_to_none_but_the_idle_timeout() {
        let c = BrokerConfig::from_properties(BTreeMap::new()).expect("defaults");
        assert_eq!(
            c.connection_limits.idle_timeout,
            Duration::from_millis(600_000)
        );
        assert_eq!(c.connection_limits.max_connections, 2_147_483_647);
        assert_eq!(c.connection_limits.creation_rate, None);
        let set = BTreeMap::from([
            ("max.connections".to_owned(), "100".to_owned()),
            ("max.connections.per.ip".to_owned(), "10".to_owned()),
            (
                "max.connections.per.ip.overrides".to_owned(),
                "127.0.0.1:50".to_owned(),
            ),
            ("max.connection.creation.rate".to_owned(), "20".to_owned()),
        ]);
        let l = BrokerConfig::from_properties(set)
            .expect("limits")
            .connection_limits;
        assert_eq!((l.max_connections, l.max_per_ip), (100, 10));
        assert_eq!(l.per_ip("127.0.0.1".parse().expect("ip")), 50);
        assert_eq!(l.creation_rate, Some(20));
        for (k, v) in [
            ("max.connections", "-1"),
            ("max.connections.per.ip.overrides", "host-a:5"),
            ("connections.max.idle.ms", "0"),
        ] {
            let set = BTreeMap::from([(k.to_owned(), v.to_owned())]);
            let err = BrokerConfig::from_properties(set).expect_err(k);
            assert!(err.to_string().contains(k), "{err}");
        }
    }

    #[test]
    fn bad_values_name_the_property() {
        let set = BTreeMap::from([("node.id".to_owned(), "x".to_owned())]);
        let err = BrokerConfig::from_properties(set).expect_err("invalid");
        assert!(err.to_string().contains("node.id"), "{err}");
    }
}
