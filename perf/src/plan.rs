//! Who sends to and reads from which partition, on which client core; pure.
//!
//! Partition `k` goes to producer `k mod P` and consumer `k mod C` (with more producers than
//! partitions, producers share partitions). A producer or consumer whose partitions have
//! different leaders gets one connection per leader: each (client, leader) pair is a unit with
//! its own connection. Units are dealt round-robin over the client CPUs.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use crate::consumer::ConsumerUnit;
use crate::load::ShardPlan;
use crate::producer::ProducerUnit;

#[derive(Clone, Copy, Debug)]
pub struct ProducerSpec {
    pub count: u32,
    /// Total records over all producers (each unit gets its share, rounded up).
    pub records: Option<u64>,
    pub stamp: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct ConsumerSpec {
    pub count: u32,
    pub rewind: bool,
    pub e2e: bool,
}

pub fn plan(
    cpus: &[usize],
    leaders: &[(i32, SocketAddr)],
    producers: Option<ProducerSpec>,
    consumers: Option<(ConsumerSpec, &HashMap<i32, i64>)>,
) -> Vec<ShardPlan> {
    assert!(!cpus.is_empty() && !leaders.is_empty());
    let mut producer_units = Vec::new();
    if let Some(spec) = producers {
        let slots: Vec<Vec<(i32, SocketAddr)>> = (0..spec.count as usize)
            .map(|i| {
                if spec.count as usize > leaders.len() {
                    vec![leaders[i % leaders.len()]]
                } else {
                    leaders
                        .iter()
                        .skip(i)
                        .step_by(spec.count as usize)
                        .copied()
                        .collect()
                }
            })
            .collect();
        let total: usize = slots.iter().map(Vec::len).sum();
        for owned in slots {
            for (addr, partitions) in by_leader(&owned) {
                let share = partitions.len() as f64 / total as f64;
                producer_units.push(ProducerUnit {
                    id: producer_units.len(),
                    addr,
                    partitions,
                    share,
                    quota: spec.records.map(|r| (r as f64 * share).ceil() as u64),
                    stamp: spec.stamp,
                });
            }
        }
    }
    let mut consumer_units = Vec::new();
    if let Some((spec, starts)) = consumers {
        for i in 0..spec.count as usize {
            let owned: Vec<(i32, SocketAddr)> = leaders
                .iter()
                .skip(i)
                .step_by(spec.count as usize)
                .copied()
                .collect();
            for (addr, partitions) in by_leader(&owned) {
                consumer_units.push(ConsumerUnit {
                    id: consumer_units.len(),
                    addr,
                    partitions: partitions
                        .into_iter()
                        .map(|p| (p, starts.get(&p).copied().unwrap_or(0)))
                        .collect(),
                    rewind: spec.rewind,
                    e2e: spec.e2e,
                });
            }
        }
    }
    let units = producer_units.len() + consumer_units.len();
    let mut shards: Vec<ShardPlan> = cpus
        .iter()
        .take(units.max(1))
        .map(|&cpu| ShardPlan {
            cpu,
            ..Default::default()
        })
        .collect();
    let n = shards.len();
    // Producers and consumers are dealt from one sequence, so both spread over every shard.
    let mut next = 0usize;
    for u in producer_units {
        shards[next % n].producers.push(u);
        next += 1;
    }
    for u in consumer_units {
        shards[next % n].consumers.push(u);
        next += 1;
    }
    shards
}

fn by_leader(owned: &[(i32, SocketAddr)]) -> BTreeMap<SocketAddr, Vec<i32>> {
    let mut m: BTreeMap<SocketAddr, Vec<i32>> = BTreeMap::new();
    for (p, addr) in owned {
        m.entry(*addr).or_default().push(*p);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaders(n: i32, brokers: u16) -> Vec<(i32, SocketAddr)> {
        (0..n)
            .map(|p| {
                (
                    p,
                    SocketAddr::from(([127, 0, 0, 1], 9000 + (p as u16 % brokers))),
                )
            })
            .collect()
    }

    #[test]
    fn partitions_split_over_producers_and_consumers() {
        let l = leaders(16, 1);
        let starts: HashMap<i32, i64> = (0..16).map(|p| (p, 100 + i64::from(p))).collect();
        let spec = ProducerSpec {
            count: 4,
            records: Some(1000),
            stamp: true,
        };
        let cspec = ConsumerSpec {
            count: 2,
            rewind: false,
            e2e: true,
        };
        let shards = plan(&[1, 2, 3], &l, Some(spec), Some((cspec, &starts)));
        assert_eq!(shards.len(), 3);
        let producers: Vec<&ProducerUnit> = shards.iter().flat_map(|s| &s.producers).collect();
        let consumers: Vec<&ConsumerUnit> = shards.iter().flat_map(|s| &s.consumers).collect();
        assert_eq!(producers.len(), 4);
        assert_eq!(consumers.len(), 2);
        let mut all: Vec<i32> = producers
            .iter()
            .flat_map(|u| u.partitions.clone())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..16).collect::<Vec<_>>());
        assert!(producers
            .iter()
            .all(|u| u.quota == Some(250) && u.share == 0.25));
        assert_eq!(consumers[1].partitions[0], (1, 101));
        // Dealt round-robin: 6 units over 3 shards.
        assert!(shards
            .iter()
            .all(|s| s.producers.len() + s.consumers.len() == 2));
    }

    #[test]
    fn more_producers_than_partitions_share_them() {
        let l = leaders(2, 1);
        let spec = ProducerSpec {
            count: 4,
            records: None,
            stamp: false,
        };
        let shards = plan(&[0], &l, Some(spec), None);
        let parts: Vec<Vec<i32>> = shards[0]
            .producers
            .iter()
            .map(|u| u.partitions.clone())
            .collect();
        assert_eq!(parts, vec![vec![0], vec![1], vec![0], vec![1]]);
    }

    #[test]
    fn one_connection_per_leader() {
        let l = leaders(6, 3);
        let spec = ProducerSpec {
            count: 1,
            records: None,
            stamp: false,
        };
        let shards = plan(&[0, 1, 2, 3], &l, Some(spec), None);
        assert_eq!(shards.len(), 3); // three units, three shards used
        let units: Vec<&ProducerUnit> = shards.iter().flat_map(|s| &s.producers).collect();
        assert!(units.iter().all(|u| u.partitions.len() == 2));
        let shares: f64 = units.iter().map(|u| u.share).sum();
        assert!((shares - 1.0).abs() < 1e-9);
    }
}
