//! The Kafka listener: accepts connections and serves each one's requests strictly in order
//! (as Kafka does, one request in flight per connection, so responses keep request order).
//!
//! A malformed or oversized frame, an unknown API key or an unsupported version closes only
//! that connection, with a log line saying why; Kafka-level failures are error codes inside
//! responses (see `api`).

pub mod frame;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::api;
use crate::broker::Broker;

/// Why a connection was closed by the broker.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    #[error("unknown api key {0}")]
    UnknownApi(i16),
    #[error("unsupported version {version} of {api:?}")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("malformed {api:?} v{version} request")]
    Malformed {
        api: ApiKey,
        version: i16,
        #[source]
        source: anyhow::Error,
    },
    #[error("failed to encode {api:?} v{version} response")]
    Encode {
        api: ApiKey,
        version: i16,
        #[source]
        source: anyhow::Error,
    },
    #[error("failed to write the response")]
    Write(#[source] std::io::Error),
}

/// A decoded request header plus the undecoded body.
pub struct Request {
    pub header: RequestHeader,
    pub api: ApiKey,
    pub body: Bytes,
}

/// Accepts connections until `shutdown` flips to true.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let broker = broker.clone();
                    let shutdown = shutdown.clone();
                    tasks.spawn(async move { connection(stream, peer, broker, shutdown).await });
                }
                Err(e) => warn!(error = %e, "accept failed"),
            },
            _ = shutdown.changed() => break,
        }
    }
    // Let in-flight requests finish: each connection stops after its current request.
    while tasks.join_next().await.is_some() {}
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(64 * 1024, read);
    let max = broker.config.socket_request_max_bytes;
    loop {
        let frame = tokio::select! {
            f = frame::read_frame(&mut read, max) => f,
            _ = shutdown.changed() => return,
        };
        let result = match frame {
            Ok(Some(frame)) => serve_one(&broker, frame, &mut write).await,
            Ok(None) => return,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            warn!(%peer, error = %e, cause = ?std::error::Error::source(&e).map(ToString::to_string), "closing connection");
            broker.metrics.connection_closed_on_error();
            return;
        }
    }
}

async fn serve_one(
    broker: &Broker,
    frame: Bytes,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
) -> Result<(), ConnectionError> {
    let req = parse_header(frame)?;
    let started = std::time::Instant::now();
    let api = req.api;
    let response = api::dispatch(broker, req).await?;
    broker.metrics.request_done(api, started.elapsed());
    if let Some(bytes) = response {
        write
            .write_all(&bytes)
            .await
            .map_err(ConnectionError::Write)?;
    }
    Ok(())
}

/// Decodes the request header, leaving the body undecoded.
pub fn parse_header(mut frame: Bytes) -> Result<Request, ConnectionError> {
    if frame.len() < frame::MIN_REQUEST_LEN {
        return Err(frame::FrameError::InvalidSize(i32::try_from(frame.len()).unwrap_or(0)).into());
    }
    // Peek at key and version; the header decoder reads them again from the same bytes, so the
    // body is never copied.
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api = ApiKey::try_from(key).map_err(|()| ConnectionError::UnknownApi(key))?;
    let header_version = api.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|source| {
        ConnectionError::Malformed {
            api,
            version,
            source,
        }
    })?;
    debug!(
        ?api,
        version,
        correlation_id = header.correlation_id,
        "request"
    );
    Ok(Request {
        header,
        api,
        body: frame,
    })
}

/// Frames a response: size, response header (version per API), body.
pub fn encode_response<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, ConnectionError> {
    let encode_err = |source| ConnectionError::Encode {
        api,
        version,
        source,
    };
    // ApiVersions always answers with header v0 so that a client can parse it whatever
    // version it asked for.
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let size = body.compute_size(version).map_err(encode_err)?;
    let mut buf = BytesMut::with_capacity(size + 9);
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    if header_version >= 1 {
        buf.put_u8(0); // no tagged fields
    }
    body.encode(&mut buf, version).map_err(encode_err)?;
    let len = i32::try_from(buf.len() - 4).unwrap_or(i32::MAX);
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Decodes a request body of a known version.
pub fn decode_body<T: Decodable>(req: &mut Request, version: i16) -> Result<T, ConnectionError> {
    T::decode(&mut req.body, version).map_err(|source| ConnectionError::Malformed {
        api: req.api,
        version,
        source,
    })
}

/// Binds the listener and logs where it is.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr).await?;
    info!(address = %l.local_addr()?, "kafka listener bound");
    Ok(l)
}
