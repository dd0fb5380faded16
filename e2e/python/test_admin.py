"""Admin operations through confluent-kafka's AdminClient: results and error codes as the Java
client and kcat expect."""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewPartitions, NewTopic)

from clients import consume_all, produce_confluent


def err_code(fut):
    with pytest.raises(KafkaException) as e:
        fut.result(10)
    return e.value.args[0].code()


def test_create_validate_duplicate_and_invalid(broker, topic):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert a.create_topics([NewTopic(topic, 2, 1)], validate_only=True)[topic].result(10) is None
    assert topic not in a.list_topics(timeout=10).topics
    a.create_topics([NewTopic(topic, 2, 1)])[topic].result(10)
    md = a.list_topics(timeout=10).topics[topic]
    assert sorted(md.partitions) == [0, 1]
    assert err_code(a.create_topics([NewTopic(topic, 2, 1)])[topic]) == KafkaError.TOPIC_ALREADY_EXISTS
    assert err_code(a.create_topics([NewTopic("bad/name", 1, 1)])["bad/name"]) == KafkaError.TOPIC_EXCEPTION
    assert err_code(a.create_topics([NewTopic("x" * 250, 1, 1)])["x" * 250]) == KafkaError.TOPIC_EXCEPTION
    bad_cfg = a.create_topics([NewTopic(topic + "-c", 1, 1, config={"retention.ms": "soon"})])
    assert err_code(bad_cfg[topic + "-c"]) == KafkaError.INVALID_CONFIG
    unknown_cfg = a.create_topics([NewTopic(topic + "-u", 1, 1, config={"no.such.thing": "1"})])
    assert err_code(unknown_cfg[topic + "-u"]) == KafkaError.INVALID_CONFIG
    assert err_code(a.create_topics([NewTopic(topic + "-r", 1, 3)])[topic + "-r"]) == KafkaError.INVALID_REPLICATION_FACTOR
    assert err_code(a.create_topics([NewTopic(topic + "-p", 0, 1)])[topic + "-p"]) == KafkaError.INVALID_PARTITIONS


def test_create_partitions(broker, topic):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic, 2, 1)])[topic].result(10)
    a.create_partitions([NewPartitions(topic, 5)])[topic].result(10)
    assert sorted(a.list_topics(timeout=10).topics[topic].partitions) == [0, 1, 2, 3, 4]
    assert err_code(a.create_partitions([NewPartitions(topic, 3)])[topic]) == KafkaError.INVALID_PARTITIONS
    assert err_code(a.create_partitions([NewPartitions("missing-" + topic, 3)])["missing-" + topic]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    # The new partitions take writes.
    acked = produce_confluent(broker.bootstrap, topic, 500)
    assert {p for p, *_ in acked} == {0, 1, 2, 3, 4}


def test_describe_and_alter_configs(broker, topic):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "3600000"})])[topic].result(10)
    res = ConfigResource("topic", topic)
    cfg = a.describe_configs([res])[res].result(10)
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["segment.bytes"].value == "1073741824"
    assert cfg["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert cfg["cleanup.policy"].value == "delete"

    inc = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    a.incremental_alter_configs([inc])[inc].result(10)
    cfg = a.describe_configs([res])[res].result(10)
    assert cfg["segment.bytes"].value == "1048576"
    assert cfg["retention.ms"].value == "604800000"
    assert cfg["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert cfg["cleanup.policy"].value == "delete,compact"

    bad = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("segment.bytes", "-5", incremental_operation=AlterConfigOpType.SET)])
    assert err_code(a.incremental_alter_configs([bad])[bad]) == KafkaError.INVALID_CONFIG
    assert a.describe_configs([res])[res].result(10)["segment.bytes"].value == "1048576"

    # Legacy AlterConfigs replaces the whole set of overrides.
    legacy = ConfigResource("topic", topic, set_config={"max.message.bytes": "2000000"})
    a.alter_configs([legacy])[legacy].result(10)
    cfg = a.describe_configs([res])[res].result(10)
    assert cfg["max.message.bytes"].value == "2000000"
    assert cfg["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value

    missing = ConfigResource("topic", "missing-" + topic)
    assert err_code(a.describe_configs([missing])[missing]) == KafkaError.UNKNOWN_TOPIC_OR_PART

    broker_res = ConfigResource("broker", "1")
    bcfg = a.describe_configs([broker_res])[broker_res].result(10)
    assert bcfg["log.dirs"].value == broker.data_dir
    assert bcfg["num.partitions"].source == ConfigSource.DEFAULT_CONFIG.value


def test_describe_cluster(broker):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    d = a.describe_cluster().result(10)
    assert len(d.cluster_id) == 22
    assert d.controller.id == 1
    assert [(n.id, n.host, n.port) for n in d.nodes] == [(1, "127.0.0.1", broker.port)]


def test_delete_records_moves_log_start(broker, topic):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    produce_confluent(broker.bootstrap, topic, 100)
    [r] = a.delete_records([TopicPartition(topic, 0, 40)]).values()
    assert r.result(10).low_watermark == 40
    msgs = consume_all(broker.bootstrap, topic, 1, 60)
    assert [m.offset() for m in msgs] == list(range(40, 100))
    [r] = a.delete_records([TopicPartition(topic, 0, 1000)]).values()
    assert err_code(r) == KafkaError.OFFSET_OUT_OF_RANGE


def test_delete_topics(broker, topic):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic, 3, 1)])[topic].result(10)
    produce_confluent(broker.bootstrap, topic, 10)
    a.delete_topics([topic])[topic].result(10)
    assert topic not in a.list_topics(timeout=10).topics
    assert err_code(a.delete_topics([topic])[topic]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    time.sleep(0.2)
    import os
    assert not any(n.startswith(topic + "-") for n in os.listdir(broker.data_dir))
    # The name can be used again, from offset 0.
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    acked = produce_confluent(broker.bootstrap, topic, 5)
    assert [o for _, o, *_ in acked] == [0, 1, 2, 3, 4]


def test_describe_configs_of_a_broker_lists_every_config_with_its_source_and_default(make_broker):
    from confluent_kafka.admin import ConfigResource, ConfigSource
    from clients import admin
    b = make_broker(num_partitions=3)
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    client = admin(b.bootstrap)  # keep the handle alive until the future resolves
    configs = client.describe_configs([res])[res].result(10)
    # Every property the broker knows is listed (its built-in defaults included).
    for name in ("log.retention.ms", "max.connections", "connections.max.idle.ms", "log.format"):
        assert name in configs, name
    default = configs["log.retention.ms"]
    assert default.source == ConfigSource.DEFAULT_CONFIG.value
    assert [(s.source, s.value) for s in default.synonyms.values()] == [(ConfigSource.DEFAULT_CONFIG.value, "604800000")]
    static = configs["num.partitions"]
    assert (static.source, static.value) == (ConfigSource.STATIC_BROKER_CONFIG.value, "3")
    # The built-in default is among the synonyms (confluent-kafka keys synonyms by name, so of
    # the same-name STATIC and DEFAULT entries it keeps the last, the default).
    assert [(s.source, s.value) for s in static.synonyms.values()] == [(ConfigSource.DEFAULT_CONFIG.value, "1")]
