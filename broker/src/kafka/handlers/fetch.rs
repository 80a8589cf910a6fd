//! Fetch: reads the requested partitions on their owners in parallel (not much more than
//! `max_bytes` can carry), long-polls until `min_bytes` are there or `max_wait_ms` passes, and
//! frames the answer around the stored batch bytes without copying them. Fetch sessions
//! (KIP-227) are declined with session id 0, which makes clients send full requests; that is
//! allowed by the protocol.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::protocol::StrBytes;
use skein_net::{
    encode_fetch_response, EpochEndOffset, FetchPartitionDesc, FetchResponseDesc, FetchTopicDesc,
};
use uuid::Uuid;

use skein_controller::acl::{AclOperation, ResourceType};

use crate::kafka::dispatch::{Reply, RequestCtx};
use crate::limits::FETCH_MAX_WAIT_MS_MAX;
use crate::partition::{PartitionRead, ReadSpec};
use crate::sasl::SecurityProtocol;
use crate::shard::ids::TopicPartition;
use crate::shard::route::{FetchChunk, Watch};

struct Wanted {
    /// `None` when the topic (name or id) is unknown.
    tp: Option<TopicPartition>,
    partition: i32,
    spec: ReadSpec,
}

struct TopicWanted {
    name: String,
    id: Uuid,
    unknown_error: ResponseError,
    parts: Vec<Wanted>,
}

pub async fn handle(ctx: &RequestCtx, req: FetchRequest) -> Reply {
    let version = ctx.version();
    // An incremental fetch against a session we never created.
    if version >= 7 && req.session_id != 0 {
        let desc: FetchResponseDesc<FetchChunk> = FetchResponseDesc {
            throttle_time_ms: 0,
            error_code: ResponseError::FetchSessionIdNotFound.code(),
            session_id: 0,
            topics: Vec::new(),
            node_endpoints: Vec::new(),
        };
        return frame(ctx, desc);
    }
    // A follower names itself: in the request up to v14, in ReplicaState from v15.
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    // Followers need CLUSTER_ACTION (Kafka's rule). Brokers replicate over the Kafka listener:
    // on a PLAINTEXT one, where they have no identity, a replica fetch is let through; on a
    // SASL or SSL one the follower is its inter-broker login or certificate subject, which
    // must be allowed CLUSTER_ACTION (a super user).
    let replica_allowed = replica_id < 0
        || !ctx.authorizer_enabled()
        || ctx.shard.layout.kafka_security_protocol == SecurityProtocol::Plaintext
        || ctx.cluster_authorized(AclOperation::ClusterAction);
    let md = ctx.shard.metadata();
    let topics: Vec<TopicWanted> = req
        .topics
        .iter()
        .map(|t| {
            let (meta, unknown_error) = if version >= 13 {
                (md.topic_by_id(&t.topic_id), ResponseError::UnknownTopicId)
            } else {
                (
                    md.topics.get(t.topic.0.as_str()),
                    ResponseError::UnknownTopicOrPartition,
                )
            };
            let name = meta.map_or_else(|| t.topic.0.to_string(), |m| m.name.clone());
            let allowed = if replica_id >= 0 {
                replica_allowed
            } else {
                ctx.authorized(AclOperation::Read, ResourceType::Topic, &name)
            };
            // An unauthorized topic is answered like an unknown one, with Kafka's code (an
            // unknown topic id stays UNKNOWN_TOPIC_ID: there is no name to authorize).
            let (meta, unknown_error) = if allowed || (meta.is_none() && version >= 13) {
                (meta, unknown_error)
            } else {
                (None, ResponseError::TopicAuthorizationFailed)
            };
            TopicWanted {
                id: meta.map_or(t.topic_id, |m| m.id),
                unknown_error,
                parts: t
                    .partitions
                    .iter()
                    .map(|p| Wanted {
                        tp: meta.map(|m| TopicPartition::new(m.name.as_str(), p.partition)),
                        partition: p.partition,
                        spec: ReadSpec {
                            fetch_offset: p.fetch_offset,
                            max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                            current_leader_epoch: p.current_leader_epoch,
                            replica_id,
                            last_fetched_epoch: if version >= 12 {
                                p.last_fetched_epoch
                            } else {
                                -1
                            },
                            offsets_only: false,
                        },
                    })
                    .collect(),
                name,
            }
        })
        .collect();
    drop(md);

    let max_wait = Duration::from_millis(
        u64::try_from(req.max_wait_ms)
            .unwrap_or(0)
            .min(FETCH_MAX_WAIT_MS_MAX),
    );
    let deadline = Instant::now() + max_wait;
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let max_bytes = if version >= 3 {
        usize::try_from(req.max_bytes).unwrap_or(0)
    } else {
        usize::MAX
    };
    // What the reads may bring; more than that is never waited for.
    let enough = min_bytes.min(max_bytes.max(1));
    loop {
        let reads = read_all(ctx, &topics, max_bytes).await;
        let total: usize = reads.iter().map(PartitionRead::bytes).sum();
        let any_error = reads
            .iter()
            .any(|r| r.error.is_some() || r.diverging_epoch.is_some());
        if total >= enough || any_error || Instant::now() >= deadline || ctx.shard.is_stopping() {
            return respond(ctx, topics, reads, max_bytes);
        }
        let watches: Vec<Watch> = topics
            .iter()
            .flat_map(|t| t.parts.iter())
            .zip(&reads)
            .filter_map(|(w, r)| {
                w.tp.clone().map(|tp| Watch {
                    tp,
                    // Fewer than min_bytes were there: wait for the end the fetcher reads to
                    // (the log end for a follower, the high watermark for a consumer) to pass
                    // what it was. Waiting for "any data past the fetch offset" would return at
                    // once, and this loop would hold the shard until max_wait.
                    offset: w.spec.fetch_offset.max(r.readable_end(w.spec.is_replica())),
                    replica: w.spec.is_replica(),
                })
            })
            .collect();
        if watches.is_empty() {
            return respond(ctx, topics, reads, max_bytes);
        }
        ctx.shard.wait_for_data(watches, deadline).await;
    }
}

