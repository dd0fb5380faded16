"""What clients see of leadership on a 3-broker cluster, at the wire level (requests encoded with
kafka-python's protocol classes at exact versions): KIP-951 leader hints in NOT_LEADER_OR_FOLLOWER
and FENCED_LEADER_EPOCH answers to Produce v12 and Fetch v17, ListOffsets v10 (earliest local,
latest tiered, leader epochs, fenced epochs), DescribeTopicPartitions v0, NOT_LEADER_OR_FOLLOWER (not UNKNOWN_TOPIC) for a
partition that exists elsewhere, and the Kafka version kafka-python infers from ApiVersions."""

import socket
import struct
import time
import uuid

from kafka.protocol.consumer.fetch import FetchRequest, FetchResponse
from kafka.protocol.consumer.offsets import ListOffsetsRequest, ListOffsetsResponse
from kafka.protocol.producer.produce import ProduceRequest, ProduceResponse
from kafka.record.default_records import DefaultRecordBatchBuilder

from clientops import create_topic, metadata

NOT_LEADER_OR_FOLLOWER = 6
FENCED_LEADER_EPOCH = 74


def call(node, request, response_class, version):
    """One request at `version` to `node`'s Kafka listener; the decoded response."""
    request.with_header(correlation_id=11, client_id="protocol-test")
    frame = request.encode(version=version, header=True, framed=True)
    with socket.create_connection(("127.0.0.1", node.kafka_port), timeout=10) as s:
        s.sendall(frame)
        (size,) = struct.unpack(">i", recv(s, 4))
        data = recv(s, size)
    resp = response_class.decode(data, version=version, header=True)
    assert resp._header.correlation_id == 11
    return resp


