//! AlterConfigs (replace all overrides) and IncrementalAlterConfigs (set, delete, append,
//! subtract) for topics. Broker configs are static (the config file) and are refused.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::RESOURCE_TOPIC;
use skein_controller::acl::{AclOperation, ResourceType};

use crate::admin::{self, AdminOp, ConfigChange, ItemResult};
use crate::kafka::dispatch::RequestCtx;

async fn alter(
    ctx: &RequestCtx,
    resource_type: i8,
    name: &str,
    changes: Vec<ConfigChange>,
    replace_all: bool,
    validate_only: bool,
) -> ItemResult {
    if resource_type != RESOURCE_TOPIC {
        return Err((
            ResponseError::InvalidRequest,
            Some("only topic configs can be altered; broker configs are static".to_string()),
        ));
    }
    if !ctx.authorized(AclOperation::AlterConfigs, ResourceType::Topic, name) {
        return Err((ResponseError::TopicAuthorizationFailed, None));
    }
    let op = AdminOp::AlterTopicConfig {
        topic: name.to_string(),
        changes,
        replace_all,
        validate_only,
    };
    admin::submit(&ctx.shard, op)
        .await
        .results
        .into_iter()
        .next()
        .map_or(Ok(()), |(_, r)| r)
}

pub async fn handle(ctx: &RequestCtx, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let changes = res
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| ConfigChange::Set(c.name.to_string(), v.to_string()))
            })
            .collect();
        let r = alter(
            ctx,
            res.resource_type,
            res.resource_name.as_str(),
            changes,
            true,
            req.validate_only,
        )
        .await;
        let mut out = AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name;
        if let Err((e, m)) = r {
            out.error_code = e.code();
            out.error_message = m.map(StrBytes::from_string);
        }
        resp.responses.push(out);
    }
    resp
}

pub async fn handle_incremental(
    ctx: &RequestCtx,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut changes = Vec::new();
        let mut bad = None;
        for c in &res.configs {
            let name = c.name.to_string();
            let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            changes.push(match c.config_operation {
                0 => ConfigChange::Set(name, value),
                1 => ConfigChange::Delete(name),
                2 => ConfigChange::Append(name, value),
                3 => ConfigChange::Subtract(name, value),
                other => {
                    bad = Some(format!("unknown config operation {other}"));
                    break;
                }
            });
        }
        let r = match bad {
            Some(m) => Err((ResponseError::InvalidRequest, Some(m))),
            None => {
                alter(
                    ctx,
                    res.resource_type,
                    res.resource_name.as_str(),
                    changes,
                    false,
                    req.validate_only,
                )
                .await
            }
        };
        let mut out = IncrementalResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name;
        if let Err((e, m)) = r {
            out.error_code = e.code();
            out.error_message = m.map(StrBytes::from_string);
        }
        resp.responses.push(out);
    }
    resp
}
