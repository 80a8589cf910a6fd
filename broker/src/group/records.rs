//! Group metadata records of `__consumer_offsets` in Kafka's layout (key v2, value v3), so a
//! group's membership and assignment survive a restart and tooling that reads the topic
//! understands them. Offset-commit records are in [`super::offsets`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::offsets::{get_str, put_str};

const KEY_VERSION: i16 = 2;
const VALUE_VERSION: i16 = 3;

/// A group as persisted after each completed rebalance.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

pub fn encode_key(group: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + group.len());
    b.put_i16(KEY_VERSION);
    put_str(&mut b, group);
    b.freeze()
}

/// The group of a group-metadata key; `None` for other record kinds.
pub fn decode_key(mut b: &[u8]) -> Option<String> {
    if b.try_get_i16().ok()? != KEY_VERSION {
        return None;
    }
    get_str(&mut b)
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn get_nullable_str(b: &mut &[u8]) -> Option<Option<String>> {
    if b.len() >= 2 && i16::from_be_bytes([b[0], b[1]]) == -1 {
        b.advance(2);
        return Some(None);
    }
    get_str(b).map(Some)
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
    b.put_slice(v);
}

fn get_bytes(b: &mut &[u8]) -> Option<Bytes> {
    let len = usize::try_from(b.try_get_i32().ok()?).ok()?;
    if b.remaining() < len {
        return None;
    }
    let v = Bytes::copy_from_slice(&b[..len]);
    b.advance(len);
    Some(v)
}

pub fn encode_value(g: &StoredGroup) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(VALUE_VERSION);
    put_str(&mut b, &g.protocol_type);
    b.put_i32(g.generation);
    put_nullable_str(&mut b, g.protocol.as_deref());
    put_nullable_str(&mut b, g.leader.as_deref());
    b.put_i64(g.state_timestamp_ms);
    b.put_i32(i32::try_from(g.members.len()).unwrap_or(i32::MAX));
    for m in &g.members {
        put_str(&mut b, &m.member_id);
        put_nullable_str(&mut b, m.instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

/// Decodes value versions 0..=3 (the non-flexible ones Kafka has written).
pub fn decode_value(mut b: &[u8]) -> Option<StoredGroup> {
    let version = b.try_get_i16().ok()?;
    if !(0..=3).contains(&version) {
        return None;
    }
    let protocol_type = get_str(&mut b)?;
    let generation = b.try_get_i32().ok()?;
    let protocol = get_nullable_str(&mut b)?;
    let leader = get_nullable_str(&mut b)?;
    let state_timestamp_ms = if version >= 2 {
        b.try_get_i64().ok()?
    } else {
        -1
    };
    let count = usize::try_from(b.try_get_i32().ok()?).ok()?;
    // Each member takes at least 24 bytes; a count that cannot fit is corrupt.
    if count > b.remaining() / 24 {
        return None;
    }
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = get_str(&mut b)?;
        let instance_id = if version >= 3 {
            get_nullable_str(&mut b)?
        } else {
            None
        };
        let client_id = get_str(&mut b)?;
        let client_host = get_str(&mut b)?;
        let first = b.try_get_i32().ok()?;
        let (rebalance_timeout_ms, session_timeout_ms) = if version >= 1 {
            (first, b.try_get_i32().ok()?)
        } else {
            (first, first)
        };
        let subscription = get_bytes(&mut b)?;
        let assignment = get_bytes(&mut b)?;
        members.push(StoredMember {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Some(StoredGroup {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_records_round_trip() {
        let g = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            state_timestamp_ms: 99,
            members: vec![StoredMember {
                member_id: "m-1".into(),
                instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_value(&encode_value(&g)), Some(g));
        assert_eq!(decode_key(&encode_key("grp")), Some("grp".to_string()));
    }

    #[test]
    fn empty_group_and_garbage() {
        let g = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 3,
            ..Default::default()
        };
        assert_eq!(decode_value(&encode_value(&g)), Some(g));
        assert_eq!(decode_value(&[0, 3, 0]), None);
        // A member count far larger than the bytes left is refused, not allocated.
        let mut v = encode_value(&StoredGroup::default()).to_vec();
        let n = v.len();
        v[n - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_value(&v), None);
        assert_eq!(decode_key(&[0, 1, 0, 0]), None);
    }
}
