use proptest::prelude::*;

use super::*;

fn every_message() -> Vec<InternalMessage> {
    vec![
        InternalMessage::Raft(Bytes::from_static(b"\x08\x01raft")),
        InternalMessage::RegisterBroker {
            broker_id: 3,
            incarnation: [7; 16],
            endpoints: vec![Endpoint {
                listener: "PLAINTEXT".into(),
                host: "10.0.0.3".into(),
                port: 9092,
            }],
            rack: Some("r1".into()),
        },
        InternalMessage::RegisterBroker {
            broker_id: 4,
            incarnation: [0; 16],
            endpoints: Vec::new(),
            rack: None,
        },
        InternalMessage::RegisterBrokerResponse {
            error_code: 0,
            broker_epoch: 42,
        },
        InternalMessage::Heartbeat {
            broker_id: 3,
            broker_epoch: 42,
            metadata_offset: 1000,
            want_fence: false,
            want_shutdown: true,
        },
        InternalMessage::HeartbeatResponse {
            error_code: 0,
            is_caught_up: true,
            is_fenced: false,
            should_shutdown: false,
        },
        InternalMessage::FetchMetadata {
            broker_id: 3,
            from_offset: 17,
            max_wait_ms: 500,
        },
        InternalMessage::FetchMetadata {
            broker_id: 3,
            from_offset: -1,
            max_wait_ms: 0,
        },
        InternalMessage::FetchMetadataResponse {
            error_code: 0,
            leader_id: 1,
            offset: 99,
            image: Bytes::from(vec![1u8; 5000]),
        },
        InternalMessage::FetchMetadataResponse {
            error_code: NOT_CONTROLLER,
            leader_id: -1,
            offset: -1,
            image: Bytes::new(),
        },
        InternalMessage::CreateTopics {
            topics: vec![
                NewTopicSpec {
                    name: "orders".into(),
                    num_partitions: 3,
                    replication_factor: 2,
                    configs: vec![("cleanup.policy".into(), "compact".into())],
                    assignments: Vec::new(),
                },
                NewTopicSpec {
                    name: "manual".into(),
                    num_partitions: -1,
                    replication_factor: -1,
                    configs: Vec::new(),
                    assignments: vec![vec![1, 2], vec![2, 3], vec![]],
                },
            ],
            validate_only: true,
        },
        InternalMessage::CreateTopics {
            topics: Vec::new(),
            validate_only: false,
        },
        InternalMessage::DeleteTopics {
            names: vec!["orders".into(), String::new()],
        },
        InternalMessage::CreatePartitions {
            topics: vec![("orders".into(), 6), ("b".into(), 1)],
            validate_only: false,
        },
        InternalMessage::AlterTopicConfig {
            topic: "orders".into(),
            configs: vec![
                ("retention.ms".into(), "1000".into()),
                ("segment.bytes".into(), String::new()),
            ],
            validate_only: true,
        },
        InternalMessage::AlterTopicConfig {
            topic: "orders".into(),
            configs: Vec::new(),
            validate_only: false,
        },
        InternalMessage::AdminResponse {
            results: vec![
                TopicResult {
                    name: "orders".into(),
                    error_code: 0,
                    error_message: None,
                },
                TopicResult {
                    name: "x".into(),
                    error_code: 36,
                    error_message: Some("Topic 'x' already exists.".into()),
                },
                TopicResult {
                    name: "y".into(),
                    error_code: 42,
                    error_message: Some(String::new()),
                },
            ],
        },
        InternalMessage::AlterPartition {
            broker_id: 2,
            broker_epoch: 77,
            topic_id: [0xab; 16],
            partition: 5,
            leader_epoch: 3,
            partition_epoch: 9,
            isr: vec![2, 1, 3],
        },
        InternalMessage::AlterPartitionResponse {
            error_code: 0,
            leader: 2,
            isr: vec![2, 1],
            leader_epoch: 3,
            partition_epoch: 10,
        },
        InternalMessage::AlterPartitionResponse {
            error_code: NOT_CONTROLLER,
            leader: -1,
            isr: Vec::new(),
            leader_epoch: -1,
            partition_epoch: -1,
        },
        InternalMessage::AllocateProducerIds {
            broker_id: 2,
            broker_epoch: 77,
        },
        InternalMessage::AllocateProducerIdsResponse {
            error_code: 0,
            start: 1000,
            len: 1000,
        },
        InternalMessage::ElectLeaders {
            election_type: 0,
            partitions: Some(vec![("t".into(), 0), ("u".into(), 3)]),
        },
        // "No partitions" and "every partition" must not decode as each other.
        InternalMessage::ElectLeaders {
            election_type: 1,
            partitions: Some(Vec::new()),
        },
        InternalMessage::ElectLeaders {
            election_type: 0,
            partitions: None,
        },
        InternalMessage::ElectLeadersResponse {
            error_code: 0,
            results: vec![
                PartitionResult {
                    topic: "t".into(),
                    partition: 0,
                    error_code: 0,
                    error_message: None,
                },
                PartitionResult {
                    topic: "u".into(),
                    partition: 3,
                    error_code: 84,
                    error_message: Some("already led by its preferred replica".into()),
                },
            ],
        },
        // A cancel and an empty target must not decode as each other.
        InternalMessage::AlterReassignments {
            partitions: vec![
                ("t".into(), 0, Some(vec![4, 2, 3])),
                ("t".into(), 1, None),
                ("u".into(), 2, Some(Vec::new())),
            ],
        },
        InternalMessage::AlterReassignmentsResponse {
            error_code: 0,
            results: vec![PartitionResult {
                topic: "t".into(),
                partition: 1,
                error_code: 85,
                error_message: None,
            }],
        },
        InternalMessage::AlterScramCredentials {
            upserts: vec![ScramUpsert {
                user: "alice".into(),
                mechanism: 2,
                iterations: 4096,
                salt: vec![1, 2, 3],
                stored_key: vec![4; 64],
                server_key: vec![5; 64],
            }],
            deletions: vec![("bob".into(), 1)],
            only_if_absent: true,
        },
        InternalMessage::AlterScramCredentials {
            upserts: Vec::new(),
            deletions: Vec::new(),
            only_if_absent: false,
        },
        InternalMessage::AlterAcls {
            creations: vec![super::AclEntry {
                resource_type: 2,
                resource_name: "logs-".into(),
                pattern_type: 4,
                principal: "User:alice".into(),
                host: "*".into(),
                operation: 4,
                permission: 3,
            }],
            deletions: Vec::new(),
        },
        InternalMessage::AlterClientQuotas {
            entries: vec![
                super::ClientQuotaEntry {
                    entity: vec![
                        ("user".into(), Some("alice".into())),
                        ("client-id".into(), None),
                    ],
                    ops: vec![
                        super::QuotaOp {
                            key: "producer_byte_rate".into(),
                            value: Some(1024.0),
                        },
                        super::QuotaOp {
                            key: "consumer_byte_rate".into(),
                            value: None,
                        },
                    ],
                },
                super::ClientQuotaEntry {
                    entity: Vec::new(),
                    ops: Vec::new(),
                },
            ],
            validate_only: true,
        },
    ]
}

