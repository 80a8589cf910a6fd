//! The internal requests a controller voter answers: registration, heartbeats and metadata
//! fetches from brokers, the admin requests they forward (topics, configs, elections,
//! reassignments, SCRAM credentials, ACLs, client quotas: `client_quotas`), ISR changes from
//! partition leaders and producer id blocks. Each decision goes through `ControllerService::decide`.

use super::*;

impl ControllerService {
    /// Answers one internal request. Everything but metadata fetches needs the active
    /// controller; elsewhere they get NOT_CONTROLLER (the caller tries another voter).
    pub async fn handle(&self, from_node: i32, request: InternalMessage) -> InternalMessage {
        if let InternalMessage::FetchMetadata {
            from_offset,
            max_wait_ms,
            ..
        } = request
        {
            return self.fetch_metadata(from_offset, max_wait_ms).await;
        }
        let not_controller = !self.is_active();
        match request {
            InternalMessage::RegisterBroker {
                broker_id,
                incarnation,
                endpoints,
                rack,
            } => {
                let (error_code, broker_epoch) = if not_controller {
                    (codes::NOT_CONTROLLER, -1)
                } else {
                    self.register(broker_id, incarnation, endpoints, rack).await
                };
                InternalMessage::RegisterBrokerResponse {
                    error_code,
                    broker_epoch,
                }
            }
            InternalMessage::Heartbeat {
                broker_id,
                broker_epoch,
                metadata_offset,
                want_fence,
                want_shutdown,
            } => {
                if not_controller {
                    return InternalMessage::HeartbeatResponse {
                        error_code: codes::NOT_CONTROLLER,
                        is_caught_up: false,
                        is_fenced: true,
                        should_shutdown: false,
                    };
                }
                self.heartbeat(
                    broker_id,
                    broker_epoch,
                    metadata_offset,
                    want_fence,
                    want_shutdown,
                )
                .await
            }
            InternalMessage::CreateTopics {
                topics,
                validate_only,
            } => {
                let names = topics.iter().map(|t| t.name.clone()).collect();
                if not_controller {
                    return all_failed(names, codes::NOT_CONTROLLER);
                }
                let mut results = Vec::with_capacity(topics.len());
                for t in topics {
                    let name = t.name.clone();
                    results.push(result(name, self.create_topic(t, validate_only).await));
                }
                InternalMessage::AdminResponse { results }
            }
            InternalMessage::AlterAcls {
                creations,
                deletions,
            } => {
                let names: Vec<String> = creations
                    .iter()
                    .chain(&deletions)
                    .map(|e| e.resource_name.clone())
                    .collect();
                if not_controller {
                    return all_failed(names, codes::NOT_CONTROLLER);
                }
                let checked: Vec<_> = creations
                    .iter()
                    .map(|e| (true, acl_binding(e)))
                    .chain(deletions.iter().map(|e| (false, acl_binding(e))))
                    .collect();
                // One proposal for every valid binding, so a request applies whole or not at all.
                let answer = self.decide(|image| Ok(acl_changes(image, &checked))).await;
                let results = names
                    .into_iter()
                    .zip(&checked)
                    .map(|(name, (_, binding))| match binding {
                        Ok(_) => result(name, answer.clone()),
                        Err(message) => {
                            result(name, Err((codes::INVALID_REQUEST, message.clone())))
                        }
                    })
                    .collect();
                if answer.is_ok() {
                    tracing::info!(
                        created = creations.len(),
                        deleted = deletions.len(),
                        "ACLs changed"
                    );
                }
                InternalMessage::AdminResponse { results }
            }
            InternalMessage::DeleteTopics { names } => {
                if not_controller {
                    return all_failed(names, codes::NOT_CONTROLLER);
                }
                let mut results = Vec::with_capacity(names.len());
                for name in names {
                    let answer = self
                        .decide(|image| decide::delete_topic(image, &name).map_err(decide_error))
                        .await;
                    results.push(result(name, answer));
                }
                InternalMessage::AdminResponse { results }
            }
            InternalMessage::CreatePartitions {
                topics,
                validate_only,
            } => {
                let names = topics.iter().map(|t| t.0.clone()).collect();
                if not_controller {
                    return all_failed(names, codes::NOT_CONTROLLER);
                }
                let mut results = Vec::with_capacity(topics.len());
                for (name, total) in topics {
                    let answer = self
                        .decide(|image| {
                            let records = decide::create_partitions(image, &name, total)
                                .map_err(decide_error)?;
                            Ok(if validate_only { Vec::new() } else { records })
                        })
                        .await;
                    results.push(result(name, answer));
                }
                InternalMessage::AdminResponse { results }
            }
            InternalMessage::AlterTopicConfig {
                topic,
                configs,
                validate_only,
            } => {
                if not_controller {
                    return all_failed(vec![topic], codes::NOT_CONTROLLER);
                }
                let answer = self
                    .decide(|image| {
                        let records = config_changes(image, &topic, configs)?;
                        Ok(if validate_only { Vec::new() } else { records })
                    })
                    .await;
                InternalMessage::AdminResponse {
                    results: vec![result(topic, answer)],
                }
            }
            InternalMessage::AlterPartition {
                broker_id,
                broker_epoch,
                topic_id,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                if not_controller {
                    return alter_partition_error(codes::NOT_CONTROLLER);
                }
                let topic_id = Uuid::from_bytes(topic_id);
                let answer = self
                    .decide(|image| {
                        check_broker_epoch(image, broker_id, broker_epoch)?;
                        let p = image.partition(topic_id, partition).ok_or((
                            codes::UNKNOWN_TOPIC_OR_PARTITION,
                            format!("no partition {topic_id}/{partition}"),
                        ))?;
                        if p.leader != broker_id {
                            return Err((
                                codes::NOT_LEADER_OR_FOLLOWER,
                                format!("broker {broker_id} does not lead the partition"),
                            ));
                        }
                        if p.leader_epoch != leader_epoch {
                            return Err((
                                codes::FENCED_LEADER_EPOCH,
                                format!("leader epoch {leader_epoch} is not {}", p.leader_epoch),
                            ));
                        }
                        let record = decide::alter_isr(
                            image,
                            topic_id,
                            partition,
                            partition_epoch,
                            isr.clone(),
                        )
                        .map_err(decide_error)?;
                        Ok(vec![record])
                    })
                    .await;
                match answer {
                    Ok(()) => {
                        let image = self.node.image();
                        match image.partition(topic_id, partition) {
                            Some(p) => InternalMessage::AlterPartitionResponse {
                                error_code: codes::NONE,
                                leader: p.leader,
                                isr: p.isr.clone(),
                                leader_epoch: p.leader_epoch,
                                partition_epoch: p.partition_epoch,
                            },
                            None => alter_partition_error(codes::UNKNOWN_TOPIC_OR_PARTITION),
                        }
                    }
                    Err((code, message)) => {
                        tracing::debug!(broker_id, %topic_id, partition, code, %message, "AlterPartition refused");
                        alter_partition_error(code)
                    }
                }
            }
            InternalMessage::AllocateProducerIds {
                broker_id,
                broker_epoch,
            } => {
                if not_controller {
                    return producer_ids_error(codes::NOT_CONTROLLER);
                }
                let start = Cell::new(0i64);
                let answer = self
                    .decide(|image| {
                        check_broker_epoch(image, broker_id, broker_epoch)?;
                        let first = image.next_producer_id.max(0);
                        start.set(first);
                        Ok(vec![MetadataRecord::ProducerIds {
                            broker: broker_id,
                            next_block_start: first + i64::from(PRODUCER_ID_BLOCK),
                        }])
                    })
                    .await;
                match answer {
                    Ok(()) => InternalMessage::AllocateProducerIdsResponse {
                        error_code: codes::NONE,
                        start: start.get(),
                        len: PRODUCER_ID_BLOCK,
                    },
                    Err((code, _)) => producer_ids_error(code),
                }
            }
            InternalMessage::ElectLeaders {
                election_type,
                partitions,
            } => {
                if not_controller {
                    return elect_leaders_error(codes::NOT_CONTROLLER);
                }
                let kind = match election_type {
                    0 => decide::ElectionKind::Preferred,
                    1 => decide::ElectionKind::Unclean,
                    _ => return elect_leaders_error(codes::INVALID_REQUEST),
                };
                let outcomes = RefCell::new(Vec::new());
                let answer = self
                    .decide(|image| {
                        let e = decide::elect_leaders(image, kind, partitions.as_deref());
                        *outcomes.borrow_mut() = e.outcomes;
                        Ok(e.records)
                    })
                    .await;
                match answer {
                    Ok(()) => {
                        let results: Vec<PartitionResult> = outcomes
                            .into_inner()
                            .into_iter()
                            .map(|(topic, partition, outcome)| {
                                election_result(topic, partition, outcome)
                            })
                            .collect();
                        let elected = results.iter().filter(|r| r.error_code == 0).count();
                        tracing::info!(
                            ?kind,
                            elected,
                            asked = results.len(),
                            "leader election asked for"
                        );
                        InternalMessage::ElectLeadersResponse {
                            error_code: codes::NONE,
                            results,
                        }
                    }
                    Err((code, _)) => elect_leaders_error(code),
                }
            }
            InternalMessage::AlterReassignments { partitions } => {
                if not_controller {
                    return reassignments_error(codes::NOT_CONTROLLER);
                }
                let outcomes = RefCell::new(Vec::new());
                let answer = self
                    .decide(|image| {
                        let r = decide::alter_reassignments(image, &partitions);
                        *outcomes.borrow_mut() = r.outcomes;
                        Ok(r.records)
                    })
                    .await;
                match answer {
                    Ok(()) => {
                        let results = outcomes.into_inner().into_iter().map(reassignment_result);
                        let results: Vec<PartitionResult> = results.collect();
                        for (r, (_, _, target)) in results.iter().zip(&partitions) {
                            if r.error_code == codes::NONE {
                                tracing::info!(topic = %r.topic, partition = r.partition, target = ?target, "partition reassignment asked for");
                            }
                        }
                        InternalMessage::AlterReassignmentsResponse {
                            error_code: codes::NONE,
                            results,
                        }
                    }
                    Err((code, _)) => reassignments_error(code),
                }
            }
            InternalMessage::AlterScramCredentials {
                upserts,
                deletions,
                only_if_absent,
            } => {
                let mut users: Vec<String> = Vec::new();
                for name in upserts
                    .iter()
                    .map(|u| &u.user)
                    .chain(deletions.iter().map(|d| &d.0))
                {
                    if !users.contains(name) {
                        users.push(name.clone());
                    }
                }
                if not_controller {
                    return all_failed(users, codes::NOT_CONTROLLER);
                }
                // One decision per user, as Kafka answers per user.
                let mut results = Vec::with_capacity(users.len());
                for user in users {
                    let answer = self
                        .decide(|image| {
                            scram_changes(image, &user, &upserts, &deletions, only_if_absent)
                        })
                        .await;
                    if answer.is_ok() {
                        tracing::info!(%user, "SCRAM credentials changed");
                    }
                    results.push(result(user, answer));
                }
                InternalMessage::AdminResponse { results }
            }
            InternalMessage::AlterClientQuotas {
                entries,
                validate_only,
            } => {
                self.alter_client_quotas(entries, validate_only, not_controller)
                    .await
            }
            other => {
                tracing::debug!(from_node, message = ?std::mem::discriminant(&other), "not a request; ignored");
                InternalMessage::AdminResponse {
                    results: Vec::new(),
                }
            }
        }
    }

