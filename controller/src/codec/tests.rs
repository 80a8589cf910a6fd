use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::client_quota::{ClientQuotaMap, EntityName, QuotaEntity, QuotaValue};

fn arb_uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn arb_name() -> impl Strategy<Value = String> {
    // Multi-byte characters too: lengths are bytes, not chars.
    "[a-z0-9._é-]{0,12}"
}

fn arb_configs() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(arb_name(), arb_name(), 0..4)
}

fn arb_broker() -> impl Strategy<Value = BrokerRegistration> {
    (
        any::<i32>(),
        arb_uuid(),
        any::<i64>(),
        vec((arb_name(), arb_name(), any::<u16>()), 0..3),
        proptest::option::of(arb_name()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(id, incarnation, epoch, eps, rack, fenced, ics)| BrokerRegistration {
                id,
                incarnation,
                epoch,
                endpoints: eps
                    .into_iter()
                    .map(|(listener, host, port)| Endpoint {
                        listener,
                        host,
                        port,
                    })
                    .collect(),
                rack,
                fenced,
                in_controlled_shutdown: ics,
            },
        )
}

fn arb_partition() -> impl Strategy<Value = PartitionState> {
    (
        vec(any::<i32>(), 0..5),
        vec(any::<i32>(), 0..5),
        any::<i32>(),
        any::<i32>(),
        any::<i32>(),
    )
        .prop_map(
            |(replicas, isr, leader, leader_epoch, partition_epoch)| PartitionState {
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
                ..PartitionState::default()
            },
        )
}

/// A partition as an image holds it: possibly mid-reassignment.
fn arb_image_partition() -> impl Strategy<Value = PartitionState> {
    (
        arb_partition(),
        vec(any::<i32>(), 0..3),
        vec(any::<i32>(), 0..3),
    )
        .prop_map(|(p, adding_replicas, removing_replicas)| PartitionState {
            adding_replicas,
            removing_replicas,
            ..p
        })
}

fn arb_record() -> impl Strategy<Value = MetadataRecord> {
    prop_oneof![
        arb_broker().prop_map(MetadataRecord::RegisterBroker),
        (any::<i32>(), any::<i64>())
            .prop_map(|(id, epoch)| MetadataRecord::FenceBroker { id, epoch }),
        (any::<i32>(), any::<i64>())
            .prop_map(|(id, epoch)| MetadataRecord::UnfenceBroker { id, epoch }),
        (any::<i32>(), any::<i64>())
            .prop_map(|(id, epoch)| MetadataRecord::BeginControlledShutdown { id, epoch }),
        (arb_name(), arb_uuid(), arb_configs())
            .prop_map(|(name, id, configs)| MetadataRecord::Topic { name, id, configs }),
        (arb_uuid(), any::<i32>(), arb_partition()).prop_map(|(topic_id, partition, state)| {
            MetadataRecord::Partition {
                topic_id,
                partition,
                state,
            }
        }),
        (
            arb_uuid(),
            any::<i32>(),
            any::<i32>(),
            vec(any::<i32>(), 0..5),
            any::<i32>(),
            any::<i32>()
        )
            .prop_map(|(topic_id, partition, leader, isr, le, pe)| {
                MetadataRecord::PartitionChange {
                    topic_id,
                    partition,
                    leader,
                    isr,
                    leader_epoch: le,
                    partition_epoch: pe,
                }
            }),
        arb_uuid().prop_map(|id| MetadataRecord::RemoveTopic { id }),
        (arb_uuid(), arb_name(), proptest::option::of(arb_name())).prop_map(
            |(topic_id, key, value)| MetadataRecord::Config {
                topic_id,
                key,
                value,
            }
        ),
        (any::<i32>(), any::<i64>()).prop_map(|(broker, next_block_start)| {
            MetadataRecord::ProducerIds {
                broker,
                next_block_start,
            }
        }),
        arb_name().prop_map(|id| MetadataRecord::ClusterId { id }),
        (arb_uuid(), any::<i32>(), arb_image_partition()).prop_map(|(topic_id, partition, p)| {
            MetadataRecord::PartitionReplicas {
                topic_id,
                partition,
                replicas: p.replicas,
                adding_replicas: p.adding_replicas,
                removing_replicas: p.removing_replicas,
                leader: p.leader,
                isr: p.isr,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
            }
        }),
        (arb_name(), any::<i8>(), arb_scram_credential()).prop_map(
            |(user, mechanism, credential)| MetadataRecord::UserScramCredential {
                user,
                mechanism,
                credential,
            }
        ),
        (arb_name(), any::<i8>()).prop_map(|(user, mechanism)| {
            MetadataRecord::RemoveUserScramCredential { user, mechanism }
        }),
        arb_acl().prop_map(MetadataRecord::CreateAcl),
        arb_acl().prop_map(MetadataRecord::DeleteAcl),
        (
            arb_quota_entity(),
            arb_name(),
            proptest::option::of(any::<f64>())
        )
            .prop_map(|(entity, key, value)| MetadataRecord::ClientQuota {
                entity,
                key,
                value: value.map(QuotaValue),
            }),
    ]
}

fn arb_entity_name() -> impl Strategy<Value = EntityName> {
    proptest::option::of(arb_name()).prop_map(|n| n.map_or(EntityName::Default, EntityName::Named))
}

fn arb_quota_entity() -> impl Strategy<Value = QuotaEntity> {
    (
        proptest::option::of(arb_entity_name()),
        proptest::option::of(arb_entity_name()),
    )
        .prop_filter("an entity has a component", |(u, c)| {
            u.is_some() || c.is_some()
        })
        .prop_map(|(user, client_id)| QuotaEntity { user, client_id })
}

fn arb_client_quotas() -> impl Strategy<Value = ClientQuotaMap> {
    btree_map(
        arb_quota_entity(),
        btree_map(arb_name(), any::<f64>().prop_map(QuotaValue), 1..3),
        0..3,
    )
}

fn arb_acl() -> impl Strategy<Value = AclBinding> {
    use crate::acl::{AclOperation, AclPermission, PatternType, ResourceType};
    (
        2i8..=5,
        arb_name(),
        3i8..=4,
        arb_name(),
        arb_name(),
        2i8..=12,
        2i8..=3,
    )
        .prop_filter_map("codes", |(rt, name, pt, principal, host, op, perm)| {
            Some(AclBinding {
                resource_type: ResourceType::from_code(rt)?,
                resource_name: name,
                pattern_type: PatternType::from_code(pt)?,
                principal,
                host,
                operation: AclOperation::from_code(op)?,
                permission: AclPermission::from_code(perm)?,
            })
        })
}

fn arb_scram_credential() -> impl Strategy<Value = ScramCredential> {
    (
        vec(any::<u8>(), 0..24),
        any::<i32>(),
        vec(any::<u8>(), 0..64),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(salt, iterations, stored_key, server_key)| ScramCredential {
                salt,
                iterations,
                stored_key,
                server_key,
            },
        )
}

/// A credential or none, derived from `seed` so the image strategy keeps its shape.
fn scram_credentials_of(seed: i64) -> BTreeMap<(String, i8), ScramCredential> {
    let mut m = BTreeMap::new();
    if seed % 2 == 0 {
        let c = ScramCredential {
            salt: seed.to_be_bytes().to_vec(),
            iterations: 4096,
            stored_key: vec![1; 32],
            server_key: vec![2; 32],
        };
        m.insert((format!("u{seed}"), 1), c.clone());
        m.insert((format!("u{seed}"), 2), c);
    }
    m
}

fn arb_image() -> impl Strategy<Value = ClusterImage> {
    (
        vec(arb_broker(), 0..4),
        vec(
            (
                arb_name(),
                arb_uuid(),
                vec(arb_image_partition(), 0..4),
                arb_configs(),
            ),
            0..4,
        ),
        btree_map(arb_name(), arb_uuid(), 0..4),
        any::<i64>(),
        proptest::collection::btree_set(arb_acl(), 0..4),
        arb_client_quotas(),
    )
        .prop_map(
            |(brokers, topics, topic_ids, next_producer_id, acls, client_quotas)| ClusterImage {
                brokers: brokers.into_iter().map(|b| (b.id, b)).collect(),
                topics: topics
                    .into_iter()
                    .map(|(name, id, partitions, configs)| {
                        (
                            id,
                            TopicState {
                                name,
                                id,
                                partitions,
                                configs,
                            },
                        )
                    })
                    .collect(),
                topic_ids,
                next_producer_id,
                cluster_id: format!("c{next_producer_id}"),
                scram_credentials: scram_credentials_of(next_producer_id),
                acls,
                client_quotas,
            },
        )
}

proptest! {
    #[test]
    fn record_batches_round_trip(records in vec(arb_record(), 0..8)) {
        let bytes = encode_records(&records).unwrap();
        prop_assert_eq!(decode_records(&bytes).unwrap(), records);
    }

    #[test]
    fn images_round_trip(image in arb_image()) {
        let bytes = encode_image(&image).unwrap();
        prop_assert_eq!(decode_image(&bytes).unwrap(), image);
    }

    #[test]
    fn entries_round_trip(
        ty in 0u8..3,
        term in any::<u64>(),
        index in any::<u64>(),
        context in vec(any::<u8>(), 0..16),
        data in vec(any::<u8>(), 0..64),
    ) {
        let mut e = Entry::default();
        e.set_entry_type(match ty {
            0 => EntryType::EntryNormal,
            1 => EntryType::EntryConfChange,
            _ => EntryType::EntryConfChangeV2,
        });
        e.term = term;
        e.index = index;
        e.context = context.into();
        e.data = data.into();
        let bytes = encode_entry(&e).unwrap();
        prop_assert_eq!(decode_entry(&bytes).unwrap(), e);
    }

    #[test]
    fn garbage_never_panics(bytes in vec(any::<u8>(), 0..400)) {
        let _ = decode_records(&bytes);
        let _ = decode_image(&bytes);
        let _ = decode_entry(&bytes);
    }

    /// Every strict prefix of a valid encoding is refused, never misread as something shorter.
    #[test]
    fn truncations_are_refused(records in vec(arb_record(), 1..4), image in arb_image()) {
        let bytes = encode_records(&records).unwrap();
        for cut in 0..bytes.len() {
            prop_assert!(decode_records(&bytes[..cut]).is_err());
        }
        let bytes = encode_image(&image).unwrap();
        for cut in 0..bytes.len() {
            prop_assert!(decode_image(&bytes[..cut]).is_err());
        }
    }

    /// Flipping bytes may still decode (there is no checksum here: the log and the snapshot
    /// file carry CRCs), but it never panics and never reads past the input.
    #[test]
    fn corrupted_batches_never_panic(
        records in vec(arb_record(), 1..4),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = encode_records(&records).unwrap();
        for (i, v) in flips {
            let at = i.index(bytes.len());
            bytes[at] = v;
        }
        let _ = decode_records(&bytes);
    }
}

/// The v1 layout, byte for byte: changing it needs a new version.
#[test]
fn golden_record_batch() {
    let records = vec![
        MetadataRecord::FenceBroker { id: 2, epoch: 7 },
        MetadataRecord::RemoveTopic {
            id: Uuid::from_u128(0x0102),
        },
    ];
    let bytes = encode_records(&records).unwrap();
    let mut expected = vec![1u8, 0, 0, 0, 2]; // version, count
    expected.extend_from_slice(&[2, 0, 0, 0, 12]); // FenceBroker, body length
    expected.extend_from_slice(&2i32.to_be_bytes());
    expected.extend_from_slice(&7i64.to_be_bytes());
    expected.extend_from_slice(&[8, 0, 0, 0, 16]); // RemoveTopic, body length
    expected.extend_from_slice(&0x0102u128.to_be_bytes());
    assert_eq!(bytes, expected);
}

#[test]
fn golden_entry() {
    let e = Entry {
        term: 3,
        index: 9,
        data: vec![0xAB].into(),
        ..Entry::default()
    };
    let bytes = encode_entry(&e).unwrap();
    let mut expected = vec![1u8, 0];
    expected.extend_from_slice(&3u64.to_be_bytes());
    expected.extend_from_slice(&9u64.to_be_bytes());
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0xAB]);
    assert_eq!(bytes, expected);
}

