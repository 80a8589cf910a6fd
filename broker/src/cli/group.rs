//! `skein group list|describe|reset-offsets` (consumer groups, as kafka-consumer-groups.sh).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    ListGroupsRequest, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, RequestKind,
    ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde_json::{json, Value};

use super::client::{Client, Target};
use super::output::{error_json, error_text, table, Report};
use super::GroupCommand;

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

type Partition = (String, i32);

pub fn run(client: &mut Client, command: GroupCommand) -> Result<Report> {
    match command {
        GroupCommand::List => list(client),
        GroupCommand::Describe { group } => describe(client, &group),
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            execute,
        } => {
            let to = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => ResetTo::Timestamp(EARLIEST),
                (_, true, _) => ResetTo::Timestamp(LATEST),
                (_, _, Some(o)) if o >= 0 => ResetTo::Offset(o),
                (_, _, Some(o)) => bail!("--to-offset {o}: an offset is 0 or more"),
                _ => bail!("say where to: --to-earliest, --to-latest or --to-offset N"),
            };
            reset(client, &group, &topic, to, execute)
        }
    }
}

fn list(client: &mut Client) -> Result<Report> {
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut failures = Vec::new();
    for node in client.broker_ids()? {
        // v4 adds the state; older brokers answer without it.
        let answer = client.send(
            Target::Node(node),
            (0, 4),
            RequestKind::ListGroups(ListGroupsRequest::default()),
        );
        match answer {
            Ok(ResponseKind::ListGroups(r)) if r.error_code == 0 => {
                for g in r.groups {
                    let entry = (g.protocol_type.to_string(), g.group_state.to_string());
                    groups.insert(g.group_id.0.to_string(), entry);
                }
            }
            Ok(ResponseKind::ListGroups(r)) => {
                failures.push(format!("broker {node}: {}", error_text(r.error_code, None)))
            }
            Ok(_) => failures.push(format!("broker {node}: another response")),
            Err(e) => failures.push(format!("broker {node}: {e:#}")),
        }
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|(g, (t, s))| vec![g.clone(), t.clone(), s.clone()])
        .collect();
    let mut text = table(&["GROUP", "PROTOCOL-TYPE", "STATE"], &rows);
    for f in &failures {
        text.push_str(&format!("incomplete: {f}\n"));
    }
    let json = json!({
        "groups": groups.iter().map(|(g, (t, s))| json!({
            "group": g, "protocol_type": t, "state": s,
        })).collect::<Vec<_>>(),
        "failures": failures,
    });
    Ok(Report {
        json,
        text,
        ok: failures.is_empty(),
    })
}

fn coordinator(client: &mut Client, group: &str) -> Result<i32> {
    let mut req = FindCoordinatorRequest::default();
    req.key = StrBytes::from_string(group.to_string());
    // v4 batches keys in another field; v1-v3 is enough for one group.
    let ResponseKind::FindCoordinator(r) =
        client.send(Target::Any, (1, 3), RequestKind::FindCoordinator(req))?
    else {
        bail!("FindCoordinator answered with another response");
    };
    if r.error_code != 0 {
        bail!(
            "no coordinator for group {group}: {}",
            error_text(r.error_code, r.error_message.as_deref())
        );
    }
    Ok(r.node_id.0)
}

struct GroupState {
    state: String,
    protocol: String,
    /// Assigned partition → (member id, client id, host).
    owners: BTreeMap<Partition, (String, String, String)>,
    members: Vec<Value>,
}

fn group_state(client: &mut Client, node: i32, group: &str) -> Result<GroupState> {
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![GroupId(StrBytes::from_string(group.to_string()))];
    let ResponseKind::DescribeGroups(r) =
        client.send(Target::Node(node), (0, 5), RequestKind::DescribeGroups(req))?
    else {
        bail!("DescribeGroups answered with another response");
    };
    let Some(g) = r.groups.into_iter().next() else {
        bail!("DescribeGroups answered without the group");
    };
    if g.error_code != 0 {
        bail!(
            "group {group}: {}",
            error_text(g.error_code, g.error_message.as_deref())
        );
    }
    let mut owners = BTreeMap::new();
    let mut members = Vec::new();
    for m in &g.members {
        let assigned = assignment(&g.protocol_type, &m.member_assignment);
        for (t, p) in &assigned {
            owners.insert(
                (t.clone(), *p),
                (
                    m.member_id.to_string(),
                    m.client_id.to_string(),
                    m.client_host.to_string(),
                ),
            );
        }
        members.push(json!({
            "member_id": m.member_id.to_string(),
            "group_instance_id": m.group_instance_id.as_deref(),
            "client_id": m.client_id.to_string(),
            "host": m.client_host.to_string(),
            "assignment": assigned.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
        }));
    }
    Ok(GroupState {
        state: g.group_state.to_string(),
        protocol: g.protocol_data.to_string(),
        owners,
        members,
    })
}