    async fn fetch_metadata(&self, from_offset: i64, max_wait_ms: i32) -> InternalMessage {
        let after = u64::try_from(from_offset).unwrap_or(0);
        let wait = if from_offset < 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(u64::try_from(max_wait_ms).unwrap_or(0)).min(FETCH_WAIT_MAX)
        };
        let (image, applied) = self.node.wait_for_image(after, wait).await;
        let leader_id = self.node.leader_id().map_or(-1, |l| l.0);
        let offset = i64::try_from(applied).unwrap_or(i64::MAX);
        if offset <= from_offset {
            return InternalMessage::FetchMetadataResponse {
                error_code: codes::NONE,
                leader_id,
                offset: from_offset,
                image: bytes::Bytes::new(),
            };
        }
        match codec::encode_image(&image) {
            Ok(bytes) => InternalMessage::FetchMetadataResponse {
                error_code: codes::NONE,
                leader_id,
                offset,
                image: bytes.into(),
            },
            Err(e) => {
                tracing::error!(error = %e, "encoding the metadata image failed");
                InternalMessage::FetchMetadataResponse {
                    error_code: codes::UNKNOWN_SERVER_ERROR,
                    leader_id,
                    offset: from_offset,
                    image: bytes::Bytes::new(),
                }
            }
        }
    }

    async fn register(
        &self,
        broker_id: i32,
        incarnation: [u8; 16],
        endpoints: Vec<skein_net::internal::Endpoint>,
        rack: Option<String>,
    ) -> (i16, i64) {
        let epoch = Cell::new(-1i64);
        let answer = self
            .decide(|image| {
                // Unique and increasing: the registering entry lands after everything applied.
                let e = i64::try_from(self.node.status().applied_index + 1).unwrap_or(i64::MAX);
                epoch.set(e);
                let registration = BrokerRegistration {
                    id: broker_id,
                    incarnation: Uuid::from_bytes(incarnation),
                    epoch: e,
                    endpoints: endpoints
                        .iter()
                        .map(|e| Endpoint {
                            listener: e.listener.clone(),
                            host: e.host.clone(),
                            port: e.port,
                        })
                        .collect(),
                    rack: rack.clone(),
                    fenced: true,
                    in_controlled_shutdown: false,
                };
                let alive = self.heartbeats.borrow().is_alive(broker_id, Instant::now());
                decide::register_broker(image, registration, alive).map_err(decide_error)
            })
            .await;
        match answer {
            Ok(()) => {
                self.heartbeats
                    .borrow_mut()
                    .record(broker_id, Instant::now());
                tracing::info!(broker_id, broker_epoch = epoch.get(), "broker registered");
                (codes::NONE, epoch.get())
            }
            Err((code, message)) => {
                tracing::warn!(broker_id, code, %message, "registration refused");
                (code, -1)
            }
        }
    }

    async fn heartbeat(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        metadata_offset: i64,
        want_fence: bool,
        want_shutdown: bool,
    ) -> InternalMessage {
        let image = self.node.image();
        let refuse = |error_code| InternalMessage::HeartbeatResponse {
            error_code,
            is_caught_up: false,
            is_fenced: true,
            should_shutdown: false,
        };
        let Some(b) = image.brokers.get(&broker_id) else {
            return refuse(codes::STALE_BROKER_EPOCH);
        };
        if b.epoch != broker_epoch {
            return refuse(codes::STALE_BROKER_EPOCH);
        }
        self.heartbeats
            .borrow_mut()
            .record(broker_id, Instant::now());
        // Caught up: it has applied at least its own registration.
        let caught_up = metadata_offset >= b.epoch;
        let mut error_code = codes::NONE;
        if b.fenced && caught_up && !want_fence && !want_shutdown {
            let answer = self
                .decide(|image| {
                    match image.brokers.get(&broker_id) {
                        Some(b) if b.fenced && b.epoch == broker_epoch => {}
                        _ => return Ok(Vec::new()),
                    }
                    decide::unfence_broker(image, broker_id, broker_epoch).map_err(decide_error)
                })
                .await;
            match answer {
                Ok(()) => tracing::info!(broker_id, "broker unfenced"),
                Err((code, _)) => error_code = code,
            }
        }
        if want_shutdown && !b.in_controlled_shutdown && !b.fenced {
            let answer = self
                .decide(|image| {
                    decide::controlled_shutdown(image, broker_id, broker_epoch)
                        .map_err(decide_error)
                })
                .await;
            match answer {
                Ok(()) => tracing::info!(broker_id, "controlled shutdown: leaderships moved"),
                Err((code, _)) => error_code = code,
            }
        }
        let image = self.node.image();
        let is_fenced = image
            .brokers
            .get(&broker_id)
            .is_none_or(|b| b.fenced || b.epoch != broker_epoch);
        let leads_nothing = image
            .partitions_with(broker_id)
            .iter()
            .all(|(_, _, p)| p.leader != broker_id);
        InternalMessage::HeartbeatResponse {
            error_code,
            is_caught_up: caught_up,
            is_fenced,
            should_shutdown: want_shutdown && leads_nothing,
        }
    }

    async fn create_topic(&self, t: NewTopicSpec, validate_only: bool) -> Answer {
        if !t.assignments.is_empty() {
            return Err((
                codes::INVALID_REPLICA_ASSIGNMENT,
                "manual replica assignment is not supported yet".to_string(),
            ));
        }
        let rf = usize::try_from(t.replication_factor).unwrap_or(0);
        if rf == 0 {
            return Err((
                codes::INVALID_REPLICATION_FACTOR,
                format!("invalid replication factor {}", t.replication_factor),
            ));
        }
        let configs: BTreeMap<String, String> = t.configs.into_iter().collect();
        self.decide(|image| {
            let records = decide::create_topic(
                image,
                &t.name,
                Uuid::new_v4(),
                t.num_partitions,
                rf,
                configs.clone(),
            )
            .map_err(decide_error)?;
            Ok(if validate_only { Vec::new() } else { records })
        })
        .await
    }
}

