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
            max_bytes: 1 << 20,
        },
        InternalMessage::FetchMetadataResponse {
            error_code: 0,
            leader_id: 1,
            high_watermark: 99,
            records: Bytes::from(vec![1u8; 5000]),
        },
    ]
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

proptest! {
    /// Garbage, and every truncation or byte flip of a real frame, is an error or a frame,
    /// never a panic.
    #[test]
    fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_internal(&bytes);
    }

    #[test]
    fn damaged_frames_never_panic(index in 0usize..8, cut in 0usize..400, at in 0usize..400, bit in 0u8..8) {
        let message = every_message().swap_remove(index);
        let wire = encode_internal(&InternalFrame { correlation_id: 9, from_node: 1, message });
        let body = &wire[4..];
        let _ = decode_internal(&body[..cut.min(body.len())]);
        let mut flipped = body.to_vec();
        let at = at % flipped.len();
        flipped[at] ^= 1 << bit;
        let _ = decode_internal(&flipped);
    }
}
