//! The Kafka listener: accepts connections and serves each one's requests strictly in order
//! (as Kafka does, one request in flight per connection, so responses keep request order).
//!
//! A malformed or oversized frame, an unknown API key or an unsupported version closes only
//! that connection, with a log line saying why; Kafka-level failures are error codes inside
//! responses (see `api`).

pub mod frame;
pub mod limits;
pub mod slow;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use tributary_log::FileRange;

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

/// A response ready to be written.
pub enum Reply {
    /// The whole frame in memory.
    Bytes(Bytes),
    /// A frame of in-memory pieces and segment-file ranges, the latter sent with `sendfile`
    /// (Fetch records: never copied through user space).
    Parts(Vec<Part>),
}

/// One piece of a [`Reply::Parts`] frame.
pub enum Part {
    Bytes(Bytes),
    File(FileRange),
}

impl Reply {
    /// `Some(Reply::Bytes(b))`, for dispatch's `map`.
    pub fn some(b: Bytes) -> Option<Reply> {
        Some(Reply::Bytes(b))
    }
}

/// Records of one partition that go out as file ranges: the response is encoded with `marker`
/// in their place, then the marker is swapped for the ranges.
pub struct Splice {
    pub marker: Bytes,
    pub ranges: Vec<FileRange>,
    pub len: usize,
}

/// A decoded request header plus the undecoded body.
pub struct Request {
    pub header: RequestHeader,
    pub api: ApiKey,
    pub body: Bytes,
    /// The client's address (Kafka's `client_host` in group descriptions).
    pub peer: Option<SocketAddr>,
}

/// Accepts connections until `shutdown` flips to true. A connection over a limit
/// (`limits`) is closed at once; running out of descriptors or memory pauses accepting
/// (10 ms doubling to 1 s) until a connection can be accepted again. Refusals and failures are
/// logged at most once per second each, with their count.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tracker = broker.connections.clone();
    let mut tasks = tokio::task::JoinSet::new();
    let mut backoff = limits::AcceptBackoff::default();
    let mut refusals = limits::LogLimiter::new(limits::LOG_INTERVAL);
    let mut failures = limits::LogLimiter::new(limits::LOG_INTERVAL);
    let mut rate = tracker
        .limits()
        .creation_rate
        .map(|r| limits::CreationRate::new(r, std::time::Instant::now()));
    loop {
        // Finished connections leave the set here, so it holds only open ones.
        while tasks.try_join_next().is_some() {}
        let wait = rate
            .as_mut()
            .map_or(Duration::ZERO, |r| r.take(std::time::Instant::now()));
        if !wait.is_zero() && pause(wait, &mut shutdown).await {
            break;
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.succeeded();
                match tracker.admit(peer.ip()) {
                    Ok(permit) => {
                        let broker = broker.clone();
                        let shutdown = shutdown.clone();
                        tasks.spawn(async move {
                            connection(stream, peer, broker, shutdown).await;
                            drop(permit);
                        });
                    }
                    Err(refusal) => {
                        drop(stream);
                        if let Some(n) = refusals.hit(std::time::Instant::now()) {
                            warn!(%peer, reason = %refusal, refused = n, "refused connections over a limit (count since the last such line)");
                        }
                    }
                }
            }
            Err(e) => {
                tracker.accept_failed();
                let wait = limits::is_resource_exhaustion(&e).then(|| backoff.failed());
                if let Some(n) = failures.hit(std::time::Instant::now()) {
                    warn!(error = %e, failures = n, backoff_ms = wait.map_or(0, |d| d.as_millis() as u64), "accept failed (count since the last such line); accepting resumes by itself");
                }
                match wait {
                    Some(wait) => {
                        if pause(wait, &mut shutdown).await {
                            break;
                        }
                    }
                    None => tokio::task::yield_now().await,
                }
            }
        }
    }
    // Let in-flight requests finish: each connection stops after its current request.
    while tasks.join_next().await.is_some() {}
}

/// Sleeps for `wait`; true when shutdown came first.
async fn pause(wait: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = shutdown.changed() => true,
    }
}

/// A connection's read buffer, held only while requests arrive: a connection waiting for its
/// next request with nothing buffered gives it back, so an idle connection costs its task and
/// socket, not a buffer (measured in `docs/benchmarks.md`).
const READ_BUFFER: usize = 64 * 1024;

