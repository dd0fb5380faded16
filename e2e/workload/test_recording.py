"""How operations are recorded, without a broker: the history's ordering under concurrent
appends, its streaming sink and sealing, and the producer's rule for turning delivery reports into
ok / fail / info."""

import threading
import types

from confluent_kafka import KafkaError

from history import History, load
from producers import ProducerWorker


def test_concurrent_appends_get_distinct_increasing_indexes_and_times():
    h = History()

    def writer(n):
        for seq in range(500):
            h.invoke(f"p{n}", "send", partition=0, value=f"p{n}-{seq}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ops = h.ops()
    assert [op.index for op in ops] == list(range(4000))
    assert all(a.time_ns <= b.time_ns for a, b in zip(ops, ops[1:]))
    for n in range(8):  # each thread's own order is kept
        mine = [op.value for op in ops if op.process == f"p{n}"]
        assert mine == [f"p{n}-{seq}" for seq in range(500)]


def test_the_sink_streams_every_op_and_a_closed_history_records_nothing_more(tmp_path):
    h = History(meta={"acks": "all"})
    h.ok("c0", "assign", offsets={0: "earliest"})
    path = str(tmp_path / "h.jsonl")
    h.open_sink(path)
    h.ok("c0", "poll", partition=0, offset=0, value="p0-0")
    assert load(path) == ({"acks": "all"}, h.ops())  # written before close, not only at the end
    h.close()
    h.ok("c0", "poll", partition=0, offset=1, value="p0-1")
    assert len(h.ops()) == 2 and load(path)[1] == h.ops()


class _Msg:
    def __init__(self, partition, offset):
        self._p, self._o = partition, offset

    def partition(self):
        return self._p

    def offset(self):
        return self._o


def test_delivery_reports_become_ok_fail_or_info_once_per_send():
    h = History()
    cfg = types.SimpleNamespace(seed=0, partitions=3)
    w = ProducerWorker(0, cfg, h, threading.Event())
    for seq in range(4):
        w.pending[f"p0-{seq}"] = 1
    w._delivered("p0-0", 1, None, _Msg(1, 7))
    w._delivered("p0-1", 1, KafkaError(KafkaError._MSG_TIMED_OUT), _Msg(1, -1))
    w._delivered("p0-2", 1, KafkaError(KafkaError._PURGE_QUEUE), _Msg(1, -1))
    w._delivered("p0-3", 1, KafkaError(KafkaError.NOT_ENOUGH_REPLICAS), _Msg(1, -1))
    w._delivered("p0-0", 1, None, _Msg(1, 9))  # a second report for one send is ignored
    got = [(op.value, op.type, op.offset) for op in h.ops()]
    assert got == [("p0-0", "ok", 7), ("p0-1", "info", None), ("p0-2", "fail", None), ("p0-3", "info", None)]
    assert not w.pending