/// The Config records that turn a topic's overrides into `configs`.
fn config_changes(
    image: &ClusterImage,
    topic: &str,
    configs: Vec<(String, String)>,
) -> std::result::Result<Vec<MetadataRecord>, (i16, String)> {
    let t = image.topic(topic).ok_or((
        codes::UNKNOWN_TOPIC_OR_PARTITION,
        format!("topic {topic} does not exist"),
    ))?;
    let wanted: BTreeMap<String, String> = configs.into_iter().collect();
    let mut records = Vec::new();
    for key in t.configs.keys().filter(|k| !wanted.contains_key(*k)) {
        records.push(MetadataRecord::Config {
            topic_id: t.id,
            key: key.clone(),
            value: None,
        });
    }
    for (key, value) in wanted {
        if t.configs.get(&key) != Some(&value) {
            records.push(MetadataRecord::Config {
                topic_id: t.id,
                key,
                value: Some(value),
            });
        }
    }
    Ok(records)
}

pub(super) fn result(name: String, answer: Answer) -> TopicResult {
    match answer {
        Ok(()) => TopicResult {
            name,
            error_code: codes::NONE,
            error_message: None,
        },
        Err((error_code, message)) => TopicResult {
            name,
            error_code,
            error_message: Some(message),
        },
    }
}

