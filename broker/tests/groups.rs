//! Consumer groups against librdkafka (the `rdkafka` crate): sharing a topic, taking over a
//! killed member's partitions, committed offsets across a broker restart, cooperative-sticky
//! assignment; and the group APIs' error codes seen on raw frames.
//!
//! A member that must die without leaving runs in a child process (this test binary re-run with
//! `--ignored victim_consumer`), so that SIGKILL leaves nothing behind to send LeaveGroup.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientContext, TopicPartitionList};

use common::clients::{client_config, create_topics, expect_delivered, new_producer, produce_all};
use common::raw::roundtrip;
use common::{raw_connect, Broker, BrokerConfig};

/// librdkafka's smallest session timeout that the broker's default minimum (6 s) accepts.
const SESSION_MS: u64 = 6000;

fn broker() -> Broker {
    Broker::start_with(BrokerConfig::default().set("group.initial.rebalance.delay.ms", "300"))
}

fn group_consumer<C: ConsumerContext>(
    broker: &Broker,
    group: &str,
    extra: &[(&str, &str)],
    context: C,
) -> BaseConsumer<C> {
    let session = SESSION_MS.to_string();
    let mut config = client_config(
        broker,
        &[
            ("group.id", group),
            ("session.timeout.ms", session.as_str()),
            ("heartbeat.interval.ms", "500"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
        ],
    );
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config
        .create_with_context(context)
        .expect("create group consumer")
}

fn partitions_of(tpl: &TopicPartitionList) -> BTreeSet<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

fn assignment<C: ConsumerContext>(c: &BaseConsumer<C>) -> BTreeSet<i32> {
    partitions_of(&c.assignment().expect("assignment"))
}

/// A consumer in a child process; its assignment arrives as lines on `lines`.
struct Victim {
    child: Child,
    lines: mpsc::Receiver<BTreeSet<i32>>,
}

impl Victim {
    fn spawn(broker: &Broker, group: &str, topic: &str) -> Victim {
        let exe = std::env::current_exe().expect("test binary path");
        let mut child = Command::new(exe)
            .args(["--ignored", "--exact", "victim_consumer", "--nocapture"])
            .env("SKEIN_VICTIM_BOOTSTRAP", broker.bootstrap())
            .env("SKEIN_VICTIM_GROUP", group)
            .env("SKEIN_VICTIM_TOPIC", topic)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn victim consumer");
        let stdout = child.stdout.take().expect("victim stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(list) = line.strip_prefix("ASSIGNED ") {
                    let set = list
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .filter_map(|s| s.parse().ok())
                        .collect();
                    if tx.send(set).is_err() {
                        break;
                    }
                }
            }
        });
        Victim { child, lines }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Run by [`Victim::spawn`] in a child process: subscribes and reports its assignment until