/// Reads every wanted partition without reading much more than the response can carry. Kafka
/// reads them one after another, each with what is left of `max_bytes`; here they are read in
/// parallel rounds. Each round grants, in request order, every partition not yet read its
/// `partition_max_bytes` out of what is left, until nothing is. The first round also asks the
/// partitions it grants nothing for their offsets only, which answers the idle ones (one round
/// for any number of them, not one each); later rounds give what reads that came back short
/// left over to the partitions with records after them. Those still unread when the budget is
/// spent keep their offsets-only answer (Kafka's answer past the budget too).
async fn read_all(
    ctx: &RequestCtx,
    topics: &[TopicWanted],
    max_bytes: usize,
) -> Vec<PartitionRead<FetchChunk>> {
    let wanted: Vec<(&Wanted, ResponseError)> = topics
        .iter()
        .flat_map(|t| t.parts.iter().map(move |w| (w, t.unknown_error)))
        .collect();
    let asks: Vec<usize> = wanted.iter().map(|(w, _)| w.spec.max_bytes).collect();
    let mut reads: Vec<Option<PartitionRead<FetchChunk>>> =
        std::iter::repeat_with(|| None).take(wanted.len()).collect();
    let mut done = vec![false; wanted.len()];
    // KIP-74: even `max_bytes` 0 gets the first batch found, so the budget is at least a byte.
    let budget = max_bytes.max(1);
    let mut read_bytes = 0usize;
    let mut first_round = true;
    loop {
        // (partition, bytes granted, offsets only)
        let mut round: Vec<(usize, usize, bool)> =
            plan_round(&asks, &done, budget.saturating_sub(read_bytes))
                .into_iter()
                .map(|(i, granted)| (i, granted, false))
                .collect();
        if first_round {
            let mut granted = vec![false; wanted.len()];
            round.iter().for_each(|&(i, ..)| granted[i] = true);
            let probes = (0..wanted.len()).filter(|&i| !granted[i]);
            round.extend(probes.map(|i| (i, 0, true)));
            first_round = false;
        }
        if round.is_empty() {
            break;
        }
        let results = round.iter().map(|&(i, granted, offsets_only)| {
            let (w, unknown) = wanted[i];
            read_one(ctx, w, unknown, granted, offsets_only)
        });
        for (&(i, _, offsets_only), r) in round.iter().zip(join_all(results).await) {
            done[i] = !offsets_only || !has_records(&wanted[i].0.spec, &r);
            read_bytes += r.bytes();
            reads[i] = Some(r);
        }
    }
    reads
        .into_iter()
        .map(|r| r.unwrap_or_else(|| PartitionRead::error(ResponseError::UnknownServerError)))
        .collect()
}

/// Whether an offsets-only answer says there are records to read from the fetch offset.
fn has_records<C>(spec: &ReadSpec, r: &PartitionRead<C>) -> bool {
    if r.error.is_some() || r.diverging_epoch.is_some() {
        return false;
    }
    spec.fetch_offset < r.readable_end(spec.is_replica())
}

async fn read_one(
    ctx: &RequestCtx,
    w: &Wanted,
    unknown: ResponseError,
    max_bytes: usize,
    offsets_only: bool,
) -> PartitionRead<FetchChunk> {
    match &w.tp {
        Some(tp) => {
            let spec = ReadSpec {
                max_bytes,
                offsets_only,
                ..w.spec
            };
            ctx.shard.read(tp.clone(), spec).await
        }
        None => PartitionRead::error(unknown),
    }
}

/// One round of [`read_all`]: (index, bytes granted) for the partitions not `done`, in order,
/// each granted its ask out of `left` while anything is left.
fn plan_round(asks: &[usize], done: &[bool], mut left: usize) -> Vec<(usize, usize)> {
    let mut grants = Vec::new();
    for (i, &ask) in asks.iter().enumerate() {
        if left == 0 {
            break;
        }
        if done[i] {
            continue;
        }
        let granted = ask.min(left);
        left -= granted;
        grants.push((i, granted));
    }
    grants
}

