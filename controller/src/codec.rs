//! The controller's binary formats (pure; any shard): a batch of metadata records (the data of
//! one Raft entry, so a topic creation commits whole or not at all), the cluster image (the data
//! of a snapshot) and a Raft entry as the log stores it. Hand-written and versioned so the log
//! format is ours and explicit; flatbuffers replace the record encoding on the wire later.
//!
//! All integers big-endian. Every length is checked against the bytes left before it is used,
//! so garbage gives a `DecodeError` (never a panic, never an allocation larger than the input).
//!
//! ```text
//! record batch := version u8 (1) | count u32 | record{count}
//! record       := tag u8 | body_len u32 | body          (a body must be consumed exactly)
//! image        := version u8 (1) | count u32 | broker{count} | count u32 | topic{count}
//!                 | count u32 | (name string, id uuid){count} | next_producer_id i64
//!                 | cluster_id string                          (version 2; 1 had no cluster id)
//! entry        := version u8 (1) | entry_type u8 | term u64 | index u64 | context bytes | data bytes
//! string/bytes := len u32 | len bytes (strings UTF-8)    uuid := 16 bytes
//! bool         := u8 0 or 1                               option := bool, then the value if 1
//! ids          := count u32 | i32{count}                 configs := count u32 | (string, string){count}
//!
//! record bodies, by tag:
//!  1 RegisterBroker   broker
//!  2 FenceBroker, 3 UnfenceBroker, 4 BeginControlledShutdown   id i32 | epoch i64
//!  5 Topic            name string | id uuid | configs
//!  6 Partition        topic_id uuid | partition i32 | partition_state
//!  7 PartitionChange  topic_id uuid | partition i32 | leader i32 | isr ids | leader_epoch i32
//!                     | partition_epoch i32
//!  8 RemoveTopic      id uuid
//!  9 Config           topic_id uuid | key string | value option<string>
//! 10 ProducerIds      broker i32 | next_block_start i64
//! 11 ClusterId        id string
//! 12 PartitionReplicas topic_id uuid | partition i32 | replicas ids | adding ids | removing ids
//!                     | leader i32 | isr ids | leader_epoch i32 | partition_epoch i32
//! 13 UserScramCredential        user string | mechanism i8 (as u8) | scram_credential
//! 14 RemoveUserScramCredential  user string | mechanism i8 (as u8)
//! 15 CreateAcl, 16 DeleteAcl   acl
//! 17 ClientQuota      quota_entity | key string | value option<f64>   (none: the key removed)
//! broker          := id i32 | incarnation uuid | epoch i64 | count u32 | (listener string,
//!                    host string, port u32){count} | rack option<string> | fenced bool
//!                    | in_controlled_shutdown bool
//! partition_state := replicas ids | isr ids | leader i32 | leader_epoch i32 | partition_epoch i32
//! topic (image)   := name string | id uuid | count u32 | partition_state{count} | configs
//! reassignment    := topic_id uuid | partition i32 | adding ids | removing ids
//! acl             := resource_type u8 | resource_name string | pattern_type u8 | principal string
//!                    | host string | operation u8 | permission u8   (Kafka's codes)
//! scram_credential := salt bytes | iterations i32 | stored_key bytes | server_key bytes
//! quota_entity    := count u32 (1 or 2) | (type u8 (1 user, 2 client-id), name option<string>
//!                    (none: the default)){count}, each type at most once
//! f64             := its IEEE 754 bits as a u64
//! image (version 3) := image (version 2) | count u32 | (user string, mechanism u8,
//!                     scram_credential){count} | count u32 | reassignment{count};
//!                     version 2 images still decode (no credentials, no reassignments)
//! image (version 4) := image (version 3) | count u32 | acl{count}; versions 2 and 3 decode
//!                     with no ACLs
//! image (version 5) := image (version 4) | count u32 | (quota_entity, count u32 | (key string,
//!                     value f64){count}){count}; versions 2 to 4 decode with no client quotas
//! ```

use std::collections::BTreeMap;

use raft::eraftpb::{Entry, EntryType};