/// it is killed.
#[test]
#[ignore = "helper process for three_consumers_share_a_topic_and_take_over_a_killed_one"]
fn victim_consumer() {
    let (Ok(bootstrap), Ok(group), Ok(topic)) = (
        std::env::var("SKEIN_VICTIM_BOOTSTRAP"),
        std::env::var("SKEIN_VICTIM_GROUP"),
        std::env::var("SKEIN_VICTIM_TOPIC"),
    ) else {
        return;
    };
    let session = SESSION_MS.to_string();
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("session.timeout.ms", session)
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false")
        .create()
        .expect("victim consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut last = None;
    loop {
        let _ = consumer.poll(Duration::from_millis(100));
        let now = assignment(&consumer);
        if last.as_ref() != Some(&now) {
            let list: Vec<String> = now.iter().map(i32::to_string).collect();
            println!("ASSIGNED {}", list.join(","));
            last = Some(now);
        }
    }
}

#[test]
fn three_consumers_share_a_topic_and_take_over_a_killed_one() {
    let broker = broker();
    let topic = "shared";
    create_topics(&broker, &[(topic, 12)]);
    let group = "three";
    let a = group_consumer(
        &broker,
        group,
        &[],
        rdkafka::consumer::DefaultConsumerContext,
    );
    let b = group_consumer(
        &broker,
        group,
        &[],
        rdkafka::consumer::DefaultConsumerContext,
    );
    a.subscribe(&[topic]).expect("subscribe a");
    b.subscribe(&[topic]).expect("subscribe b");
    let mut victim = Victim::spawn(&broker, group, topic);

    let all: BTreeSet<i32> = (0..12).collect();
    let mut victim_share = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let _ = a.poll(Duration::from_millis(50));
        let _ = b.poll(Duration::from_millis(50));
        while let Ok(set) = victim.lines.try_recv() {
            victim_share = set;
        }
        let (sa, sb) = (assignment(&a), assignment(&b));
        let shares = [&sa, &sb, &victim_share];
        let disjoint =
            sa.is_disjoint(&sb) && sa.is_disjoint(&victim_share) && sb.is_disjoint(&victim_share);
        let union: BTreeSet<i32> = shares.iter().flat_map(|s| s.iter().copied()).collect();
        if shares.iter().all(|s| !s.is_empty()) && disjoint && union == all {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no disjoint, covering 3-way assignment: a {sa:?} b {sb:?} victim {victim_share:?}"
        );
    }

    // Killed without a LeaveGroup: the broker must notice by the session timeout alone.
    victim.kill9();
    let killed_at = Instant::now();
    loop {
        let _ = a.poll(Duration::from_millis(50));
        let _ = b.poll(Duration::from_millis(50));
        let (sa, sb) = (assignment(&a), assignment(&b));
        let union: BTreeSet<i32> = sa.union(&sb).copied().collect();
        if sa.is_disjoint(&sb) && union == all {
            break;
        }
        // Session timeout, plus the rebalance the survivors run (their own heartbeat interval
        // to learn of it, a join and a sync).
        assert!(
            killed_at.elapsed() < Duration::from_millis(SESSION_MS) + Duration::from_secs(8),
            "partitions of the killed member not taken over: a {sa:?} b {sb:?}"
        );
    }
}

#[test]
fn committed_offsets_survive_a_restart_and_consumption_resumes_after_them() {
    let mut broker = broker();
    let topic = "resume";
    create_topics(&broker, &[(topic, 3)]);
    let producer = new_producer(&broker, &[]);
    let payloads: Vec<String> = (0..90).map(|i| format!("r-{i:03}")).collect();
    let records = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            FutureRecord::<str, [u8]>::to(topic)
                .partition(i32::try_from(i % 3).expect("partition"))
                .payload(p.as_bytes())
        })
        .collect();
    expect_delivered(produce_all(&producer, records));

    let group = "resumer";
    let first_read: Vec<(i32, i64)> = {
        let c = group_consumer(
            &broker,
            group,
            &[],
            rdkafka::consumer::DefaultConsumerContext,
        );
        c.subscribe(&[topic]).expect("subscribe");
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < 40 {
            assert!(Instant::now() < deadline, "consumed only {}", seen.len());
            if let Some(m) = c.poll(Duration::from_millis(100)) {
                let m = m.expect("consume");
                seen.push((m.partition(), m.offset()));
            }
        }
        // Commit exactly what was read: the next offset of each partition.
        let mut tpl = TopicPartitionList::new();
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for (p, o) in &seen {
            let e = next.entry(*p).or_insert(0);
            *e = (*e).max(o + 1);
        }
        for (p, o) in &next {
            tpl.add_partition_offset(topic, *p, rdkafka::Offset::Offset(*o))
                .expect("tpl");
        }
        c.commit(&tpl, CommitMode::Sync).expect("commit");
        seen
    };

    broker.restart();

    let c = group_consumer(
        &broker,
        group,
        &[],
        rdkafka::consumer::DefaultConsumerContext,
    );
    c.subscribe(&[topic]).expect("subscribe after restart");
    let committed: HashSet<(i32, i64)> = first_read.iter().copied().collect();
    let mut rest = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rest.len() < 90 - first_read.len() {
        assert!(
            Instant::now() < deadline,
            "resumed with only {}",
            rest.len()
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("consume after restart");
            rest.push((m.partition(), m.offset()));
        }
    }
    // Nothing read before the restart comes again, and each partition resumes contiguously.
    assert!(
        rest.iter().all(|r| !committed.contains(r)),
        "re-read committed records"
    );
    let mut all: Vec<(i32, i64)> = first_read.into_iter().chain(rest).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        90,
        "every record exactly once across the restart"
    );
}

/// One rebalance callback: assigned (true) or revoked (false), and the partitions.
type RebalanceEvent = (bool, BTreeSet<i32>);

