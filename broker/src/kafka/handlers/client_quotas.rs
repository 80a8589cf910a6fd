//! DescribeClientQuotas (answered from this node's metadata, as KRaft brokers do) and
//! AlterClientQuotas (forwarded to the active controller, which checks each entry as Kafka's
//! controller does; answered once this node's metadata shows the change, by which time the
//! quota is enforced here). Kafka's rules: CLUSTER DESCRIBE_CONFIGS to describe and CLUSTER
//! ALTER_CONFIGS to alter (CLUSTER_AUTHORIZATION_FAILED otherwise), INVALID_REQUEST for a bad
//! entity, key, value or filter, UNSUPPORTED_VERSION for a filter on an unknown entity type.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_client_quotas_request::EntryData as AlterEntry;
use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlteredEntity, EntryData as AlteredEntry,
};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;
use skein_controller::acl::AclOperation;
use skein_controller::client_quota::{
    self, ClientQuotaMap, FilterComponent, FilterError, QuotaEntity, QuotaValue,
};
use skein_net::internal::{ClientQuotaEntry, InternalMessage, QuotaOp};

use crate::admin;
use crate::kafka::dispatch::RequestCtx;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A DescribeClientQuotas answer with an error and no entries, as Kafka gives it.
fn fail(e: ResponseError, message: Option<String>) -> DescribeClientQuotasResponse {
    let mut resp = DescribeClientQuotasResponse::default();
    resp.error_code = e.code();
    resp.error_message = message.map(StrBytes::from_string);
    resp.entries = None;
    resp
}

pub fn describe(
    ctx: &RequestCtx,
    req: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    if !ctx.cluster_authorized(AclOperation::DescribeConfigs) {
        return fail(ResponseError::ClusterAuthorizationFailed, None);
    }
    let components: Vec<FilterComponent> = req
        .components
        .iter()
        .map(|c| FilterComponent {
            entity_type: c.entity_type.to_string(),
            match_type: c.match_type,
            name: c._match.as_ref().map(|m| m.to_string()),
        })
        .collect();
    let md = ctx.shard.metadata();
    let found = match client_quota::describe(&md.client_quotas, &components, req.strict) {
        Ok(found) => found,
        Err(FilterError::Invalid(m)) => return fail(ResponseError::InvalidRequest, Some(m)),
        Err(FilterError::Unsupported(m)) => {
            return fail(ResponseError::UnsupportedVersion, Some(m))
        }
    };
    let entries = found
        .into_iter()
        .map(|(entity, keys)| {
            let mut entry = EntryData::default();
            entry.entity = entity
                .parts()
                .into_iter()
                .map(|(entity_type, name)| {
                    let mut e = EntityData::default();
                    e.entity_type = text(entity_type);
                    e.entity_name = name.map(text);
                    e
                })
                .collect();
            entry.values = keys
                .iter()
                .map(|(key, value)| {
                    let mut v = ValueData::default();
                    v.key = text(key);
                    v.value = value.0;
                    v
                })
                .collect();
            entry
        })
        .collect();
    let mut resp = DescribeClientQuotasResponse::default();
    // kafka-protocol's default is an empty string; Kafka sends null with no error.
    resp.error_message = None;
    resp.entries = Some(entries);
    resp
}

pub async fn alter(ctx: &RequestCtx, req: AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    let outcomes = if !ctx.cluster_authorized(AclOperation::AlterConfigs) {
        let code = ResponseError::ClusterAuthorizationFailed.code();
        vec![(code, None); req.entries.len()]
    } else if req.entries.is_empty() {
        Vec::new()
    } else {
        let entries: Vec<ClientQuotaEntry> = req.entries.iter().map(entry_of).collect();
        let request = InternalMessage::AlterClientQuotas {
            entries: entries.clone(),
            validate_only: req.validate_only,
        };
        let forwarded =
            admin::forward_items(&ctx.shard, request, entries.len(), "a client quota change");
        match forwarded.await {
            Ok(outcomes) => {
                if !req.validate_only {
                    wait_visible(ctx, &entries, &outcomes).await;
                }
                outcomes
            }
            Err((e, message)) => vec![(e.code(), Some(message)); entries.len()],
        }
    };
    let mut resp = AlterClientQuotasResponse::default();
    resp.entries = req
        .entries
        .iter()
        .zip(outcomes)
        .map(|(e, (code, message))| {
            let mut r = AlteredEntry::default();
            r.error_code = code;
            r.error_message = message.map(StrBytes::from_string);
            r.entity = e
                .entity
                .iter()
                .map(|p| {
                    let mut a = AlteredEntity::default();
                    a.entity_type = p.entity_type.clone();
                    a.entity_name = p.entity_name.clone();
                    a
                })
                .collect();
            r
        })
        .collect();
    resp
}

/// A request entry as the controller takes it (it does every check).
fn entry_of(e: &AlterEntry) -> ClientQuotaEntry {
    ClientQuotaEntry {
        entity: e
            .entity
            .iter()
            .map(|p| {
                let name = p.entity_name.as_ref().map(|n| n.to_string());
                (p.entity_type.to_string(), name)
            })
            .collect(),
        ops: e
            .ops
            .iter()
            .map(|o| QuotaOp {
                key: o.key.to_string(),
                // Kafka ignores the value of a removal.
                value: (!o.remove).then_some(o.value),
            })
            .collect(),
    }
}

/// Waits until this node's metadata shows what the controller accepted: each key set to its
/// value, each removed key gone.
async fn wait_visible(
    ctx: &RequestCtx,
    entries: &[ClientQuotaEntry],
    outcomes: &[(i16, Option<String>)],
) {
    let accepted: Vec<(QuotaEntity, &[QuotaOp])> = entries
        .iter()
        .zip(outcomes)
        .filter(|(_, (code, _))| *code == 0)
        .filter_map(|(e, _)| {
            let parts = e.entity.iter().map(|(t, n)| (t.as_str(), n.as_deref()));
            Some((QuotaEntity::from_parts(parts).ok()?, e.ops.as_slice()))
        })
        .collect();
    if accepted.is_empty() {
        return;
    }
    let shows = |quotas: &ClientQuotaMap| {
        accepted.iter().all(|(entity, ops)| {
            ops.iter().all(|op| {
                let now = quotas.get(entity).and_then(|keys| keys.get(&op.key));
                now.copied() == op.value.map(QuotaValue)
            })
        })
    };
    admin::wait_until_visible(&ctx.shard, "client quota change", |md| {
        shows(&md.client_quotas)
    })
    .await;
}
