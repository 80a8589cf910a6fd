//! DescribeConfigs for topics (every config Skein applies, with its source) and for this broker.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use skein_controller::acl::{AclOperation, ResourceType};

use crate::kafka::dispatch::RequestCtx;
use crate::settings::ConfigSource;
use crate::topic_config::EffectiveTopicConfig;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
/// Kafka's ConfigType codes for DescribeConfigs v3+.
const CONFIG_TYPE_STRING: i8 = 2;

pub fn handle(ctx: &RequestCtx, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let version = ctx.version();
    let md = ctx.shard.metadata();
    let settings = &ctx.shard.layout.broker;
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let keys: Option<Vec<String>> = res
            .configuration_keys
            .map(|k| k.iter().map(|s| s.to_string()).collect());
        let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == name));
        let topic_denied = res.resource_type == RESOURCE_TOPIC
            && !ctx.authorized(
                AclOperation::DescribeConfigs,
                ResourceType::Topic,
                &res.resource_name,
            );
        let broker_denied = res.resource_type == RESOURCE_BROKER
            && !ctx.cluster_authorized(AclOperation::DescribeConfigs);
        if topic_denied || broker_denied {
            out.error_code = if topic_denied {
                ResponseError::TopicAuthorizationFailed.code()
            } else {
                ResponseError::ClusterAuthorizationFailed.code()
            };
            resp.results.push(out);
            continue;
        }
        match res.resource_type {
            RESOURCE_TOPIC => match md.topics.get(res.resource_name.as_str()) {
                None => {
                    out.error_code = ResponseError::UnknownTopicOrPartition.code();
                    out.error_message = Some(StrBytes::from_string(format!(
                        "Topic {} does not exist",
                        res.resource_name.as_str()
                    )));
                }
                Some(t) => {
                    let eff = EffectiveTopicConfig::resolve(settings, &t.configs);
                    // What acks=all applies: Skein's default depends on the replication factor.
                    let rf = t.partitions.first().map_or(1, |p| p.replicas.len());
                    let min_insync = eff.min_insync_replicas_for(rf).to_string();
                    for e in eff.entries.iter().filter(|e| wanted(e.name)) {
                        let value = if e.name == "min.insync.replicas" {
                            &min_insync
                        } else {
                            &e.value
                        };
                        out.configs.push(entry(
                            version,
                            e.name,
                            value,
                            e.source,
                            req.include_synonyms,
                        ));
                    }
                }
            },
            RESOURCE_BROKER => {
                let own = md.node_id.0.to_string();
                if !res.resource_name.is_empty() && res.resource_name.as_str() != own {
                    out.error_code = ResponseError::InvalidRequest.code();
                    out.error_message = Some(StrBytes::from_static_str("unknown broker id"));
                } else {
                    let statics = [
                        (
                            "auto.create.topics.enable",
                            settings.auto_create_topics_enable.to_string(),
                        ),
                        ("num.partitions", settings.num_partitions.to_string()),
                        (
                            "default.replication.factor",
                            settings.default_replication_factor.to_string(),
                        ),
                        (
                            "socket.request.max.bytes",
                            settings.socket_request_max_bytes.to_string(),
                        ),
                        (
                            "delete.topic.enable",
                            settings.delete_topic_enable.to_string(),
                        ),
                    ];
                    for (name, value) in statics.iter().filter(|(n, _)| wanted(n)) {
                        out.configs.push(entry(
                            version,
                            name,
                            value,
                            ConfigSource::StaticBroker,
                            false,
                        ));
                    }
                    for def in crate::settings::TOPIC_CONFIGS
                        .iter()
                        .filter(|d| wanted(d.broker_key))
                    {
                        let (value, source) = settings.topic_default(def);
                        out.configs
                            .push(entry(version, def.broker_key, &value, source, false));
                    }
                }
            }
            _ => {
                out.error_code = ResponseError::InvalidRequest.code();
                out.error_message = Some(StrBytes::from_static_str("unsupported resource type"));
            }
        }
        resp.results.push(out);
    }
    resp
}

fn entry(
    version: i16,
    name: &str,
    value: &str,
    source: ConfigSource,
    synonyms: bool,
) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = StrBytes::from_string(name.to_string());
    c.value = Some(StrBytes::from_string(value.to_string()));
    c.read_only = false;
    c.config_source = source.code();
    if synonyms && version >= 1 {
        let mut s = DescribeConfigsSynonym::default();
        s.name = c.name.clone();
        s.value = c.value.clone();
        s.source = source.code();
        c.synonyms.push(s);
    }
    if version >= 3 {
        c.config_type = CONFIG_TYPE_STRING;
    }
    c
}
