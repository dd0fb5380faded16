"""Fixtures for multi-node scenarios: clusters of real node processes (see harness.py), always
stopped (and, failing that, killed) at teardown; their logs stay under the cluster's root."""

import pytest

from harness import Cluster


@pytest.fixture
def make_cluster():
    made = []

    def make(**kw):
        c = Cluster(**kw)
        made.append(c)
        return c.start()

    yield make
    for c in made:
        try:
            c.stop()
        finally:
            c.kill_all()
