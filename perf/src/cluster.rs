//! Topic setup and partition discovery before a run, on the main thread: create the topic if
//! asked, wait until every partition has a leader, and look up start offsets.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, ListOffsetsRequest, MetadataRequest, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cli::Config;
use crate::conn::Admin;
use crate::errors::error_name;

const METADATA_VERSION: i16 = 12;
const CREATE_TOPICS_VERSION: i16 = 5;
const LIST_OFFSETS_VERSION: i16 = 5;
/// How long partitions of a new topic may take to get leaders.
const LEADERS_WAIT: Duration = Duration::from_secs(15);

const TOPIC_ALREADY_EXISTS: i16 = 36;

/// Where each partition of the topic is led.
#[derive(Clone, Debug)]
pub struct TopicLayout {
    /// `(partition, leader address)`, by partition.
    pub leaders: Vec<(i32, SocketAddr)>,
    pub brokers: usize,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Creates the topic when asked (an existing one is fine if it has enough partitions) and
/// returns its layout once every partition has a leader.
pub async fn prepare_topic(cfg: &Config) -> Result<TopicLayout> {
    let mut admin = Admin::connect(cfg.bootstrap).await?;
    if cfg.create {
        create_topic(&mut admin, cfg).await?;
    }
    let deadline = std::time::Instant::now() + LEADERS_WAIT;
    loop {
        match layout(&mut admin, &cfg.topic).await? {
            Ok(l) => {
                ensure!(
                    l.leaders.len() >= cfg.partitions as usize,
                    "topic {} has {} partitions, the run asks for {} (use another --topic)",
                    cfg.topic,
                    l.leaders.len(),
                    cfg.partitions
                );
                let mut l = l;
                l.leaders.truncate(cfg.partitions as usize);
                return Ok(l);
            }
            Err(why) if std::time::Instant::now() < deadline => {
                let _ = why;
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
            Err(why) => bail!("topic {} is not ready: {why}", cfg.topic),
        }
    }
}

async fn create_topic(admin: &mut Admin, cfg: &Config) -> Result<()> {
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(&cfg.topic))
            .with_num_partitions(i32::try_from(cfg.partitions)?)
            .with_replication_factor(cfg.replication_factor)])
        .with_timeout_ms(cfg.request_timeout_ms);
    let ResponseKind::CreateTopics(response) =
        admin.call(CREATE_TOPICS_VERSION, request.into()).await?
    else {
        bail!("CreateTopics answered with another response type");
    };
    for t in &response.topics {
        match t.error_code {
            0 | TOPIC_ALREADY_EXISTS => {}
            code => {
                let hint = if cfg.replication_factor > 1 {
                    format!(
                        " (replication factor {} needs that many brokers, and replication)",
                        cfg.replication_factor
                    )
                } else {
                    String::new()
                };
                bail!(
                    "creating topic {}: {} ({code}){}{hint}",
                    cfg.topic,
                    error_name(code),
                    t.error_message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

/// The topic's layout, or why it is not ready yet (the outer error is a failed request).
async fn layout(admin: &mut Admin, topic: &str) -> Result<Result<TopicLayout, String>> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    let ResponseKind::Metadata(m) = admin.call(METADATA_VERSION, request.into()).await? else {
        bail!("Metadata answered with another response type");
    };
    let mut brokers: HashMap<BrokerId, SocketAddr> = HashMap::new();
    for b in &m.brokers {
        let addr = (b.host.as_str(), u16::try_from(b.port)?)
            .to_socket_addrs()
            .with_context(|| format!("resolving broker {}:{}", b.host, b.port))?
            .next()
            .with_context(|| format!("broker {}:{} resolves to nothing", b.host, b.port))?;
        brokers.insert(b.node_id, addr);
    }
    let Some(t) = m.topics.first() else {
        return Ok(Err("no topic in the metadata".into()));
    };
    if t.error_code != 0 {
        return Ok(Err(format!(
            "{} ({})",
            error_name(t.error_code),
            t.error_code
        )));
    }
    let mut leaders = Vec::with_capacity(t.partitions.len());
    for p in &t.partitions {
        match brokers.get(&p.leader_id) {
            Some(addr) if p.error_code == 0 => leaders.push((p.partition_index, *addr)),
            _ => {
                return Ok(Err(format!(
                    "partition {} has no leader",
                    p.partition_index
                )))
            }
        }
    }
    if leaders.is_empty() {
        return Ok(Err("no partitions yet".into()));
    }
    leaders.sort_by_key(|(p, _)| *p);
    Ok(Ok(TopicLayout {
        leaders,
        brokers: brokers.len(),
    }))
}

/// ListOffsets timestamps.
pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

/// Offsets of `partitions` at `timestamp` (`LATEST`, `EARLIEST`), asking each leader.
pub async fn offsets(
    topic: &str,
    leaders: &[(i32, SocketAddr)],
    timestamp: i64,
) -> Result<HashMap<i32, i64>> {
    let mut by_leader: HashMap<SocketAddr, Vec<i32>> = HashMap::new();
    for (p, addr) in leaders {
        by_leader.entry(*addr).or_default().push(*p);
    }
    let mut out = HashMap::new();
    for (addr, partitions) in by_leader {
        let mut admin = Admin::connect(addr).await?;
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )]);
        let ResponseKind::ListOffsets(r) = admin.call(LIST_OFFSETS_VERSION, request.into()).await?
        else {
            bail!("ListOffsets answered with another response type");
        };
        for t in &r.topics {
            for p in &t.partitions {
                ensure!(
                    p.error_code == 0,
                    "ListOffsets for {topic}-{}: {} ({})",
                    p.partition_index,
                    error_name(p.error_code),
                    p.error_code
                );
                out.insert(p.partition_index, p.offset);
            }
        }
    }
    for (p, _) in leaders {
        ensure!(
            out.contains_key(p),
            "ListOffsets did not answer for {topic}-{p}"
        );
    }
    Ok(out)
}
