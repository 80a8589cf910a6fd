//! `skein cluster describe`, `skein leader elect`, `skein partition reassign|reassignments`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, ElectLeadersRequest,
    ListPartitionReassignmentsRequest, MetadataResponse, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::client::{Client, Target};
use super::output::{error_json, error_text, ids, table, Report};

/// ElectLeaders' answer for a partition whose leader is already the one asked for.
const ELECTION_NOT_NEEDED: i16 = 84;

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn broker_ids(v: &[BrokerId]) -> Vec<i32> {
    v.iter().map(|b| b.0).collect()
}

pub fn describe(client: &mut Client) -> Result<Report> {
    let md = client.metadata(None)?;
    let mut brokers: Vec<_> = md.brokers.iter().collect();
    brokers.sort_by_key(|b| b.node_id.0);
    let controller = md.controller_id.0;
    let cluster_id = md.cluster_id.as_deref().unwrap_or_default().to_string();
    let mut under = Vec::new();
    let mut offline = Vec::new();
    let mut partitions = 0usize;
    for t in &md.topics {
        let topic = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        for p in &t.partitions {
            partitions += 1;
            let row = json!({
                "topic": topic,
                "partition": p.partition_index,
                "leader": p.leader_id.0,
                "replicas": broker_ids(&p.replica_nodes),
                "isr": broker_ids(&p.isr_nodes),
            });
            if p.leader_id.0 < 0 {
                offline.push(row);
            } else if p.isr_nodes.len() < p.replica_nodes.len() {
                under.push(row);
            }
        }
    }
    let mut text = format!("Cluster id: {cluster_id}\nController: {controller}\n\n");
    let rows: Vec<Vec<String>> = brokers
        .iter()
        .map(|b| {
            vec![
                b.node_id.0.to_string(),
                b.host.to_string(),
                b.port.to_string(),
                b.rack.as_deref().unwrap_or("-").to_string(),
                if b.node_id.0 == controller { "yes" } else { "" }.to_string(),
            ]
        })
        .collect();
    text.push_str(&table(
        &["BROKER", "HOST", "PORT", "RACK", "CONTROLLER"],
        &rows,
    ));
    text.push_str(&format!(
        "\n{partitions} partitions, {} under-replicated, {} offline\n",
        under.len(),
        offline.len()
    ));
    for (label, list) in [("Under-replicated", &under), ("Offline", &offline)] {
        if list.is_empty() {
            continue;
        }
        text.push_str(&format!("\n{label}:\n"));
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|p| {
                let list_of = |k: &str| {
                    let v: Vec<i32> = p[k]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_i64())
                                .map(|x| x as i32)
                                .collect()
                        })
                        .unwrap_or_default();
                    ids(&v)
                };
                vec![
                    p["topic"].as_str().unwrap_or_default().to_string(),
                    p["partition"].to_string(),
                    p["leader"].to_string(),
                    list_of("replicas"),
                    list_of("isr"),
                ]
            })
            .collect();
        text.push_str(&table(
            &["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR"],
            &rows,
        ));
    }
    let json = json!({
        "cluster_id": cluster_id,
        "controller": controller,
        "brokers": brokers.iter().map(|b| json!({
            "id": b.node_id.0,
            "host": b.host.to_string(),
            "port": b.port,
            "rack": b.rack.as_deref(),
        })).collect::<Vec<_>>(),
        "partitions": partitions,
        "under_replicated_partitions": under,
        "offline_partitions": offline,
    });
    Ok(Report {
        json,
        text,
        ok: true,
    })
}