/// A frame around one hand-built message table, for bytes `encode_internal` never writes.
fn frame_of(
    b: &mut FlatBufferBuilder<'_>,
    message_type: fb::Message,
    message: flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset>,
) -> Vec<u8> {
    let root = fb::Frame::create(
        b,
        &fb::FrameArgs {
            correlation_id: 1,
            from_node: 1,
            message_type,
            message: Some(message),
        },
    );
    fb::finish_frame_buffer(b, root);
    b.finished_data().to_vec()
}

#[test]
fn every_message_round_trips_with_its_size_prefix() {
    for (i, message) in every_message().into_iter().enumerate() {
        let frame = InternalFrame {
            correlation_id: i as u64 + 1,
            from_node: 2,
            message,
        };
        let wire = encode_internal(&frame);
        let size = u32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
        assert_eq!(size, wire.len() - 4);
        assert_eq!(decode_internal(&wire[4..]), Ok(frame));
    }
}

#[test]
fn error_code_is_the_top_level_code_of_a_response() {
    for message in every_message() {
        let code = message.error_code();
        match &message {
            InternalMessage::FetchMetadataResponse { error_code, .. }
            | InternalMessage::AlterPartitionResponse { error_code, .. } => {
                assert_eq!(code, Some(*error_code));
            }
            _ if message.is_request() => assert_eq!(code, None),
            _ => {}
        }
    }
    let admin = InternalMessage::AdminResponse {
        results: vec![TopicResult {
            name: "t".into(),
            error_code: NOT_CONTROLLER,
            error_message: None,
        }],
    };
    assert_eq!(admin.error_code(), None);
    assert!(!admin.is_request());
    assert!(!InternalMessage::Raft(Bytes::new()).is_request());
    assert_eq!(InternalMessage::Raft(Bytes::new()).error_code(), None);
}

#[test]
fn requests_and_responses_are_told_apart() {
    let requests = every_message().iter().filter(|m| m.is_request()).count();
    let responses = every_message()
        .iter()
        .filter(|m| !m.is_request() && !matches!(m, InternalMessage::Raft(_)))
        .count();
    assert_eq!(requests, 21);
    assert_eq!(responses, 10);
    for m in every_message().iter().filter(|m| m.is_request()) {
        assert_eq!(m.error_code(), None, "{m:?}");
    }
}

#[test]
fn other_bytes_are_refused() {
    assert_eq!(decode_internal(b""), Err(InternalDecodeError::NotAFrame));
    assert_eq!(
        decode_internal(b"\0\0\0\0\0\0\0\0"),
        Err(InternalDecodeError::NotAFrame)
    );
    // A Kafka request is not an internal frame.
    assert_eq!(
        decode_internal(&[0, 18, 0, 3, 0, 0, 0, 1, 0, 0]),
        Err(InternalDecodeError::NotAFrame)
    );
}