#[test]
fn defects_are_named() {
    let good = encode_records(&[MetadataRecord::FenceBroker { id: 1, epoch: 1 }]).unwrap();

    let mut v2 = good.clone();
    v2[0] = 2;
    assert!(matches!(
        decode_records(&v2),
        Err(DecodeError::UnsupportedVersion { version: 2, .. })
    ));

    let mut tag = good.clone();
    tag[5] = 200;
    assert!(matches!(
        decode_records(&tag),
        Err(DecodeError::UnknownTag { tag: 200, .. })
    ));

    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        decode_records(&trailing),
        Err(DecodeError::TrailingBytes { count: 1, .. })
    ));

    // A body longer than the record needs: the record must consume its body exactly.
    let mut long_body = good.clone();
    long_body[9] += 1;
    long_body.push(0);
    assert!(matches!(
        decode_records(&long_body),
        Err(DecodeError::TrailingBytes {
            what: "FenceBroker",
            ..
        })
    ));

    // A forged count larger than the input could hold is refused before allocating.
    let mut huge = vec![1u8];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        decode_records(&huge),
        Err(DecodeError::TooMany { .. })
    ));

    let short_body = {
        let mut w = Writer::default();
        w.u8(RECORD_BATCH_VERSION);
        w.u32(1);
        w.u8(TAG_REMOVE_TOPIC); // a RemoveTopic whose body is too short for its uuid
        w.bytes("body", &[1, 2, 3]);
        w.finish().unwrap()
    };
    assert!(matches!(
        decode_records(&short_body),
        Err(DecodeError::Truncated {
            what: "topic id",
            ..
        })
    ));

    // An image whose one topic has a name that is not UTF-8.
    let mut w = Writer::default();
    w.u8(IMAGE_VERSION);
    w.u32(0); // brokers
    w.u32(1); // topics
    w.bytes("name", &[0xFF, 0xFE]);
    w.uuid(&Uuid::from_u128(1));
    w.u32(0); // partitions
    w.u32(0); // configs
    w.u32(0); // topic names
    w.i64(0);
    let bytes = w.finish().unwrap();
    assert!(matches!(
        decode_image(&bytes),
        Err(DecodeError::InvalidUtf8 {
            what: "topic name",
            ..
        })
    ));
}

