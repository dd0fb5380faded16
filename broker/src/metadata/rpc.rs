//! Requests between nodes on the controller listener, and the client that sends them.
//!
//! The controller listener speaks Kafka's framing (a 4-byte size, then a request header and
//! body). Two kinds of requests travel on it:
//! - Kafka APIs, encoded by the `kafka-protocol` crate: BrokerRegistration, BrokerHeartbeat,
//!   UnregisterBroker, DescribeQuorum, AllocateProducerIds and the admin requests a broker
//!   forwards (CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs,
//!   IncrementalAlterConfigs).
//! - Private APIs (keys [`PRIVATE_KEYS`], outside Kafka's range) whose bodies are JSON: the
//!   Raft RPCs between voters (vote, append entries, install snapshot), whose types openraft
//!   defines, and the metadata fetch with which brokers follow the committed metadata log.
//!   Their header is just `[i16 key][i16 version][i32 correlation id]`; the response is
//!   `[i32 correlation id]` and the JSON body.
//!
//! A [`Conn`] carries one request at a time with a deadline; any failure drops the connection
//! (the caller reconnects), so a late response can never be taken for the next request's.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::image::MetadataImage;
use super::records::MetadataRecord;
use crate::server::frame;

/// openraft's RequestVote.
pub const RAFT_VOTE: i16 = 10_000;
/// openraft's AppendEntries.
pub const RAFT_APPEND: i16 = 10_001;
/// openraft's InstallSnapshot (one chunk).
pub const RAFT_SNAPSHOT: i16 = 10_002;
/// A broker fetching committed metadata: [`MetadataFetch`] → [`MetadataFetched`].
pub const METADATA_FETCH: i16 = 10_003;
/// The private key range.
pub const PRIVATE_KEYS: std::ops::Range<i16> = 10_000..10_100;

/// The largest frame accepted on the controller listener (a snapshot chunk is at most a few
/// MiB; openraft's default chunk is 3 MiB, JSON roughly triples it).
pub const MAX_CONTROLLER_FRAME: usize = 64 * 1024 * 1024;

/// Bytes of the private request header.
pub const PRIVATE_HEADER_LEN: usize = 8;

/// Why a call to another node failed. Every variant drops the connection.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("failed to connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("connection to {addr} failed")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connection to {addr} closed")]
    Closed { addr: String },
    #[error("bad frame from {addr}")]
    Frame {
        addr: String,
        #[source]
        source: frame::FrameError,
    },
    #[error("response from {addr} has correlation id {got}, expected {expected}")]
    Correlation {
        addr: String,
        got: i32,
        expected: i32,
    },
    #[error("failed to encode a request to {addr}: {reason}")]
    Encode { addr: String, reason: String },
    #[error("failed to decode the response from {addr}: {reason}")]
    Decode { addr: String, reason: String },
}

/// A broker's request for committed metadata after `after` (the last index it applied).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetadataFetch {
    pub node_id: i32,
    pub after: u64,
    /// How long the controller may wait for something new before answering.
    pub max_wait_ms: u64,
}

/// The answer: the batches after `after`, or the whole image when those were compacted away.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetadataFetched {
    /// The active controller as this controller knows it.
    pub leader: Option<i32>,
    pub batches: Vec<(u64, Vec<MetadataRecord>)>,
    pub snapshot: Option<MetadataImage>,
}

/// One connection to a node's controller listener.
pub struct Conn {
    addr: String,
    stream: BufReader<TcpStream>,
    next_correlation: i32,
    /// Receive buffer kept between responses (see `frame::read_frame_reusing`).
    rbuf: BytesMut,
}

