//! ApiVersions: advertises exactly the table in `versions`.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use super::versions::SUPPORTED;
use crate::broker::Broker;

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.min)
                .with_max_version(s.max)
        })
        .collect()
}

/// Serves ApiVersions. Only the fields the version needs are set: old librdkafka misparses
/// responses that carry default-valued tagged fields.
pub(super) async fn handle(
    _broker: &Broker,
    _req: ApiVersionsRequest,
    _version: i16,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// The answer to an ApiVersions request of a version we do not serve: v0 layout, error
/// UNSUPPORTED_VERSION and our table, so the client can retry with a version we know.
pub(super) fn unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}