/// A busy connection reads its requests into one buffer, reused once the previous request's
/// bytes are dropped: a fresh megabyte per produce request costs page faults and zeroing
/// (~5 % of produce CPU, docs/benchmarks.md). Frames above this size get a buffer of their own.
const FRAME_REUSE_MAX: usize = 8 * 1024 * 1024;

/// How long a connection with no request to read keeps its frame buffer before giving it
/// back; an idle connection then holds no buffer at all.
const FRAME_BUFFER_LINGER: Duration = Duration::from_millis(100);

/// What waiting for a connection's next request ended with.
enum Wait {
    Readable,
    /// The peer closed the connection, or the broker is shutting down.
    Closed,
    Idle,
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut raw, mut write) = stream.into_split();
    let idle = broker.connections.limits().idle_timeout;
    let mut frames: Option<BytesMut> = None;
    loop {
        match next_request(&raw, idle, &mut shutdown, &mut frames).await {
            Wait::Readable => {}
            Wait::Closed => return,
            Wait::Idle => return idle_close(&broker, peer, idle),
        }
        let mut reader = BufReader::with_capacity(READ_BUFFER, raw);
        if !serve_buffered(
            &broker,
            &mut reader,
            peer,
            &mut write,
            &mut shutdown,
            &mut frames,
        )
        .await
        {
            return;
        }
        raw = reader.into_inner();
    }
}

/// Waits until the connection has bytes to read. Idle time is counted while waiting for the
/// next request (a long-polling fetch being served is not idle); the frame buffer is given
/// back after [`FRAME_BUFFER_LINGER`] of it.
async fn next_request(
    raw: &OwnedReadHalf,
    idle: Duration,
    shutdown: &mut watch::Receiver<bool>,
    frames: &mut Option<BytesMut>,
) -> Wait {
    let deadline = tokio::time::Instant::now() + idle;
    loop {
        let until = if frames.is_some() {
            (tokio::time::Instant::now() + FRAME_BUFFER_LINGER).min(deadline)
        } else {
            deadline
        };
        tokio::select! {
            r = tokio::time::timeout_at(until, raw.readable()) => match r {
                Ok(Ok(())) => return Wait::Readable,
                Ok(Err(_)) => return Wait::Closed,
                // The buffer is given back; wait on for the rest of the idle time.
                Err(_) if frames.take().is_some() => {}
                Err(_) => return Wait::Idle,
            },
            _ = shutdown.changed() => return Wait::Closed,
        }
    }
}

fn idle_close(broker: &Broker, peer: SocketAddr, idle: Duration) {
    debug!(%peer, idle_ms = idle.as_millis() as u64, "closing idle connection (connections.max.idle.ms)");
    broker.connections.idle_closed();
}

/// Serves requests until the read buffer is drained; false when the connection is done.
async fn serve_buffered(
    broker: &Broker,
    read: &mut BufReader<OwnedReadHalf>,
    peer: SocketAddr,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    shutdown: &mut watch::Receiver<bool>,
    frames: &mut Option<BytesMut>,
) -> bool {
    let max = broker.config.socket_request_max_bytes;
    let reuse_max = max.min(FRAME_REUSE_MAX);
    let idle = broker.connections.limits().idle_timeout;
    loop {
        let buf = frames.get_or_insert_with(BytesMut::new);
        let frame = tokio::select! {
            f = tokio::time::timeout(idle, frame::read_frame_reusing_up_to(read, buf, reuse_max, max)) => match f {
                Ok(f) => f,
                Err(_) => {
                    idle_close(broker, peer, idle);
                    return false;
                }
            },
            _ = shutdown.changed() => return false,
        };
        let result = match frame {
            // Boxed: the handlers' futures are large, and inline they would make every
            // connection's task that large even while it waits for a request.
            Ok(Some(frame)) => Box::pin(serve_one(broker, frame, peer, write)).await,
            Ok(None) => return false,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            warn!(%peer, error = %e, cause = ?std::error::Error::source(&e).map(ToString::to_string), "closing connection");
            broker.metrics.connection_closed_on_error();
            return false;
        }
        if read.buffer().is_empty() {
            return true;
        }
    }
}

