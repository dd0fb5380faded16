"""Dynamic broker configs on a 3-broker cluster, through confluent-kafka's admin client: a cluster
default (`min.insync.replicas`) set with IncrementalAlterConfigs takes effect on every broker
without a restart (acks=all refused with one broker down, accepted again once deleted), is
reported with its source, and is overridden by one broker's own value; properties that need a
restart and unknown ones are refused with messages that say so."""


import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   ResourceType)

from clientops import admin, create_topic
from test_protocol import call
from harness import wait_for


def alter(node, name, key, value, op=AlterConfigOpType.SET):
    """IncrementalAlterConfigs v1 of one BROKER resource (`name` "" is the cluster default, which
    librdkafka cannot name) straight to `node`; raises KafkaException with the broker's message
    on error."""
    from kafka.protocol.admin import IncrementalAlterConfigsRequest as I
    from kafka.protocol.admin import IncrementalAlterConfigsResponse
    R = I.AlterConfigsResource
    req = I(validate_only=False, resources=[R(resource_type=4, resource_name=name, configs=[
        R.AlterableConfig(name=key, config_operation=op.value, value=value)])])
    (r,) = call(node, req, IncrementalAlterConfigsResponse, 1).responses
    if r.error_code:
        raise KafkaException(KafkaError(r.error_code, r.error_message))


def described(bootstrap, rtype, name):
    res = ConfigResource(rtype, name)
    a = admin(bootstrap)  # kept alive until the future resolves
    return a.describe_configs([res])[res].result(15)


def produce_one(bootstrap, topic):
    """One acks=all produce: None when acknowledged, else the error code."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 5000,
                  "retries": 0})
    out = {}
    p.produce(topic, b"x", partition=0, on_delivery=lambda err, msg: out.update(err=err))
    p.flush(10)
    return out["err"].code() if out.get("err") else None


def test_a_cluster_default_applies_everywhere_without_a_restart(make_cluster):
    c = make_cluster(controllers=1, brokers=3)
    boot = c.bootstrap
    n101 = c.nodes[101]
    create_topic(boot, "dyn", 1, rf=3)
    alter(n101, "", "min.insync.replicas", "3")
    # Every broker reports the topic's value from the cluster default.
    for b in c.brokers:
        e = described(b.bootstrap, ResourceType.TOPIC, "dyn")["min.insync.replicas"]
        assert (e.value, e.source) == ("3", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value), (b.node_id, e)
    assert produce_one(boot, "dyn") is None, "3 of 3 in sync"
    # One follower down: below the new minimum, acks=all is refused — no restart happened.
    leader = c.nodes[admin(boot).list_topics("dyn", timeout=10).topics["dyn"].partitions[0].leader]
    follower = next(b for b in c.brokers if b is not leader)
    follower.kill()
    alive = ",".join(b.bootstrap for b in c.brokers if b.alive())
    wait_for("NOT_ENOUGH_REPLICAS", lambda: produce_one(alive, "dyn") == KafkaError.NOT_ENOUGH_REPLICAS, 30)
    # A broker's own value wins over the cluster default on that broker.
    alter(leader, str(leader.node_id), "min.insync.replicas", "2")
    e = described(leader.bootstrap, ResourceType.BROKER, str(leader.node_id))["min.insync.replicas"]
    assert (e.value, e.source) == ("2", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    wait_for("accepted with 2 of 3", lambda: produce_one(alive, "dyn") is None, 20)
    # Deleting both brings back the static value (1).
    alter(leader, str(leader.node_id), "min.insync.replicas", None, AlterConfigOpType.DELETE)
    alter(leader, "", "min.insync.replicas", None, AlterConfigOpType.DELETE)
    e = described(leader.bootstrap, ResourceType.TOPIC, "dyn")["min.insync.replicas"]
    assert e.source != ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value and e.value == "1", e
    follower.start()

    # Properties that need a restart, unknown names and bad values are refused, saying why.
    with pytest.raises(KafkaException) as err:
        alter(leader, "", "log.dirs", "/elsewhere")
    assert "restart" in str(err.value)
    with pytest.raises(KafkaException) as err:
        alter(leader, "", "no.such.property", "1")
    assert "unknown broker config" in str(err.value)
    with pytest.raises(KafkaException) as err:
        alter(leader, "", "log.retention.ms", "-7")
    assert "log.retention.ms" in str(err.value)
