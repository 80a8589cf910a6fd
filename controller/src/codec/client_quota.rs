//! The client quota parts of the controller's formats (pure): an entity, a value, the
//! ClientQuota record's body and the image's quota section (see the layout in `codec`).

use std::collections::BTreeMap;

use super::{DecodeError, Reader, Writer};
use crate::client_quota::{ClientQuotaMap, EntityName, QuotaEntity, QuotaValue};

/// Entity component type codes, in the order they are written.
const ENTITY_TYPE_USER: u8 = 1;
const ENTITY_TYPE_CLIENT_ID: u8 = 2;

/// A component is a type code, a presence byte and, for a name, its string.
const COMPONENT_BYTES_MIN: usize = 2;
/// An entity is a count and at least one component.
const ENTITY_BYTES_MIN: usize = 4 + COMPONENT_BYTES_MIN;

pub(super) fn put_entity(w: &mut Writer, entity: &QuotaEntity) {
    let components = [
        (ENTITY_TYPE_USER, &entity.user),
        (ENTITY_TYPE_CLIENT_ID, &entity.client_id),
    ];
    let present = components.iter().filter(|(_, n)| n.is_some()).count();
    w.len("quota entity components", present);
    for (code, name) in components {
        let Some(name) = name else { continue };
        w.u8(code);
        let named = name.as_wire();
        w.bool(named.is_some());
        if let Some(n) = named {
            w.string("quota entity name", n);
        }
    }
}

pub(super) fn get_entity(r: &mut Reader<'_>) -> Result<QuotaEntity, DecodeError> {
    let at = r.position();
    let n = r.count("quota entity components", COMPONENT_BYTES_MIN)?;
    if n == 0 {
        return Err(DecodeError::InvalidValue {
            what: "quota entity components",
            value: 0,
            at,
        });
    }
    let mut entity = QuotaEntity {
        user: None,
        client_id: None,
    };
    for _ in 0..n {
        let at = r.position();
        let code = r.u8("quota entity type")?;
        let name = if r.bool("quota entity name present")? {
            EntityName::Named(r.string("quota entity name")?)
        } else {
            EntityName::Default
        };
        // An unknown type, or one given twice, is not an entity this build wrote.
        let taken = match code {
            ENTITY_TYPE_USER => entity.user.is_some(),
            ENTITY_TYPE_CLIENT_ID => entity.client_id.is_some(),
            _ => true,
        };
        if taken {
            return Err(DecodeError::InvalidValue {
                what: "quota entity type",
                value: u64::from(code),
                at,
            });
        }
        if code == ENTITY_TYPE_USER {
            entity.user = Some(name);
        } else {
            entity.client_id = Some(name);
        }
    }
    Ok(entity)
}

/// A double as its IEEE 754 bits, so that every value comes back exactly.
pub(super) fn put_value(w: &mut Writer, value: QuotaValue) {
    w.u64(value.0.to_bits());
}

pub(super) fn get_value(r: &mut Reader<'_>) -> Result<QuotaValue, DecodeError> {
    Ok(QuotaValue(f64::from_bits(r.u64("quota value")?)))
}

/// The image's quota section: every entity with its keys.
pub(super) fn put_quotas(w: &mut Writer, quotas: &ClientQuotaMap) {
    w.len("quota entity count", quotas.len());
    for (entity, keys) in quotas {
        put_entity(w, entity);
        w.len("quota key count", keys.len());
        for (key, value) in keys {
            w.string("quota key", key);
            put_value(w, *value);
        }
    }
}

pub(super) fn get_quotas(r: &mut Reader<'_>) -> Result<ClientQuotaMap, DecodeError> {
    let mut quotas = ClientQuotaMap::new();
    let n = r.count("quota entity count", ENTITY_BYTES_MIN + 4)?;
    for _ in 0..n {
        let entity = get_entity(r)?;
        // A key is a string length and an 8-byte value.
        let nk = r.count("quota key count", 12)?;
        let mut keys = BTreeMap::new();
        for _ in 0..nk {
            let key = r.string("quota key")?;
            keys.insert(key, get_value(r)?);
        }
        // The image never holds an entity without keys; one read back is simply left out.
        if !keys.is_empty() {
            quotas.insert(entity, keys);
        }
    }
    Ok(quotas)
}