/// The records that set and remove `user`'s SCRAM credentials; removing one that does not exist
/// fails the user's whole change (Kafka's RESOURCE_NOT_FOUND).
pub(super) fn scram_changes(
    image: &ClusterImage,
    user: &str,
    upserts: &[skein_net::internal::ScramUpsert],
    deletions: &[(String, i8)],
    only_if_absent: bool,
) -> std::result::Result<Vec<MetadataRecord>, (i16, String)> {
    let mut records = Vec::new();
    for (name, mechanism) in deletions.iter().filter(|d| d.0 == user) {
        if !image
            .scram_credentials
            .contains_key(&(name.clone(), *mechanism))
        {
            return Err((
                codes::RESOURCE_NOT_FOUND,
                format!("user {user} has no credential for mechanism {mechanism}"),
            ));
        }
        records.push(MetadataRecord::RemoveUserScramCredential {
            user: name.clone(),
            mechanism: *mechanism,
        });
    }
    // Bootstrap users: a user that has any credential is left alone, so a password changed
    // (or a mechanism removed) since is not undone by the next start.
    if only_if_absent && image.scram_credentials.keys().any(|(u, _)| u == user) {
        return Ok(records);
    }
    for u in upserts.iter().filter(|u| u.user == user) {
        records.push(MetadataRecord::UserScramCredential {
            user: u.user.clone(),
            mechanism: u.mechanism,
            credential: ScramCredential {
                salt: u.salt.clone(),
                iterations: u.iterations,
                stored_key: u.stored_key.clone(),
                server_key: u.server_key.clone(),
            },
        });
    }
    Ok(records)
}

