//! Followers copy their leaders, and leaders keep their ISR (per shard).
//!
//! A shard runs one fetcher per leader node it follows: one connection and one Fetch (v12,
//! replica id set, LastFetchedEpoch per partition) batching every partition that pair shares.
//! Batches are appended unchanged (offsets, epochs, CRCs), a DivergingEpoch answer truncates the
//! diverged tail, and the leader's high watermark is taken as far as the local log reaches.
//! The same loop proposes the ISR changes of partitions this shard leads (AlterPartition to the
//! controller, compare-and-set on the partition epoch).
//!
//! Catch-up is throttled as Kafka's `follower.replication.throttled.rate` is: a partition whose
//! local replica is outside the ISR is fetched only while the node's byte budget has room, and
//! what it receives is charged to that budget; in-sync partitions are never held back.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::net::TcpStream;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use skein_controller::rpc::with_timeout;
use skein_net::internal::InternalMessage;
use skein_net::tls::MaybeTls;
use skein_net::{decode_response, encode_request, read_answer, CorrelationId, RequestHeader};
use skein_storage::StorageError;

use crate::partition::Partition;
use crate::replica::IsrProposal;
use crate::shard::Shard;

/// Fetch v12: the first with DivergingEpoch in the response, and still keyed by topic name.
const FETCH_VERSION: i16 = 12;
/// How often a shard looks for leaders to follow and ISR changes to propose.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Connecting to a leader, and the slack a fetch answer gets past its long-poll wait.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const ANSWER_SLACK: Duration = Duration::from_secs(10);
/// How long an ISR proposal may take at the controller.
const ALTER_PARTITION_TIMEOUT: Duration = Duration::from_secs(5);
/// A follower refuses answers larger than this (a broken leader must not make it allocate
/// without bound: answers get their whole buffer reserved, see `read_answer`); well above
/// `replica.fetch.response.max.bytes`' ceiling in practice.
const ANSWER_BYTES_MAX: usize = 1 << 30;
const CLIENT_ID: &str = "skein-replica-fetcher";
/// Bounds of the sleep of a fetcher whose partitions are all waiting for the budget: not so
/// short that it spins, not so long that it misses a new leader or partition.
const THROTTLED_WAIT_MIN: Duration = Duration::from_millis(1);
const THROTTLED_WAIT_MAX: Duration = CHECK_INTERVAL;

/// Runs until the shard stops: starts a fetcher for every leader this shard follows and
/// proposes ISR changes for the partitions it leads.
pub async fn run(shard: Rc<Shard>) {
    // Each fetcher with the flag it sets when it ends.
    let mut fetchers: HashMap<i32, (glommio::Task<()>, Rc<Cell<bool>>)> = HashMap::new();
    let lag = Duration::from_millis(shard.layout.broker.replication.lag_time_max_ms);
    while !shard.is_stopping() {
        let node_id = shard.layout.node_id.0;
        let partitions = shard.partitions();
        // Fetchers end by themselves once they follow nothing; forget those.
        fetchers.retain(|_, (_, done)| !done.get());
        for p in &partitions {
            let leader = p.leader();
            if leader >= 0 && leader != node_id && !fetchers.contains_key(&leader) {
                let done = Rc::new(Cell::new(false));
                let flag = done.clone();
                let shard = shard.clone();
                let task = glommio::spawn_local(async move {
                    follow(shard, leader).await;
                    flag.set(true);
                });
                fetchers.insert(leader, (task, done));
            }
            if let Some(proposal) = p.isr_proposal(lag) {
                glommio::spawn_local(propose(shard.clone(), Rc::downgrade(p), proposal)).detach();
            }
        }
        glommio::timer::sleep(CHECK_INTERVAL).await;
    }
    for (_, (t, _)) in fetchers {
        t.cancel().await;
    }
}

