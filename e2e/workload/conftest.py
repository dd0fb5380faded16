"""Fixtures for the workload tests: one real combined broker+controller node (TRIBUTARY_BROKER_BIN,
default target/debug/broker) started by the cluster harness (`e2e/cluster/harness.py`: free
client, controller and HTTP ports, a temporary data directory, ready once /readyz answers 200),
stopped after the module's tests."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))

from harness import Cluster  # noqa: E402


@pytest.fixture(scope="module")
def broker():
    """A single-node broker shared by the tests of one module (has `.bootstrap`)."""
    c = Cluster(combined=1, group_initial_rebalance_delay_ms=200).start()
    try:
        yield c.nodes[1]
    finally:
        c.stop()
        c.kill_all()
