//! Tests of Fetch framing: golden equality with kafka-protocol for v4..=16, zero-copy payloads.

use bytes::Bytes;
use kafka_protocol::messages::fetch_response as kp;
use kafka_protocol::messages::{BrokerId, FetchResponse, ProducerId, ResponseKind, TopicName};
use proptest::prelude::*;

use super::*;
use crate::response::encode_response;

fn concat<P: AsRef<[u8]>>(parts: &[WirePart<P>]) -> Vec<u8> {
    parts
        .iter()
        .flat_map(|p| p.as_bytes().iter().copied())
        .collect()
}

/// The same response built with kafka-protocol's types.
fn to_kafka_protocol(desc: &FetchResponseDesc<Vec<u8>>) -> FetchResponse {
    let topics = desc.topics.iter().map(|t| {
        let partitions = t.partitions.iter().map(|p| {
            let mut out = kp::PartitionData::default()
                .with_partition_index(p.partition_index)
                .with_error_code(p.error_code)
                .with_high_watermark(p.high_watermark)
                .with_last_stable_offset(p.last_stable_offset)
                .with_log_start_offset(p.log_start_offset)
                .with_preferred_read_replica(BrokerId(p.preferred_read_replica))
                .with_records(Some(Bytes::from(p.records.concat())));
            if let Some(e) = p.diverging_epoch {
                out = out.with_diverging_epoch(
                    kp::EpochEndOffset::default()
                        .with_epoch(e.leader_epoch)
                        .with_end_offset(e.end_offset),
                );
            }
            if let Some(l) = p.current_leader {
                out = out.with_current_leader(
                    kp::LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(l.leader_id))
                        .with_leader_epoch(l.leader_epoch),
                );
            }
            if let Some(s) = p.snapshot_id {
                out = out.with_snapshot_id(
                    kp::SnapshotId::default()
                        .with_end_offset(s.end_offset)
                        .with_epoch(s.epoch),
                );
            }
            out.with_aborted_transactions(p.aborted_transactions.as_ref().map(|a| {
                a.iter()
                    .map(|t| {
                        kp::AbortedTransaction::default()
                            .with_producer_id(ProducerId(t.producer_id))
                            .with_first_offset(t.first_offset)
                    })
                    .collect()
            }))
        });
        kp::FetchableTopicResponse::default()
            .with_topic(TopicName(t.name.clone()))
            .with_topic_id(t.topic_id)
            .with_partitions(partitions.collect())
    });
    let nodes = desc.node_endpoints.iter().map(|n| {
        kp::NodeEndpoint::default()
            .with_node_id(BrokerId(n.node_id))
            .with_host(n.host.clone())
            .with_port(n.port)
            .with_rack(n.rack.clone())
    });
    FetchResponse::default()
        .with_throttle_time_ms(desc.throttle_time_ms)
        .with_error_code(desc.error_code)
        .with_session_id(desc.session_id)
        .with_responses(topics.collect())
        .with_node_endpoints(nodes.collect())
}

/// Clears what `version` cannot carry and Kafka refuses to drop silently.
fn fit_to_version(
    mut desc: FetchResponseDesc<Vec<u8>>,
    version: i16,
) -> FetchResponseDesc<Vec<u8>> {
    if version < 7 {
        desc.session_id = 0;
    }
    if version < 11 {
        for p in desc.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
            p.preferred_read_replica = -1;
        }
    }
    desc
}

fn text() -> impl Strategy<Value = StrBytes> {
    "[a-z0-9._-]{0,12}".prop_map(StrBytes::from_string)
}

/// Small ints, -1 and extremes: defaults and varint edges show up often.
fn i32s() -> impl Strategy<Value = i32> {
    prop_oneof![Just(-1), Just(0), any::<i32>(), -3..300i32]
}

fn i64s() -> impl Strategy<Value = i64> {
    prop_oneof![Just(-1), Just(0), any::<i64>(), -3..300i64]
}