/// Sends an ISR change to the controller (through the controller shard) and installs its answer.
/// Holds the partition weakly: a replica being closed or deleted must not wait for the answer.
async fn propose(shard: Rc<Shard>, p: Weak<Partition>, proposal: IsrProposal) {
    let Some(partition) = p.upgrade() else {
        return;
    };
    let node_id = shard.layout.node_id.0;
    let request = InternalMessage::AlterPartition {
        broker_id: node_id,
        broker_epoch: -1,
        topic_id: *partition.topic_id.as_bytes(),
        partition: partition.tp.partition,
        leader_epoch: partition.leader_epoch(),
        partition_epoch: proposal.partition_epoch,
        isr: proposal.isr.clone(),
    };
    drop(partition);
    let target = shard.layout.controller_shard;
    let answer = shard
        .invoke_on(target, move |s| async move {
            let plane = s.control.clone()?;
            let mut request = request;
            if let InternalMessage::AlterPartition { broker_epoch, .. } = &mut request {
                *broker_epoch = plane.broker_epoch.get();
            }
            plane
                .link
                .call(node_id, request, ALTER_PARTITION_TIMEOUT)
                .await
                .ok()
        })
        .await
        .flatten();
    let Some(p) = p.upgrade() else {
        return;
    };
    match answer {
        Some(InternalMessage::AlterPartitionResponse {
            error_code: 0,
            isr,
            partition_epoch,
            ..
        }) => {
            tracing::debug!(partition = %p.tp, ?isr, partition_epoch, "ISR changed");
            p.isr_proposal_done(Some((isr, partition_epoch)));
        }
        other => {
            tracing::debug!(partition = %p.tp, proposal = ?proposal.isr, answer = ?other.map(|m| m.error_code()), "ISR change not accepted");
            p.isr_proposal_done(None);
        }
    }
}

/// One fetcher: copies every partition this shard follows from `leader`, until none is left.
async fn follow(shard: Rc<Shard>, leader: i32) {
    let settings = shard.layout.broker.replication.clone();
    let backoff = Duration::from_millis(settings.fetch_backoff_ms);
    let mut conn: Option<(SocketAddr, LeaderStream)> = None;
    let mut paused: HashMap<crate::shard::ids::TopicPartition, Instant> = HashMap::new();
    let mut correlation = 0i32;
    let mut last_warning = Instant::now() - Duration::from_secs(60);
    loop {
        if shard.is_stopping() {
            return;
        }
        let followed: Vec<Rc<Partition>> = shard
            .partitions()
            .into_iter()
            .filter(|p| p.leader() == leader && !p.is_leader())
            .collect();
        if followed.is_empty() {
            return;
        }
        let now = Instant::now();
        paused.retain(|_, until| *until > now);
        let ready: Vec<Rc<Partition>> = followed
            .into_iter()
            .filter(|p| !paused.contains_key(&p.tp))
            .collect();
        if ready.is_empty() {
            glommio::timer::sleep(backoff).await;
            continue;
        }
        let budget = &shard.replication_budget;
        let in_sync: Vec<bool> = ready.iter().map(|p| p.is_in_sync()).collect();
        let allowance = budget.available(Instant::now());
        let planned: Vec<Planned> = plan(&in_sync, settings.fetch_max_bytes, allowance)
            .into_iter()
            .filter_map(|(i, max_bytes, catching_up)| {
                Some(Planned {
                    partition: ready.get(i)?.clone(),
                    max_bytes,
                    catching_up,
                })
            })
            .collect();
        if planned.is_empty() {
            // Only catch-up partitions, and the budget is spent: wait for it to refill.
            let wait = budget.wait(Instant::now());
            glommio::timer::sleep(wait.clamp(THROTTLED_WAIT_MIN, THROTTLED_WAIT_MAX)).await;
            continue;
        }
        // The epoch each partition was fetched under: an answer is applied only if the
        // partition still follows this leader in that epoch (another fetcher may own it now).
        let epochs: HashMap<crate::shard::ids::TopicPartition, i32> = planned
            .iter()
            .map(|x| (x.partition.tp.clone(), x.partition.leader_epoch()))
            .collect();
        let result = fetch_once(
            &shard,
            leader,
            &settings,
            &mut conn,
            &planned,
            &mut correlation,
        )
        .await
        .map(|answer| answer.into_iter());
        let answers = match result {
            Ok(a) => a,
            Err(e) => {
                conn = None;
                if last_warning.elapsed() > Duration::from_secs(5) {
                    last_warning = Instant::now();
                    tracing::warn!(leader, error = %e, "replica fetch failed; retrying");
                }
                glommio::timer::sleep(backoff).await;
                continue;
            }
        };
        for (planned, data) in answers {
            if planned.catching_up {
                let received = data.records.as_ref().map_or(0, Bytes::len);
                budget.charge(u64::try_from(received).unwrap_or(u64::MAX), Instant::now());
            }
            let p = planned.partition;
            let current = p.leader() == leader && epochs.get(&p.tp) == Some(&p.leader_epoch());
            if !current {
                continue;
            }
            if let Err(e) = apply(&p, data).await {
                tracing::debug!(partition = %p.tp, leader, error = %e, "replica fetch answer not applied; pausing the partition");
                paused.insert(p.tp.clone(), Instant::now() + backoff);
            }
        }
    }
}

