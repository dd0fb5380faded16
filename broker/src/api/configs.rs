//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (overrides stored in the
//! metadata log) and brokers: one broker (resource name = its id) or every broker (the cluster
//! default, an empty name). The broker properties that may change without a restart are the
//! topic defaults (`log.retention.ms`, `min.insync.replicas`, `unclean.leader.election.enable`,
//! ...): they are stored in the metadata log and take effect on every broker as the record
//! arrives. Any other property is refused, saying it needs a restart.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::s;
use crate::broker::Broker;
use crate::config::{BrokerConfig, Source};
use crate::metadata::channel::ControllerApi;
use crate::metadata::{ApiError, QuorumController};
use crate::topic_config::{self, Dynamic, TopicValueSource, ValueType};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// DescribeConfigs' `config_source` code for a topic value's source.
pub(super) fn source_code(source: TopicValueSource) -> i8 {
    match source {
        TopicValueSource::TopicOverride => SOURCE_DYNAMIC_TOPIC,
        TopicValueSource::DynamicBroker => SOURCE_DYNAMIC_BROKER,
        TopicValueSource::DynamicDefaultBroker => SOURCE_DYNAMIC_DEFAULT_BROKER,
        TopicValueSource::StaticBroker => SOURCE_STATIC_BROKER,
        TopicValueSource::Default => SOURCE_DEFAULT,
    }
}

fn type_code(t: ValueType) -> i8 {
    match t {
        ValueType::Bool => 1,
        ValueType::Str | ValueType::Enum(_) => 2,
        ValueType::Int => 3,
        ValueType::Long => 5,
        ValueType::Double => 6,
        ValueType::List(_) | ValueType::Replicas => 7,
    }
}

fn broker_source(s: Source) -> i8 {
    match s {
        Source::Static => SOURCE_STATIC_BROKER,
        Source::Default => SOURCE_DEFAULT,
    }
}