use crate::acl::{AclBinding, AclOperation, AclPermission, PatternType, ResourceType};
use crate::image::{
    BrokerRegistration, ClusterImage, Endpoint, MetadataRecord, PartitionState, ScramCredential,
    TopicState,
};

mod client_quota;
mod wire;

pub(crate) use wire::{Reader, Writer};

pub const RECORD_BATCH_VERSION: u8 = 1;
pub const IMAGE_VERSION: u8 = 5;
/// The oldest image this build reads (snapshots written before an upgrade): no SCRAM
/// credentials, no reassignments, no ACLs, no client quotas.
pub const IMAGE_VERSION_OLDEST: u8 = 2;
pub const ENTRY_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{what}: truncated at byte {at}: need {needed_bytes} bytes, have {available_bytes}")]
    Truncated {
        what: &'static str,
        at: usize,
        needed_bytes: usize,
        available_bytes: usize,
    },
    #[error("{what}: unsupported version {version} (this build reads {supported})")]
    UnsupportedVersion {
        what: &'static str,
        version: u8,
        supported: u8,
    },
    #[error("{what}: unknown tag {tag} at byte {at}")]
    UnknownTag {
        what: &'static str,
        tag: u8,
        at: usize,
    },
    #[error("{what}: invalid value {value} at byte {at}")]
    InvalidValue {
        what: &'static str,
        value: u64,
        at: usize,
    },
    #[error("{what}: string at byte {at} is not UTF-8")]
    InvalidUtf8 { what: &'static str, at: usize },
    #[error("{what}: count {count} at byte {at} cannot fit in the {available_bytes} bytes left")]
    TooMany {
        what: &'static str,
        count: u64,
        at: usize,
        available_bytes: usize,
    },
    #[error("{what}: {count} unread bytes at byte {at}")]
    TrailingBytes {
        what: &'static str,
        at: usize,
        count: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{what}: {len} items or bytes do not fit a u32 length")]
    TooLong { what: &'static str, len: usize },
}

// Record tags: append only; a tag is never reused.
const TAG_REGISTER_BROKER: u8 = 1;
const TAG_FENCE_BROKER: u8 = 2;
const TAG_UNFENCE_BROKER: u8 = 3;
const TAG_BEGIN_CONTROLLED_SHUTDOWN: u8 = 4;
const TAG_TOPIC: u8 = 5;
const TAG_PARTITION: u8 = 6;
const TAG_PARTITION_CHANGE: u8 = 7;
const TAG_REMOVE_TOPIC: u8 = 8;
const TAG_CONFIG: u8 = 9;
const TAG_PRODUCER_IDS: u8 = 10;
const TAG_CLUSTER_ID: u8 = 11;
const TAG_PARTITION_REPLICAS: u8 = 12;
const TAG_USER_SCRAM_CREDENTIAL: u8 = 13;
const TAG_REMOVE_USER_SCRAM_CREDENTIAL: u8 = 14;
const TAG_CREATE_ACL: u8 = 15;
const TAG_DELETE_ACL: u8 = 16;
const TAG_CLIENT_QUOTA: u8 = 17;

/// Encodes the records of one proposal.
pub fn encode_records(records: &[MetadataRecord]) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::default();
    w.u8(RECORD_BATCH_VERSION);
    w.len("record count", records.len());
    for r in records {
        put_record(&mut w, r);
    }
    w.finish()
}

/// Decodes a whole record batch; any defect rejects the batch (it never applies in part).
pub fn decode_records(buf: &[u8]) -> Result<Vec<MetadataRecord>, DecodeError> {
    let mut r = Reader::new(buf);
    r.version("record batch", RECORD_BATCH_VERSION)?;
    // A record is at least a tag and a body length.
    let n = r.count("record count", 5)?;
    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        records.push(get_record(&mut r)?);
    }
    r.finish("record batch")?;
    Ok(records)
}