/// A forwarded ACL entry as a binding, or why it is not one (Kafka's INVALID_REQUEST).
fn acl_binding(e: &skein_net::internal::AclEntry) -> std::result::Result<AclBinding, String> {
    let binding = AclBinding {
        resource_type: ResourceType::from_code(e.resource_type)
            .ok_or_else(|| format!("unknown resource type {}", e.resource_type))?,
        resource_name: e.resource_name.clone(),
        pattern_type: PatternType::from_code(e.pattern_type)
            .ok_or_else(|| format!("unknown pattern type {}", e.pattern_type))?,
        principal: e.principal.clone(),
        host: e.host.clone(),
        operation: AclOperation::from_code(e.operation)
            .ok_or_else(|| format!("unknown operation {}", e.operation))?,
        permission: AclPermission::from_code(e.permission)
            .ok_or_else(|| format!("unknown permission type {}", e.permission))?,
    };
    acl::validate(&binding)?;
    Ok(binding)
}

/// The records for the valid entries of an ACL change (`true`: create); a binding that already
/// exists (or is already gone) needs none.
fn acl_changes(
    image: &ClusterImage,
    checked: &[(bool, std::result::Result<AclBinding, String>)],
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for (create, binding) in checked {
        let Ok(binding) = binding else { continue };
        let exists = image.acls.contains(binding);
        if *create && !exists {
            records.push(MetadataRecord::CreateAcl(binding.clone()));
        } else if !*create && exists {
            records.push(MetadataRecord::DeleteAcl(binding.clone()));
        }
    }
    records
}