/// Records librdkafka's incremental rebalance callbacks.
#[derive(Clone, Default)]
struct Rebalances(Arc<Mutex<Vec<RebalanceEvent>>>);

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if let Ok(mut v) = self.0.lock() {
                v.push((false, partitions_of(tpl)));
            }
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if let Ok(mut v) = self.0.lock() {
                v.push((true, partitions_of(tpl)));
            }
        }
    }
}

#[test]
fn cooperative_sticky_moves_only_what_it_must() {
    let broker = broker();
    let topic = "sticky";
    create_topics(&broker, &[(topic, 6)]);
    let group = "coop";
    let strategy = [("partition.assignment.strategy", "cooperative-sticky")];
    let events_a = Rebalances::default();
    let a = group_consumer(&broker, group, &strategy, events_a.clone());
    a.subscribe(&[topic]).expect("subscribe a");
    let all: BTreeSet<i32> = (0..6).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while assignment(&a) != all {
        let _ = a.poll(Duration::from_millis(50));
        assert!(Instant::now() < deadline, "a never got all partitions");
    }

    let b = group_consumer(&broker, group, &strategy, Rebalances::default());
    b.subscribe(&[topic]).expect("subscribe b");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let _ = a.poll(Duration::from_millis(50));
        let _ = b.poll(Duration::from_millis(50));
        let (sa, sb) = (assignment(&a), assignment(&b));
        if sa.len() == 3 && sb.len() == 3 && sa.is_disjoint(&sb) {
            break;
        }
        assert!(Instant::now() < deadline, "no 3/3 split: a {sa:?} b {sb:?}");
    }
    // Incremental: a gave up exactly the three that moved, never its whole assignment.
    let events = events_a.0.lock().expect("events").clone();
    let revoked: BTreeSet<i32> = events
        .iter()
        .filter(|(assign, _)| !assign)
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    assert_eq!(revoked, assignment(&b), "revoked from a: {events:?}");
}

// ------------------------------------------------------------------------------------------
// Raw frames: exact error codes.