fn put_record(w: &mut Writer, record: &MetadataRecord) {
    let (tag, _) = record_tag(record);
    w.u8(tag);
    let len_at = w.position();
    w.u32(0);
    match record {
        MetadataRecord::RegisterBroker(b) => put_broker(w, b),
        MetadataRecord::FenceBroker { id, epoch }
        | MetadataRecord::UnfenceBroker { id, epoch }
        | MetadataRecord::BeginControlledShutdown { id, epoch } => {
            w.i32(*id);
            w.i64(*epoch);
        }
        MetadataRecord::Topic { name, id, configs } => {
            w.string("topic name", name);
            w.uuid(id);
            put_configs(w, configs);
        }
        MetadataRecord::Partition {
            topic_id,
            partition,
            state,
        } => {
            w.uuid(topic_id);
            w.i32(*partition);
            put_partition(w, state);
        }
        MetadataRecord::PartitionChange {
            topic_id,
            partition,
            leader,
            isr,
            leader_epoch,
            partition_epoch,
        } => {
            w.uuid(topic_id);
            w.i32(*partition);
            w.i32(*leader);
            put_ids(w, "isr", isr);
            w.i32(*leader_epoch);
            w.i32(*partition_epoch);
        }
        MetadataRecord::RemoveTopic { id } => w.uuid(id),
        MetadataRecord::Config {
            topic_id,
            key,
            value,
        } => {
            w.uuid(topic_id);
            w.string("config key", key);
            w.bool(value.is_some());
            if let Some(v) = value {
                w.string("config value", v);
            }
        }
        MetadataRecord::ProducerIds {
            broker,
            next_block_start,
        } => {
            w.i32(*broker);
            w.i64(*next_block_start);
        }
        MetadataRecord::ClusterId { id } => w.string("cluster id", id),
        MetadataRecord::PartitionReplicas {
            topic_id,
            partition,
            replicas,
            adding_replicas,
            removing_replicas,
            leader,
            isr,
            leader_epoch,
            partition_epoch,
        } => {
            w.uuid(topic_id);
            w.i32(*partition);
            put_ids(w, "replicas", replicas);
            put_ids(w, "adding replicas", adding_replicas);
            put_ids(w, "removing replicas", removing_replicas);
            w.i32(*leader);
            put_ids(w, "isr", isr);
            w.i32(*leader_epoch);
            w.i32(*partition_epoch);
        }
        MetadataRecord::UserScramCredential {
            user,
            mechanism,
            credential,
        } => {
            w.string("user", user);
            w.u8(mechanism.to_be_bytes()[0]);
            put_scram_credential(w, credential);
        }
        MetadataRecord::RemoveUserScramCredential { user, mechanism } => {
            w.string("user", user);
            w.u8(mechanism.to_be_bytes()[0]);
        }
        MetadataRecord::CreateAcl(binding) | MetadataRecord::DeleteAcl(binding) => {
            put_acl(w, binding);
        }
        MetadataRecord::ClientQuota { entity, key, value } => {
            client_quota::put_entity(w, entity);
            w.string("quota key", key);
            w.bool(value.is_some());
            if let Some(v) = value {
                client_quota::put_value(w, *v);
            }
        }
    }
    w.patch_len("record body", len_at);
}

/// The tag of a record and its name for error messages.
fn record_tag(record: &MetadataRecord) -> (u8, &'static str) {
    match record {
        MetadataRecord::RegisterBroker(_) => (TAG_REGISTER_BROKER, "RegisterBroker"),
        MetadataRecord::FenceBroker { .. } => (TAG_FENCE_BROKER, "FenceBroker"),
        MetadataRecord::UnfenceBroker { .. } => (TAG_UNFENCE_BROKER, "UnfenceBroker"),
        MetadataRecord::BeginControlledShutdown { .. } => {
            (TAG_BEGIN_CONTROLLED_SHUTDOWN, "BeginControlledShutdown")
        }
        MetadataRecord::Topic { .. } => (TAG_TOPIC, "Topic"),
        MetadataRecord::Partition { .. } => (TAG_PARTITION, "Partition"),
        MetadataRecord::PartitionChange { .. } => (TAG_PARTITION_CHANGE, "PartitionChange"),
        MetadataRecord::RemoveTopic { .. } => (TAG_REMOVE_TOPIC, "RemoveTopic"),
        MetadataRecord::Config { .. } => (TAG_CONFIG, "Config"),
        MetadataRecord::ProducerIds { .. } => (TAG_PRODUCER_IDS, "ProducerIds"),
        MetadataRecord::ClusterId { .. } => (TAG_CLUSTER_ID, "ClusterId"),
        MetadataRecord::PartitionReplicas { .. } => (TAG_PARTITION_REPLICAS, "PartitionReplicas"),
        MetadataRecord::UserScramCredential { .. } => {
            (TAG_USER_SCRAM_CREDENTIAL, "UserScramCredential")
        }
        MetadataRecord::RemoveUserScramCredential { .. } => (
            TAG_REMOVE_USER_SCRAM_CREDENTIAL,
            "RemoveUserScramCredential",
        ),
        MetadataRecord::CreateAcl(_) => (TAG_CREATE_ACL, "CreateAcl"),
        MetadataRecord::DeleteAcl(_) => (TAG_DELETE_ACL, "DeleteAcl"),
        MetadataRecord::ClientQuota { .. } => (TAG_CLIENT_QUOTA, "ClientQuota"),
    }
}

