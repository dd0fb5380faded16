//! Bad input gets a clear error and loses nothing: oversized, malformed, truncated and unknown
//! requests close only their own connection; corrupt or oversized batches are refused with the
//! right Kafka error and are not stored.

mod common;

use bytes::Bytes;
use common::{start_broker, Conn};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

const TOPIC: &str = "bad-input";

/// Current timestamps: old ones would be removed by retention.ms (7 days) right away.
fn now() -> i64 {
    broker::broker::now_ms()
}

fn name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

async fn create_topic(conn: &mut Conn) {
    common::create_topic(conn, TOPIC, 1).await;
}

async fn produce(conn: &mut Conn, records: Vec<u8>) -> (i16, i64) {
    common::produce(conn, TOPIC, records).await
}

/// Fetches everything from offset 0; returns (high watermark, record bytes).
async fn fetch_all(conn: &mut Conn) -> (i64, Bytes) {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let resp: FetchResponse = conn.call(ApiKey::Fetch, 12, &req).await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.high_watermark, p.records.clone().unwrap_or_default())
}

async fn api_versions_works(conn: &mut Conn) {
    let resp: ApiVersionsResponse = conn
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(resp.error_code, 0);
    assert!(resp
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16 && k.min_version == 0));
}

#[tokio::test]
async fn bad_frames_close_only_their_connection_and_keep_data() {
    let (running, _dir) = start_broker(&[("socket.request.max.bytes", "65536")]).await;
    let addr = running.kafka_addr.expect("a broker");
    let mut good = Conn::connect(addr).await;
    create_topic(&mut good).await;
    let (code, base) = produce(&mut good, tributary_log::testing::simple_batch(10, now())).await;
    assert_eq!((code, base), (0, 0));
    let (hw, before) = fetch_all(&mut good).await;
    assert_eq!(hw, 10);

    // Oversized: refused from the size prefix alone; no body is ever sent.
    let mut c = Conn::connect(addr).await;
    tokio::io::AsyncWriteExt::write_all(&mut c.stream, &0x7fff_fff0_i32.to_be_bytes())
        .await
        .expect("write");
    assert!(
        c.closed_by_broker().await,
        "oversized frame must close the connection"
    );

    // Just over the configured limit.
    let mut c = Conn::connect(addr).await;
    c.send_raw_frame(&vec![0u8; 65537]).await;
    assert!(c.closed_by_broker().await);

    // Negative and tiny sizes.
    let mut c = Conn::connect(addr).await;
    tokio::io::AsyncWriteExt::write_all(&mut c.stream, &(-5_i32).to_be_bytes())
        .await
        .expect("write");
    assert!(c.closed_by_broker().await);

    // Garbage after a valid size, unknown API key.
    let mut c = Conn::connect(addr).await;
    c.send_raw_frame(&[0x27, 0x10, 0, 1, 0, 0, 0, 7, 0xff, 0xff, 1, 2, 3])
        .await;
    assert!(c.closed_by_broker().await, "unknown api key");

    // A known API with a body that does not decode.
    let mut c = Conn::connect(addr).await;
    c.send_raw_frame(&[
        0, 3, 0, 12, 0, 0, 0, 9, 0, 2, b'i', b't', 0, 0x80, 0x80, 0x80,
    ])
    .await;
    assert!(c.closed_by_broker().await, "malformed metadata request");

    // Truncated frame: promises 100 bytes, sends 10, then half-closes.
    let mut c = Conn::connect(addr).await;
    tokio::io::AsyncWriteExt::write_all(
        &mut c.stream,
        &[0, 0, 0, 100, 0, 3, 0, 1, 0, 0, 0, 1, 0, 0],
    )
    .await
    .expect("write");
    tokio::io::AsyncWriteExt::shutdown(&mut c.stream)
        .await
        .expect("shutdown");
    assert!(c.closed_by_broker().await);

    // Unsupported version of a normal API closes; of ApiVersions gets an answer.
    let mut c = Conn::connect(addr).await;
    c.send_raw_frame(&[0, 3, 0, 99, 0, 0, 0, 5, 0, 0, 0]).await; // Metadata v99
    assert!(c.closed_by_broker().await);
    let mut c = Conn::connect(addr).await;
    c.send_raw_frame(&[0, 18, 0, 99, 0, 0, 0, 42, 0, 0, 0])
        .await; // header v2: empty client id, no tags
    let mut body = c.read_frame().await.expect("answer");
    assert_eq!(bytes::Buf::get_i32(&mut body), 42);
    let resp = <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut body, 0)
        .expect("v0 body");
    assert_eq!(resp.error_code, ResponseError::UnsupportedVersion.code());
    assert!(!resp.api_keys.is_empty());

    // Array lengths far beyond the frame (found by fuzzing): kafka-protocol reserves
    // `count` elements up front; the broker must answer with a closed connection, not abort.
    for count in [0x0800_ff00_u32, 0x7fff_ffff] {
        let mut c = Conn::connect(addr).await;
        let mut frame = vec![0, 44, 0, 0, 0, 0, 0, 0, 0xff, 0xff]; // IncrementalAlterConfigs v0
        frame.extend_from_slice(&count.to_be_bytes());
        frame.extend_from_slice(&[0; 8]);
        c.send_raw_frame(&frame).await;
        assert!(
            c.closed_by_broker().await,
            "array of {count} elements in a tiny frame"
        );
    }

    // Through all of that, the good connection and the stored data are untouched.
    api_versions_works(&mut good).await;
    assert_eq!(fetch_all(&mut good).await, (10, before));
    running.shutdown().await;
}

