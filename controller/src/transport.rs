//! What the controller needs from a transport (controller shard): a way to send raft-rs
//! messages to other voters, and the wire encoding of a message (raft-rs's protobuf). Incoming
//! messages go to the target node's `Mailbox`. `rpc::PeerTransport` is the TCP one; the node
//! tests use an in-memory one.

use protobuf::Message as _;
use raft::eraftpb::Message;

use crate::error::{ControllerError, Result};
use crate::limits::RAFT_MESSAGE_BYTES_MAX;

/// Outgoing Raft messages of one node.
pub trait RaftTransport {
    /// Queues `msg` for the voter `msg.to`. Must not block, and may drop the message (a full
    /// queue, a peer that is down): Raft retransmits whatever is lost. A peer found unreachable
    /// should be reported with `Mailbox::report_unreachable`, and the fate of every
    /// `MsgSnapshot` with `Mailbox::report_snapshot` (raft-rs waits for it).
    fn send(&self, msg: Message);
}

/// A message as it travels between voters: raft-rs's own protobuf encoding.
pub fn encode_message(msg: &Message) -> Result<Vec<u8>> {
    let bytes = msg
        .write_to_bytes()
        .map_err(|e| ControllerError::raft("encode message")(e.into()))?;
    if bytes.len() > RAFT_MESSAGE_BYTES_MAX {
        return Err(ControllerError::TooLarge {
            what: "raft message",
            size_bytes: bytes.len(),
            max_bytes: RAFT_MESSAGE_BYTES_MAX,
        });
    }
    Ok(bytes)
}

/// Decodes a message from another voter; oversized or malformed input is an error.
pub fn decode_message(bytes: &[u8]) -> Result<Message> {
    if bytes.len() > RAFT_MESSAGE_BYTES_MAX {
        return Err(ControllerError::TooLarge {
            what: "raft message",
            size_bytes: bytes.len(),
            max_bytes: RAFT_MESSAGE_BYTES_MAX,
        });
    }
    Message::parse_from_bytes(bytes).map_err(|e| ControllerError::raft("decode message")(e.into()))
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::{Entry, MessageType};

    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let mut m = Message {
            msg_type: MessageType::MsgAppend,
            to: 2,
            from: 1,
            term: 5,
            index: 9,
            log_term: 4,
            commit: 8,
            ..Message::default()
        };
        m.mut_entries().push(Entry {
            index: 10,
            term: 5,
            data: vec![1, 2, 3].into(),
            ..Entry::default()
        });
        let bytes = encode_message(&m).unwrap();
        assert_eq!(decode_message(&bytes).unwrap(), m);
        assert!(decode_message(&[0xFF, 0xFF, 0xFF]).is_err());
        for cut in 1..bytes.len() {
            // A cut frame is refused or decodes to a different message, never panics.
            if let Ok(d) = decode_message(&bytes[..cut]) {
                assert_ne!(d, m);
            }
        }
    }
}
