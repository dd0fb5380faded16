//! Kafka requests the admin client has no call for, sent with `KafkaAdminClient::send`: a topic
//! created with an explicit replica assignment, and records produced (acks=all) so that log
//! directories hold data.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use operator::admin::client::KafkaAdminClient;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

/// Creates `topic` with partition `i` on the replicas `assignment[i]` (first = preferred leader).
pub async fn create_topic_assigned(admin: &KafkaAdminClient, topic: &str, assignment: &[&[i32]]) {
    let assignments = assignment
        .iter()
        .enumerate()
        .map(|(i, replicas)| {
            CreatableReplicaAssignment::default()
                .with_partition_index(i32::try_from(i).expect("few partitions"))
                .with_broker_ids(replicas.iter().copied().map(BrokerId).collect())
        })
        .collect();
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(assignments)])
        .with_timeout_ms(10_000);
    let resp = admin.send(&req, 5).await.expect("CreateTopics");
    let r = &resp.topics[0];
    assert_eq!(r.error_code, 0, "create {topic}: {:?}", r.error_message);
}

/// Produces `count` records of `size` bytes to `topic`-`partition` on its leader at
/// `leader_addr`, acks=all; returns the base offset.
pub async fn produce(
    leader_addr: &str,
    topic: &str,
    partition: i32,
    count: usize,
    size: usize,
) -> i64 {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence is constant; the
            // batch header gets the first one's, -1 (not idempotent).
            sequence: i as i32 - 1,
            timestamp: 0,
            key: None,
            value: Some(Bytes::from(vec![b'x'; size])),
            headers: Default::default(),
        })
        .collect();
    let mut batch = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut batch, &records, &options).expect("encode records");
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch.freeze()))])]);
    // A leader just elected may not know it yet: retry while the partition settles.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leader = KafkaAdminClient::connect(leader_addr)
            .await
            .expect("connect to the leader");
        let resp = leader.send(&req, 8).await.expect("Produce");
        let p = &resp.responses[0].partition_responses[0];
        if p.error_code == 0 {
            return p.base_offset;
        }
        assert!(
            Instant::now() < deadline,
            "produce to {topic}-{partition}: error {} {:?}",
            p.error_code,
            p.error_message
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