#[test]
fn version_2_images_still_decode() {
    let image = ClusterImage {
        cluster_id: "c".into(),
        next_producer_id: 7,
        ..ClusterImage::default()
    };
    let v5 = encode_image(&image).unwrap();
    assert_eq!(v5[0], 5);
    // Version 4 is version 5 without the trailing client quota section (here: one zero
    // count), version 3 is version 4 without the ACL section (another), and version 2 is
    // version 3 without the credential and reassignment sections (two more).
    let mut v4 = v5[..v5.len() - 4].to_vec();
    v4[0] = 4;
    assert_eq!(decode_image(&v4).unwrap(), image);
    let mut v3 = v5[..v5.len() - 8].to_vec();
    v3[0] = 3;
    assert_eq!(decode_image(&v3).unwrap(), image);
    let mut v2 = v5[..v5.len() - 16].to_vec();
    v2[0] = 2;
    assert_eq!(decode_image(&v2).unwrap(), image);
    let mut v1 = v2.clone();
    v1[0] = 1;
    assert!(matches!(
        decode_image(&v1),
        Err(DecodeError::UnsupportedVersion { version: 1, .. })
    ));
}

#[test]
fn version_2_images_decode_without_credentials() {
    let mut w = Writer::default();
    w.u8(2);
    w.u32(0); // brokers
    w.u32(0); // topics
    w.u32(0); // topic names
    w.i64(7);
    w.string("cluster id", "c");
    let bytes = w.finish().unwrap();
    let image = decode_image(&bytes).unwrap();
    assert_eq!(image.next_producer_id, 7);
    assert!(image.scram_credentials.is_empty());
}

