//! DescribeConfigs and IncrementalAlterConfigs over several resources at once (topics, one
//! broker, the cluster-wide broker defaults), each resource's outcome kept apart.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;

use super::{
    kafka_error, missing, refused, KafkaAdminClient, ALTER_CONFIGS, DESCRIBE_CONFIGS,
    RESOURCE_TYPE_BROKER, RESOURCE_TYPE_TOPIC,
};
use crate::admin::{AdminError, ConfigChange, ConfigEntry, ConfigSource, Failure};
use crate::day2::NodeId;

/// A config resource: a topic, one broker, or every broker (the cluster-wide defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ConfigResource {
    resource_type: i8,
    name: String,
}

impl ConfigResource {
    pub(super) fn topic(name: &str) -> Self {
        ConfigResource {
            resource_type: RESOURCE_TYPE_TOPIC,
            name: name.to_owned(),
        }
    }

    pub(super) fn broker(id: NodeId) -> Self {
        ConfigResource {
            resource_type: RESOURCE_TYPE_BROKER,
            name: id.to_string(),
        }
    }

    pub(super) fn broker_defaults() -> Self {
        ConfigResource {
            resource_type: RESOURCE_TYPE_BROKER,
            name: String::new(),
        }
    }

    /// How errors name it.
    fn label(&self) -> String {
        match (self.resource_type, self.name.as_str()) {
            (RESOURCE_TYPE_BROKER, "") => "broker defaults".to_owned(),
            (RESOURCE_TYPE_BROKER, id) => format!("broker {id}"),
            (_, name) => name.to_owned(),
        }
    }
}

impl KafkaAdminClient {
    /// DescribeConfigs of `resources` (only `keys` when given), one result per resource in
    /// order: its entries with their sources, or the error the cluster gave for it.
    pub(super) async fn describe_configs(
        &self,
        resources: Vec<ConfigResource>,
        keys: Option<&[&str]>,
    ) -> Result<Vec<Result<Vec<ConfigEntry>, AdminError>>, AdminError> {
        let v = self.version(DESCRIBE_CONFIGS)?;
        let keys: Option<Vec<StrBytes>> = keys.map(|k| {
            k.iter()
                .map(|k| StrBytes::from_string((*k).to_owned()))
                .collect()
        });
        let req = DescribeConfigsRequest::default()
            .with_resources(
                resources
                    .iter()
                    .map(|r| {
                        DescribeConfigsResource::default()
                            .with_resource_type(r.resource_type)
                            .with_resource_name(StrBytes::from_string(r.name.clone()))
                            .with_configuration_keys(keys.clone())
                    })
                    .collect(),
            )
            .with_include_synonyms(false);
        let resp = self.round_trip(DESCRIBE_CONFIGS.0, &req, v).await?;
        Ok(resources
            .iter()
            .map(|res| {
                let r = resp
                    .results
                    .iter()
                    .find(|r| {
                        r.resource_type == res.resource_type && r.resource_name.as_str() == res.name
                    })
                    .ok_or_else(|| missing(DESCRIBE_CONFIGS.0, &res.label()))?;
                if r.error_code != 0 {
                    return Err(kafka_error(
                        DESCRIBE_CONFIGS.0,
                        &res.label(),
                        r.error_code,
                        r.error_message.as_ref(),
                    ));
                }
                Ok(r.configs
                    .iter()
                    .map(|c| ConfigEntry {
                        name: c.name.to_string(),
                        value: c.value.as_ref().map(ToString::to_string),
                        source: ConfigSource::from_code(c.config_source),
                    })
                    .collect())
            })
            .collect())
    }

    /// IncrementalAlterConfigs of several resources in one request. A single refused resource
    /// is a `Kafka` error; several, `Refused` naming each (the others were applied).
    pub(super) async fn alter_configs(
        &self,
        changes: Vec<(ConfigResource, Vec<ConfigChange>)>,
    ) -> Result<(), AdminError> {
        let v = self.version(ALTER_CONFIGS)?;
        let resources = changes
            .iter()
            .map(|(r, changes)| {
                AlterConfigsResource::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(StrBytes::from_string(r.name.clone()))
                    .with_configs(changes.iter().map(alterable).collect())
            })
            .collect();
        let req = IncrementalAlterConfigsRequest::default().with_resources(resources);
        let resp = self.round_trip(ALTER_CONFIGS.0, &req, v).await?;
        let mut failures = Vec::new();
        for (res, _) in &changes {
            let r = resp
                .responses
                .iter()
                .find(|r| {
                    r.resource_type == res.resource_type && r.resource_name.as_str() == res.name
                })
                .ok_or_else(|| missing(ALTER_CONFIGS.0, &res.label()))?;
            if r.error_code != 0 {
                failures.push(Failure {
                    resource: res.label(),
                    code: r.error_code,
                    message: r.error_message.as_ref().map(ToString::to_string),
                });
            }
        }
        refused(ALTER_CONFIGS.0, failures)
    }
}

fn alterable(c: &ConfigChange) -> AlterableConfig {
    match c {
        ConfigChange::Set { name, value } => AlterableConfig::default()
            .with_name(StrBytes::from_string(name.clone()))
            .with_config_operation(0)
            .with_value(Some(StrBytes::from_string(value.clone()))),
        ConfigChange::Delete { name } => AlterableConfig::default()
            .with_name(StrBytes::from_string(name.clone()))
            .with_config_operation(1),
    }
}
