//! CreateTopics: validated and applied by the metadata shard; v5+ answers carry the result.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use skein_controller::acl::{AclOperation, ResourceType};

use crate::admin::{self, AdminOp, NewTopic};
use crate::kafka::dispatch::RequestCtx;
use crate::topic_config::EffectiveTopicConfig;

pub async fn handle(ctx: &RequestCtx, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let version = ctx.version();
    // Kafka: CREATE on the cluster, or on each topic.
    let cluster_create = ctx.cluster_authorized(AclOperation::Create);
    let allowed = |name: &str| {
        cluster_create || ctx.authorized(AclOperation::Create, ResourceType::Topic, name)
    };
    let denied: Vec<String> = req
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .filter(|n| !allowed(n))
        .collect();
    let topics: Vec<NewTopic> = req
        .topics
        .iter()
        .filter(|t| !denied.iter().any(|d| d.as_str() == t.name.0.as_str()))
        .map(|t| NewTopic {
            name: t.name.0.to_string(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            configs: t
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect::<BTreeMap<_, _>>(),
            has_assignments: !t.assignments.is_empty(),
        })
        .collect();
    let mut reply = admin::submit(
        &ctx.shard,
        AdminOp::CreateTopics {
            topics,
            validate_only: req.validate_only,
        },
    )
    .await;
    let refused = Err((
        kafka_protocol::error::ResponseError::TopicAuthorizationFailed,
        None,
    ));
    reply
        .results
        .extend(denied.into_iter().map(|n| (n, refused.clone())));
    let md = ctx.shard.metadata();
    let mut resp = CreateTopicsResponse::default();
    for (name, result) in reply.results {
        let mut r = CreatableTopicResult::default();
        r.name = TopicName(StrBytes::from_string(name.clone()));
        match result {
            Err((e, m)) => {
                r.error_code = e.code();
                r.error_message = m.map(StrBytes::from_string);
                if version >= 5 {
                    r.num_partitions = -1;
                    r.replication_factor = -1;
                }
            }
            Ok(()) if version >= 5 => {
                if let Some(t) = md.topics.get(&name) {
                    if version >= 7 {
                        r.topic_id = t.id;
                    }
                    r.num_partitions = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
                    r.replication_factor = 1;
                    let eff = EffectiveTopicConfig::resolve(&ctx.shard.layout.broker, &t.configs);
                    r.configs = Some(
                        eff.entries
                            .iter()
                            .map(|e| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = StrBytes::from_static_str(e.name);
                                c.value = Some(StrBytes::from_string(e.value.clone()));
                                c.config_source = e.source.code();
                                c
                            })
                            .collect(),
                    );
                } else {
                    // validate_only: nothing was created, report what would be.
                    r.num_partitions = -1;
                    r.replication_factor = -1;
                }
            }
            Ok(()) => {}
        }
        resp.topics.push(r);
    }
    resp
}
