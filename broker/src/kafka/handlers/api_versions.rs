//! ApiVersions: the supported ranges, built from the dispatch table.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::kafka::dispatch::{RequestCtx, SUPPORTED_APIS};

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, lo, hi)| {
            let mut v = ApiVersion::default();
            v.api_key = *key as i16;
            v.min_version = *lo;
            v.max_version = *hi;
            v
        })
        .collect()
}

pub fn handle(_ctx: &RequestCtx, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = api_keys();
    r
}

/// The KIP-511 answer to a version we do not speak.
pub fn unsupported() -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = ResponseError::UnsupportedVersion.code();
    r.api_keys = api_keys();
    r
}
