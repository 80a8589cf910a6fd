//! Standard workloads, named after the OpenMessaging Benchmark workloads they scale down
//! (`workloads/*.yaml` in OMB: one topic, N partitions, fixed message size). They fix the shape
//! of the data; rate, duration, clients and cores stay command-line options.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub name: &'static str,
    pub partitions: u32,
    pub message_bytes: usize,
    pub replication_factor: i16,
    /// Kafka acks: -1 is all.
    pub acks: i16,
    /// Brokers the workload needs; more than one needs replication, which Skein lacks so far.
    pub brokers: u32,
    pub description: &'static str,
}

impl Workload {
    pub fn needs_replication(&self) -> bool {
        self.replication_factor > 1
    }
}

pub const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "1-topic-1-partition-1kb",
        partitions: 1,
        message_bytes: 1024,
        replication_factor: 1,
        acks: 1,
        brokers: 1,
        description: "OMB 1-topic-1-partition-1kb on one node (OMB runs RF 3)",
    },
    Workload {
        name: "1-topic-16-partitions-1kb",
        partitions: 16,
        message_bytes: 1024,
        replication_factor: 1,
        acks: 1,
        brokers: 1,
        description: "OMB 1-topic-16-partitions-1kb on one node (OMB runs RF 3)",
    },
    Workload {
        name: "1-topic-16-partitions-100b",
        partitions: 16,
        message_bytes: 100,
        replication_factor: 1,
        acks: 1,
        brokers: 1,
        description: "OMB 1-topic-16-partitions-100b on one node (OMB runs RF 3)",
    },
    Workload {
        name: "1-topic-16-partitions-1kb-rf3-acks-all",
        partitions: 16,
        message_bytes: 1024,
        replication_factor: 3,
        acks: -1,
        brokers: 3,
        description: "OMB's replicated setup: RF 3, acks=all on a 3-node local cluster",
    },
];

pub fn find(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

pub fn names() -> Vec<&'static str> {
    WORKLOADS.iter().map(|w| w.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for w in &WORKLOADS {
            assert_eq!(find(w.name), Some(w));
            assert_eq!(WORKLOADS.iter().filter(|o| o.name == w.name).count(), 1);
            assert!(w.brokers as i16 >= w.replication_factor);
        }
        assert!(
            find("1-topic-16-partitions-1kb-rf3-acks-all").is_some_and(Workload::needs_replication)
        );
        assert!(find("nope").is_none());
    }
}