#[test]
fn acl_records_and_images_round_trip() {
    use crate::acl::{AclOperation, AclPermission, PatternType, ResourceType};
    let binding = AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: "logs-".into(),
        pattern_type: PatternType::Prefixed,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: AclOperation::Write,
        permission: AclPermission::Allow,
    };
    let records = vec![
        MetadataRecord::CreateAcl(binding.clone()),
        MetadataRecord::DeleteAcl(binding.clone()),
    ];
    let bytes = encode_records(&records).unwrap();
    // Tag 15 right after the batch header (version, count).
    assert_eq!(bytes[5], 15);
    assert_eq!(decode_records(&bytes).unwrap(), records);
    let mut image = ClusterImage::default();
    image.apply(&records[0]);
    assert!(image.acls.contains(&binding));
    assert_eq!(decode_image(&encode_image(&image).unwrap()).unwrap(), image);
    image.apply(&records[1]);
    assert!(image.acls.is_empty());
    // An unknown operation code is refused, not mapped to something else.
    let mut bad = encode_records(&records[..1]).unwrap();
    let op_at = bad.len() - 2;
    bad[op_at] = 99;
    assert!(matches!(
        decode_records(&bad),
        Err(DecodeError::InvalidValue {
            what: "acl operation",
            ..
        })
    ));
}