/// A consumer member's assigned partitions; nothing for other protocols or bytes that do not
/// parse (the tool then shows no owner, as Kafka's does).
fn assignment(protocol_type: &str, bytes: &Bytes) -> Vec<Partition> {
    if protocol_type != "consumer" || bytes.len() < 2 {
        return Vec::new();
    }
    let mut buf = bytes.clone();
    // Checked above: the 2-byte version is there.
    let version = bytes::Buf::get_i16(&mut buf);
    match ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.0.to_string(), *p)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The group's committed offsets (-1: none).
fn committed(client: &mut Client, node: i32, group: &str) -> Result<BTreeMap<Partition, i64>> {
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    // Every topic (null), v2+; v8 batches groups in another field.
    req.topics = None;
    let ResponseKind::OffsetFetch(r) =
        client.send(Target::Node(node), (2, 7), RequestKind::OffsetFetch(req))?
    else {
        bail!("OffsetFetch answered with another response");
    };
    if r.error_code != 0 {
        bail!("OffsetFetch of {group}: {}", error_text(r.error_code, None));
    }
    let mut out = BTreeMap::new();
    for t in r.topics {
        for p in t.partitions {
            if p.error_code == 0 {
                out.insert(
                    (t.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(out)
}

/// ListOffsets at `timestamp` for each partition, asked of its leader.
fn offsets_at(
    client: &mut Client,
    partitions: &[Partition],
    timestamp: i64,
) -> Result<BTreeMap<Partition, i64>> {
    let topics: Vec<String> = partitions.iter().map(|p| p.0.clone()).collect();
    let md = client.metadata(Some(topics))?;
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for t in &md.topics {
        let topic = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        for p in &t.partitions {
            if partitions.contains(&(topic.clone(), p.partition_index)) && p.leader_id.0 >= 0 {
                by_leader
                    .entry(p.leader_id.0)
                    .or_default()
                    .entry(topic.clone())
                    .or_default()
                    .push(p.partition_index);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (leader, topics) in by_leader {
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.topics = topics
            .into_iter()
            .map(|(t, ps)| {
                let mut lt = ListOffsetsTopic::default();
                lt.name = TopicName(StrBytes::from_string(t));
                lt.partitions = ps
                    .into_iter()
                    .map(|p| {
                        let mut lp = ListOffsetsPartition::default();
                        lp.partition_index = p;
                        lp.current_leader_epoch = -1;
                        lp.timestamp = timestamp;
                        lp
                    })
                    .collect();
                lt
            })
            .collect();
        let ResponseKind::ListOffsets(r) =
            client.send(Target::Node(leader), (1, 6), RequestKind::ListOffsets(req))?
        else {
            bail!("ListOffsets answered with another response");
        };
        for t in r.topics {
            for p in t.partitions {
                if p.error_code == 0 {
                    out.insert((t.name.0.to_string(), p.partition_index), p.offset);
                }
            }
        }
    }
    Ok(out)
}

fn describe(client: &mut Client, group: &str) -> Result<Report> {
    let node = coordinator(client, group)?;
    let state = group_state(client, node, group)?;
    let committed = committed(client, node, group)?;
    let mut partitions: Vec<Partition> = committed.keys().cloned().collect();
    for p in state.owners.keys() {
        if !partitions.contains(p) {
            partitions.push(p.clone());
        }
    }
    partitions.sort();
    let ends = if partitions.is_empty() {
        BTreeMap::new()
    } else {
        offsets_at(client, &partitions, LATEST)?
    };
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for p in &partitions {
        let current = committed.get(p).copied().filter(|o| *o >= 0);
        let end = ends.get(p).copied();
        let lag = match (current, end) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        };
        let owner = state.owners.get(p);
        let show = |v: Option<i64>| v.map_or("-".to_string(), |x| x.to_string());
        rows.push(vec![
            p.0.clone(),
            p.1.to_string(),
            show(current),
            show(end),
            show(lag),
            owner.map_or("-".to_string(), |o| o.0.clone()),
            owner.map_or("-".to_string(), |o| o.2.clone()),
            owner.map_or("-".to_string(), |o| o.1.clone()),
        ]);
        json_rows.push(json!({
            "topic": p.0,
            "partition": p.1,
            "current_offset": current,
            "log_end_offset": end,
            "lag": lag,
            "member_id": owner.map(|o| &o.0),
            "host": owner.map(|o| &o.2),
            "client_id": owner.map(|o| &o.1),
        }));
    }
    let mut text = format!(
        "Group {group}: state {}, assignor {}, {} members, coordinator {node}\n\n",
        state.state,
        if state.protocol.is_empty() {
            "-"
        } else {
            &state.protocol
        },
        state.members.len()
    );
    text.push_str(&table(
        &[
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ],
        &rows,
    ));
    let json = json!({
        "group": group,
        "state": state.state,
        "assignor": state.protocol,
        "coordinator": node,
        "members": state.members,
        "partitions": json_rows,
    });
    Ok(Report {
        json,
        text,
        ok: true,
    })
}

enum ResetTo {
    Timestamp(i64),
    Offset(i64),
}

fn reset(
    client: &mut Client,
    group: &str,
    topic_spec: &str,
    to: ResetTo,
    execute: bool,
) -> Result<Report> {
    let (topic, only) = match topic_spec.split_once(':') {
        Some((t, list)) => {
            let ps: Result<Vec<i32>, _> =
                list.split(',').map(|p| p.trim().parse::<i32>()).collect();
            match ps {
                Ok(ps) => (t.to_string(), Some(ps)),
                Err(_) => bail!("--topic {topic_spec}: partitions are numbers, TOPIC:0,1,2"),
            }
        }
        None => (topic_spec.to_string(), None),
    };
    let md = client.metadata(Some(vec![topic.clone()]))?;
    let Some(t) = md.topics.first().filter(|t| t.error_code == 0) else {
        bail!("topic {topic} does not exist");
    };
    let mut partitions: Vec<Partition> = t
        .partitions
        .iter()
        .map(|p| p.partition_index)
        .filter(|p| only.as_ref().is_none_or(|o| o.contains(p)))
        .map(|p| (topic.clone(), p))
        .collect();
    partitions.sort();
    if partitions.is_empty() {
        bail!("no such partition of {topic}");
    }
    let node = coordinator(client, group)?;
    let state = group_state(client, node, group)?;
    if execute && state.state != "Empty" && state.state != "Dead" {
        bail!(
            "group {group} is {} with {} members: offsets can be reset only while no consumer is in it",
            state.state,
            state.members.len()
        );
    }
    let targets: BTreeMap<Partition, i64> = match to {
        ResetTo::Timestamp(ts) => offsets_at(client, &partitions, ts)?,
        ResetTo::Offset(o) => {
            // Kept inside the log: an offset past either end is moved to that end.
            let starts = offsets_at(client, &partitions, EARLIEST)?;
            let ends = offsets_at(client, &partitions, LATEST)?;
            partitions
                .iter()
                .filter_map(|p| {
                    let (s, e) = (starts.get(p)?, ends.get(p)?);
                    Some((p.clone(), o.clamp(*s, *e)))
                })
                .collect()
        }
    };
    let missing: Vec<&Partition> = partitions
        .iter()
        .filter(|p| !targets.contains_key(*p))
        .collect();
    if !missing.is_empty() {
        bail!("no offsets for {missing:?} (no leader?)");
    }
    let mut errors: BTreeMap<Partition, (i16, Option<String>)> = BTreeMap::new();
    if execute {
        let mut topic_req = OffsetCommitRequestTopic::default();
        topic_req.name = TopicName(StrBytes::from_string(topic.clone()));
        topic_req.partitions = targets
            .iter()
            .map(|((_, p), o)| {
                let mut cp = OffsetCommitRequestPartition::default();
                cp.partition_index = *p;
                cp.committed_offset = *o;
                cp.committed_leader_epoch = -1;
                cp
            })
            .collect();
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(StrBytes::from_string(group.to_string()));
        // An admin commit: no generation, no member (the group must be empty).
        req.generation_id_or_member_epoch = -1;
        req.retention_time_ms = -1;
        req.topics = vec![topic_req];
        let ResponseKind::OffsetCommit(r) =
            client.send(Target::Node(node), (2, 8), RequestKind::OffsetCommit(req))?
        else {
            bail!("OffsetCommit answered with another response");
        };
        for t in r.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    errors.insert(
                        (t.name.0.to_string(), p.partition_index),
                        (p.error_code, None),
                    );
                }
            }
        }
    }
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|(p, o)| {
            let result = match errors.get(p) {
                Some((c, m)) => error_text(*c, m.as_deref()),
                None if execute => "committed".to_string(),
                None => "dry run".to_string(),
            };
            vec![p.0.clone(), p.1.to_string(), o.to_string(), result]
        })
        .collect();
    let mut text = table(&["TOPIC", "PARTITION", "NEW-OFFSET", "RESULT"], &rows);
    if !execute {
        text.push_str("\nA dry run: add --execute to commit these offsets.\n");
    }
    let json = json!({
        "group": group,
        "executed": execute,
        "partitions": targets.iter().map(|(p, o)| {
            let e = errors.get(p);
            json!({
                "topic": p.0,
                "partition": p.1,
                "offset": o,
                "error": e.map_or(Value::Null, |(c, m)| error_json(*c, m.as_deref())),
            })
        }).collect::<Vec<_>>(),
    });
    Ok(Report {
        json,
        text,
        ok: errors.is_empty(),
    })
}
