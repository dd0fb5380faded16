"""Fixtures for multi-node scenarios: clusters of real node processes (see harness.py), always
stopped (and, failing that, killed) at teardown, which also removes a netns cluster's network;
their logs stay under the cluster's root."""

import os

import pytest

import containers
import harness
import netns
from harness import Cluster


@pytest.fixture
def make_cluster():
    made = []

    def make(only=None, **kw):
        c = Cluster(**kw)
        made.append(c)
        return c.start(only=only)

    yield make
    for c in made:
        try:
            c.stop()
        finally:
            c.kill_all()


def _require(reason, env):
    if reason:
        if os.environ.get(env) == "1":
            pytest.fail(f"{env}=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def netns_required():
    """Skips a test that needs Cluster(hosts="netns") where network namespaces cannot be made
    (not root, no `ip netns`, no iptables), saying why; fails instead when
    TRIBUTARY_REQUIRE_NETNS=1 (CI runs as root: the scenarios must not silently skip there)."""
    _require(netns.unavailable_reason(), "TRIBUTARY_REQUIRE_NETNS")


@pytest.fixture(scope="session")
def docker_required():
    """The same for Cluster(hosts="docker"): also needs a Docker engine and nsenter; builds the
    broker image from TRIBUTARY_BROKER_BIN once (TRIBUTARY_REQUIRE_DOCKER=1: fail, not skip)."""
    _require(containers.unavailable_reason(harness.BIN), "TRIBUTARY_REQUIRE_DOCKER")
    harness.broker_image()
