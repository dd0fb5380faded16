//! Helpers for broker integration tests: an in-process broker on ephemeral loopback ports and a
//! minimal raw Kafka client (kafka-protocol encoders over a TCP stream).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts a broker with a temp data dir on ports chosen by the OS.
pub async fn start_broker(extra: &[(&str, &str)]) -> (broker::broker::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut props = BTreeMap::from([
        ("listeners".to_owned(), "PLAINTEXT://127.0.0.1:0".to_owned()),
        ("http.listener".to_owned(), "127.0.0.1:0".to_owned()),
        // A lone voter never dials itself: any free port will do.
        (
            "controller.quorum.voters".to_owned(),
            "1@127.0.0.1:0".to_owned(),
        ),
        ("log.dirs".to_owned(), dir.path().display().to_string()),
    ]);
    for (k, v) in extra {
        props.insert((*k).to_owned(), (*v).to_owned());
    }
    let config = broker::config::BrokerConfig::from_properties(props).expect("config");
    let running = broker::broker::start(config).await.expect("broker starts");
    (running, dir)
}

/// Creates `topic` with `partitions` partitions (RF 1) through `conn`; panics on an error.
pub async fn create_topic(conn: &mut Conn, topic: &str, partitions: i32) {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(5000);
    let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 7, &req).await;
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{:?}",
        resp.topics[0].error_message
    );
}

/// Produces `records` (a batch) to partition 0 of `topic` with acks=all; returns the error code
/// and base offset.
pub async fn produce(conn: &mut Conn, topic: &str, records: Vec<u8>) -> (i16, i64) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(records)))])]);
    let resp: ProduceResponse = conn.call(ApiKey::Produce, 9, &req).await;
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A raw connection that speaks request/response frames.
pub struct Conn {
    pub stream: TcpStream,
    next_id: i32,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).await.expect("connect"),
            next_id: 1,
        }
    }

    /// Sends a request of `api` at `version` and returns the response body.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        self.send(api, version, req).await;
        let mut body = self.read_frame().await.expect("response frame");
        let _correlation = body.get_i32();
        if api.response_header_version(version) >= 1 && api != ApiKey::ApiVersions {
            let tagged = body.get_u8();
            assert_eq!(tagged, 0);
        }
        Resp::decode(&mut body, version).expect("decode response")
    }

    pub async fn send<Req: Encodable>(&mut self, api: ApiKey, version: i16, req: &Req) {
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.next_id)
            .with_client_id(Some(StrBytes::from_static_str("it")));
        self.next_id += 1;
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api.request_header_version(version))
            .expect("header");
        req.encode(&mut buf, version).expect("body");
        self.send_raw_frame(&buf).await;
    }

    pub async fn send_raw_frame(&mut self, body: &[u8]) {
        let mut out = BytesMut::with_capacity(body.len() + 4);
        out.put_i32(i32::try_from(body.len()).expect("size"));
        out.put_slice(body);
        self.stream.write_all(&out).await.expect("write");
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let read = async {
            let size = self.stream.read_i32().await.ok()?;
            let mut buf = vec![0u8; usize::try_from(size).ok()?];
            self.stream.read_exact(&mut buf).await.ok()?;
            Some(Bytes::from(buf))
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("broker answered or closed in time")
    }

    /// True if the broker closed the connection (EOF or reset) within a few seconds.
    pub async fn closed_by_broker(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}