/// One partition in the next fetch.
#[derive(Clone)]
struct Planned {
    partition: Rc<Partition>,
    /// Its `partition_max_bytes`.
    max_bytes: usize,
    /// Outside the ISR: what it receives is charged to the node's budget.
    catching_up: bool,
}

/// Which ready partitions (by whether each is in sync) the next fetch carries, as (index,
/// partition max bytes, catching up). In-sync ones always, with `fetch_max_bytes`, and first:
/// a leader fills its answer in request order, so a large catch-up answer cannot crowd them
/// out of `replica.fetch.response.max.bytes` (except behind a catch-up partition of a topic
/// listed earlier: the request groups partitions by topic). Catch-up ones only while
/// `allowance` (what the budget holds now) lasts, each with at most what is left of it.
fn plan(in_sync: &[bool], fetch_max_bytes: usize, allowance: u64) -> Vec<(usize, usize, bool)> {
    let mut out: Vec<(usize, usize, bool)> = in_sync
        .iter()
        .enumerate()
        .filter(|(_, s)| **s)
        .map(|(i, _)| (i, fetch_max_bytes, false))
        .collect();
    let mut left = allowance;
    for (i, _) in in_sync.iter().enumerate().filter(|(_, s)| !**s) {
        if left == 0 {
            break;
        }
        let max_bytes = usize::try_from(left).map_or(fetch_max_bytes, |l| l.min(fetch_max_bytes));
        left = left.saturating_sub(u64::try_from(max_bytes).unwrap_or(u64::MAX));
        out.push((i, max_bytes, true));
    }
    out
}

/// One fetch round trip to `leader` for `planned`; each answered partition with its data.
async fn fetch_once(
    shard: &Shard,
    leader: i32,
    settings: &crate::settings::ReplicationSettings,
    conn: &mut Option<(SocketAddr, LeaderStream)>,
    planned: &[Planned],
    correlation: &mut i32,
) -> Result<Vec<(Planned, PartitionData)>, String> {
    let (host, addr) = leader_addr(shard, leader).await?;
    if conn.as_ref().is_some_and(|(a, _)| *a != addr) {
        *conn = None;
    }
    if conn.is_none() {
        let stream = with_timeout(CONNECT_TIMEOUT, connect_leader(shard, &host, addr))
            .await
            .ok_or_else(|| format!("connecting to {addr} timed out"))??;
        *conn = Some((addr, stream));
    }
    let Some((_, stream)) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let request = fetch_request(shard.layout.node_id.0, settings, planned);
    *correlation = correlation.wrapping_add(1);
    let header = RequestHeader {
        api_key: ApiKey::Fetch,
        api_version: FETCH_VERSION,
        correlation_id: CorrelationId(*correlation),
        client_id: Some(StrBytes::from_static_str(CLIENT_ID)),
    };
    let frame = encode_request(&header, &RequestKind::Fetch(request))
        .map_err(|e| format!("encoding a fetch: {e}"))?;
    skein_net::write_flush(stream, &frame)
        .await
        .map_err(|e| format!("sending a fetch to {addr}: {e}"))?;
    let wait = Duration::from_millis(settings.fetch_wait_max_ms) + ANSWER_SLACK;
    let body = with_timeout(wait, read_answer(stream, ANSWER_BYTES_MAX))
        .await
        .ok_or_else(|| format!("no fetch answer from {addr} within {wait:?}"))?
        .map_err(|e| format!("reading a fetch answer from {addr}: {e}"))?
        .ok_or_else(|| format!("{addr} closed the connection"))?;
    let decoded = decode_response(ApiKey::Fetch, FETCH_VERSION, body)
        .map_err(|e| format!("decoding a fetch answer from {addr}: {e}"))?;
    if decoded.correlation_id.0 != *correlation {
        return Err(format!(
            "fetch answer for correlation id {} (expected {})",
            decoded.correlation_id.0, correlation
        ));
    }
    let ResponseKind::Fetch(response) = decoded.body else {
        return Err("not a fetch answer".into());
    };
    if response.error_code != 0 {
        return Err(format!("fetch refused: error {}", response.error_code));
    }
    let mut out = Vec::with_capacity(planned.len());
    for topic in response.responses {
        for data in topic.partitions {
            let p = planned.iter().find(|x| {
                *x.partition.tp.topic == *topic.topic.0
                    && x.partition.tp.partition == data.partition_index
            });
            if let Some(p) = p {
                out.push((p.clone(), data));
            }
        }
    }
    Ok(out)
}

