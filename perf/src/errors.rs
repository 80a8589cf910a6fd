//! Kafka error codes as names, for messages and reports.

use kafka_protocol::error::ResponseError;

/// "NOT_LEADER_OR_FOLLOWER"-style name of a Kafka error code (the Debug name if unknown).
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::Unknown(_)) | None => format!("error code {code}"),
        Some(e) => format!("{e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(error_name(6), "NotLeaderOrFollower");
        assert_eq!(error_name(-42), "error code -42");
    }
}
