//! OffsetForLeaderEpoch against an in-process broker: the end offset of the current leader
//! epoch is the log end, an epoch above every known one is undefined, and a request naming an
//! older current leader epoch is fenced.

mod common;

use common::{start_broker, Conn};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

fn name() -> TopicName {
    TopicName(StrBytes::from_static_str("epochs"))
}

async fn ask(conn: &mut Conn, current: i32, epoch: i32) -> (i16, i32, i64) {
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(name())
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current)
                .with_leader_epoch(epoch)])]);
    let resp: OffsetForLeaderEpochResponse = conn.call(ApiKey::OffsetForLeaderEpoch, 4, &req).await;
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.leader_epoch, p.end_offset)
}

#[tokio::test]
async fn end_offsets_of_leader_epochs() {
    let (running, _dir) = start_broker(&[]).await;
    let mut conn = Conn::connect(running.kafka_addr.expect("a broker")).await;
    common::create_topic(&mut conn, "epochs", 1).await;
    for _ in 0..2 {
        let batch = tributary_log::testing::simple_batch(5, broker::broker::now_ms());
        assert_eq!(common::produce(&mut conn, "epochs", batch).await.0, 0);
    }
    let md: MetadataResponse = conn
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name()))
            ])),
        )
        .await;
    let epoch = md.topics[0].partitions[0].leader_epoch;
    assert_eq!(ask(&mut conn, epoch, epoch).await, (0, epoch, 10));
    assert_eq!(ask(&mut conn, -1, epoch).await, (0, epoch, 10));
    assert_eq!(ask(&mut conn, epoch, epoch + 5).await, (0, -1, -1));
    if epoch > 0 {
        let (code, _, _) = ask(&mut conn, epoch - 1, epoch).await;
        assert_eq!(code, ResponseError::FencedLeaderEpoch.code());
    }
    let (code, _, _) = ask(&mut conn, epoch + 1, epoch).await;
    assert_eq!(code, ResponseError::UnknownLeaderEpoch.code());
    running.shutdown().await;
}