fn get_record(r: &mut Reader<'_>) -> Result<MetadataRecord, DecodeError> {
    let at = r.position();
    let tag = r.u8("record tag")?;
    let body = r.bytes("record body")?;
    let mut b = Reader::new(body);
    let record = match tag {
        TAG_REGISTER_BROKER => MetadataRecord::RegisterBroker(get_broker(&mut b)?),
        TAG_FENCE_BROKER => MetadataRecord::FenceBroker {
            id: b.i32("broker id")?,
            epoch: b.i64("broker epoch")?,
        },
        TAG_UNFENCE_BROKER => MetadataRecord::UnfenceBroker {
            id: b.i32("broker id")?,
            epoch: b.i64("broker epoch")?,
        },
        TAG_BEGIN_CONTROLLED_SHUTDOWN => MetadataRecord::BeginControlledShutdown {
            id: b.i32("broker id")?,
            epoch: b.i64("broker epoch")?,
        },
        TAG_TOPIC => MetadataRecord::Topic {
            name: b.string("topic name")?,
            id: b.uuid("topic id")?,
            configs: get_configs(&mut b)?,
        },
        TAG_PARTITION => MetadataRecord::Partition {
            topic_id: b.uuid("topic id")?,
            partition: b.i32("partition")?,
            state: get_partition(&mut b)?,
        },
        TAG_PARTITION_CHANGE => MetadataRecord::PartitionChange {
            topic_id: b.uuid("topic id")?,
            partition: b.i32("partition")?,
            leader: b.i32("leader")?,
            isr: get_ids(&mut b, "isr")?,
            leader_epoch: b.i32("leader epoch")?,
            partition_epoch: b.i32("partition epoch")?,
        },
        TAG_REMOVE_TOPIC => MetadataRecord::RemoveTopic {
            id: b.uuid("topic id")?,
        },
        TAG_CONFIG => MetadataRecord::Config {
            topic_id: b.uuid("topic id")?,
            key: b.string("config key")?,
            value: if b.bool("config value present")? {
                Some(b.string("config value")?)
            } else {
                None
            },
        },
        TAG_PRODUCER_IDS => MetadataRecord::ProducerIds {
            broker: b.i32("broker id")?,
            next_block_start: b.i64("next producer id block")?,
        },
        TAG_CLUSTER_ID => MetadataRecord::ClusterId {
            id: b.string("cluster id")?,
        },
        TAG_PARTITION_REPLICAS => MetadataRecord::PartitionReplicas {
            topic_id: b.uuid("topic id")?,
            partition: b.i32("partition")?,
            replicas: get_ids(&mut b, "replicas")?,
            adding_replicas: get_ids(&mut b, "adding replicas")?,
            removing_replicas: get_ids(&mut b, "removing replicas")?,
            leader: b.i32("leader")?,
            isr: get_ids(&mut b, "isr")?,
            leader_epoch: b.i32("leader epoch")?,
            partition_epoch: b.i32("partition epoch")?,
        },
        TAG_USER_SCRAM_CREDENTIAL => MetadataRecord::UserScramCredential {
            user: b.string("user")?,
            mechanism: i8::from_be_bytes([b.u8("scram mechanism")?]),
            credential: get_scram_credential(&mut b)?,
        },
        TAG_REMOVE_USER_SCRAM_CREDENTIAL => MetadataRecord::RemoveUserScramCredential {
            user: b.string("user")?,
            mechanism: i8::from_be_bytes([b.u8("scram mechanism")?]),
        },
        TAG_CREATE_ACL => MetadataRecord::CreateAcl(get_acl(&mut b)?),
        TAG_DELETE_ACL => MetadataRecord::DeleteAcl(get_acl(&mut b)?),
        TAG_CLIENT_QUOTA => MetadataRecord::ClientQuota {
            entity: client_quota::get_entity(&mut b)?,
            key: b.string("quota key")?,
            value: if b.bool("quota value present")? {
                Some(client_quota::get_value(&mut b)?)
            } else {
                None
            },
        },
        _ => {
            return Err(DecodeError::UnknownTag {
                what: "record",
                tag,
                at,
            })
        }
    };
    b.finish(record_tag(&record).1)?;
    Ok(record)
}