#[tokio::test]
async fn corrupt_and_oversized_batches_are_refused_and_not_stored() {
    let (running, _dir) = start_broker(&[("message.max.bytes", "2000")]).await;
    let mut conn = Conn::connect(running.kafka_addr.expect("a broker")).await;
    create_topic(&mut conn).await;
    assert_eq!(
        produce(&mut conn, tributary_log::testing::simple_batch(3, now())).await,
        (0, 0)
    );
    let (_, before) = fetch_all(&mut conn).await;

    let mut bad_crc = tributary_log::testing::simple_batch(3, now());
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x55;
    let (code, _) = produce(&mut conn, bad_crc).await;
    assert_eq!(code, ResponseError::CorruptMessage.code());

    let mut truncated = tributary_log::testing::simple_batch(3, now());
    truncated.truncate(truncated.len() - 5);
    let (code, _) = produce(&mut conn, truncated).await;
    assert_eq!(code, ResponseError::CorruptMessage.code());

    let big = tributary_log::testing::build_test_batch(&tributary_log::testing::TestBatch {
        records: vec![(None, vec![7u8; 5000])],
        base_timestamp: now(),
        ..Default::default()
    });
    let (code, _) = produce(&mut conn, big).await;
    assert_eq!(code, ResponseError::MessageTooLarge.code());

    assert_eq!(fetch_all(&mut conn).await, (3, before));
    // And the partition still takes good data at the next offset.
    assert_eq!(
        produce(&mut conn, tributary_log::testing::simple_batch(2, now())).await,
        (0, 3)
    );
    running.shutdown().await;
}

#[tokio::test]
async fn removed_produce_versions_get_unsupported_version() {
    let (running, _dir) = start_broker(&[]).await;
    let mut conn = Conn::connect(running.kafka_addr.expect("a broker")).await;
    // Produce v2: acks, timeout, [topic [partition, message_set]].
    let mut body = vec![0, 0, 0, 2, 0, 0, 0, 1, 0, 2, b'i', b't'];
    body.extend_from_slice(&[
        0, 1, 0, 0, 0x13, 0x88, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3,
    ]);
    conn.send_raw_frame(&body).await;
    let mut resp = conn.read_frame().await.expect("answer");
    use bytes::Buf;
    assert_eq!(resp.get_i32(), 1); // correlation id
    assert_eq!(resp.get_i32(), 1); // one topic
    assert_eq!(resp.get_i16(), 1);
    assert_eq!(resp.get_u8(), b't');
    assert_eq!(resp.get_i32(), 1); // one partition
    assert_eq!(resp.get_i32(), 0);
    assert_eq!(resp.get_i16(), ResponseError::UnsupportedVersion.code());
    running.shutdown().await;
}
