use super::client_quotas::quota_changes;
use super::requests::scram_changes;
use super::*;
use crate::image::{PartitionState, TopicState};
use crate::test_util::{run, temp_dir};

/// One voter alone: nothing to send.
struct Alone;
impl RaftTransport for Alone {
    fn send(&self, _msg: raft::eraftpb::Message) {}
}

/// A one-voter service at `path`, once it is the active controller.
async fn active_alone(
    path: std::path::PathBuf,
    session_timeout: Duration,
) -> Rc<ControllerService> {
    let settings = ServiceSettings {
        session_timeout,
        auto_leader_rebalance: false,
        leader_imbalance_check_interval: Duration::from_secs(300),
    };
    let config = ControllerConfig::single_node(crate::NodeId(1), path);
    let s = ControllerService::start(config, Rc::new(Alone), settings)
        .await
        .unwrap();
    while !s.is_active() {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    s
}

fn register(id: i32, incarnation: u8) -> InternalMessage {
    InternalMessage::RegisterBroker {
        broker_id: id,
        incarnation: [incarnation; 16],
        endpoints: vec![skein_net::internal::Endpoint {
            listener: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9000 + u16::try_from(id).unwrap(),
        }],
        rack: None,
    }
}

fn heartbeat(id: i32, epoch: i64) -> InternalMessage {
    InternalMessage::Heartbeat {
        broker_id: id,
        broker_epoch: epoch,
        metadata_offset: i64::MAX,
        want_fence: false,
        want_shutdown: false,
    }
}

#[test]
fn brokers_register_get_unfenced_and_are_fenced_when_silent() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let s = active_alone(path, Duration::from_millis(300)).await;
        let mut epochs = Vec::new();
        for id in [1, 2] {
            match s.handle(id, register(id, 1)).await {
                InternalMessage::RegisterBrokerResponse {
                    error_code: 0,
                    broker_epoch,
                } => epochs.push(broker_epoch),
                other => panic!("registration: {other:?}"),
            }
        }
        for (id, epoch) in [(1, epochs[0]), (2, epochs[1])] {
            match s.handle(id, heartbeat(id, epoch)).await {
                InternalMessage::HeartbeatResponse { error_code, .. } => {
                    assert_eq!(error_code, 0)
                }
                other => panic!("heartbeat: {other:?}"),
            }
        }
        let image = s.node().image();
        assert!(image.brokers.values().all(|b| !b.fenced));
        // Another process claiming live, unfenced id 2 is refused.
        match s.handle(2, register(2, 9)).await {
            InternalMessage::RegisterBrokerResponse { error_code, .. } => {
                assert_eq!(error_code, codes::DUPLICATE_BROKER_REGISTRATION)
            }
            other => panic!("duplicate: {other:?}"),
        }

        // The active controller names the cluster on its first check.
        let named = Instant::now();
        while s.node().image().cluster_id.is_empty() {
            assert!(
                named.elapsed() < Duration::from_secs(2),
                "cluster never named"
            );
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(s.node().image().cluster_id.len(), 22);
        // A stale epoch is refused.
        match s.handle(1, heartbeat(1, epochs[0] - 1)).await {
            InternalMessage::HeartbeatResponse { error_code, .. } => {
                assert_eq!(error_code, codes::STALE_BROKER_EPOCH)
            }
            other => panic!("stale heartbeat: {other:?}"),
        }
        let create = InternalMessage::CreateTopics {
            topics: vec![NewTopicSpec {
                name: "t".into(),
                num_partitions: 4,
                replication_factor: 2,
                configs: Vec::new(),
                assignments: Vec::new(),
            }],
            validate_only: false,
        };
        match s.handle(1, create.clone()).await {
            InternalMessage::AdminResponse { results } => assert_eq!(results[0].error_code, 0),
            other => panic!("create: {other:?}"),
        }
        match s.handle(1, create).await {
            InternalMessage::AdminResponse { results } => {
                assert_eq!(results[0].error_code, codes::TOPIC_ALREADY_EXISTS)
            }
            other => panic!("create again: {other:?}"),
        }
        // Broker 1 keeps heartbeating, broker 2 goes silent: it is fenced and leads nothing.
        let start = Instant::now();
        loop {
            let _ = s.handle(1, heartbeat(1, epochs[0])).await;
            let image = s.node().image();
            if image.brokers.get(&2).is_some_and(|b| b.fenced) {
                let t = image.topic("t").unwrap();
                assert!(t
                    .partitions
                    .iter()
                    .all(|p| p.leader == 1 && p.isr == vec![1]));
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "broker 2 never fenced"
            );
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        // Metadata fetches long-poll: an up-to-date caller waits, a behind one gets the image.
        match s
            .handle(
                1,
                InternalMessage::FetchMetadata {
                    broker_id: 1,
                    from_offset: -1,
                    max_wait_ms: 1000,
                },
            )
            .await
        {
            InternalMessage::FetchMetadataResponse { offset, image, .. } => {
                assert!(offset > 0);
                let decoded = codec::decode_image(&image).unwrap();
                assert_eq!(decoded, *s.node().image());
            }
            other => panic!("fetch: {other:?}"),
        }
        s.shutdown().await.unwrap();
    });
}