fn put_ids(w: &mut Writer, what: &'static str, ids: &[i32]) {
    w.len(what, ids.len());
    for id in ids {
        w.i32(*id);
    }
}

fn get_ids(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<i32>, DecodeError> {
    let n = r.count(what, 4)?;
    (0..n).map(|_| r.i32(what)).collect()
}

fn put_configs(w: &mut Writer, configs: &BTreeMap<String, String>) {
    w.len("config count", configs.len());
    for (k, v) in configs {
        w.string("config key", k);
        w.string("config value", v);
    }
}

fn get_configs(r: &mut Reader<'_>) -> Result<BTreeMap<String, String>, DecodeError> {
    let n = r.count("config count", 8)?;
    let mut configs = BTreeMap::new();
    for _ in 0..n {
        let k = r.string("config key")?;
        let v = r.string("config value")?;
        configs.insert(k, v);
    }
    Ok(configs)
}

fn put_broker(w: &mut Writer, b: &BrokerRegistration) {
    w.i32(b.id);
    w.uuid(&b.incarnation);
    w.i64(b.epoch);
    w.len("endpoint count", b.endpoints.len());
    for e in &b.endpoints {
        w.string("listener", &e.listener);
        w.string("host", &e.host);
        w.u32(u32::from(e.port));
    }
    w.bool(b.rack.is_some());
    if let Some(rack) = &b.rack {
        w.string("rack", rack);
    }
    w.bool(b.fenced);
    w.bool(b.in_controlled_shutdown);
}

fn get_broker(r: &mut Reader<'_>) -> Result<BrokerRegistration, DecodeError> {
    let id = r.i32("broker id")?;
    let incarnation = r.uuid("incarnation")?;
    let epoch = r.i64("broker epoch")?;
    let n = r.count("endpoint count", 12)?;
    let mut endpoints = Vec::with_capacity(n);
    for _ in 0..n {
        let listener = r.string("listener")?;
        let host = r.string("host")?;
        let at = r.position();
        let port = r.u32("port")?;
        let port = u16::try_from(port).map_err(|_| DecodeError::InvalidValue {
            what: "port",
            value: u64::from(port),
            at,
        })?;
        endpoints.push(Endpoint {
            listener,
            host,
            port,
        });
    }
    let rack = if r.bool("rack present")? {
        Some(r.string("rack")?)
    } else {
        None
    };
    Ok(BrokerRegistration {
        id,
        incarnation,
        epoch,
        endpoints,
        rack,
        fenced: r.bool("fenced")?,
        in_controlled_shutdown: r.bool("in controlled shutdown")?,
    })
}

fn put_scram_credential(w: &mut Writer, c: &ScramCredential) {
    w.bytes("salt", &c.salt);
    w.i32(c.iterations);
    w.bytes("stored key", &c.stored_key);
    w.bytes("server key", &c.server_key);
}

fn get_scram_credential(r: &mut Reader<'_>) -> Result<ScramCredential, DecodeError> {
    Ok(ScramCredential {
        salt: r.bytes("salt")?.to_vec(),
        iterations: r.i32("iterations")?,
        stored_key: r.bytes("stored key")?.to_vec(),
        server_key: r.bytes("server key")?.to_vec(),
    })
}

fn put_acl(w: &mut Writer, b: &AclBinding) {
    w.u8(b.resource_type as u8);
    w.string("resource name", &b.resource_name);
    w.u8(b.pattern_type as u8);
    w.string("principal", &b.principal);
    w.string("host", &b.host);
    w.u8(b.operation as u8);
    w.u8(b.permission as u8);
}

/// Reads one Kafka code byte and maps it; an unknown code is `InvalidValue`.
fn get_code<T>(
    r: &mut Reader<'_>,
    what: &'static str,
    from_code: fn(i8) -> Option<T>,
) -> Result<T, DecodeError> {
    let at = r.position();
    let v = r.u8(what)?;
    from_code(i8::from_be_bytes([v])).ok_or(DecodeError::InvalidValue {
        what,
        value: u64::from(v),
        at,
    })
}

fn get_acl(r: &mut Reader<'_>) -> Result<AclBinding, DecodeError> {
    Ok(AclBinding {
        resource_type: get_code(r, "acl resource type", ResourceType::from_code)?,
        resource_name: r.string("acl resource name")?,
        pattern_type: get_code(r, "acl pattern type", PatternType::from_code)?,
        principal: r.string("acl principal")?,
        host: r.string("acl host")?,
        operation: get_code(r, "acl operation", AclOperation::from_code)?,
        permission: get_code(r, "acl permission", AclPermission::from_code)?,
    })
}

fn put_partition(w: &mut Writer, p: &PartitionState) {
    put_ids(w, "replicas", &p.replicas);
    put_ids(w, "isr", &p.isr);
    w.i32(p.leader);
    w.i32(p.leader_epoch);
    w.i32(p.partition_epoch);
}

fn get_partition(r: &mut Reader<'_>) -> Result<PartitionState, DecodeError> {
    Ok(PartitionState {
        replicas: get_ids(r, "replicas")?,
        isr: get_ids(r, "isr")?,
        leader: r.i32("leader")?,
        leader_epoch: r.i32("leader epoch")?,
        partition_epoch: r.i32("partition epoch")?,
        // Kept in the image's own section (and the PartitionReplicas record), so the Partition
        // record's format is unchanged.
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    })
}

/// Encodes the whole image (a snapshot's data). Every field is written, the name index too, so
/// decoding gives back exactly the image that was encoded.
pub fn encode_image(image: &ClusterImage) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::default();
    w.u8(IMAGE_VERSION);
    w.len("broker count", image.brokers.len());
    for b in image.brokers.values() {
        put_broker(&mut w, b);
    }
    w.len("topic count", image.topics.len());
    for t in image.topics.values() {
        w.string("topic name", &t.name);
        w.uuid(&t.id);
        w.len("partition count", t.partitions.len());
        for p in &t.partitions {
            put_partition(&mut w, p);
        }
        put_configs(&mut w, &t.configs);
    }
    w.len("topic name count", image.topic_ids.len());
    for (name, id) in &image.topic_ids {
        w.string("topic name", name);
        w.uuid(id);
    }
    w.i64(image.next_producer_id);
    w.string("cluster id", &image.cluster_id);
    w.len("scram credential count", image.scram_credentials.len());
    for ((user, mechanism), c) in &image.scram_credentials {
        w.string("user", user);
        w.u8(mechanism.to_be_bytes()[0]);
        put_scram_credential(&mut w, c);
    }
    let reassigning: Vec<(&uuid::Uuid, i32, &PartitionState)> = image
        .topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.is_reassigning())
                .map(|(i, p)| (&t.id, i32::try_from(i).unwrap_or(i32::MAX), p))
        })
        .collect();
    w.len("reassignment count", reassigning.len());
    for (id, partition, p) in reassigning {
        w.uuid(id);
        w.i32(partition);
        put_ids(&mut w, "adding replicas", &p.adding_replicas);
        put_ids(&mut w, "removing replicas", &p.removing_replicas);
    }
    w.len("acl count", image.acls.len());
    for b in &image.acls {
        put_acl(&mut w, b);
    }
    client_quota::put_quotas(&mut w, &image.client_quotas);
    w.finish()
}