def recv(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "connection closed"
        buf += chunk
    return buf


def batch(n=3):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    now = int(time.time() * 1000)
    for i in range(n):
        b.append(i, now, None, f"v{i}".encode(), [])
    return bytes(b.build())


def produce(node, topic, partition, acks=1):
    P = ProduceRequest
    req = P(acks=acks, timeout_ms=5000, topic_data=[P.TopicProduceData(
        name=topic, partition_data=[P.TopicProduceData.PartitionProduceData(index=partition, records=batch())])])
    return call(node, req, ProduceResponse, 12)


def fetch(node, topic_id, partition, offset=0, leader_epoch=-1):
    F = FetchRequest
    req = F(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, isolation_level=0, topics=[F.FetchTopic(
        topic_id=topic_id, partitions=[F.FetchTopic.FetchPartition(
            partition=partition, current_leader_epoch=leader_epoch, fetch_offset=offset,
            last_fetched_epoch=-1, log_start_offset=-1, partition_max_bytes=1 << 20)])])
    return call(node, req, FetchResponse, 17)


def list_offsets(node, topic, partition, timestamp, leader_epoch=-1):
    L = ListOffsetsRequest
    req = L(replica_id=-1, isolation_level=0, timeout_ms=1000, topics=[L.ListOffsetsTopic(
        name=topic, partitions=[L.ListOffsetsTopic.ListOffsetsPartition(
            partition_index=partition, current_leader_epoch=leader_epoch, timestamp=timestamp)])])
    p = call(node, req, ListOffsetsResponse, 10).topics[0].partitions[0]
    return p.error_code, p.offset, p.leader_epoch


def test_leader_hints_offsets_and_inferred_version(make_cluster):
    c = make_cluster(controllers=1, brokers=3, auto_create_topics_enable="false")
    topic = f"hint-{uuid.uuid4().hex[:8]}"
    create_topic(c.nodes[101].bootstrap, topic, 1, rf=3, config={"min.insync.replicas": "2"})
    md = metadata(c.nodes[101].bootstrap, topic)
    pm = md.topics[topic].partitions[0]
    leader, follower = c.nodes[pm.leader], c.nodes[[r for r in pm.replicas if r != pm.leader][0]]
    epoch = next(p.leader_epoch for p in described(c, topic).partitions if p.partition_index == 0)

    # Produce v12 to a follower: NOT_LEADER_OR_FOLLOWER naming the leader, with its endpoint.
    resp = produce(follower, topic, 0)
    p = resp.responses[0].partition_responses[0]
    assert p.error_code == NOT_LEADER_OR_FOLLOWER
    assert (p.current_leader.leader_id, p.current_leader.leader_epoch) == (leader.node_id, epoch)
    assert [(e.node_id, e.host, e.port) for e in resp.node_endpoints] == \
        [(leader.node_id, "127.0.0.1", leader.kafka_port)]
    # To the leader: appended (acks=all with the whole ISR), no hint.
    resp = produce(leader, topic, 0, acks=-1)
    p = resp.responses[0].partition_responses[0]
    assert (p.error_code, p.base_offset) == (0, 0) and resp.node_endpoints == []

    # Fetch v17 (by topic id) from the follower as a consumer: the same hint.
    topic_id = described(c, topic).topic_id
    resp = fetch(follower, topic_id, 0)
    p = resp.responses[0].partitions[0]
    assert p.error_code == NOT_LEADER_OR_FOLLOWER
    assert (p.current_leader.leader_id, p.current_leader.leader_epoch) == (leader.node_id, epoch)
    assert [e.node_id for e in resp.node_endpoints] == [leader.node_id]
    # From the leader with an older epoch: FENCED_LEADER_EPOCH, with the hint; with the current
    # one, the three records.
    if epoch > 0:
        resp = fetch(leader, topic_id, 0, leader_epoch=epoch - 1)
        p = resp.responses[0].partitions[0]
        assert p.error_code == FENCED_LEADER_EPOCH and p.current_leader.leader_id == leader.node_id
    resp = fetch(leader, topic_id, 0, leader_epoch=epoch)
    p = resp.responses[0].partitions[0]
    assert p.error_code == 0 and p.high_watermark == 3 and len(p.records) > 0

    # ListOffsets v10: latest is the high watermark, earliest local the log start, latest tiered
    # none (nothing is tiered); each with the leader epoch of its batch.
    assert list_offsets(leader, topic, 0, -1) == (0, 3, epoch)
    assert list_offsets(leader, topic, 0, -2) == (0, 0, epoch)
    assert list_offsets(leader, topic, 0, -4) == (0, 0, epoch)
    assert list_offsets(leader, topic, 0, -5) == (0, -1, -1)
    assert list_offsets(leader, topic, 0, -1, leader_epoch=epoch + 1)[0] == 75  # UNKNOWN_LEADER_EPOCH
    assert list_offsets(follower, topic, 0, -1)[0] == NOT_LEADER_OR_FOLLOWER

    # A partition that exists but has no replica here: NOT_LEADER_OR_FOLLOWER, not unknown.
    single = f"one-{uuid.uuid4().hex[:8]}"
    create_topic(c.nodes[101].bootstrap, single, 1, rf=1)
    owner = metadata(c.nodes[101].bootstrap, single).topics[single].partitions[0].leader
    elsewhere = next(b for b in c.brokers if b.node_id != owner)
    resp = produce(elsewhere, single, 0)
    p = resp.responses[0].partition_responses[0]
    assert p.error_code == NOT_LEADER_OR_FOLLOWER and p.current_leader.leader_id == owner
    assert produce(elsewhere, "no-such-topic-here", 0).responses[0].partition_responses[0].error_code == 3

    # DescribeTopicPartitions v0: the same leader, epoch, replicas and ISR as Metadata, paged.
    from kafka.protocol.admin.topics import DescribeTopicPartitionsRequest as D
    from kafka.protocol.admin.topics import DescribeTopicPartitionsResponse
    resp = call(follower, D(topics=[D.TopicRequest(name=topic), D.TopicRequest(name=single)],
                            response_partition_limit=1, cursor=None), DescribeTopicPartitionsResponse, 0)
    first = min(topic, single)
    assert [t.name for t in resp.topics] == [first] and resp.next_cursor.topic_name == max(topic, single)
    resp = call(follower, D(topics=[D.TopicRequest(name=topic)], response_partition_limit=10, cursor=None),
                DescribeTopicPartitionsResponse, 0)
    (dp,) = resp.topics[0].partitions
    assert (dp.leader_id, dp.leader_epoch, sorted(dp.isr_nodes)) == (leader.node_id, epoch, sorted(pm.replicas))
    assert resp.next_cursor is None

    # kafka-python infers the Kafka version from the advertised API versions (4.0 needs
    # ListOffsets v10, Fetch v17, Produce v12 among others).
    from kafka.protocol.api_key import ApiKey
    from kafka.protocol.broker_version_data import infer_broker_version_from_api_versions
    from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse
    resp = call(leader, ApiVersionsRequest(client_software_name="t", client_software_version="1"),
                ApiVersionsResponse, 3)
    advertised = {ApiKey(k.api_key): (k.min_version, k.max_version) for k in resp.api_keys
                  if k.api_key in {a.value for a in ApiKey}}
    assert infer_broker_version_from_api_versions(advertised) == (4, 0)


def described(c, topic):
    """`topic` as a Metadata v12 response describes it (topic id, leader epochs)."""
    from kafka.protocol.metadata import MetadataRequest, MetadataResponse
    M = MetadataRequest
    req = M(topics=[M.MetadataRequestTopic(name=topic)], allow_auto_topic_creation=False,
            include_topic_authorized_operations=False)
    return call(c.nodes[101], req, MetadataResponse, 12).topics[0]