fn fetch_request(
    node_id: i32,
    settings: &crate::settings::ReplicationSettings,
    planned: &[Planned],
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for x in planned {
        let p = &x.partition;
        let partition = FetchPartition::default()
            .with_partition(p.tp.partition)
            .with_current_leader_epoch(p.leader_epoch())
            .with_fetch_offset(p.log.log_end_offset())
            .with_last_fetched_epoch(p.log.latest_leader_epoch().map_or(-1, |e| e.0))
            .with_log_start_offset(p.log.log_start_offset())
            .with_partition_max_bytes(clamp_i32(x.max_bytes));
        match topics.iter_mut().find(|t| *t.topic.0 == *p.tp.topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(p.tp.topic.to_string())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(node_id))
        .with_max_wait_ms(clamp_i32(settings.fetch_wait_max_ms as usize))
        .with_min_bytes(1)
        .with_max_bytes(clamp_i32(settings.fetch_response_max_bytes))
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// Applies one partition's answer on the follower.
async fn apply(p: &Partition, data: PartitionData) -> Result<(), String> {
    if p.is_leader() {
        // Leadership moved here while the fetch was out; the answer is stale.
        return Ok(());
    }
    let error = ResponseError::try_from_code(data.error_code);
    match error {
        None => {
            let diverging = &data.diverging_epoch;
            if diverging.end_offset >= 0 {
                let target = truncation_point(p, diverging.epoch, diverging.end_offset);
                if target < p.log.log_end_offset() {
                    tracing::info!(partition = %p.tp, leader_epoch = diverging.epoch, end_offset = diverging.end_offset, truncate_to = target, "log diverged from the leader's; truncating");
                    p.truncate_to(target)
                        .await
                        .map_err(|e| format!("truncating to {target}: {e}"))?;
                }
                return Ok(());
            }
            let records = data.records.unwrap_or_default();
            p.append_from_leader(whole_batches(records), data.high_watermark)
                .await
                .map_err(|e| match e {
                    StorageError::OffsetOverlap { .. } | StorageError::OffsetGap { .. } => {
                        format!("leader data does not continue this log: {e}")
                    }
                    e => format!("appending: {e}"),
                })
        }
        Some(ResponseError::OffsetOutOfRange) => {
            let end = p.log.log_end_offset();
            if data.log_start_offset > end {
                // The leader deleted what this replica would fetch next (retention while it
                // was away): start over at the leader's log start.
                tracing::info!(partition = %p.tp, log_start_offset = data.log_start_offset, "behind the leader's log start; restarting the log there");
                p.restart_at(data.log_start_offset)
                    .await
                    .map_err(|e| format!("restarting at {}: {e}", data.log_start_offset))
            } else if data.high_watermark >= 0 && data.high_watermark < end {
                // Ahead of the leader without a divergence answer: keep only what it committed.
                p.truncate_to(data.high_watermark)
                    .await
                    .map_err(|e| format!("truncating to {}: {e}", data.high_watermark))
            } else {
                Err("offset out of range at the leader".into())
            }
        }
        Some(e) => Err(format!("leader answered {e:?}")),
    }
}

/// Where to cut a log that diverged: the leader's end of its largest epoch <= ours, or our own
/// end of that epoch if it is shorter (Kafka's rule). Further rounds refine it if needed.
fn truncation_point(p: &Partition, leader_epoch: i32, leader_end: i64) -> i64 {
    if leader_epoch < 0 {
        return leader_end;
    }
    match p.log.end_offset_for_epoch(leader_epoch) {
        Some((_, own_end)) => own_end.min(leader_end),
        None => leader_end.min(p.log.log_start_offset()),
    }
}

/// The batches of `records` up to the last complete one: a leader may cut the last batch at
/// the partition size limit (Kafka's do; Skein's return whole batches).
fn whole_batches(records: Bytes) -> Bytes {
    const LENGTH_END: usize = 12;
    let mut pos = 0usize;
    while records.len() >= pos + LENGTH_END {
        let length = i32::from_be_bytes([
            records[pos + 8],
            records[pos + 9],
            records[pos + 10],
            records[pos + 11],
        ]);
        let Ok(length) = usize::try_from(length) else {
            break;
        };
        let end = pos + LENGTH_END + length;
        if end > records.len() {
            break;
        }
        pos = end;
    }
    records.slice(..pos)
}

/// The leader's Kafka endpoint, as the metadata lists it: its advertised host (what its
/// certificate names) and the address it resolves to.
async fn leader_addr(shard: &Shard, leader: i32) -> Result<(String, SocketAddr), String> {
    let md = shard.metadata();
    let endpoint = md
        .brokers
        .iter()
        .find(|b| b.node_id.0 == leader)
        .ok_or_else(|| format!("leader {leader} is not a live broker in the metadata"))?;
    let host = endpoint.host.clone();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((host, SocketAddr::new(ip, endpoint.port)));
    }
    let target = (host.clone(), endpoint.port);
    let addr = glommio::executor()
        .spawn_blocking(move || {
            use std::net::ToSocketAddrs;
            target
                .to_socket_addrs()
                .map_err(|e| format!("resolving {}: {e}", target.0))?
                .next()
                .ok_or_else(|| format!("{} resolves to no address", target.0))
        })
        .await?;
    Ok((host, addr))
}

/// A follower's connection to its leader's Kafka listener: TLS when the listener is SSL
/// (every broker of a cluster runs the same listener), presenting this node's certificate;
/// logged in as `sasl.jaas.config`'s user when it is a SASL listener.
type LeaderStream = MaybeTls<TcpStream>;

async fn connect_leader(
    shard: &Shard,
    host: &str,
    addr: SocketAddr,
) -> Result<LeaderStream, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let protocol = shard.layout.kafka_security_protocol;
    let mut stream = match (&shard.tls, protocol.uses_tls()) {
        (Some(tls), true) => tls
            .connect(host, stream)
            .await
            .map_err(|e| format!("TLS with {host} at {addr}: {e}"))?,
        _ => MaybeTls::Plain(stream),
    };
    // The config load made sure a cluster with a SASL listener has a login for followers.
    let login = protocol
        .uses_sasl()
        .then(|| shard.layout.broker.inter_broker_login())
        .flatten();
    if let Some(login) = login {
        crate::sasl::inter_broker::login(&mut stream, &login)
            .await
            .map_err(|e| {
                format!(
                    "SASL {} login to {addr} as {}: {e}",
                    login.mechanism, login.username
                )
            })?;
    }
    Ok(stream)
}