pub fn elect(
    client: &mut Client,
    unclean: bool,
    topic: Option<String>,
    partition: Option<i32>,
    timeout_ms: i32,
) -> Result<Report> {
    let asked = match (topic, partition) {
        (None, _) => None,
        (Some(t), Some(p)) => Some(vec![(t, vec![p])]),
        (Some(t), None) => {
            let md = client.metadata(Some(vec![t.clone()]))?;
            let partitions: Vec<i32> = md
                .topics
                .iter()
                .flat_map(|x| x.partitions.iter().map(|p| p.partition_index))
                .collect();
            if partitions.is_empty() {
                bail!("topic {t} has no partitions (does it exist?)");
            }
            Some(vec![(t, partitions)])
        }
    };
    let mut req = ElectLeadersRequest::default();
    req.election_type = i8::from(unclean);
    req.timeout_ms = timeout_ms;
    req.topic_partitions = asked.map(|list| {
        list.into_iter()
            .map(|(t, partitions)| {
                let mut tp = TopicPartitions::default();
                tp.topic = topic_name(&t);
                tp.partitions = partitions;
                tp
            })
            .collect()
    });
    // v0 knows only preferred elections.
    let want = if unclean { (1, 2) } else { (0, 2) };
    let ResponseKind::ElectLeaders(resp) =
        client.send(Target::Controller, want, RequestKind::ElectLeaders(req))?
    else {
        bail!("ElectLeaders answered with another response");
    };
    if resp.error_code != 0 {
        bail!(
            "ElectLeaders refused: {}",
            error_text(resp.error_code, None)
        );
    }
    let mut rows = Vec::new();
    let mut results = Vec::new();
    let mut ok = true;
    for t in &resp.replica_election_results {
        for p in &t.partition_result {
            let message = p.error_message.as_deref();
            // Nothing to do is not a failure, as kafka-leader-election.sh sees it.
            ok &= p.error_code == 0 || p.error_code == ELECTION_NOT_NEEDED;
            let outcome = if p.error_code == 0 {
                "elected".to_string()
            } else {
                error_text(p.error_code, message)
            };
            rows.push(vec![
                t.topic.0.to_string(),
                p.partition_id.to_string(),
                outcome,
            ]);
            results.push(json!({
                "topic": t.topic.0.to_string(),
                "partition": p.partition_id,
                "error": error_json(p.error_code, message),
            }));
        }
    }
    let text = if rows.is_empty() {
        "No partition needed an election.\n".to_string()
    } else {
        table(&["TOPIC", "PARTITION", "RESULT"], &rows)
    };
    Ok(Report {
        json: json!({ "results": results }),
        text,
        ok,
    })
}

/// kafka-reassign-partitions' plan format.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub version: i32,
    pub partitions: Vec<PlannedPartition>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct PlannedPartition {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
}

/// An even spread of every partition's replicas over `brokers`, keeping each partition's
/// replication factor: each partition, in topic and partition order, is led by the broker that
/// leads the fewest so far and followed by those that hold the fewest replicas.
pub fn rebalanced(md: &MetadataResponse, brokers: &[i32]) -> Plan {
    let mut topics: Vec<_> = md.topics.iter().filter(|t| t.error_code == 0).collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    // (replicas held, partitions led) per broker.
    let mut load: BTreeMap<i32, (usize, usize)> = brokers.iter().map(|b| (*b, (0, 0))).collect();
    let mut partitions = Vec::new();
    for t in topics {
        let topic = t.name.as_ref().map(|x| x.0.to_string()).unwrap_or_default();
        let mut ps: Vec<_> = t.partitions.iter().collect();
        ps.sort_by_key(|p| p.partition_index);
        for p in ps {
            let rf = p.replica_nodes.len().min(brokers.len());
            // The leader first: fewest leaderships, then fewest replicas.
            let Some(leader) = brokers
                .iter()
                .copied()
                .min_by_key(|b| (load[b].1, load[b].0, *b))
            else {
                continue;
            };
            let mut followers: Vec<i32> =
                brokers.iter().copied().filter(|b| *b != leader).collect();
            followers.sort_by_key(|b| (load[b].0, load[b].1, *b));
            let mut replicas = vec![leader];
            replicas.extend(followers.into_iter().take(rf.saturating_sub(1)));
            for (i, b) in replicas.iter().enumerate() {
                if let Some(l) = load.get_mut(b) {
                    l.0 += 1;
                    l.1 += usize::from(i == 0);
                }
            }
            partitions.push(PlannedPartition {
                topic: topic.clone(),
                partition: p.partition_index,
                replicas,
            });
        }
    }
    Plan {
        version: 1,
        partitions,
    }
}