#[test]
fn a_short_incarnation_is_an_error() {
    let mut b = FlatBufferBuilder::new();
    let incarnation = b.create_vector(&[1u8, 2, 3]);
    let m = fb::RegisterBrokerRequest::create(
        &mut b,
        &fb::RegisterBrokerRequestArgs {
            broker_id: 1,
            incarnation: Some(incarnation),
            endpoints: None,
            rack: None,
        },
    );
    let root = fb::Frame::create(
        &mut b,
        &fb::FrameArgs {
            correlation_id: 1,
            from_node: 1,
            message_type: fb::Message::RegisterBrokerRequest,
            message: Some(m.as_union_value()),
        },
    );
    fb::finish_frame_buffer(&mut b, root);
    assert_eq!(
        decode_internal(b.finished_data()),
        Err(InternalDecodeError::BadIncarnation(3))
    );
}

#[test]
fn a_topic_id_of_the_wrong_length_is_an_error() {
    for len in [0usize, 15, 17] {
        let mut b = FlatBufferBuilder::new();
        let topic_id = b.create_vector(&vec![1u8; len]);
        let m = fb::AlterPartitionRequest::create(
            &mut b,
            &fb::AlterPartitionRequestArgs {
                topic_id: Some(topic_id),
                ..Default::default()
            },
        );
        let body = frame_of(
            &mut b,
            fb::Message::AlterPartitionRequest,
            m.as_union_value(),
        );
        assert_eq!(
            decode_internal(&body),
            Err(InternalDecodeError::BadTopicId(len))
        );
    }
    // A missing id is as wrong as a short one.
    let mut b = FlatBufferBuilder::new();
    let m = fb::AlterPartitionRequest::create(&mut b, &Default::default());
    let body = frame_of(
        &mut b,
        fb::Message::AlterPartitionRequest,
        m.as_union_value(),
    );
    assert_eq!(
        decode_internal(&body),
        Err(InternalDecodeError::BadTopicId(0))
    );
}

#[test]
fn absent_fields_decode_to_their_defaults() {
    // A newer or terser encoder may leave out empty vectors and strings.
    let mut b = FlatBufferBuilder::new();
    let t = fb::NewTopic::create(&mut b, &Default::default());
    let topics = b.create_vector(&[t]);
    let m = fb::CreateTopicsRequest::create(
        &mut b,
        &fb::CreateTopicsRequestArgs {
            topics: Some(topics),
            validate_only: false,
        },
    );
    let body = frame_of(&mut b, fb::Message::CreateTopicsRequest, m.as_union_value());
    let expected = InternalMessage::CreateTopics {
        topics: vec![NewTopicSpec {
            name: String::new(),
            num_partitions: 0,
            replication_factor: 0,
            configs: Vec::new(),
            assignments: Vec::new(),
        }],
        validate_only: false,
    };
    assert_eq!(decode_internal(&body).map(|f| f.message), Ok(expected));

    let mut b = FlatBufferBuilder::new();
    let m = fb::FetchMetadataResponse::create(&mut b, &Default::default());
    let body = frame_of(
        &mut b,
        fb::Message::FetchMetadataResponse,
        m.as_union_value(),
    );
    let expected = InternalMessage::FetchMetadataResponse {
        error_code: 0,
        leader_id: -1,
        offset: -1,
        image: Bytes::new(),
    };
    assert_eq!(decode_internal(&body).map(|f| f.message), Ok(expected));
}

#[test]
fn truncated_frames_are_refused() {
    // A frame cut anywhere is an error, never a panic and never a different message. (A cut
    // that only drops trailing alignment padding still reads as the same frame.)
    for message in every_message() {
        let frame = InternalFrame {
            correlation_id: 5,
            from_node: 1,
            message,
        };
        let wire = encode_internal(&frame);
        let body = &wire[4..];
        let mut refused = 0;
        for cut in 0..body.len() {
            match decode_internal(&body[..cut]) {
                Ok(decoded) => assert_eq!(decoded, frame, "cut at {cut}"),
                Err(_) => refused += 1,
            }
        }
        // Only padding (under 8 bytes) may go unnoticed.
        assert!(refused + 8 > body.len(), "{frame:?}");
    }
}

proptest! {
    /// Garbage, and every truncation or byte flip of a real frame, is an error or a frame,
    /// never a panic.
    #[test]
    fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_internal(&bytes);
    }

    #[test]
    fn damaged_frames_never_panic(
        index in 0usize..64, cut in 0usize..600, at in 0usize..600, bit in 0u8..8,
    ) {
        let mut messages = every_message();
        let message = messages.swap_remove(index % messages.len());
        let wire = encode_internal(&InternalFrame { correlation_id: 9, from_node: 1, message });
        let body = &wire[4..];
        let _ = decode_internal(&body[..cut.min(body.len())]);
        let mut flipped = body.to_vec();
        let at = at % flipped.len();
        flipped[at] ^= 1 << bit;
        let _ = decode_internal(&flipped);
    }
}
