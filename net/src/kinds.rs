//! Which API a `RequestKind` / `ResponseKind` value belongs to; pure functions.
//!
//! `kafka-protocol` names every enum variant after its `ApiKey`, but offers no mapping; the
//! list below is the one place that spells it out. Both enums are `#[non_exhaustive]`, so a
//! variant added upstream maps to `None` until it is listed here.

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

macro_rules! api_key_of {
    ($enum:ident, $value:expr; $($name:ident)*) => {
        match $value {
            $($enum::$name(_) => Some(ApiKey::$name),)*
            _ => None,
        }
    };
}

macro_rules! every_api {
    ($enum:ident, $value:expr) => {
        api_key_of!($enum, $value;
            Produce Fetch ListOffsets Metadata OffsetCommit OffsetFetch FindCoordinator JoinGroup
            Heartbeat LeaveGroup SyncGroup DescribeGroups ListGroups SaslHandshake ApiVersions
            CreateTopics DeleteTopics DeleteRecords InitProducerId OffsetForLeaderEpoch
            AddPartitionsToTxn AddOffsetsToTxn EndTxn WriteTxnMarkers TxnOffsetCommit DescribeAcls
            CreateAcls DeleteAcls DescribeConfigs AlterConfigs AlterReplicaLogDirs DescribeLogDirs
            SaslAuthenticate CreatePartitions CreateDelegationToken RenewDelegationToken
            ExpireDelegationToken DescribeDelegationToken DeleteGroups ElectLeaders
            IncrementalAlterConfigs AlterPartitionReassignments ListPartitionReassignments
            OffsetDelete DescribeClientQuotas AlterClientQuotas DescribeUserScramCredentials
            AlterUserScramCredentials Vote BeginQuorumEpoch EndQuorumEpoch DescribeQuorum
            AlterPartition UpdateFeatures Envelope FetchSnapshot DescribeCluster DescribeProducers
            BrokerRegistration BrokerHeartbeat UnregisterBroker DescribeTransactions
            ListTransactions AllocateProducerIds ConsumerGroupHeartbeat ConsumerGroupDescribe
            ControllerRegistration GetTelemetrySubscriptions PushTelemetry AssignReplicasToDirs
            ListConfigResources DescribeTopicPartitions ShareGroupHeartbeat ShareGroupDescribe
            ShareFetch ShareAcknowledge AddRaftVoter RemoveRaftVoter UpdateRaftVoter
            InitializeShareGroupState ReadShareGroupState WriteShareGroupState
            DeleteShareGroupState ReadShareGroupStateSummary DescribeShareGroupOffsets
            AlterShareGroupOffsets DeleteShareGroupOffsets)
    };
}

/// The API a request body belongs to.
pub fn request_api_key(body: &RequestKind) -> Option<ApiKey> {
    every_api!(RequestKind, body)
}

/// The API a response body belongs to.
pub fn response_api_key(body: &ResponseKind) -> Option<ApiKey> {
    every_api!(ResponseKind, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testgen;

    #[test]
    fn every_api_key_maps_back_to_itself() {
        let mut responses = 0;
        for key in ApiKey::iter() {
            if let Some(response) = testgen::some_response(key) {
                assert_eq!(response_api_key(&response), Some(key), "{key:?}");
                responses += 1;
            }
        }
        assert!(responses > 70, "{responses}");
        for (key, version) in testgen::decodable_pairs() {
            let frame = testgen::request_frame(key, version, 7);
            let request = crate::decode_request(frame.into()).unwrap();
            assert_eq!(request_api_key(&request.body), Some(key), "{key:?}");
        }
    }
}