pub fn reassign(
    client: &mut Client,
    plan: Option<PathBuf>,
    rebalance: bool,
    execute: bool,
    timeout_ms: i32,
) -> Result<Report> {
    let md = client.metadata(None)?;
    let current: BTreeMap<(String, i32), Vec<i32>> = md
        .topics
        .iter()
        .flat_map(|t| {
            let topic = t.name.as_ref().map(|x| x.0.to_string()).unwrap_or_default();
            t.partitions.iter().map(move |p| {
                (
                    (topic.clone(), p.partition_index),
                    broker_ids(&p.replica_nodes),
                )
            })
        })
        .collect();
    let plan = match (plan, rebalance) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("read the plan {}", path.display()))?;
            serde_json::from_str::<Plan>(&text)
                .with_context(|| format!("parse the plan {}", path.display()))?
        }
        (None, true) => {
            let mut brokers = client.broker_ids()?;
            brokers.sort_unstable();
            rebalanced(&md, &brokers)
        }
        (None, false) => bail!("give --plan FILE or --rebalance"),
    };
    // Only what changes is sent.
    let moves: Vec<&PlannedPartition> = plan
        .partitions
        .iter()
        .filter(|p| current.get(&(p.topic.clone(), p.partition)) != Some(&p.replicas))
        .collect();
    let rows: Vec<Vec<String>> = moves
        .iter()
        .map(|p| {
            let before = current
                .get(&(p.topic.clone(), p.partition))
                .map_or("?".to_string(), |r| ids(r));
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                before,
                ids(&p.replicas),
            ]
        })
        .collect();
    let mut text = table(&["TOPIC", "PARTITION", "CURRENT", "PROPOSED"], &rows);
    let proposed = Plan {
        version: 1,
        partitions: moves
            .iter()
            .map(|p| PlannedPartition {
                topic: p.topic.clone(),
                partition: p.partition,
                replicas: p.replicas.clone(),
            })
            .collect(),
    };
    if !execute || moves.is_empty() {
        if moves.is_empty() {
            text = "Every partition already has the planned replicas.\n".to_string();
        } else {
            text.push_str("\nA dry run: add --execute to start these reassignments.\n");
        }
        return Ok(Report {
            json: json!({ "executed": false, "plan": proposed }),
            text,
            ok: true,
        });
    }
    client
        .supports(
            Target::Controller,
            ApiKey::AlterPartitionReassignments,
            (0, 0),
        )
        .context("partition reassignment needs AlterPartitionReassignments")?;
    let mut by_topic: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
    for p in &moves {
        let mut rp = ReassignablePartition::default();
        rp.partition_index = p.partition;
        rp.replicas = Some(p.replicas.iter().map(|b| BrokerId(*b)).collect());
        by_topic.entry(p.topic.as_str()).or_default().push(rp);
    }
    let mut req = AlterPartitionReassignmentsRequest::default();
    req.timeout_ms = timeout_ms;
    req.topics = by_topic
        .into_iter()
        .map(|(t, partitions)| {
            let mut rt = ReassignableTopic::default();
            rt.name = topic_name(t);
            rt.partitions = partitions;
            rt
        })
        .collect();
    let ResponseKind::AlterPartitionReassignments(resp) = client.send(
        Target::Controller,
        (0, 0),
        RequestKind::AlterPartitionReassignments(req),
    )?
    else {
        bail!("AlterPartitionReassignments answered with another response");
    };
    if resp.error_code != 0 {
        bail!(
            "AlterPartitionReassignments refused: {}",
            error_text(resp.error_code, resp.error_message.as_deref())
        );
    }
    let mut ok = true;
    let mut results = Vec::new();
    text.push_str("\nStarted:\n");
    let mut rows = Vec::new();
    for t in &resp.responses {
        for p in &t.partitions {
            let message = p.error_message.as_deref();
            ok &= p.error_code == 0;
            rows.push(vec![
                t.name.0.to_string(),
                p.partition_index.to_string(),
                if p.error_code == 0 {
                    "started".to_string()
                } else {
                    error_text(p.error_code, message)
                },
            ]);
            results.push(json!({
                "topic": t.name.0.to_string(),
                "partition": p.partition_index,
                "error": error_json(p.error_code, message),
            }));
        }
    }
    text.push_str(&table(&["TOPIC", "PARTITION", "RESULT"], &rows));
    Ok(Report {
        json: json!({ "executed": true, "plan": proposed, "results": results }),
        text,
        ok,
    })
}

