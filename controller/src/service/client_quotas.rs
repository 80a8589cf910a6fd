//! AlterClientQuotas as the active controller answers it: each entry is checked as Kafka's
//! controller does (the entity, each key and value, a key or an entity named twice), and the
//! ClientQuota records of every valid entry are committed in one proposal, so a request
//! applies whole or not at all. Only values that change get a record.

use std::collections::BTreeMap;

use skein_net::internal::ClientQuotaEntry;

use super::requests::{all_failed, result};
use super::*;
use crate::client_quota::{self, QuotaEntity, QuotaValue, DEFAULT_NAME};

impl ControllerService {
    pub(super) async fn alter_client_quotas(
        &self,
        entries: Vec<ClientQuotaEntry>,
        validate_only: bool,
        not_controller: bool,
    ) -> InternalMessage {
        let names: Vec<String> = entries.iter().map(entry_name).collect();
        if not_controller {
            return all_failed(names, codes::NOT_CONTROLLER);
        }
        let checked = RefCell::new(Vec::new());
        let answer = self
            .decide(|image| {
                let (records, outcomes) = quota_changes(image, &entries);
                *checked.borrow_mut() = outcomes;
                Ok(if validate_only { Vec::new() } else { records })
            })
            .await;
        let checked = checked.into_inner();
        let changed = checked.iter().filter(|c| c.is_ok()).count();
        if answer.is_ok() && !validate_only && changed > 0 {
            tracing::info!(entities = changed, "client quotas changed");
        }
        // No outcome for an entry: the decision never ran (this voter is stepping down).
        let results = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| match checked.get(i) {
                Some(Err(message)) => result(name, Err((codes::INVALID_REQUEST, message.clone()))),
                Some(Ok(())) | None => result(name, answer.clone()),
            })
            .collect();
        InternalMessage::AdminResponse { results }
    }
}

/// An entry's entity as it was sent, for results and logs.
fn entry_name(e: &ClientQuotaEntry) -> String {
    let parts: Vec<String> = e
        .entity
        .iter()
        .map(|(t, n)| format!("{t}={}", n.as_deref().unwrap_or(DEFAULT_NAME)))
        .collect();
    parts.join(", ")
}

/// The records of every valid entry, and per entry whether it was valid (else Kafka's
/// INVALID_REQUEST message). An entity named again later in the request is refused, as Kafka
/// does, and the first stands.
pub(super) fn quota_changes(
    image: &ClusterImage,
    entries: &[ClientQuotaEntry],
) -> (Vec<MetadataRecord>, Vec<std::result::Result<(), String>>) {
    let mut records = Vec::new();
    let mut seen: Vec<QuotaEntity> = Vec::new();
    let outcomes = entries
        .iter()
        .map(|e| {
            let entity =
                QuotaEntity::from_parts(e.entity.iter().map(|(t, n)| (t.as_str(), n.as_deref())))?;
            if seen.contains(&entity) {
                return Err(format!("Ignoring duplicate entity {entity}"));
            }
            seen.push(entity.clone());
            records.extend(entry_changes(image, entity, e)?);
            Ok(())
        })
        .collect();
    (records, outcomes)
}

/// One valid entity's records: a set for each value that differs from the image's, a removal
/// for each removed key the entity has.
fn entry_changes(
    image: &ClusterImage,
    entity: QuotaEntity,
    e: &ClientQuotaEntry,
) -> std::result::Result<Vec<MetadataRecord>, String> {
    let mut ops: BTreeMap<&str, Option<f64>> = BTreeMap::new();
    for op in &e.ops {
        if ops.insert(op.key.as_str(), op.value).is_some() {
            return Err(format!(
                "Duplicate quota key {} not updating quota for this entity {entity}",
                op.key
            ));
        }
    }
    let current = image.client_quotas.get(&entity);
    let mut records = Vec::new();
    for (key, value) in ops {
        let now = current.and_then(|q| q.get(key)).copied();
        let value = match value {
            // Removing a key the entity does not have changes nothing (and is not checked).
            None if now.is_none() => continue,
            None => None,
            Some(v) => {
                client_quota::check_value(key, v)?;
                if now == Some(QuotaValue(v)) {
                    continue;
                }
                Some(QuotaValue(v))
            }
        };
        records.push(MetadataRecord::ClientQuota {
            entity: entity.clone(),
            key: key.to_string(),
            value,
        });
    }
    Ok(records)
}