fn join_request(member_id: &str, instance: Option<&str>, session_ms: i32) -> JoinGroupRequest {
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = StrBytes::from_static_str("range");
    protocol.metadata = bytes::Bytes::from_static(&[0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 0]);
    let mut r = JoinGroupRequest::default();
    r.group_id = GroupId(StrBytes::from_static_str("raw"));
    r.session_timeout_ms = session_ms;
    r.rebalance_timeout_ms = 10_000;
    r.member_id = StrBytes::from_string(member_id.to_string());
    r.group_instance_id = instance.map(|i| StrBytes::from_string(i.to_string()));
    r.protocol_type = StrBytes::from_static_str("consumer");
    r.protocols = vec![protocol];
    r
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

#[test]
fn group_apis_answer_with_kafka_error_codes() {
    let broker = broker();
    create_topics(&broker, &[("t", 1)]);
    let mut s = raw_connect(&broker);
    let mut cid = 0;
    let mut next = || {
        cid += 1;
        cid
    };

    let mut find = FindCoordinatorRequest::default();
    find.key = StrBytes::from_static_str("raw");
    let f: FindCoordinatorResponse = roundtrip(&mut s, ApiKey::FindCoordinator, 3, next(), &find);
    assert_eq!(f.error_code, 0);
    // No transaction coordinator: a transactional client is told at once, not left retrying.
    find.key_type = 1;
    let f: FindCoordinatorResponse = roundtrip(&mut s, ApiKey::FindCoordinator, 3, next(), &find);
    assert_eq!(
        f.error_code,
        code(ResponseError::TransactionalIdAuthorizationFailed)
    );

    // Heartbeat for a group nobody joined.
    let mut hb = HeartbeatRequest::default();
    hb.group_id = GroupId(StrBytes::from_static_str("raw"));
    hb.member_id = StrBytes::from_static_str("ghost");
    hb.generation_id = 1;
    let r: HeartbeatResponse = roundtrip(&mut s, ApiKey::Heartbeat, 4, next(), &hb);
    assert_eq!(r.error_code, code(ResponseError::UnknownMemberId));

    // Session timeout below group.min.session.timeout.ms.
    let r: JoinGroupResponse = roundtrip(
        &mut s,
        ApiKey::JoinGroup,
        7,
        next(),
        &join_request("", None, 10),
    );
    assert_eq!(r.error_code, code(ResponseError::InvalidSessionTimeout));

    // Member metadata that no group record could hold is refused up front, so it can never
    // fail every later rebalance of the group.
    let mut huge = join_request("", None, 10_000);
    huge.protocols[0].metadata = bytes::Bytes::from(vec![0u8; 2 << 20]);
    let r: JoinGroupResponse = roundtrip(&mut s, ApiKey::JoinGroup, 7, next(), &huge);
    assert_eq!(r.error_code, code(ResponseError::MessageTooLarge));

    // KIP-394: the first join hands out a member id.
    let r: JoinGroupResponse = roundtrip(
        &mut s,
        ApiKey::JoinGroup,
        7,
        next(),
        &join_request("", None, 10_000),
    );
    assert_eq!(r.error_code, code(ResponseError::MemberIdRequired));
    let member = r.member_id.to_string();
    assert!(!member.is_empty());
    let r: JoinGroupResponse = roundtrip(
        &mut s,
        ApiKey::JoinGroup,
        7,
        next(),
        &join_request(&member, None, 10_000),
    );
    assert_eq!(r.error_code, 0);
    assert_eq!(r.leader.as_str(), member);
    assert_eq!(r.members.len(), 1);
    let generation = r.generation_id;

    // SyncGroup with a stale generation, then the real one.
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(StrBytes::from_static_str("raw"));
    sync.member_id = StrBytes::from_string(member.clone());
    sync.generation_id = generation + 5;
    let r: SyncGroupResponse = roundtrip(&mut s, ApiKey::SyncGroup, 5, next(), &sync);
    assert_eq!(r.error_code, code(ResponseError::IllegalGeneration));
    sync.generation_id = generation;
    let mut a = kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment::default();
    a.member_id = StrBytes::from_string(member.clone());
    a.assignment = bytes::Bytes::from_static(b"mine");
    sync.assignments = vec![a];
    let r: SyncGroupResponse = roundtrip(&mut s, ApiKey::SyncGroup, 5, next(), &sync);
    assert_eq!(r.error_code, 0);
    assert_eq!(&r.assignment[..], b"mine");

    hb.member_id = StrBytes::from_string(member.clone());
    hb.generation_id = generation;
    let r: HeartbeatResponse = roundtrip(&mut s, ApiKey::Heartbeat, 4, next(), &hb);
    assert_eq!(r.error_code, 0);
    hb.generation_id = generation - 1;
    let r: HeartbeatResponse = roundtrip(&mut s, ApiKey::Heartbeat, 4, next(), &hb);
    assert_eq!(r.error_code, code(ResponseError::IllegalGeneration));

    // Offset commits are fenced by generation and member.
    let commit = |member: &str, generation: i32| {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = 0;
        p.committed_offset = 1;
        let mut t = OffsetCommitRequestTopic::default();
        t.name = TopicName(StrBytes::from_static_str("t"));
        t.partitions = vec![p];
        let mut c = OffsetCommitRequest::default();
        c.group_id = GroupId(StrBytes::from_static_str("raw"));
        c.member_id = StrBytes::from_string(member.to_string());
        c.generation_id_or_member_epoch = generation;
        c.topics = vec![t];
        c
    };
    let r: OffsetCommitResponse = roundtrip(
        &mut s,
        ApiKey::OffsetCommit,
        8,
        next(),
        &commit(&member, generation - 1),
    );
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        code(ResponseError::IllegalGeneration)
    );
    let r: OffsetCommitResponse = roundtrip(
        &mut s,
        ApiKey::OffsetCommit,
        8,
        next(),
        &commit("stranger", generation),
    );
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        code(ResponseError::UnknownMemberId)
    );
    let r: OffsetCommitResponse = roundtrip(
        &mut s,
        ApiKey::OffsetCommit,
        8,
        next(),
        &commit(&member, generation),
    );
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    // Describe and list see it Stable; it cannot be deleted while it has members.
    let mut d = DescribeGroupsRequest::default();
    d.groups = vec![
        GroupId(StrBytes::from_static_str("raw")),
        GroupId(StrBytes::from_static_str("never-existed")),
    ];
    let r: DescribeGroupsResponse = roundtrip(&mut s, ApiKey::DescribeGroups, 5, next(), &d);
    assert_eq!(r.groups[0].group_state.as_str(), "Stable");
    assert_eq!(r.groups[0].protocol_data.as_str(), "range");
    assert_eq!(&r.groups[0].members[0].member_assignment[..], b"mine");
    assert_eq!(r.groups[1].group_state.as_str(), "Dead");
    assert_eq!(r.groups[1].error_code, 0);
    let r: ListGroupsResponse = roundtrip(
        &mut s,
        ApiKey::ListGroups,
        4,
        next(),
        &ListGroupsRequest::default(),
    );
    assert!(r
        .groups
        .iter()
        .any(|g| g.group_id.as_str() == "raw" && g.group_state.as_str() == "Stable"));
    let mut del = DeleteGroupsRequest::default();
    del.groups_names = vec![GroupId(StrBytes::from_static_str("raw"))];
    let r: DeleteGroupsResponse = roundtrip(&mut s, ApiKey::DeleteGroups, 2, next(), &del);
    assert_eq!(r.results[0].error_code, code(ResponseError::NonEmptyGroup));

    // Leaving empties it; then it can be deleted, offsets and all.
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = GroupId(StrBytes::from_static_str("raw"));
    let mut who = kafka_protocol::messages::leave_group_request::MemberIdentity::default();
    who.member_id = StrBytes::from_string(member.clone());
    let mut ghost = kafka_protocol::messages::leave_group_request::MemberIdentity::default();
    ghost.member_id = StrBytes::from_static_str("ghost");
    leave.members = vec![who, ghost];
    let r: LeaveGroupResponse = roundtrip(&mut s, ApiKey::LeaveGroup, 4, next(), &leave);
    assert_eq!(r.error_code, 0);
    assert_eq!(r.members[0].error_code, 0);
    assert_eq!(
        r.members[1].error_code,
        code(ResponseError::UnknownMemberId)
    );
    let r: DeleteGroupsResponse = roundtrip(&mut s, ApiKey::DeleteGroups, 2, next(), &del);
    assert_eq!(r.results[0].error_code, 0);
    let r: DeleteGroupsResponse = roundtrip(&mut s, ApiKey::DeleteGroups, 2, next(), &del);
    assert_eq!(
        r.results[0].error_code,
        code(ResponseError::GroupIdNotFound)
    );
}