#[test]
fn client_quota_records_and_images_round_trip() {
    let alice_reader = QuotaEntity {
        user: Some(EntityName::Named("alice".into())),
        client_id: Some(EntityName::Default),
    };
    let set = MetadataRecord::ClientQuota {
        entity: alice_reader.clone(),
        key: "producer_byte_rate".into(),
        value: Some(QuotaValue(1024.0)),
    };
    let remove = MetadataRecord::ClientQuota {
        entity: alice_reader.clone(),
        key: "producer_byte_rate".into(),
        value: None,
    };
    let records = vec![set.clone(), remove.clone()];
    let bytes = encode_records(&records).unwrap();
    // Tag 17 right after the batch header (version, count).
    assert_eq!(bytes[5], 17);
    assert_eq!(decode_records(&bytes).unwrap(), records);
    let mut image = ClusterImage::default();
    image.apply(&set);
    assert_eq!(
        image.client_quotas[&alice_reader]["producer_byte_rate"],
        QuotaValue(1024.0)
    );
    let encoded = encode_image(&image).unwrap();
    assert_eq!(encoded[0], 5);
    assert_eq!(decode_image(&encoded).unwrap(), image);
    image.apply(&remove);
    assert!(
        image.client_quotas.is_empty(),
        "no entity is left without keys"
    );
    // A component type this build does not know is refused, not guessed at.
    let mut bad = encode_records(&records[..1]).unwrap();
    // Batch header 5, tag 1, body length 4, component count 4: the first component's type.
    bad[14] = 3;
    assert!(matches!(
        decode_records(&bad),
        Err(DecodeError::InvalidValue {
            what: "quota entity type",
            value: 3,
            ..
        })
    ));
}
