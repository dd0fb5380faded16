"""The `tributary` admin CLI against a real cluster: describe topics and brokers, then drain a
broker under an idempotent acks=all workload — plan, execute with a throttle, watch until done
(which removes the throttle), stop and unregister it — with the workload checker's verdict; and
a throttled move cancelled half-way returns to the original replicas. kafka-python's admin client
sees the CLI's reassignments as its own."""

import json
import os
import re
import subprocess
import time

from kafka import KafkaAdminClient

from test_replication import RF3, run_with_faults  # noqa: I100 - first: puts e2e/workload on the path

import report  # noqa: E402
from clientops import create_topic, metadata, produce  # noqa: E402
from harness import BIN, wait_for  # noqa: E402
from test_reassignment import ON_THREE, boot, logs_of, unregister  # noqa: E402

CLI = os.path.join(os.path.dirname(os.path.abspath(BIN)), "tributary")


def cli(c, *args, timeout=60, check=True):
    r = subprocess.run([CLI, "-b", boot(c), *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"tributary {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


def topic_config(c, topic, key):
    from confluent_kafka.admin import ConfigResource, ResourceType
    from clientops import admin
    res = ConfigResource(ResourceType.TOPIC, topic)
    a = admin(boot(c))
    return a.describe_configs([res])[res].result(15)[key].value


def test_drain_a_broker_with_the_cli_under_load(make_cluster, tmp_path):
    c = make_cluster(controllers=1, brokers=4, replica_lag_time_max_ms=3000)
    plan = str(tmp_path / "drain.json")
    seen = {}

    def schedule(topic, at):
        def describe():
            seen["describe"] = cli(c, "topics", "describe", topic).stdout
            seen["brokers"] = cli(c, "brokers", "list").stdout

        def drain():
            seen["plan"] = cli(c, "reassign", "plan", "--drain", "101", "--out", plan).stdout
            seen["execute"] = cli(c, "reassign", "execute", plan, "--throttle", "5000000").stdout
            ka = KafkaAdminClient(bootstrap_servers=boot(c))
            try:
                seen["listed_by_kafka_python"] = len(ka.list_partition_reassignments())
            finally:
                ka.close()
            seen["status"] = cli(c, "reassign", "status", plan, "--watch", timeout=90).stdout

        at(2, "describe topics and brokers", describe)
        at(4, "drain 101: plan, execute (5 MB/s throttle), status --watch", drain)

    result, faults = run_with_faults(c, tmp_path, schedule, duration=20, assignment=ON_THREE)
    print(report.summary(result))
    print(seen.get("plan"), seen.get("status"))
    assert len(faults) == 2, faults
    assert result.valid, report.summary(result)
    assert result.counts["acknowledged_unread"] == 0
    lines = [x for x in seen["describe"].splitlines() if x.startswith("Topic: ")]
    assert len(lines) == 6 and all("Leader: " in x and "Isr: " in x for x in lines), seen["describe"]
    assert len(seen["brokers"].splitlines()) == 5, seen["brokers"]
    moves = json.load(open(plan))["plan"]["moves"]
    assert moves and all(101 in m["current"] and 101 not in m["target"] for m in moves), moves
    assert seen["listed_by_kafka_python"] >= 0
    assert "done: throttle removed" in seen["status"], seen["status"]
    # Nothing is left on 101 and no throttle remains; it stops cleanly and is unregistered.
    md = metadata(boot(c))
    assert all(101 not in pm.replicas for t in md.topics.values() for pm in t.partitions.values())
    assert json.load(open(plan))["throttle"] is None
    some_topic = next(m["topic"] for m in moves)
    assert topic_config(c, some_topic, "follower.replication.throttled.replicas") == ""
    wait_for("101 deleted its logs", lambda: all(logs_of(c.nodes[101], m["topic"]) == [] for m in moves), 20)
    assert c.nodes[101].stop() == 0
    assert unregister(c, 101) == (None, None)


def test_a_throttled_move_cancelled_half_way_returns_to_its_replicas(make_cluster, tmp_path):
    c = make_cluster(controllers=1, brokers=4)
    create_topic(c.nodes[101].bootstrap, "slow", 1, config=RF3, assignment=[[101, 102, 103]])
    produce(boot(c), "slow", [os.urandom(1000) for _ in range(4000)], 1)
    plan = str(tmp_path / "move.json")
    cli(c, "reassign", "plan", "--drain", "101", "--topics", "slow", "--out", plan)
    moves = json.load(open(plan))["plan"]["moves"]
    assert len(moves) == 1 and moves[0]["target"] == [104, 102, 103], moves
    cli(c, "reassign", "execute", plan, "--throttle", "200000")
    time.sleep(2)
    out = cli(c, "reassign", "status", plan).stdout
    assert "0/1 partitions done" in out, out
    assert "cancelled 1 running moves" in cli(c, "reassign", "cancel", plan).stdout
    md = metadata(boot(c)).topics["slow"].partitions[0]
    assert list(md.replicas) == [101, 102, 103]
    assert topic_config(c, "slow", "leader.replication.throttled.replicas") == ""
    # Bad input gets a clear error, not a traceback.
    r = cli(c, "reassign", "plan", "--drain", "999", "--out", str(tmp_path / "x.json"), check=False)
    assert r.returncode != 0 and "999" in r.stderr, r.stderr


def test_a_cordoned_broker_receives_no_new_replicas(make_cluster, tmp_path):
    """KIP-1066 through the CLI: `brokers cordon` keeps new topics and `reassign plan` off a
    broker while its replicas keep serving; `brokers uncordon` lets it receive them again."""
    c = make_cluster(controllers=1, brokers=4)
    create_topic(c.nodes[101].bootstrap, "before", 4, rf=2)
    held = {p: list(pm.replicas) for p, pm in metadata(boot(c)).topics["before"].partitions.items()}
    assert any(104 in r for r in held.values())
    assert "cordoned" in cli(c, "brokers", "cordon", "104").stdout
    listed = {line.split("\t")[0]: line.split("\t")[3] for line in cli(c, "brokers", "list").stdout.splitlines()[1:]}
    assert listed == {"101": "no", "102": "no", "103": "no", "104": "yes"}, listed
    create_topic(c.nodes[101].bootstrap, "during", 8, rf=2)
    md = metadata(boot(c))
    assert all(104 not in pm.replicas for pm in md.topics["during"].partitions.values())
    assert {p: list(pm.replicas) for p, pm in md.topics["before"].partitions.items()} == held, "existing replicas stay"
    plan = str(tmp_path / "balance.json")
    cli(c, "reassign", "plan", "--balance", "--out", plan)
    assert all(104 not in set(m["target"]) - set(m["current"]) for m in json.load(open(plan))["plan"]["moves"])
    cli(c, "brokers", "uncordon", "104")
    create_topic(c.nodes[101].bootstrap, "after", 8, rf=2)
    assert any(104 in pm.replicas for pm in metadata(boot(c)).topics["after"].partitions.values())


def test_a_drain_survives_killing_the_active_controller_and_the_receiving_broker(make_cluster, tmp_path):
    """A throttled drain of 101 onto 104 is half-way when the active controller and 104 are both
    SIGKILLed; the moves wait (the original replicas keep serving, min.insync.replicas holds) and
    complete once both are back; nothing acknowledged is lost."""
    c = make_cluster(controllers=3, brokers=4, replica_lag_time_max_ms=3000)
    create_topic(c.nodes[101].bootstrap, "rest", 3, config=RF3, assignment=ON_THREE[:3])
    produce(boot(c), "rest", [os.urandom(1000) for _ in range(3000)], 3)
    plan = str(tmp_path / "drain.json")
    seen = {}

    def schedule(topic, at):
        def drain():
            cli(c, "reassign", "plan", "--drain", "101", "--out", plan)
            cli(c, "reassign", "execute", plan, "--throttle", "300000")

        def kill():
            seen["mid"] = cli(c, "reassign", "status", plan).stdout
            seen["controller"] = c.active_controller()
            seen["controller"].kill()
            c.nodes[104].kill()

        def restart():
            seen["controller"].start(wait_ready=False)
            c.nodes[104].start(wait_ready=True)

        at(2, "drain 101 onto 104 at 0.3 MB/s", drain)
        at(5, "SIGKILL the active controller and 104", kill)
        at(10, "restart both", restart)
        at(11, "status --watch", lambda: seen.update(status=cli(c, "reassign", "status", plan, "--watch",
                                                                   timeout=120).stdout))

    result, faults = run_with_faults(c, tmp_path, schedule, duration=20, assignment=ON_THREE)
    print(seen.get("mid"), seen.get("status"))
    assert len(faults) == 4, faults
    assert result.valid, report.summary(result)
    assert result.counts["acknowledged_unread"] == 0
    done, total, moved, remaining = map(int, re.match(
        r"(\d+)/(\d+) partitions done, (\d+) bytes moved, (\d+) bytes remaining", seen["mid"]).groups())
    assert done < total and moved > 0 and remaining > 0, seen["mid"]  # half-way, and copying
    assert "done: throttle removed" in seen["status"], seen["status"]
    md = metadata(boot(c))
    assert all(101 not in pm.replicas for t in md.topics.values() for pm in t.partitions.values())
    assert all(sorted(pm.isrs) == sorted(pm.replicas) for pm in md.topics["rest"].partitions.values())