pub fn decode_image(buf: &[u8]) -> Result<ClusterImage, DecodeError> {
    let mut r = Reader::new(buf);
    let version = r.version_in("image", IMAGE_VERSION_OLDEST, IMAGE_VERSION)?;
    let mut image = ClusterImage::default();
    // Minimum encoded sizes: a broker is 4+16+8+4+1+1+1 bytes, a topic 4+16+4+4.
    let n = r.count("broker count", 35)?;
    for _ in 0..n {
        let b = get_broker(&mut r)?;
        image.brokers.insert(b.id, b);
    }
    let n = r.count("topic count", 28)?;
    for _ in 0..n {
        let name = r.string("topic name")?;
        let id = r.uuid("topic id")?;
        let np = r.count("partition count", 20)?;
        let mut partitions = Vec::with_capacity(np);
        for _ in 0..np {
            partitions.push(get_partition(&mut r)?);
        }
        let configs = get_configs(&mut r)?;
        image.topics.insert(
            id,
            TopicState {
                name,
                id,
                partitions,
                configs,
            },
        );
    }
    let n = r.count("topic name count", 20)?;
    for _ in 0..n {
        let name = r.string("topic name")?;
        image.topic_ids.insert(name, r.uuid("topic id")?);
    }
    image.next_producer_id = r.i64("next producer id")?;
    image.cluster_id = r.string("cluster id")?;
    if version >= 3 {
        // user 4, mechanism 1, salt 4, iterations 4, keys 4 + 4.
        let n = r.count("scram credential count", 21)?;
        for _ in 0..n {
            let user = r.string("user")?;
            let mechanism = i8::from_be_bytes([r.u8("scram mechanism")?]);
            let c = get_scram_credential(&mut r)?;
            image.scram_credentials.insert((user, mechanism), c);
        }
        // A reassignment is at least a uuid, a partition and two id counts.
        let n = r.count("reassignment count", 28)?;
        for _ in 0..n {
            let topic_id = r.uuid("topic id")?;
            let partition = r.i32("partition")?;
            let adding = get_ids(&mut r, "adding replicas")?;
            let removing = get_ids(&mut r, "removing replicas")?;
            let p = image
                .topics
                .get_mut(&topic_id)
                .and_then(|t| t.partitions.get_mut(usize::try_from(partition).ok()?));
            if let Some(p) = p {
                p.adding_replicas = adding;
                p.removing_replicas = removing;
            }
        }
    }
    if version >= 4 {
        // Four code bytes and three string lengths.
        let n = r.count("acl count", 16)?;
        for _ in 0..n {
            image.acls.insert(get_acl(&mut r)?);
        }
    }
    if version >= 5 {
        image.client_quotas = client_quota::get_quotas(&mut r)?;
    }
    r.finish("image")?;
    Ok(image)
}

