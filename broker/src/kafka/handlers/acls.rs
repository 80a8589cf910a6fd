//! DescribeAcls (answered from this node's metadata, as KRaft brokers do), CreateAcls and
//! DeleteAcls (checked here, then forwarded to the active controller, answered once this
//! node's metadata shows the change). Kafka's rules: SECURITY_DISABLED without an authorizer,
//! CLUSTER DESCRIBE to describe and CLUSTER ALTER to change, INVALID_REQUEST for a bad binding
//! or filter. A DeleteAcls filter is resolved against this node's metadata, and the bindings
//! it matched are what the controller removes.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use skein_controller::acl::{
    self, AclBinding, AclFilter, AclOperation, AclPermission, PatternType, ResourceType,
};
use skein_net::internal::{AclEntry, InternalMessage};

use crate::admin;
use crate::kafka::dispatch::RequestCtx;

/// Why a request is refused as a whole: no authorizer, or not allowed on the cluster.
fn refusal(ctx: &RequestCtx, operation: AclOperation) -> Option<ResponseError> {
    if !ctx.authorizer_enabled() {
        Some(ResponseError::SecurityDisabled)
    } else if !ctx.cluster_authorized(operation) {
        Some(ResponseError::ClusterAuthorizationFailed)
    } else {
        None
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

#[allow(clippy::too_many_arguments)]
fn binding_of(
    resource_type: i8,
    resource_name: &str,
    pattern_type: i8,
    principal: &str,
    host: &str,
    operation: i8,
    permission: i8,
) -> Result<AclBinding, String> {
    let binding = AclBinding {
        resource_type: ResourceType::from_code(resource_type)
            .ok_or_else(|| format!("unknown resource type {resource_type}"))?,
        resource_name: resource_name.to_string(),
        pattern_type: PatternType::from_code(pattern_type)
            .ok_or_else(|| format!("unknown pattern type {pattern_type}"))?,
        principal: principal.to_string(),
        host: host.to_string(),
        operation: AclOperation::from_code(operation)
            .ok_or_else(|| format!("unknown operation {operation}"))?,
        permission: AclPermission::from_code(permission)
            .ok_or_else(|| format!("unknown permission type {permission}"))?,
    };
    acl::validate(&binding)?;
    Ok(binding)
}

fn entry_of(b: &AclBinding) -> AclEntry {
    AclEntry {
        resource_type: b.resource_type as i8,
        resource_name: b.resource_name.clone(),
        pattern_type: b.pattern_type as i8,
        principal: b.principal.clone(),
        host: b.host.clone(),
        operation: b.operation as i8,
        permission: b.permission as i8,
    }
}

pub fn describe(ctx: &RequestCtx, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let mut resp = DescribeAclsResponse::default();
    if let Some(e) = refusal(ctx, AclOperation::Describe) {
        resp.error_code = e.code();
        return resp;
    }
    let filter = AclFilter {
        resource_type: req.resource_type_filter,
        resource_name: req.resource_name_filter.map(|s| s.to_string()),
        pattern_type: req.pattern_type_filter,
        principal: req.principal_filter.map(|s| s.to_string()),
        host: req.host_filter.map(|s| s.to_string()),
        operation: req.operation,
        permission: req.permission_type,
    };
    if let Err(message) = filter.validate() {
        resp.error_code = ResponseError::InvalidRequest.code();
        resp.error_message = Some(StrBytes::from_string(message));
        return resp;
    }
    let md = ctx.shard.metadata();
    // Bindings are sorted by resource first, so each resource's bindings are adjacent.
    for b in md.acls.iter().filter(|b| filter.matches(b)) {
        let same = resp
            .resources
            .last()
            .is_some_and(|r: &DescribeAclsResource| {
                r.resource_type == b.resource_type as i8
                    && r.resource_name.as_str() == b.resource_name
                    && r.pattern_type == b.pattern_type as i8
            });
        if !same {
            let mut r = DescribeAclsResource::default();
            r.resource_type = b.resource_type as i8;
            r.resource_name = text(&b.resource_name);
            r.pattern_type = b.pattern_type as i8;
            resp.resources.push(r);
        }
        let mut d = AclDescription::default();
        d.principal = text(&b.principal);
        d.host = text(&b.host);
        d.operation = b.operation as i8;
        d.permission_type = b.permission as i8;
        if let Some(r) = resp.resources.last_mut() {
            r.acls.push(d);
        }
    }
    resp
}

/// Forwards a change; the error of the whole change, or one outcome per entry (creations,
/// then deletions).
async fn forward(
    ctx: &RequestCtx,
    creations: Vec<AclEntry>,
    deletions: Vec<AclEntry>,
) -> Result<admin::ItemOutcomes, (ResponseError, String)> {
    let expected = creations.len() + deletions.len();
    let request = InternalMessage::AlterAcls {
        creations,
        deletions,
    };
    admin::forward_items(&ctx.shard, request, expected, "an ACL change").await
}

/// Waits until this node's metadata shows `present` and not `absent`.
async fn wait_visible(ctx: &RequestCtx, present: &[AclBinding], absent: &[AclBinding]) {
    admin::wait_until_visible(&ctx.shard, "ACL change", |md| {
        present.iter().all(|b| md.acls.contains(b)) && !absent.iter().any(|b| md.acls.contains(b))
    })
    .await;
}

pub async fn create(ctx: &RequestCtx, req: CreateAclsRequest) -> CreateAclsResponse {
    let mut resp = CreateAclsResponse::default();
    let result = |code: i16, message: Option<String>| {
        let mut r = AclCreationResult::default();
        r.error_code = code;
        r.error_message = message.map(StrBytes::from_string);
        r
    };
    if let Some(e) = refusal(ctx, AclOperation::Alter) {
        resp.results = req
            .creations
            .iter()
            .map(|_| result(e.code(), None))
            .collect();
        return resp;
    }
    let checked: Vec<Result<AclBinding, String>> = req
        .creations
        .iter()
        .map(|c| {
            binding_of(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclBinding> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let outcomes = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        forward(ctx, valid.iter().map(entry_of).collect(), Vec::new()).await
    };
    if outcomes
        .as_ref()
        .is_ok_and(|o| o.iter().all(|(code, _)| *code == 0))
    {
        wait_visible(ctx, &valid, &[]).await;
    }
    let mut forwarded = outcomes.as_ref().ok().map(|o| o.iter());
    for c in &checked {
        resp.results.push(match (c, &outcomes) {
            (Err(message), _) => {
                result(ResponseError::InvalidRequest.code(), Some(message.clone()))
            }
            (Ok(_), Err((e, message))) => result(e.code(), Some(message.clone())),
            (Ok(_), Ok(_)) => match forwarded.as_mut().and_then(Iterator::next) {
                Some((code, message)) => result(*code, message.clone()),
                None => result(ResponseError::UnknownServerError.code(), None),
            },
        });
    }
    resp
}

pub async fn delete(ctx: &RequestCtx, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let mut resp = DeleteAclsResponse::default();
    let failed = |e: ResponseError, message: Option<String>| {
        let mut r = DeleteAclsFilterResult::default();
        r.error_code = e.code();
        r.error_message = message.map(StrBytes::from_string);
        r
    };
    if let Some(e) = refusal(ctx, AclOperation::Alter) {
        resp.filter_results = req.filters.iter().map(|_| failed(e, None)).collect();
        return resp;
    }
    let md = ctx.shard.metadata();
    let mut matched: Vec<Result<Vec<AclBinding>, String>> = Vec::new();
    for f in &req.filters {
        let filter = AclFilter {
            resource_type: f.resource_type_filter,
            resource_name: f.resource_name_filter.as_ref().map(|s| s.to_string()),
            pattern_type: f.pattern_type_filter,
            principal: f.principal_filter.as_ref().map(|s| s.to_string()),
            host: f.host_filter.as_ref().map(|s| s.to_string()),
            operation: f.operation,
            permission: f.permission_type,
        };
        matched.push(filter.validate().map(|()| {
            md.acls
                .iter()
                .filter(|b| filter.matches(b))
                .cloned()
                .collect()
        }));
    }
    let mut doomed: Vec<AclBinding> = Vec::new();
    for b in matched.iter().flatten().flatten() {
        if !doomed.contains(b) {
            doomed.push(b.clone());
        }
    }
    let outcome = if doomed.is_empty() {
        Ok(())
    } else {
        match forward(ctx, Vec::new(), doomed.iter().map(entry_of).collect()).await {
            Ok(o) => match o.into_iter().find(|(code, _)| *code != 0) {
                None => {
                    wait_visible(ctx, &[], &doomed).await;
                    Ok(())
                }
                Some((code, message)) => Err((
                    ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError),
                    message.unwrap_or_default(),
                )),
            },
            Err(e) => Err(e),
        }
    };
    for m in matched {
        resp.filter_results.push(match (m, &outcome) {
            (Err(message), _) => failed(ResponseError::InvalidRequest, Some(message)),
            (Ok(_), Err((e, message))) => failed(*e, Some(message.clone())),
            (Ok(bindings), Ok(())) => {
                let mut r = DeleteAclsFilterResult::default();
                r.matching_acls = bindings
                    .iter()
                    .map(|b| {
                        let mut m = DeleteAclsMatchingAcl::default();
                        m.resource_type = b.resource_type as i8;
                        m.resource_name = text(&b.resource_name);
                        m.pattern_type = b.pattern_type as i8;
                        m.principal = text(&b.principal);
                        m.host = text(&b.host);
                        m.operation = b.operation as i8;
                        m.permission_type = b.permission as i8;
                        m
                    })
                    .collect();
                r
            }
        });
    }
    resp
}