fn clamp_i32(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, body: usize) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&base.to_be_bytes());
        b.extend_from_slice(&(i32::try_from(body).unwrap()).to_be_bytes());
        b.extend(std::iter::repeat_n(7u8, body));
        b
    }

    #[test]
    fn in_sync_partitions_are_fetched_first_and_never_throttled() {
        let in_sync = [false, true, false, true];
        // Budget spent: only the in-sync ones, in full.
        assert_eq!(
            plan(&in_sync, 1000, 0),
            vec![(1, 1000, false), (3, 1000, false)]
        );
        // Unlimited: everything in full, in-sync first.
        assert_eq!(
            plan(&in_sync, 1000, u64::MAX),
            vec![
                (1, 1000, false),
                (3, 1000, false),
                (0, 1000, true),
                (2, 1000, true)
            ]
        );
    }

    #[test]
    fn catch_up_partitions_share_what_the_budget_holds() {
        let in_sync = [false, false, false];
        assert_eq!(
            plan(&in_sync, 1000, 1500),
            vec![(0, 1000, true), (1, 500, true)]
        );
        assert_eq!(plan(&in_sync, 1000, 1), vec![(0, 1, true)]);
        assert!(plan(&in_sync, 1000, 0).is_empty());
        assert!(plan(&[], 1000, 5000).is_empty());
    }

    #[test]
    fn a_cut_last_batch_is_left_for_the_next_fetch() {
        let mut all = batch(0, 60);
        all.extend(batch(1, 70));
        let whole = all.len();
        all.extend(&batch(2, 80)[..30]);
        let kept = whole_batches(Bytes::from(all));
        assert_eq!(kept.len(), whole);
        assert!(whole_batches(Bytes::from_static(&[0, 0, 0])).is_empty());
    }
}