fn partition() -> impl Strategy<Value = FetchPartitionDesc<Vec<u8>>> {
    let offsets = (i32s(), any::<i16>(), i64s(), i64s(), i64s());
    let tags = (
        prop::option::of(
            (i32s(), i64s()).prop_map(|(leader_epoch, end_offset)| EpochEndOffset {
                leader_epoch,
                end_offset,
            }),
        ),
        prop::option::of(
            (i32s(), i32s()).prop_map(|(leader_id, leader_epoch)| LeaderIdAndEpoch {
                leader_id,
                leader_epoch,
            }),
        ),
        prop::option::of(
            (i64s(), i32s()).prop_map(|(end_offset, epoch)| SnapshotId { end_offset, epoch }),
        ),
    );
    let aborted = prop::option::of(prop::collection::vec(
        (i64s(), i64s()).prop_map(|(producer_id, first_offset)| AbortedTransaction {
            producer_id,
            first_offset,
        }),
        0..3,
    ));
    let records = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..4);
    (offsets, tags, aborted, i32s(), records).prop_map(
        |(o, t, aborted_transactions, preferred_read_replica, records)| FetchPartitionDesc {
            partition_index: o.0,
            error_code: o.1,
            high_watermark: o.2,
            last_stable_offset: o.3,
            log_start_offset: o.4,
            diverging_epoch: t.0,
            current_leader: t.1,
            snapshot_id: t.2,
            aborted_transactions,
            preferred_read_replica,
            records,
        },
    )
}