pub(super) async fn describe(
    broker: &Broker,
    req: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|r| {
            let keys: Option<Vec<String>> = r
                .configuration_keys
                .as_ref()
                .map(|k| k.iter().map(ToString::to_string).collect());
            let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == name));
            let result = match r.resource_type {
                RESOURCE_TOPIC => {
                    describe_topic(broker, &r.resource_name, req.include_synonyms, &wanted)
                }
                RESOURCE_BROKER => {
                    describe_broker(broker, &r.resource_name, req.include_synonyms, &wanted)
                }
                other => Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("unsupported resource type {other}"),
                )),
            };
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match result {
                Ok(configs) => base.with_configs(configs),
                Err(e) => base
                    .with_error_code(e.code.code())
                    .with_error_message(Some(s(e.message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn describe_topic(
    broker: &Broker,
    name: &str,
    synonyms: bool,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<DescribeConfigsResourceResult>, ApiError> {
    let image = broker.metadata.image();
    let topic = image.topics.get(name).ok_or_else(|| {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        )
    })?;
    let dynamic = Dynamic::of(&image.broker_configs, broker.config.node_id);
    Ok(
        topic_config::effective_with(&topic.configs, &broker.config, dynamic)
            .into_iter()
            .filter(|(n, _)| wanted(n))
            .map(|(n, (value, source))| {
                let def = topic_config::lookup(n).expect("effective() lists only known configs");
                let mut syn = Vec::new();
                if synonyms {
                    if let Some(v) = topic.configs.get(n) {
                        syn.push(synonym(n, v, SOURCE_DYNAMIC_TOPIC));
                    }
                    if let Some(v) = dynamic.broker.and_then(|m| m.get(def.broker_key)) {
                        syn.push(synonym(def.broker_key, v, SOURCE_DYNAMIC_BROKER));
                    }
                    if let Some(v) = dynamic.default.and_then(|m| m.get(def.broker_key)) {
                        syn.push(synonym(def.broker_key, v, SOURCE_DYNAMIC_DEFAULT_BROKER));
                    }
                    if let Some((v, src)) = broker.config.get(def.broker_key) {
                        syn.push(synonym(def.broker_key, v, broker_source(src)));
                    }
                }
                DescribeConfigsResourceResult::default()
                    .with_name(s(n))
                    .with_value(Some(s(value)))
                    .with_config_source(source_code(source))
                    .with_config_type(type_code(def.value_type))
                    .with_synonyms(syn)
            })
            .collect(),
    )
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(s(name))
        .with_value(Some(s(value)))
        .with_source(source)
}

fn describe_broker(
    broker: &Broker,
    name: &str,
    synonyms: bool,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<DescribeConfigsResourceResult>, ApiError> {
    let image = broker.metadata.image();
    let entry = |n: &str, v: &str, source: i8| {
        let def = topic_config::by_broker_key(n);
        DescribeConfigsResourceResult::default()
            .with_name(s(n))
            .with_value(Some(s(v)))
            .with_read_only(!topic_config::is_dynamic_broker_key(n))
            .with_config_source(source)
            .with_config_type(def.map_or(2, |d| type_code(d.value_type)))
    };
    if name.is_empty() {
        // The cluster default: the dynamic configs set for every broker.
        return Ok(image
            .broker_configs
            .get(&None)
            .into_iter()
            .flatten()
            .filter(|(n, _)| wanted(n))
            .map(|(n, v)| entry(n, v, SOURCE_DYNAMIC_DEFAULT_BROKER))
            .collect());
    }
    if name.parse::<i32>().ok() != Some(broker.config.node_id) {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!(
                "broker {name} is not this broker ({})",
                broker.config.node_id
            ),
        ));
    }
    let dynamic = Dynamic::of(&image.broker_configs, broker.config.node_id);
    let mut out: BTreeMap<String, DescribeConfigsResourceResult> = broker
        .config
        .all()
        .filter(|(n, _, _)| wanted(n))
        .map(|(n, v, src)| (n.to_owned(), entry(n, v, broker_source(src))))
        .collect();
    // Dynamic values win over static ones (and may name properties not set statically).
    for m in [dynamic.default, dynamic.broker].into_iter().flatten() {
        for (n, _) in m.iter().filter(|(n, _)| wanted(n)) {
            if let Some((v, src)) = dynamic.get(n) {
                out.insert(n.clone(), entry(n, v, source_code(src)));
            }
        }
    }
    if synonyms {
        for (n, result) in out.iter_mut() {
            result.synonyms = broker_synonyms(broker, dynamic, n);
        }
    }
    Ok(out.into_values().collect())
}

/// Every value a broker property has, in Kafka's precedence order (dynamic for this broker,
/// dynamic cluster default, static, built-in default): the synonyms DescribeConfigs returns,
/// so that a client sees the default next to the value in effect.
fn broker_synonyms(
    broker: &Broker,
    dynamic: Dynamic<'_>,
    name: &str,
) -> Vec<DescribeConfigsSynonym> {
    let mut syn = Vec::new();
    if let Some(v) = dynamic.broker.and_then(|m| m.get(name)) {
        syn.push(synonym(name, v, SOURCE_DYNAMIC_BROKER));
    }
    if let Some(v) = dynamic.default.and_then(|m| m.get(name)) {
        syn.push(synonym(name, v, SOURCE_DYNAMIC_DEFAULT_BROKER));
    }
    if let Some((v, Source::Static)) = broker.config.get(name) {
        syn.push(synonym(name, v, SOURCE_STATIC_BROKER));
    }
    if let Some((_, v)) = crate::config::DEFAULTS.iter().find(|(k, _)| *k == name) {
        syn.push(synonym(name, v, SOURCE_DEFAULT));
    }
    syn
}

/// Alters one resource: topic overrides through the controller (`change` maps the current
/// overrides to the new ones); everything else is refused.
async fn alter_one<F>(
    ctl: &QuorumController,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: F,
) -> Result<(), ApiError>
where
    F: FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError>,
{
    match resource_type {
        RESOURCE_TOPIC => ctl.alter_topic_configs(name, validate_only, change).await,
        RESOURCE_BROKER => {
            let broker = if name.is_empty() {
                None
            } else {
                Some(name.parse::<i32>().map_err(|_| {
                    ApiError::new(
                        ResponseError::InvalidRequest,
                        format!("broker resource name {name:?} is not a broker id (or empty for every broker)"),
                    )
                })?)
            };
            ctl.alter_broker_configs(broker, validate_only, change)
                .await
        }
        other => Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("unsupported resource type {other}"),
        )),
    }
}

pub(super) async fn alter(
    broker: &Broker,
    req: AlterConfigsRequest,
    version: i16,
) -> AlterConfigsResponse {
    let resources: Vec<(i8, StrBytes)> = req
        .resources
        .iter()
        .map(|r| (r.resource_type, r.resource_name.clone()))
        .collect();
    forward(broker, version, req, resources, |t, n, code, message| {
        alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(t)
            .with_resource_name(n)
            .with_error_code(code)
            .with_error_message(message)
    })
    .await
    .unwrap_or_else(|responses| AlterConfigsResponse::default().with_responses(responses))
}

/// How long a forwarded config change may wait for the active controller.
const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Forwards a config change to the active controller. If none answers in time, every resource
/// of the request gets that error: `Err` carries those per-resource results, built by `failed`
/// from (resource type, name, error code, message).
async fn forward<R, T>(
    broker: &Broker,
    version: i16,
    req: R,
    resources: Vec<(i8, StrBytes)>,
    failed: impl Fn(i8, StrBytes, i16, Option<StrBytes>) -> T,
) -> Result<R::Response, Vec<T>>
where
    R: ControllerApi,
    R::Response: Send,
{
    broker
        .channel
        .call(version, req, FORWARD_TIMEOUT)
        .await
        .map_err(|e| {
            let (code, message) = super::error_parts::<()>(&Err(e));
            resources
                .into_iter()
                .map(|(t, n)| failed(t, n, code, message.clone()))
                .collect()
        })
}

impl ControllerApi for AlterConfigsRequest {
    async fn serve(
        ctl: &QuorumController,
        _cfg: &BrokerConfig,
        req: Self,
        _version: i16,
    ) -> AlterConfigsResponse {
        alter_on_controller(ctl, req).await
    }

    fn not_controller(resp: &AlterConfigsResponse) -> bool {
        resp.responses
            .iter()
            .any(|r| r.error_code == super::NOT_CONTROLLER)
    }
}

async fn alter_on_controller(
    ctl: &QuorumController,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for r in &req.resources {
        // AlterConfigs replaces the whole set of overrides.
        let new: BTreeMap<String, String> = r
            .configs
            .iter()
            .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
            .collect();
        let result = alter_one(
            ctl,
            r.resource_type,
            &r.resource_name,
            req.validate_only,
            |_| Ok(new),
        )
        .await;
        let (code, message) = super::error_parts(&result);
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// One incremental change: SET (0), DELETE (1), APPEND (2) or SUBTRACT (3). `def` is the
/// config's definition (for a broker resource, the topic config it is the default of; `None`
/// for a name no topic config has, which the controller then refuses with its reason) and
/// `now` its value in effect, which APPEND and SUBTRACT start from.
fn apply_op(
    configs: &mut BTreeMap<String, String>,
    def: Option<&topic_config::TopicConfigDef>,
    now: Option<String>,
    name: &str,
    op: i8,
    value: Option<&StrBytes>,
) -> Result<(), ApiError> {
    let invalid = |m: String| ApiError::new(ResponseError::InvalidConfig, m);
    let list_op = |f: &dyn Fn(&mut Vec<String>, &str)| -> Result<String, ApiError> {
        if !def.is_some_and(|d| matches!(d.value_type, ValueType::List(_))) {
            return Err(invalid(format!("{name} is not a list config")));
        }
        let current = now.clone().unwrap_or_default();
        let mut items: Vec<String> = current
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        for v in value.map(|v| v.to_string()).unwrap_or_default().split(',') {
            f(&mut items, v.trim());
        }
        Ok(items.join(","))
    };
    match op {
        0 => {
            let v = value.ok_or_else(|| invalid(format!("SET of {name} needs a value")))?;
            configs.insert(name.to_owned(), v.to_string());
        }
        1 => {
            configs.remove(name);
        }
        2 => {
            let v = list_op(&|items, v| {
                if !items.iter().any(|i| i == v) {
                    items.push(v.to_owned());
                }
            })?;
            configs.insert(name.to_owned(), v);
        }
        3 => {
            let v = list_op(&|items, v| items.retain(|i| i != v))?;
            configs.insert(name.to_owned(), v);
        }
        other => return Err(invalid(format!("unknown config operation {other}"))),
    }
    Ok(())
}

pub(super) async fn incremental_alter(
    broker: &Broker,
    req: IncrementalAlterConfigsRequest,
    version: i16,
) -> IncrementalAlterConfigsResponse {
    let resources: Vec<(i8, StrBytes)> = req
        .resources
        .iter()
        .map(|r| (r.resource_type, r.resource_name.clone()))
        .collect();
    forward(broker, version, req, resources, |t, n, code, message| {
        incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(t)
            .with_resource_name(n)
            .with_error_code(code)
            .with_error_message(message)
    })
    .await
    .unwrap_or_else(|responses| {
        IncrementalAlterConfigsResponse::default().with_responses(responses)
    })
}

impl ControllerApi for IncrementalAlterConfigsRequest {
    async fn serve(
        ctl: &QuorumController,
        cfg: &BrokerConfig,
        req: Self,
        _version: i16,
    ) -> IncrementalAlterConfigsResponse {
        incremental_on_controller(ctl, cfg, req).await
    }

    fn not_controller(resp: &IncrementalAlterConfigsResponse) -> bool {
        resp.responses
            .iter()
            .any(|r| r.error_code == super::NOT_CONTROLLER)
    }
}

async fn incremental_on_controller(
    ctl: &QuorumController,
    cfg: &BrokerConfig,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for r in &req.resources {
        let result = alter_one(
            ctl,
            r.resource_type,
            &r.resource_name,
            req.validate_only,
            |current| {
                let effective = topic_config::effective(current, cfg);
                let mut new = current.clone();
                for c in &r.configs {
                    let name = c.name.as_str();
                    let (def, now) = if r.resource_type == RESOURCE_BROKER {
                        let now = current
                            .get(name)
                            .cloned()
                            .or_else(|| cfg.get(name).map(|(v, _)| v.to_owned()));
                        (topic_config::by_broker_key(name), now)
                    } else {
                        let def = topic_config::lookup(name).ok_or_else(|| {
                            ApiError::new(
                                ResponseError::InvalidConfig,
                                format!("unknown topic config name: {name}"),
                            )
                        })?;
                        (Some(def), effective.get(name).map(|(v, _)| v.clone()))
                    };
                    apply_op(
                        &mut new,
                        def,
                        now,
                        name,
                        c.config_operation,
                        c.value.as_ref(),
                    )?;
                }
                Ok(new)
            },
        )
        .await;
        let (code, message) = super::error_parts(&result);
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