impl Conn {
    /// Connects within `timeout`.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Conn, RpcError> {
        let connect = TcpStream::connect(addr);
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| RpcError::Timeout {
                addr: addr.to_owned(),
                timeout,
            })?
            .map_err(|source| RpcError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            addr: addr.to_owned(),
            stream: BufReader::with_capacity(64 * 1024, stream),
            next_correlation: 1,
            rbuf: BytesMut::new(),
        })
    }

    /// The address this connection goes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one framed request (without its size) and returns the response, starting with its
    /// correlation id (checked).
    async fn round_trip(
        &mut self,
        correlation: i32,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let addr = self.addr.clone();
        let io = |source| RpcError::Io {
            addr: addr.clone(),
            source,
        };
        let work = async {
            let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
            let stream = self.stream.get_mut();
            stream.write_all(&len.to_be_bytes()).await.map_err(io)?;
            stream.write_all(body).await.map_err(io)?;
            let frame =
                frame::read_frame_reusing(&mut self.stream, &mut self.rbuf, MAX_CONTROLLER_FRAME)
                    .await
                    .map_err(|source| RpcError::Frame {
                        addr: addr.clone(),
                        source,
                    })?
                    .ok_or_else(|| RpcError::Closed { addr: addr.clone() })?;
            Ok::<_, RpcError>(frame)
        };
        let frame =
            tokio::time::timeout(timeout, work)
                .await
                .map_err(|_| RpcError::Timeout {
                    addr: self.addr.clone(),
                    timeout,
                })??;
        let got = (&frame[..]).get_i32();
        if got != correlation {
            return Err(RpcError::Correlation {
                addr: self.addr.clone(),
                got,
                expected: correlation,
            });
        }
        Ok(frame)
    }

    fn correlation(&mut self) -> i32 {
        let c = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1).max(1);
        c
    }

    /// A private request with a JSON body.
    pub async fn call_json<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        key: i16,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let correlation = self.correlation();
        let mut body = Vec::with_capacity(256);
        body.extend_from_slice(&key.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&correlation.to_be_bytes());
        serde_json::to_writer(&mut body, req).map_err(|e| RpcError::Encode {
            addr: self.addr.clone(),
            reason: e.to_string(),
        })?;
        let mut resp = self.round_trip(correlation, &body, timeout).await?;
        resp.advance(4);
        serde_json::from_slice(&resp).map_err(|e| RpcError::Decode {
            addr: self.addr.clone(),
            reason: e.to_string(),
        })
    }

    /// A Kafka request at `version`.
    pub async fn call_kafka<R: Request>(
        &mut self,
        version: i16,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response, RpcError> {
        let correlation = self.correlation();
        let encode_err = |e: anyhow::Error| RpcError::Encode {
            addr: self.addr.clone(),
            reason: e.to_string(),
        };
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str("tributary-node")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(encode_err)?;
        req.encode(&mut buf, version).map_err(encode_err)?;
        let mut resp = self.round_trip(correlation, &buf, timeout).await?;
        let decode_err = |e: anyhow::Error| RpcError::Decode {
            addr: self.addr.clone(),
            reason: e.to_string(),
        };
        // The header (correlation id, and tagged fields when flexible), then the body; the
        // records in a Fetch response stay slices of the received frame.
        ResponseHeader::decode(&mut resp, R::Response::header_version(version))
            .map_err(decode_err)?;
        R::Response::decode(&mut resp, version).map_err(decode_err)
    }
}

/// Parses a private request's header: `(key, correlation id, JSON body)`.
pub fn parse_private(mut frame: Bytes) -> Option<(i16, i32, Bytes)> {
    if frame.len() < PRIVATE_HEADER_LEN {
        return None;
    }
    let key = frame.get_i16();
    let _version = frame.get_i16();
    let correlation = frame.get_i32();
    Some((key, correlation, frame))
}

/// Frames a private response.
pub fn private_response<T: Serialize>(correlation: i32, body: &T) -> Result<Bytes, String> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&correlation.to_be_bytes());
    serde_json::to_writer(&mut out, body).map_err(|e| e.to_string())?;
    let len = u32::try_from(out.len() - 4).map_err(|e| e.to_string())?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(Bytes::from(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn private_frames_round_trip() {
        let mut body = Vec::new();
        body.extend_from_slice(&METADATA_FETCH.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&7i32.to_be_bytes());
        body.extend_from_slice(br#"{"node_id":4,"after":9,"max_wait_ms":5}"#);
        let (key, corr, json) = parse_private(Bytes::from(body)).unwrap();
        assert_eq!((key, corr), (METADATA_FETCH, 7));
        let f: MetadataFetch = serde_json::from_slice(&json).unwrap();
        assert_eq!((f.node_id, f.after), (4, 9));
        assert!(parse_private(Bytes::from_static(b"short")).is_none());
        let r = private_response(7, &"ok").unwrap();
        assert_eq!(&r[..4], &(r.len() as u32 - 4).to_be_bytes());
        assert_eq!(&r[4..8], &7i32.to_be_bytes());
    }
}
