//! The invariants checked after every fault scenario, from the workload's log, a final read of
//! every partition, and the replicas' logs on disk. Every check fills in the [`Verdict`]; none
//! panics, so that one report shows everything that went wrong, partition by partition.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use super::segments::ReplicaLog;
use super::workload::{parse_payload, Seen, WatermarkSource, WorkloadLog};

/// Every replica's log by partition: (node, its log or why it could not be read).
pub type Replicas = BTreeMap<i32, Vec<(i32, Result<ReplicaLog, String>)>>;

/// Offsets (or payloads) listed in one problem line at most; the count is always given.
const LISTED_MAX: usize = 8;
/// The offset librdkafka reports for a record acknowledged without one
/// (`RD_KAFKA_OFFSET_INVALID`).
const OFFSET_UNKNOWN: i64 = -1001;

/// What one scenario found: the summary counts and one line per violated invariant.
#[derive(Debug, Default)]
pub struct Verdict {
    pub scenario: String,
    pub produced: usize,
    pub acknowledged: usize,
    /// Acknowledged records not found at their acknowledged offset in the final read.
    pub lost: usize,
    /// Payloads present more than once in the final read (counted once per extra copy).
    pub duplicates: usize,
    /// Records acknowledged after the last "recovered" mark.
    pub acknowledged_after_recovery: usize,
    /// Violations, one line each; empty when the scenario passed.
    pub problems: Vec<String>,
    /// Things worth knowing that break no invariant.
    pub notes: Vec<String>,
    /// The producer's librdkafka log, printed with a failed verdict.
    pub producer_log: Vec<String>,
}

impl Verdict {
    pub fn new(scenario: &str, log: &WorkloadLog) -> Verdict {
        Verdict {
            scenario: scenario.to_string(),
            produced: log.sent,
            acknowledged: log.acknowledged().count(),
            producer_log: log.producer_log.clone(),
            ..Verdict::default()
        }
    }

    pub fn problem(&mut self, line: String) {
        self.problems.push(line);
    }

    pub fn note(&mut self, line: String) {
        self.notes.push(line);
    }

    /// The one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "scenario {}: produced {}, acknowledged {}, lost {}, duplicates {}",
            self.scenario, self.produced, self.acknowledged, self.lost, self.duplicates
        )
    }

    /// The summary, then every problem and note, one a line.
    pub fn report(&self) -> String {
        let mut out = self.summary();
        let verdict = if self.problems.is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        let _ = write!(out, " -> {verdict} ({} problems)", self.problems.len());
        for p in &self.problems {
            let _ = write!(out, "\n  problem: {p}");
        }
        for n in &self.notes {
            let _ = write!(out, "\n  note: {n}");
        }
        out
    }

    /// Panics with the report when an invariant was violated.
    pub fn assert_passed(&self) {
        assert!(
            self.problems.is_empty(),
            "{}\n  the producer's librdkafka log:\n    {}",
            self.report(),
            self.producer_log.join("\n    ")
        );
    }
}

/// Liveness: something was acknowledged at all, and again once the cluster had recovered; a
/// run that acknowledged nothing proves nothing about durability. Also the producer's fatal
/// error, which an idempotent producer must never see from a broker failover.
pub fn check_progress(verdict: &mut Verdict, log: &WorkloadLog) {
    let recovered = log.last_mark("recovered");
    let after = log
        .acknowledged()
        .filter(|(d, _)| recovered.is_some_and(|r| d.reported_at >= r))
        .count();
    verdict.acknowledged_after_recovery = after;
    if verdict.acknowledged == 0 {
        let errors = failure_reasons(log);
        verdict.problem(format!(
            "no record was acknowledged ({} sent); delivery errors: {errors}",
            log.sent
        ));
    } else if recovered.is_some() && after == 0 {
        verdict.problem(format!(
            "no record was acknowledged after the cluster recovered (at {:?}); delivery \
             errors: {}",
            recovered.unwrap_or_default(),
            failure_reasons(log)
        ));
    }
    let failed = log.deliveries.len() - verdict.acknowledged;
    if failed > 0 {
        verdict.note(format!(
            "{failed} records not acknowledged: {}",
            failure_reasons(log)
        ));
    }
    if log.deliveries.len() < log.sent {
        verdict.problem(format!(
            "{} records got no delivery report at all",
            log.sent - log.deliveries.len()
        ));
    }
    if let Some(fatal) = &log.producer_fatal {
        verdict.problem(format!(
            "the idempotent producer hit a fatal error: {fatal}"
        ));
    }
    let end = log.deliveries.iter().map(|d| d.reported_at).max();
    if let Some((partition, gap)) = end.and_then(|end| longest_ack_gap(log, Duration::ZERO, end)) {
        verdict.note(format!(
            "longest gap between two acknowledgements of one partition: {gap:?} (partition \
             {partition})"
        ));
    }
}