pub(super) fn all_failed(names: Vec<String>, error_code: i16) -> InternalMessage {
    InternalMessage::AdminResponse {
        results: names
            .into_iter()
            .map(|name| TopicResult {
                name,
                error_code,
                error_message: None,
            })
            .collect(),
    }
}

fn alter_partition_error(error_code: i16) -> InternalMessage {
    InternalMessage::AlterPartitionResponse {
        error_code,
        leader: -1,
        isr: Vec::new(),
        leader_epoch: -1,
        partition_epoch: -1,
    }
}

fn reassignments_error(error_code: i16) -> InternalMessage {
    InternalMessage::AlterReassignmentsResponse {
        error_code,
        results: Vec::new(),
    }
}

fn reassignment_result(
    (topic, partition, outcome): (String, i32, std::result::Result<(), decide::ReassignError>),
) -> PartitionResult {
    let (error_code, error_message) = match outcome {
        Ok(()) => (codes::NONE, None),
        Err(decide::ReassignError::UnknownPartition) => (codes::UNKNOWN_TOPIC_OR_PARTITION, None),
        Err(decide::ReassignError::InvalidAssignment(why)) => {
            (codes::INVALID_REPLICA_ASSIGNMENT, Some(why))
        }
        Err(decide::ReassignError::NoReassignmentInProgress) => {
            (codes::NO_REASSIGNMENT_IN_PROGRESS, None)
        }
    };
    PartitionResult {
        topic,
        partition,
        error_code,
        error_message,
    }
}

fn elect_leaders_error(error_code: i16) -> InternalMessage {
    InternalMessage::ElectLeadersResponse {
        error_code,
        results: Vec::new(),
    }
}

fn election_result(
    topic: String,
    partition: i32,
    outcome: decide::ElectionOutcome,
) -> PartitionResult {
    use decide::ElectionOutcome::*;
    let (error_code, message) = match outcome {
        Elected => (codes::NONE, None),
        NotNeeded => (
            codes::ELECTION_NOT_NEEDED,
            Some("leader is already the one asked for"),
        ),
        PreferredNotAvailable => (
            codes::PREFERRED_LEADER_NOT_AVAILABLE,
            Some("the preferred replica is not active and in sync"),
        ),
        NoEligibleLeader => (
            codes::ELIGIBLE_LEADERS_NOT_AVAILABLE,
            Some("no replica is active"),
        ),
        UnknownPartition => (codes::UNKNOWN_TOPIC_OR_PARTITION, None),
    };
    PartitionResult {
        topic,
        partition,
        error_code,
        error_message: message.map(str::to_string),
    }
}

fn producer_ids_error(error_code: i16) -> InternalMessage {
    InternalMessage::AllocateProducerIdsResponse {
        error_code,
        start: -1,
        len: 0,
    }
}