fn respond(
    ctx: &RequestCtx,
    topics: Vec<TopicWanted>,
    reads: Vec<PartitionRead<FetchChunk>>,
    max_bytes: usize,
) -> Reply {
    // Every partition of a request carries the same replica id: the first one tells.
    let from_follower = topics
        .iter()
        .flat_map(|t| &t.parts)
        .next()
        .is_some_and(|w| w.spec.is_replica());
    let mut reads = reads.into_iter();
    let mut budget = max_bytes;
    let mut first_data = true;
    let mut out_topics = Vec::with_capacity(topics.len());
    for t in topics {
        let mut partitions = Vec::with_capacity(t.parts.len());
        for w in t.parts {
            let r = reads
                .next()
                .unwrap_or_else(|| PartitionRead::error(ResponseError::UnknownServerError));
            if let Some(error) = r.error {
                ctx.shard.metrics.fetch_error(error);
            }
            let bytes = r.bytes();
            // KIP-74: the first non-empty partition is returned whole even past max_bytes, so a
            // consumer can always make progress; later ones only while the budget lasts.
            let records = if bytes == 0 {
                Vec::new()
            } else if first_data || bytes <= budget {
                first_data = false;
                budget = budget.saturating_sub(bytes);
                r.chunks
            } else {
                Vec::new()
            };
            partitions.push(FetchPartitionDesc {
                partition_index: w.partition,
                error_code: r.error.map_or(0, |e| e.code()),
                high_watermark: r.high_watermark,
                last_stable_offset: r.last_stable_offset,
                log_start_offset: r.log_start_offset,
                diverging_epoch: r.diverging_epoch.map(|(leader_epoch, end_offset)| {
                    EpochEndOffset {
                        leader_epoch,
                        end_offset,
                    }
                }),
                current_leader: None,
                snapshot_id: None,
                aborted_transactions: None,
                preferred_read_replica: -1,
                records,
            });
        }
        out_topics.push(FetchTopicDesc {
            name: StrBytes::from_string(t.name),
            topic_id: t.id,
            partitions,
        });
    }
    let desc = FetchResponseDesc {
        // Client quotas are for consumers; Kafka leaves follower fetches to replication quotas.
        throttle_time_ms: if from_follower {
            0
        } else {
            ctx.charge_fetch(&out_topics)
        },
        error_code: 0,
        session_id: 0,
        topics: out_topics,
        node_endpoints: Vec::new(),
    };
    frame(ctx, desc)
}

fn frame(ctx: &RequestCtx, desc: FetchResponseDesc<FetchChunk>) -> Reply {
    match encode_fetch_response(ctx.version(), ctx.header.correlation_id, desc) {
        Ok(parts) => Reply::Parts(parts),
        Err(e) => {
            tracing::error!(version = ctx.version(), error = %e, "encoding a fetch response failed");
            Reply::Close
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::error::ResponseError;

    use super::{has_records, plan_round};
    use crate::partition::{PartitionRead, ReadSpec};

    #[test]
    fn an_offsets_only_answer_tells_whether_records_wait() {
        let spec = |fetch_offset, replica_id| ReadSpec {
            fetch_offset,
            max_bytes: 0,
            current_leader_epoch: -1,
            replica_id,
            last_fetched_epoch: -1,
            offsets_only: true,
        };
        let mut r: PartitionRead<Vec<u8>> = PartitionRead::error(ResponseError::UnknownServerError);
        r.error = None;
        r.high_watermark = 10;
        r.log_end_offset = 12;
        // A consumer reads to the high watermark, a follower to the log end.
        assert!(has_records(&spec(9, -1), &r));
        assert!(!has_records(&spec(10, -1), &r));
        assert!(has_records(&spec(10, 2), &r));
        assert!(!has_records(&spec(12, 2), &r));
        // An error is the whole answer.
        r.error = Some(ResponseError::NotLeaderOrFollower);
        assert!(!has_records(&spec(0, -1), &r));
    }

    #[test]
    fn a_round_grants_asks_in_order_until_the_budget_is_spent() {
        let asks = [8, 8, 8, 8];
        // 20 bytes: two whole asks, then the 4 left, then nothing.
        assert_eq!(
            plan_round(&asks, &[false; 4], 20),
            vec![(0, 8), (1, 8), (2, 4)]
        );
        // Partitions already read are skipped; what is left goes to the next ones.
        assert_eq!(
            plan_round(&asks, &[true, true, false, false], 10),
            vec![(2, 8), (3, 2)]
        );
        assert_eq!(plan_round(&asks, &[false; 4], 0), vec![]);
        assert_eq!(plan_round(&asks, &[true; 4], 100), vec![]);
        // An ask of 0 is still read (the first batch found comes back whole).
        assert_eq!(plan_round(&[0, 8], &[false; 2], 4), vec![(0, 0), (1, 4)]);
    }
}