/// "error (count), ..." of the failed deliveries, most frequent first.
fn failure_reasons(log: &WorkloadLog) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &log.deliveries {
        if let Err(e) = &d.outcome {
            *counts.entry(e.as_str()).or_default() += 1;
        }
    }
    if counts.is_empty() {
        return "none".into();
    }
    let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
    counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    counts
        .iter()
        .map(|(e, n)| format!("{e} ({n})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The longest time a partition went without an acknowledgement within [from, to], and which
/// partition: per partition, because a dead leader stalls only the partitions it led while the
/// others keep acknowledging. A partition acknowledged before `from` and not again by `to`
/// counts as stalled until `to`.
pub fn longest_ack_gap(log: &WorkloadLog, from: Duration, to: Duration) -> Option<(i32, Duration)> {
    let mut times: BTreeMap<i32, Vec<Duration>> = BTreeMap::new();
    for (d, _) in log.acknowledged() {
        times.entry(d.partition).or_default().push(d.reported_at);
    }
    let mut longest: Option<(i32, Duration)> = None;
    for (partition, mut acks) in times {
        acks.sort_unstable();
        let mut gaps: Vec<Duration> = acks
            .windows(2)
            .filter(|w| w[1] >= from && w[0] <= to)
            .map(|w| w[1] - w[0])
            .collect();
        // The last acknowledgement of all, within the window: stalled from there until `to`.
        if let Some(last) = acks.last().filter(|last| **last <= to) {
            gaps.push(to - *last);
        }
        if let Some(gap) = gaps.into_iter().max() {
            if longest.is_none_or(|(_, l)| gap > l) {
                longest = Some((partition, gap));
            }
        }
    }
    longest
}

/// Checks 1 to 3 on the final read: every acknowledged record at its acknowledged offset (1);
/// offsets contiguous and each partition's sequence increasing (2); no payload twice (3). Also
/// that every record the tailing consumer returned during the run is still there: a consumer
/// only reads below the high watermark, and what is below it must survive any fault.
pub fn check_final_read(verdict: &mut Verdict, log: &WorkloadLog, read: &BTreeMap<i32, Vec<Seen>>) {
    let at: BTreeMap<(i32, i64), &str> = read
        .values()
        .flatten()
        .map(|s| ((s.partition, s.offset), s.payload.as_str()))
        .collect();

    // 1. Acknowledged records, by partition: missing offsets and offsets holding another record.
    // librdkafka acknowledges some records without an offset: when a request whose outcome it
    // could not know (a timeout) is followed by a success of the next one, the first one's
    // records were stored, and it reports them with offset -1001 ("implicit ack"). Those must
    // be somewhere in their partition.
    let stored: BTreeSet<(i32, &str)> = read
        .values()
        .flatten()
        .map(|s| (s.partition, s.payload.as_str()))
        .collect();
    let mut lost: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    let mut without_offset = 0usize;
    for (d, offset) in log.acknowledged() {
        let found = if offset == OFFSET_UNKNOWN {
            without_offset += 1;
            stored.contains(&(d.partition, d.payload.as_str()))
        } else {
            at.get(&(d.partition, offset)) == Some(&d.payload.as_str())
        };
        if !found {
            lost.entry(d.partition)
                .or_default()
                .push((offset, d.payload.clone()));
        }
    }
    if without_offset > 0 {
        verdict.note(format!(
            "{without_offset} records acknowledged without an offset (librdkafka's implicit ack)"
        ));
    }
    for (partition, records) in &lost {
        verdict.lost += records.len();
        let end = read[partition].last().map_or(0, |s| s.offset + 1);
        // Sorted and once each: two leaders may have acknowledged different records at one
        // offset.
        let offsets: Vec<i64> = records
            .iter()
            .map(|(o, _)| *o)
            .collect::<BTreeSet<i64>>()
            .into_iter()
            .collect();
        let overwritten = records
            .iter()
            .filter(|(o, _)| at.contains_key(&(*partition, *o)))
            .count();
        verdict.problem(format!(
            "partition {partition}: {} acknowledged records lost (offsets {}; {overwritten} of \
             them hold another record now; the log now ends at {end}); first: {:?}",
            records.len(),
            ranges(&offsets),
            records.first().map(|(_, p)| p)
        ));
    }

    // 2. Offsets contiguous, per-partition (= per-key) sequence strictly increasing, payload in
    // the partition it names.
    for (partition, records) in read {
        let mut previous: Option<(&Seen, u64)> = None;
        let mut problems = Vec::new();
        for s in records {
            let Some((p, seq)) = parse_payload(&s.payload) else {
                problems.push(format!(
                    "offset {} holds a foreign payload {:?}",
                    s.offset, s.payload
                ));
                continue;
            };
            if p != *partition {
                problems.push(format!(
                    "offset {} holds {} of partition {p}",
                    s.offset, s.payload
                ));
            }
            if let Some((prev, prev_seq)) = previous {
                if s.offset != prev.offset + 1 {
                    problems.push(format!(
                        "gap or reorder: offset {} after {}",
                        s.offset, prev.offset
                    ));
                }
                if seq <= prev_seq {
                    problems.push(format!(
                        "sequence goes back: {} at offset {} after {} at offset {}",
                        s.payload, s.offset, prev.payload, prev.offset
                    ));
                }
            }
            previous = Some((s, seq));
        }
        if !problems.is_empty() {
            let listed: Vec<&String> = problems.iter().take(LISTED_MAX).collect();
            verdict.problem(format!(
                "partition {partition}: {} order problems in the final read: {listed:?}",
                problems.len()
            ));
        }
    }

    // 3. Duplicates.
    let mut count: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for s in read.values().flatten() {
        count
            .entry(s.payload.as_str())
            .or_default()
            .push((s.partition, s.offset));
    }
    let duplicated: Vec<(&str, &Vec<(i32, i64)>)> = count
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(p, at)| (*p, at))
        .collect();
    verdict.duplicates = duplicated.iter().map(|(_, at)| at.len() - 1).sum();
    if !duplicated.is_empty() {
        let listed: Vec<String> = duplicated
            .iter()
            .take(LISTED_MAX)
            .map(|(p, at)| format!("{p} at (partition, offset) {at:?}"))
            .collect();
        verdict.problem(format!(
            "{} payloads stored more than once: {}",
            duplicated.len(),
            listed.join("; ")
        ));
    }

    // Consumed during the run, gone or changed since.
    let mut vanished: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for s in &log.consumed {
        if at.get(&(s.partition, s.offset)) != Some(&s.payload.as_str()) {
            vanished.entry(s.partition).or_default().insert(s.offset);
        }
    }
    for (partition, offsets) in vanished {
        let offsets: Vec<i64> = offsets.into_iter().collect();
        verdict.problem(format!(
            "partition {partition}: {} records the consumer read during the run are gone or \
             changed in the final read (offsets {})",
            offsets.len(),
            ranges(&offsets)
        ));
    }
    // The same offset returned with two payloads during the run: the consumer saw two logs.
    let mut first_seen: BTreeMap<(i32, i64), &str> = BTreeMap::new();
    let mut conflicts: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for s in &log.consumed {
        let seen = *first_seen
            .entry((s.partition, s.offset))
            .or_insert(&s.payload);
        if seen != s.payload {
            conflicts.entry(s.partition).or_default().push(s.offset);
        }
    }
    for (partition, mut offsets) in conflicts {
        offsets.sort_unstable();
        offsets.dedup();
        verdict.problem(format!(
            "partition {partition}: the tailing consumer read {} offsets twice with different \
             records (offsets {})",
            offsets.len(),
            ranges(&offsets)
        ));
    }
    let consumed = log.consumed.len();
    if !log.consumer_errors.is_empty() {
        let errors: BTreeSet<&str> = log
            .consumer_errors
            .iter()
            .map(|(_, e)| e.as_str())
            .collect();
        verdict.note(format!(
            "tailing consumer: {consumed} records, {} errors: {errors:?}",
            log.consumer_errors.len()
        ));
    }
}

/// Check 4: no high watermark observation lower than an earlier one of the same partition and
/// source. `finals` (the high watermark of the final read) count as ListOffsets observations.
pub fn check_watermarks(verdict: &mut Verdict, log: &WorkloadLog, finals: &BTreeMap<i32, i64>) {
    let mut series: BTreeMap<(i32, WatermarkSource), Vec<(Duration, i64)>> = BTreeMap::new();
    for w in &log.watermarks {
        series
            .entry((w.partition, w.source))
            .or_default()
            .push((w.at, w.high_watermark));
    }
    for (partition, hw) in finals {
        series
            .entry((*partition, WatermarkSource::ListOffsets))
            .or_default()
            .push((Duration::MAX, *hw));
    }
    let count = |source| log.watermarks.iter().filter(|w| w.source == source).count();
    verdict.note(format!(
        "high watermark observations: {} ListOffsets, {} Fetch",
        count(WatermarkSource::ListOffsets),
        count(WatermarkSource::Fetch)
    ));
    for ((partition, source), mut samples) in series {
        samples.sort_by_key(|(at, _)| *at);
        let mut highest: Option<(Duration, i64)> = None;
        let mut drops = Vec::new();
        for (at, hw) in samples {
            match highest {
                Some((high_at, high)) if hw < high => drops.push((high_at, high, at, hw)),
                Some((_, high)) if hw <= high => {}
                _ => highest = Some((at, hw)),
            }
        }
        if let Some((high_at, high, at, hw)) = drops.first() {
            let when = |d: &Duration| {
                if *d == Duration::MAX {
                    "the final read".to_string()
                } else {
                    format!("{d:.1?}")
                }
            };
            verdict.problem(format!(
                "partition {partition}: high watermark went backwards ({source:?}): {high} at {} \
                 then {hw} at {} ({} lower observations)",
                when(high_at),
                when(at),
                drops.len()
            ));
        }
    }
}

/// Check 5: every replica of each partition holds the same batches, byte for byte, and so the
/// same log end offset and the same records. `replicas`: partition -> (node, its log or why
/// it could not be read).
pub fn check_replicas(verdict: &mut Verdict, replicas: &Replicas) {
    for (partition, logs) in replicas {
        let mut readable: Vec<(i32, &ReplicaLog)> = Vec::new();
        for (node, log) in logs {
            match log {
                Ok(log) => readable.push((*node, log)),
                Err(e) => verdict.problem(format!(
                    "partition {partition}: replica on node {node} unreadable: {e}"
                )),
            }
        }
        let Some((first_node, first)) = readable.first().copied() else {
            continue;
        };
        let differ = readable.iter().any(|(_, log)| log.batches != first.batches);
        if !differ {
            continue;
        }
        let ends: Vec<String> = readable
            .iter()
            .map(|(node, log)| {
                format!(
                    "node {node}: log end {} ({} batches, {} records)",
                    log.log_end_offset(),
                    log.batches.len(),
                    log.records.len()
                )
            })
            .collect();
        let divergence: Vec<String> = readable[1..]
            .iter()
            .filter_map(|(node, log)| {
                first_difference(first, log).map(|offset| {
                    format!("nodes {first_node} and {node} differ from offset {offset}")
                })
            })
            .collect();
        verdict.problem(format!(
            "partition {partition}: replicas differ: {}; {}",
            ends.join(", "),
            divergence.join(", ")
        ));
    }
}

/// The base offset of the first batch where `a` and `b` differ (a missing batch counts).
fn first_difference(a: &ReplicaLog, b: &ReplicaLog) -> Option<i64> {
    let common = a.batches.len().min(b.batches.len());
    (0..common)
        .find(|&i| a.batches[i] != b.batches[i])
        .map(|i| a.batches[i].base_offset.min(b.batches[i].base_offset))
        .or_else(|| {
            let longer = if a.batches.len() > b.batches.len() {
                a
            } else {
                b
            };
            longer.batches.get(common).map(|batch| batch.base_offset)
        })
}

/// "0-4, 7, 9-12" for sorted offsets; at most [`LISTED_MAX`] ranges, then "…".
pub fn ranges(offsets: &[i64]) -> String {
    let mut spans: Vec<(i64, i64)> = Vec::new();
    for &o in offsets {
        match spans.last_mut() {
            Some((_, end)) if o == *end + 1 => *end = o,
            _ => spans.push((o, o)),
        }
    }
    let mut out: Vec<String> = spans
        .iter()
        .take(LISTED_MAX)
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    if spans.len() > LISTED_MAX {
        out.push(format!("… {} more ranges", spans.len() - LISTED_MAX));
    }
    out.join(", ")
}