async fn serve_one(
    broker: &Broker,
    frame: Bytes,
    peer: SocketAddr,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
) -> Result<(), ConnectionError> {
    let mut req = parse_header(frame)?;
    req.peer = Some(peer);
    let started = tokio::time::Instant::now();
    let api = req.api;
    let version = req.header.request_api_version;
    let correlation_id = req.header.correlation_id;
    let client_id = req.header.client_id.clone();
    let (response, phases) = slow::scope(api::dispatch(broker, req)).await;
    let response = response?;
    let handle = started.elapsed();
    broker.metrics.request_done(api, handle);
    let sending = tokio::time::Instant::now();
    match response {
        Some(Reply::Bytes(bytes)) => write
            .write_all(&bytes)
            .await
            .map_err(ConnectionError::Write)?,
        Some(Reply::Parts(parts)) => write_parts(write, parts)
            .await
            .map_err(ConnectionError::Write)?,
        None => {}
    }
    let timing = slow::Timing {
        handle,
        phases,
        send: sending.elapsed(),
    };
    if timing.is_slow(broker.config.slow_request) {
        slow::log(
            api,
            version,
            correlation_id,
            client_id.as_deref(),
            Some(peer),
            &timing,
        );
    }
    Ok(())
}

/// Writes a frame of pieces: in-memory pieces with `write_all`, file ranges with `sendfile`
/// straight from the page cache to the socket.
async fn write_parts(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    parts: Vec<Part>,
) -> std::io::Result<()> {
    for part in parts {
        match part {
            Part::Bytes(b) => write.write_all(&b).await?,
            Part::File(range) => send_file(write.as_ref(), &range).await?,
        }
    }
    Ok(())
}

async fn send_file(sock: &TcpStream, range: &FileRange) -> std::io::Result<()> {
    let mut offset = range.position;
    let end = range.position + range.len as u64;
    while offset < end {
        sock.writable().await?;
        let sent = sock.try_io(tokio::io::Interest::WRITABLE, || {
            let count = usize::try_from(end - offset).unwrap_or(usize::MAX);
            rustix::fs::sendfile(sock, &*range.file, Some(&mut offset), count)
                .map_err(std::io::Error::from)
        });
        match sent {
            // The frame's length was promised: a segment truncated under the read (a follower
            // truncation) can only end the connection.
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment file ended inside a fetched range",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
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
        peer: None,
    })
}

/// Frames a response: size, response header (version per API), body.
pub fn encode_response<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, ConnectionError> {
    encode_response_mut(api, version, correlation_id, body).map(BytesMut::freeze)
}

/// Frames a response whose body carries the markers of `splices` as records (a bytes field,
/// compact from the first flexible version when `compact`), replacing each marker, with its
/// length prefix, by the real length and the file ranges. Markers must appear in order.
pub fn encode_spliced<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
    compact: bool,
    splices: Vec<Splice>,
) -> Result<Reply, ConnectionError> {
    let mut buf = encode_response_mut(api, version, correlation_id, body)?;
    if splices.is_empty() {
        return Ok(Reply::Bytes(buf.freeze()));
    }
    let fail = |what: &str| ConnectionError::Encode {
        api,
        version,
        source: anyhow::anyhow!("records placeholder {what}"),
    };
    // Positions of the markers (with their length prefixes) in the encoded frame.
    let mut found = Vec::with_capacity(splices.len());
    let mut cursor = 0usize;
    let mut total = buf.len();
    for sp in &splices {
        let m = &sp.marker;
        let at = buf[cursor..]
            .windows(m.len())
            .position(|w| w == &m[..])
            .map(|p| p + cursor)
            .ok_or_else(|| fail("not found"))?;
        let (old_prefix, new_prefix) = if compact {
            (uvarint(m.len() as u64 + 1), uvarint(sp.len as u64 + 1))
        } else {
            let len = i32::try_from(sp.len).map_err(|_| fail("too long"))?;
            (
                (m.len() as i32).to_be_bytes().to_vec(),
                len.to_be_bytes().to_vec(),
            )
        };
        let start = at
            .checked_sub(old_prefix.len())
            .filter(|s| buf[*s..at] == old_prefix[..])
            .ok_or_else(|| fail("without its length prefix"))?;
        total = total - old_prefix.len() - m.len() + new_prefix.len() + sp.len;
        found.push((start, at + m.len(), new_prefix));
        cursor = at + m.len();
    }
    let frame_len = i32::try_from(total - 4).map_err(|_| fail("frame too long"))?;
    buf[..4].copy_from_slice(&frame_len.to_be_bytes());
    let whole = buf.freeze();
    let mut parts = Vec::with_capacity(splices.len() * 3 + 1);
    let mut cursor = 0usize;
    for ((start, end, prefix), sp) in found.into_iter().zip(splices) {
        let mut head = BytesMut::with_capacity(start - cursor + prefix.len());
        head.extend_from_slice(&whole[cursor..start]);
        head.extend_from_slice(&prefix);
        parts.push(Part::Bytes(head.freeze()));
        parts.extend(sp.ranges.into_iter().map(Part::File));
        cursor = end;
    }
    parts.push(Part::Bytes(whole.slice(cursor..)));
    Ok(Reply::Parts(parts))
}

