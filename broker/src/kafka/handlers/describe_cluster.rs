//! DescribeCluster: this node's view of the brokers and the controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::dispatch::RequestCtx;

pub fn handle(ctx: &RequestCtx, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let md = ctx.shard.metadata();
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = StrBytes::from_string(md.cluster_id.clone());
    resp.controller_id = BrokerId(md.controller_id);
    resp.cluster_authorized_operations = i32::MIN;
    resp.brokers = md
        .brokers
        .iter()
        .map(|b| {
            let mut d = DescribeClusterBroker::default();
            d.broker_id = BrokerId(b.node_id.0);
            d.host = StrBytes::from_string(b.host.clone());
            d.port = i32::from(b.port);
            d.rack = b.rack.clone().map(StrBytes::from_string);
            d
        })
        .collect();
    resp
}
