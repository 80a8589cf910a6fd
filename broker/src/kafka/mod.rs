//! The Kafka listener of each shard: connections, dispatch and one handler per API (per shard).

pub mod dispatch;
pub mod handlers;
pub mod sasl;
pub mod server;