fn response() -> impl Strategy<Value = FetchResponseDesc<Vec<u8>>> {
    let topic = (
        text(),
        any::<u128>(),
        prop::collection::vec(partition(), 0..4),
    )
        .prop_map(|(name, id, partitions)| FetchTopicDesc {
            name,
            topic_id: Uuid::from_u128(id),
            partitions,
        });
    let node = (i32s(), text(), i32s(), prop::option::of(text())).prop_map(
        |(node_id, host, port, rack)| NodeEndpoint {
            node_id,
            host,
            port,
            rack,
        },
    );
    (
        i32s(),
        any::<i16>(),
        i32s(),
        prop::collection::vec(topic, 0..3),
        prop::collection::vec(node, 0..3),
    )
        .prop_map(
            |(throttle_time_ms, error_code, session_id, topics, node_endpoints)| {
                FetchResponseDesc {
                    throttle_time_ms,
                    error_code,
                    session_id,
                    topics,
                    node_endpoints,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Golden test: for every version, the parts concatenate to kafka-protocol's frame.
    #[test]
    fn parts_equal_kafka_protocol_encoding(desc in response(), correlation in any::<i32>()) {
        for version in FETCH_VERSION_MIN..=FETCH_VERSION_MAX {
            let desc = fit_to_version(desc.clone(), version);
            let correlation = CorrelationId(correlation);
            let want: ResponseKind = to_kafka_protocol(&desc).into();
            let want = encode_response(ApiKey::Fetch, version, correlation, &want).unwrap();
            let parts = encode_fetch_response(version, correlation, desc.clone()).unwrap();
            prop_assert_eq!(&concat(&parts)[..], &want[..], "v{}", version);
            // The chunks come back in order, non-empty, and nothing else is a payload.
            let chunks: Vec<&Vec<u8>> = desc.topics.iter().flat_map(|t| &t.partitions)
                .flat_map(|p| &p.records).filter(|c| !c.is_empty()).collect();
            let payloads: Vec<&Vec<u8>> = parts.iter().filter_map(|p| match p {
                WirePart::Payload(c) => Some(c),
                WirePart::Header(_) => None,
            }).collect();
            prop_assert_eq!(payloads, chunks);
            prop_assert!(matches!(parts.first(), Some(WirePart::Header(h)) if h.len() >= 8));
        }
    }
}

#[test]
fn payload_chunks_are_the_callers_own_bytes() {
    let batch = Bytes::from(vec![0x5a; 1000]);
    let desc = FetchResponseDesc {
        topics: vec![FetchTopicDesc {
            name: StrBytes::from_static_str("t"),
            topic_id: Uuid::nil(),
            partitions: vec![FetchPartitionDesc {
                records: vec![batch.clone(), Bytes::new(), batch.slice(10..20)],
                ..FetchPartitionDesc::default()
            }],
        }],
        ..FetchResponseDesc::default()
    };
    let parts = encode_fetch_response(16, CorrelationId(1), desc).unwrap();
    assert_eq!(parts.len(), 4, "{parts:?}");
    let WirePart::Payload(first) = &parts[1] else {
        panic!("{parts:?}")
    };
    assert_eq!(
        first.as_ptr(),
        batch.as_ptr(),
        "the chunk is moved, not copied"
    );
    let WirePart::Payload(second) = &parts[2] else {
        panic!("{parts:?}")
    };
    assert_eq!(second.as_ptr(), batch[10..].as_ptr());
    let size = i32::from_be_bytes(parts[0].as_bytes()[..4].try_into().unwrap()) as usize;
    assert_eq!(
        size + 4,
        parts.iter().map(|p| p.as_bytes().len()).sum::<usize>()
    );
}

#[test]
fn versions_and_fields_outside_the_version_are_refused() {
    let desc = FetchResponseDesc::<Bytes>::default;
    for version in [3, 17, -1] {
        let err = encode_fetch_response(version, CorrelationId(1), desc()).unwrap_err();
        assert_eq!(
            err,
            EncodeError::UnsupportedVersion {
                api_key: ApiKey::Fetch,
                api_version: version
            }
        );
    }
    let session = FetchResponseDesc::<Bytes> {
        session_id: 9,
        ..desc()
    };
    let err = encode_fetch_response(6, CorrelationId(1), session.clone()).unwrap_err();
    assert_eq!(
        err,
        EncodeError::FieldNotInVersion {
            field: "session_id",
            api_version: 6
        }
    );
    assert!(encode_fetch_response(7, CorrelationId(1), session).is_ok());
    let replica = FetchPartitionDesc::<Bytes> {
        preferred_read_replica: 2,
        ..FetchPartitionDesc::default()
    };
    let topic = FetchTopicDesc {
        partitions: vec![replica],
        ..FetchTopicDesc::default()
    };
    let with_replica = FetchResponseDesc {
        topics: vec![topic],
        ..desc()
    };
    let err = encode_fetch_response(10, CorrelationId(1), with_replica.clone()).unwrap_err();
    assert_eq!(
        err,
        EncodeError::FieldNotInVersion {
            field: "preferred_read_replica",
            api_version: 10
        }
    );
    assert!(encode_fetch_response(11, CorrelationId(1), with_replica).is_ok());
}

#[test]
fn default_tagged_values_are_not_written() {
    let partition = FetchPartitionDesc::<Bytes> {
        diverging_epoch: Some(EpochEndOffset {
            leader_epoch: -1,
            end_offset: -1,
        }),
        current_leader: Some(LeaderIdAndEpoch {
            leader_id: -1,
            leader_epoch: -1,
        }),
        snapshot_id: Some(SnapshotId {
            end_offset: -1,
            epoch: -1,
        }),
        ..FetchPartitionDesc::default()
    };
    let topic = FetchTopicDesc {
        partitions: vec![partition],
        ..FetchTopicDesc::default()
    };
    let desc = FetchResponseDesc {
        topics: vec![topic],
        ..FetchResponseDesc::default()
    };
    let parts = encode_fetch_response(12, CorrelationId(1), desc).unwrap();
    let bytes = concat(&parts);
    // ... records (compact, empty = 1), then the partition's tagged-field count: 0.
    assert_eq!(
        &bytes[bytes.len() - 4..],
        &[1, 0, 0, 0],
        "records, partition/topic/top tags"
    );
}