pub fn reassignments(client: &mut Client, timeout_ms: i32) -> Result<Report> {
    let mut req = ListPartitionReassignmentsRequest::default();
    req.timeout_ms = timeout_ms;
    let ResponseKind::ListPartitionReassignments(resp) = client.send(
        Target::Controller,
        (0, 0),
        RequestKind::ListPartitionReassignments(req),
    )?
    else {
        bail!("ListPartitionReassignments answered with another response");
    };
    if resp.error_code != 0 {
        bail!(
            "ListPartitionReassignments refused: {}",
            error_text(resp.error_code, resp.error_message.as_deref())
        );
    }
    let mut rows = Vec::new();
    let mut list: Vec<Value> = Vec::new();
    for t in &resp.topics {
        for p in &t.partitions {
            rows.push(vec![
                t.name.0.to_string(),
                p.partition_index.to_string(),
                ids(&broker_ids(&p.replicas)),
                ids(&broker_ids(&p.adding_replicas)),
                ids(&broker_ids(&p.removing_replicas)),
            ]);
            list.push(json!({
                "topic": t.name.0.to_string(),
                "partition": p.partition_index,
                "replicas": broker_ids(&p.replicas),
                "adding": broker_ids(&p.adding_replicas),
                "removing": broker_ids(&p.removing_replicas),
            }));
        }
    }
    let text = if rows.is_empty() {
        "No reassignment in progress.\n".to_string()
    } else {
        table(
            &["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"],
            &rows,
        )
    };
    Ok(Report {
        json: json!({ "reassignments": list }),
        text,
        ok: true,
    })
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };

    use super::*;

    fn topic(name: &str, partitions: i32, rf: usize) -> MetadataResponseTopic {
        let mut t = MetadataResponseTopic::default();
        t.name = Some(topic_name(name));
        t.partitions = (0..partitions)
            .map(|i| {
                let mut p = MetadataResponsePartition::default();
                p.partition_index = i;
                // Everything on broker 1 and its neighbours: the lopsided start a new broker
                // finds.
                p.replica_nodes = (1..=rf as i32).map(BrokerId).collect();
                p
            })
            .collect();
        t
    }

    #[test]
    fn a_rebalance_spreads_leaders_and_replicas_evenly_and_keeps_the_replication_factor() {
        let mut md = MetadataResponse::default();
        md.topics = vec![topic("b", 5, 2), topic("a", 6, 3)];
        let brokers = [1, 2, 3, 4];
        let plan = rebalanced(&md, &brokers);
        assert_eq!(plan.partitions.len(), 11);
        let mut leaders = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for p in &plan.partitions {
            let rf = if p.topic == "a" { 3 } else { 2 };
            assert_eq!(p.replicas.len(), rf, "{p:?}");
            let mut unique = p.replicas.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), rf, "no broker twice: {p:?}");
            *leaders.entry(p.replicas[0]).or_insert(0) += 1;
            for r in &p.replicas {
                *replicas.entry(*r).or_insert(0) += 1;
            }
        }
        let spread = |m: &BTreeMap<i32, i32>| {
            assert_eq!(m.len(), brokers.len(), "every broker gets some: {m:?}");
            m.values().max().unwrap_or(&0) - m.values().min().unwrap_or(&0)
        };
        assert!(spread(&leaders) <= 1, "leaders {leaders:?}");
        assert!(spread(&replicas) <= 1, "replicas {replicas:?}");
    }

    #[test]
    fn plans_read_kafkas_format() {
        let text = r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[2,3],"log_dirs":["any","any"]}]}"#;
        let plan: Plan = serde_json::from_str(text).expect("plan");
        assert_eq!(plan.partitions[0].replicas, vec![2, 3]);
    }
}