#[test]
fn static_members_are_fenced_by_instance_id() {
    let broker = broker();
    let mut s = raw_connect(&broker);
    let mut cid = 0;
    let mut next = || {
        cid += 1;
        cid
    };
    let r: JoinGroupResponse = roundtrip(
        &mut s,
        ApiKey::JoinGroup,
        7,
        next(),
        &join_request("", Some("instance-1"), 10_000),
    );
    assert_eq!(r.error_code, 0, "static members skip MEMBER_ID_REQUIRED");
    let first = r.member_id.to_string();
    let generation = r.generation_id;
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(StrBytes::from_static_str("raw"));
    sync.member_id = StrBytes::from_string(first.clone());
    sync.group_instance_id = Some(StrBytes::from_static_str("instance-1"));
    sync.generation_id = generation;
    let r: SyncGroupResponse = roundtrip(&mut s, ApiKey::SyncGroup, 5, next(), &sync);
    assert_eq!(r.error_code, 0);

    // The same instance restarts: it takes over without a rebalance ...
    let r: JoinGroupResponse = roundtrip(
        &mut s,
        ApiKey::JoinGroup,
        7,
        next(),
        &join_request("", Some("instance-1"), 10_000),
    );
    assert_eq!(r.error_code, 0);
    assert_eq!(r.generation_id, generation, "no new generation");
    let second = r.member_id.to_string();
    assert_ne!(second, first);
    // ... and the old incarnation is fenced.
    let mut hb = HeartbeatRequest::default();
    hb.group_id = GroupId(StrBytes::from_static_str("raw"));
    hb.member_id = StrBytes::from_string(first);
    hb.group_instance_id = Some(StrBytes::from_static_str("instance-1"));
    hb.generation_id = generation;
    let r: HeartbeatResponse = roundtrip(&mut s, ApiKey::Heartbeat, 4, next(), &hb);
    assert_eq!(r.error_code, code(ResponseError::FencedInstanceId));
    hb.member_id = StrBytes::from_string(second);
    let r: HeartbeatResponse = roundtrip(&mut s, ApiKey::Heartbeat, 4, next(), &hb);
    assert_eq!(r.error_code, 0);
}