fn upsert(user: &str, mechanism: i8) -> skein_net::internal::ScramUpsert {
    skein_net::internal::ScramUpsert {
        user: user.into(),
        mechanism,
        iterations: 4096,
        salt: vec![1],
        stored_key: vec![2],
        server_key: vec![3],
    }
}

#[test]
fn scram_changes_per_user() {
    let mut image = ClusterImage::default();
    let ups = [upsert("a", 1), upsert("a", 2), upsert("b", 2)];
    let records = scram_changes(&image, "a", &ups, &[], false).unwrap();
    assert_eq!(records.len(), 2);
    for r in &records {
        image.apply(r);
    }
    // Bootstrap: a user with any credential is left alone.
    image.apply(&MetadataRecord::RemoveUserScramCredential {
        user: "a".into(),
        mechanism: 2,
    });
    assert!(scram_changes(&image, "a", &ups, &[], true)
        .unwrap()
        .is_empty());
    assert_eq!(
        scram_changes(&image, "b", &ups, &[], true).unwrap().len(),
        1
    );
    // Removing a credential that does not exist: RESOURCE_NOT_FOUND.
    let missing = [("a".to_string(), 2)];
    let e = scram_changes(&image, "a", &[], &missing, false).unwrap_err();
    assert_eq!(e.0, codes::RESOURCE_NOT_FOUND);
    let present = [("a".to_string(), 1)];
    let records = scram_changes(&image, "a", &[], &present, false).unwrap();
    image.apply(&records[0]);
    assert!(image.scram_credentials.is_empty());
}

#[test]
fn only_a_new_epoch_with_a_leader_counts_as_an_election() {
    let id = Uuid::from_u128(1);
    let mut image = ClusterImage::default();
    image.topics.insert(
        id,
        TopicState {
            name: "t".into(),
            id,
            partitions: vec![PartitionState {
                replicas: vec![1, 2],
                isr: vec![1, 2],
                leader: 1,
                leader_epoch: 4,
                ..PartitionState::default()
            }],
            configs: BTreeMap::new(),
        },
    );
    let change = |leader, leader_epoch| MetadataRecord::PartitionChange {
        topic_id: id,
        partition: 0,
        leader,
        isr: vec![1, 2],
        leader_epoch,
        partition_epoch: 9,
    };
    assert_eq!(leader_changes(&image, &[change(2, 5)]), 1);
    assert_eq!(leader_changes(&image, &[change(1, 4)]), 0, "an ISR change");
    assert_eq!(leader_changes(&image, &[change(-1, 5)]), 0, "offline");
    assert_eq!(
        leader_changes(&image, &[MetadataRecord::RemoveTopic { id }]),
        0
    );
}