fn uvarint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(5);
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

fn encode_response_mut<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<BytesMut, ConnectionError> {
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
    Ok(buf)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (CONVENTIONS 8)
mod tests {
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, ResponseHeader, TopicName};

    use super::*;

    /// Reassembles a spliced frame the way the socket would see it.
    fn flatten(reply: Reply) -> Vec<u8> {
        let Reply::Parts(parts) = reply else {
            panic!("expected parts");
        };
        let mut out = Vec::new();
        for p in parts {
            match p {
                Part::Bytes(b) => out.extend_from_slice(&b),
                Part::File(r) => {
                    let mut buf = vec![0u8; r.len];
                    r.file.read_exact_at(&mut buf, r.position).unwrap();
                    out.extend_from_slice(&buf);
                }
            }
        }
        out
    }

    #[test]
    fn spliced_fetch_responses_decode_as_if_the_records_were_inline() {
        let mut file = tempfile::tempfile().unwrap();
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&content).unwrap();
        let file = Arc::new(file);
        for version in [4i16, 11, 12, 16] {
            let markers = [
                Bytes::from_static(b"MARKER-0-abcdefg"),
                Bytes::from_static(b"MARKER-1-abcdefg"),
            ];
            let part = |i: i32, records: Bytes| {
                PartitionData::default()
                    .with_partition_index(i)
                    .with_high_watermark(99)
                    .with_records(Some(records))
            };
            let resp =
                FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                    .with_topic(TopicName(crate::api::s("orders")))
                    .with_partitions(vec![
                        part(0, markers[0].clone()),
                        part(1, Bytes::from_static(b"inline")),
                        part(2, markers[1].clone()),
                    ])]);
            let splices = vec![
                Splice {
                    marker: markers[0].clone(),
                    ranges: vec![
                        FileRange {
                            file: file.clone(),
                            position: 10,
                            len: 200,
                        },
                        FileRange {
                            file: file.clone(),
                            position: 1_000,
                            len: 150_000,
                        },
                    ],
                    len: 150_200,
                },
                Splice {
                    marker: markers[1].clone(),
                    ranges: vec![FileRange {
                        file: file.clone(),
                        position: 5,
                        len: 3,
                    }],
                    len: 3,
                },
            ];
            let reply =
                encode_spliced(ApiKey::Fetch, version, 42, &resp, version >= 12, splices).unwrap();
            let frame = flatten(reply);
            let len = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(len, frame.len() - 4, "v{version}: frame length");
            let mut body = Bytes::from(frame[4..].to_vec());
            let header =
                ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(version))
                    .unwrap();
            assert_eq!(header.correlation_id, 42);
            let got = FetchResponse::decode(&mut body, version).unwrap();
            assert!(body.is_empty());
            let parts = &got.responses[0].partitions;
            let mut first = content[10..210].to_vec();
            first.extend_from_slice(&content[1_000..151_000]);
            assert_eq!(parts[0].records.as_deref(), Some(&first[..]), "v{version}");
            assert_eq!(parts[1].records.as_deref(), Some(&b"inline"[..]));
            assert_eq!(parts[2].records.as_deref(), Some(&content[5..8]));
        }
    }

    #[test]
    fn a_missing_marker_is_an_encoding_error() {
        let resp = FetchResponse::default();
        let splices = vec![Splice {
            marker: Bytes::from_static(b"not-in-response!"),
            ranges: Vec::new(),
            len: 0,
        }];
        assert!(encode_spliced(ApiKey::Fetch, 12, 1, &resp, true, splices).is_err());
    }
}