/// Encodes a Raft entry for the log (raft-rs's deprecated `sync_log` is not kept).
pub fn encode_entry(entry: &Entry) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::default();
    w.u8(ENTRY_VERSION);
    w.u8(match entry.get_entry_type() {
        EntryType::EntryNormal => 0,
        EntryType::EntryConfChange => 1,
        EntryType::EntryConfChangeV2 => 2,
    });
    w.u64(entry.term);
    w.u64(entry.index);
    w.bytes("entry context", &entry.context);
    w.bytes("entry data", &entry.data);
    w.finish()
}

pub fn decode_entry(buf: &[u8]) -> Result<Entry, DecodeError> {
    let mut r = Reader::new(buf);
    r.version("entry", ENTRY_VERSION)?;
    let at = r.position();
    let entry_type = match r.u8("entry type")? {
        0 => EntryType::EntryNormal,
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        v => {
            return Err(DecodeError::InvalidValue {
                what: "entry type",
                value: u64::from(v),
                at,
            })
        }
    };
    let mut e = Entry::default();
    e.set_entry_type(entry_type);
    e.term = r.u64("entry term")?;
    e.index = r.u64("entry index")?;
    e.context = bytes::Bytes::copy_from_slice(r.bytes("entry context")?);
    e.data = bytes::Bytes::copy_from_slice(r.bytes("entry data")?);
    r.finish("entry")?;
    Ok(e)
}

#[cfg(test)]
mod tests;
