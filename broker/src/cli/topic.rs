//! `skein topic create|list|describe|delete|alter-config`.

use anyhow::{bail, Result};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, MetadataResponse, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use super::client::{Client, Target};
use super::output::{error_json, error_text, ids, table, Report};
use super::TopicCommand;

/// Kafka's ConfigResource type for topics.
const RESOURCE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// DescribeConfigs' source of a config set on the topic itself.
const SOURCE_TOPIC: i8 = 1;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn run(client: &mut Client, command: TopicCommand, timeout_ms: i32) -> Result<Report> {
    match command {
        TopicCommand::Create {
            name: topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let mut t = CreatableTopic::default();
            t.name = name(&topic);
            t.num_partitions = partitions;
            t.replication_factor = replication_factor;
            t.configs = configs
                .into_iter()
                .map(|(k, v)| {
                    let mut c = CreatableTopicConfig::default();
                    c.name = StrBytes::from_string(k);
                    c.value = Some(StrBytes::from_string(v));
                    c
                })
                .collect();
            let mut req = CreateTopicsRequest::default();
            req.topics = vec![t];
            req.timeout_ms = timeout_ms;
            let ResponseKind::CreateTopics(resp) =
                client.send(Target::Controller, (2, 7), RequestKind::CreateTopics(req))?
            else {
                bail!("CreateTopics answered with another response");
            };
            let results = resp
                .topics
                .iter()
                .map(|r| {
                    let message = r.error_message.as_deref();
                    (
                        r.name.0.to_string(),
                        r.error_code,
                        message.map(str::to_string),
                    )
                })
                .collect();
            Ok(per_topic("Created", results))
        }
        TopicCommand::List => {
            let md = client.metadata(None)?;
            let mut names: Vec<String> = md
                .topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect();
            names.sort();
            let text = names.iter().map(|n| format!("{n}\n")).collect();
            Ok(Report {
                json: json!({ "topics": names }),
                text,
                ok: true,
            })
        }
        TopicCommand::Describe { names } => describe(client, names),
        TopicCommand::Delete { names } => {
            let mut req = DeleteTopicsRequest::default();
            req.topic_names = names.iter().map(|n| name(n)).collect();
            req.timeout_ms = timeout_ms;
            // v6 names topics in another field; v1-v5 is what every broker since 2.0 speaks.
            let ResponseKind::DeleteTopics(resp) =
                client.send(Target::Controller, (1, 5), RequestKind::DeleteTopics(req))?
            else {
                bail!("DeleteTopics answered with another response");
            };
            let results = resp
                .responses
                .iter()
                .map(|r| {
                    let topic = r.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                    let message = r.error_message.as_deref().map(str::to_string);
                    (topic, r.error_code, message)
                })
                .collect();
            Ok(per_topic("Deleted", results))
        }
        TopicCommand::AlterConfig {
            name: topic,
            set,
            delete,
        } => {
            if set.is_empty() && delete.is_empty() {
                bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
            }
            let mut configs: Vec<AlterableConfig> = set
                .into_iter()
                .map(|(k, v)| {
                    let mut c = AlterableConfig::default();
                    c.name = StrBytes::from_string(k);
                    c.config_operation = OP_SET;
                    c.value = Some(StrBytes::from_string(v));
                    c
                })
                .collect();
            for k in delete {
                let mut c = AlterableConfig::default();
                c.name = StrBytes::from_string(k);
                c.config_operation = OP_DELETE;
                configs.push(c);
            }
            let mut resource = AlterConfigsResource::default();
            resource.resource_type = RESOURCE_TOPIC;
            resource.resource_name = StrBytes::from_string(topic);
            resource.configs = configs;
            let mut req = IncrementalAlterConfigsRequest::default();
            req.resources = vec![resource];
            let ResponseKind::IncrementalAlterConfigs(resp) = client.send(
                Target::Controller,
                (0, 1),
                RequestKind::IncrementalAlterConfigs(req),
            )?
            else {
                bail!("IncrementalAlterConfigs answered with another response");
            };
            let results = resp
                .responses
                .iter()
                .map(|r| {
                    let message = r.error_message.as_deref().map(str::to_string);
                    (r.resource_name.to_string(), r.error_code, message)
                })
                .collect();
            Ok(per_topic("Altered", results))
        }
    }
}

