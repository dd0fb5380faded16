//! The client's connection: one TCP stream to one broker, API versions negotiated once, one
//! request at a time (a mutex guards the stream), each bounded by `REQUEST_TIMEOUT`.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::{kafka_error, KafkaAdminClient, CLIENT_ID};
use crate::admin::{AdminError, REQUEST_TIMEOUT};

/// Largest response we accept (guards against garbage lengths).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

pub(super) struct Conn {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl KafkaAdminClient {
    /// Connects to `addr` and negotiates API versions.
    pub async fn connect(addr: &str) -> Result<Self, AdminError> {
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| AdminError::Timeout {
                addr: addr.to_owned(),
                api: "connect",
            })?
            .map_err(|source| AdminError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let mut client = KafkaAdminClient {
            addr: addr.to_owned(),
            conn: Mutex::new(Conn {
                stream,
                next_correlation_id: 1,
            }),
            versions: HashMap::new(),
        };
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp = client.round_trip("ApiVersions", &req, 3).await?;
        if resp.error_code != 0 {
            return Err(kafka_error("ApiVersions", addr, resp.error_code, None));
        }
        client.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(client)
    }

    /// The highest version both sides support.
    pub(super) fn version(&self, api: (&'static str, i16, i16, i16)) -> Result<i16, AdminError> {
        let (name, key, min, max) = api;
        let unsupported = || AdminError::Unsupported {
            api: name,
            min,
            max,
        };
        let (bmin, bmax) = *self.versions.get(&key).ok_or_else(unsupported)?;
        let v = max.min(bmax);
        if v < min.max(bmin) {
            return Err(unsupported());
        }
        Ok(v)
    }

    /// Sends one request at `version` and returns its response: for requests this client has
    /// no call for (tests, tools). Only the broker checks the version.
    pub async fn send<R: Request>(&self, req: &R, version: i16) -> Result<R::Response, AdminError> {
        self.round_trip("request", req, version).await
    }

    /// The address this client is connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub(super) async fn round_trip<R: Request>(
        &self,
        api: &'static str,
        req: &R,
        version: i16,
    ) -> Result<R::Response, AdminError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.round_trip_inner(api, req, version))
            .await
            .map_err(|_| AdminError::Timeout {
                addr: self.addr.clone(),
                api,
            })?
    }

    async fn round_trip_inner<R: Request>(
        &self,
        api: &'static str,
        req: &R,
        version: i16,
    ) -> Result<R::Response, AdminError> {
        let codec = |e: anyhow::Error| AdminError::Codec {
            api,
            message: e.to_string(),
        };
        let io = |source| AdminError::Io {
            addr: self.addr.clone(),
            api,
            source,
        };
        let mut conn = self.conn.lock().await;
        let correlation_id = conn.next_correlation_id;
        conn.next_correlation_id = correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(codec)?;
        req.encode(&mut buf, version).map_err(codec)?;
        let len = i32::try_from(buf.len() - 4).map_err(|e| codec(e.into()))?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        conn.stream.write_all(&buf).await.map_err(io)?;
        let len = conn.stream.read_i32().await.map_err(io)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_RESPONSE_BYTES)
            .ok_or_else(|| AdminError::Codec {
                api,
                message: format!("response length {len} out of range"),
            })?;
        let mut body = vec![0u8; len];
        conn.stream.read_exact(&mut body).await.map_err(io)?;
        let mut body = Bytes::from(body);
        let resp_header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(codec)?;
        if resp_header.correlation_id != correlation_id {
            return Err(AdminError::Codec {
                api,
                message: format!(
                    "correlation id {} != {correlation_id}",
                    resp_header.correlation_id
                ),
            });
        }
        let resp = R::Response::decode(&mut body, version).map_err(codec)?;
        if body.has_remaining() {
            tracing::debug!(api, extra = body.remaining(), "response had trailing bytes");
        }
        Ok(resp)
    }
}