fn quota_entry(
    entity: &[(&str, Option<&str>)],
    ops: &[(&str, Option<f64>)],
) -> skein_net::internal::ClientQuotaEntry {
    skein_net::internal::ClientQuotaEntry {
        entity: entity
            .iter()
            .map(|(t, n)| ((*t).to_string(), n.map(str::to_string)))
            .collect(),
        ops: ops
            .iter()
            .map(|(key, value)| skein_net::internal::QuotaOp {
                key: (*key).to_string(),
                value: *value,
            })
            .collect(),
    }
}

#[test]
fn quota_changes_check_each_entry_and_record_only_changes() {
    use crate::client_quota::{EntityName, QuotaEntity, QuotaValue};
    let mut image = ClusterImage::default();
    let app = [("client-id", Some("app"))];
    let entries = [
        quota_entry(&app, &[("producer_byte_rate", Some(1024.0))]),
        quota_entry(
            &[("user", None), ("client-id", None)],
            &[
                ("consumer_byte_rate", Some(10.0)),
                ("producer_byte_rate", None),
            ],
        ),
        // Refused: Kafka's errors, and the others still apply.
        quota_entry(
            &[("group", Some("g"))],
            &[("producer_byte_rate", Some(1.0))],
        ),
        quota_entry(
            &[("user", Some("u"))],
            &[("producer_byte_rate", Some(-1.0))],
        ),
        quota_entry(
            &[("user", Some("u"))],
            &[("request_percentage", Some(50.0))],
        ),
        quota_entry(&app, &[("consumer_byte_rate", Some(5.0))]),
        quota_entry(
            &[("user", Some("v"))],
            &[
                ("producer_byte_rate", Some(1.0)),
                ("producer_byte_rate", Some(2.0)),
            ],
        ),
    ];
    let (records, outcomes) = quota_changes(&image, &entries);
    let ok: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();
    assert_eq!(ok, [true, true, false, false, false, false, false]);
    assert!(outcomes[5]
        .as_ref()
        .unwrap_err()
        .contains("duplicate entity"));
    assert!(outcomes[6]
        .as_ref()
        .unwrap_err()
        .contains("Duplicate quota key"));
    // Removing a key the default entity does not have needs no record.
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        image.apply(r);
    }
    let app_entity = QuotaEntity {
        user: None,
        client_id: Some(EntityName::Named("app".into())),
    };
    assert_eq!(
        image.client_quotas[&app_entity]["producer_byte_rate"],
        QuotaValue(1024.0)
    );
    // The same value again: nothing to record. A removal of a key it has: one record.
    let again = [quota_entry(&app, &[("producer_byte_rate", Some(1024.0))])];
    assert!(quota_changes(&image, &again).0.is_empty());
    let remove = [quota_entry(&app, &[("producer_byte_rate", None)])];
    let (records, _) = quota_changes(&image, &remove);
    assert_eq!(records.len(), 1);
    image.apply(&records[0]);
    assert!(!image.client_quotas.contains_key(&app_entity));
}

#[test]
fn client_quotas_commit_through_the_active_controller() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let service = active_alone(path, Duration::from_secs(10)).await;
        let alter = |validate_only| InternalMessage::AlterClientQuotas {
            entries: vec![
                quota_entry(
                    &[("user", Some("alice"))],
                    &[("producer_byte_rate", Some(2048.0))],
                ),
                quota_entry(
                    &[("user", Some("bob"))],
                    &[("producer_byte_rate", Some(0.0))],
                ),
            ],
            validate_only,
        };
        let codes_of = |m: InternalMessage| match m {
            InternalMessage::AdminResponse { results } => {
                results.iter().map(|r| r.error_code).collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        let answered = codes_of(service.handle(1, alter(true)).await);
        assert_eq!(answered, [codes::NONE, codes::INVALID_REQUEST]);
        assert!(
            service.node().image().client_quotas.is_empty(),
            "validate_only"
        );
        let answered = codes_of(service.handle(1, alter(false)).await);
        assert_eq!(answered, [codes::NONE, codes::INVALID_REQUEST]);
        assert_eq!(service.node().image().client_quotas.len(), 1);
        service.shutdown().await.unwrap();
    });
}