/// One line per topic: what happened to it, or its error.
fn per_topic(done: &str, results: Vec<(String, i16, Option<String>)>) -> Report {
    let ok = results.iter().all(|r| r.1 == 0);
    let mut text = String::new();
    let json: Vec<Value> = results
        .iter()
        .map(|(topic, code, message)| {
            if *code == 0 {
                text.push_str(&format!("{done} topic {topic}.\n"));
            } else {
                let why = error_text(*code, message.as_deref());
                text.push_str(&format!("Topic {topic}: {why}\n"));
            }
            json!({ "topic": topic, "error": error_json(*code, message.as_deref()) })
        })
        .collect();
    Report {
        json: json!({ "results": json }),
        text,
        ok,
    }
}

fn describe(client: &mut Client, names: Vec<String>) -> Result<Report> {
    let md: MetadataResponse = client.metadata((!names.is_empty()).then(|| names.clone()))?;
    let mut topics: Vec<_> = md.topics.iter().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let configs = topic_configs(client, &topics)?;
    let mut ok = true;
    let mut text = String::new();
    let mut out = Vec::new();
    for t in topics {
        let topic = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        if t.error_code != 0 {
            ok = false;
            text.push_str(&format!(
                "Topic {topic}: {}\n",
                error_text(t.error_code, None)
            ));
            out.push(json!({ "topic": topic, "error": error_json(t.error_code, None) }));
            continue;
        }
        let mut partitions: Vec<_> = t.partitions.iter().collect();
        partitions.sort_by_key(|p| p.partition_index);
        let rf = partitions.first().map_or(0, |p| p.replica_nodes.len());
        let set: Vec<(String, String)> = configs.get(&topic).cloned().unwrap_or_default();
        let shown_configs: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        text.push_str(&format!(
            "Topic: {topic}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {rf}\tConfigs: {}\n",
            t.topic_id,
            partitions.len(),
            shown_configs.join(",")
        ));
        let rows: Vec<Vec<String>> = partitions
            .iter()
            .map(|p| {
                let to_ids = |v: &[kafka_protocol::messages::BrokerId]| {
                    ids(&v.iter().map(|b| b.0).collect::<Vec<_>>())
                };
                vec![
                    p.partition_index.to_string(),
                    p.leader_id.0.to_string(),
                    p.leader_epoch.to_string(),
                    to_ids(&p.replica_nodes),
                    to_ids(&p.isr_nodes),
                    to_ids(&p.offline_replicas),
                ]
            })
            .collect();
        text.push_str(&table(
            &["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "OFFLINE"],
            &rows,
        ));
        let parts: Vec<Value> = partitions
            .iter()
            .map(|p| {
                json!({
                    "partition": p.partition_index,
                    "leader": p.leader_id.0,
                    "leader_epoch": p.leader_epoch,
                    "replicas": p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                    "isr": p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                    "offline_replicas": p.offline_replicas.iter().map(|b| b.0).collect::<Vec<_>>(),
                })
            })
            .collect();
        let set_json: serde_json::Map<String, Value> = set
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        out.push(json!({
            "topic": topic,
            "topic_id": t.topic_id.to_string(),
            "internal": t.is_internal,
            "replication_factor": rf,
            "configs": set_json,
            "partitions": parts,
            "error": Value::Null,
        }));
    }
    Ok(Report {
        json: json!({ "topics": out }),
        text,
        ok,
    })
}

/// The configs set on each topic (not the defaults), by topic name.
fn topic_configs(
    client: &mut Client,
    topics: &[&kafka_protocol::messages::metadata_response::MetadataResponseTopic],
) -> Result<std::collections::BTreeMap<String, Vec<(String, String)>>> {
    let mut req = DescribeConfigsRequest::default();
    req.resources = topics
        .iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| t.name.as_ref())
        .map(|n| {
            let mut r = DescribeConfigsResource::default();
            r.resource_type = RESOURCE_TOPIC;
            r.resource_name = n.0.clone();
            // Every config (an empty list would ask for none).
            r.configuration_keys = None;
            r
        })
        .collect();
    let mut out = std::collections::BTreeMap::new();
    if req.resources.is_empty() {
        return Ok(out);
    }
    let ResponseKind::DescribeConfigs(resp) =
        client.send(Target::Any, (1, 4), RequestKind::DescribeConfigs(req))?
    else {
        bail!("DescribeConfigs answered with another response");
    };
    for r in resp.results {
        let set: Vec<(String, String)> = r
            .configs
            .iter()
            .filter(|c| c.config_source == SOURCE_TOPIC)
            .map(|c| {
                let value = c.value.as_deref().unwrap_or_default();
                (c.name.to_string(), value.to_string())
            })
            .collect();
        out.insert(r.resource_name.to_string(), set);
    }
    Ok(out)
}
