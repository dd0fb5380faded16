#!/usr/bin/env bash
# The whole test suite, as the README promises: installs what the tests need on a fresh machine
# (Debian: kcat; PyPI: the Python clients and the Helm engine, into .venv), checks formatting and
# lints, builds once (debug), runs the Rust tests, then the real-client tests against the built
# broker binary. Every broker the tests start is stopped by the tests themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
# Every test stage has a wall-clock limit well above its usual time, so a hang ends the run with
# the stage's name instead of running into CI's budget; pytest prints unbuffered, one line a test,
# so the log shows which test was running.
export PYTHONUNBUFFERED=1
limit() { local secs=$1; shift; timeout -k 30 "$secs" "$@"; }
pytest_stage() { local secs=$1; shift; limit "$secs" .venv/bin/python -m pytest -v --durations=10 "$@"; }

step "system packages"
if ! command -v kcat >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null
fi

step "python virtualenv"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --disable-pip-version-check -r e2e/python/requirements.txt

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "build (debug, once)"
cargo build --workspace --bins

step "rust tests"
# The operator's end-to-end scenarios run the workload of e2e/workload with .venv's Python: here
# a missing one is a failure, not a skip.
TRIBUTARY_REQUIRE_WORKLOAD=1 limit 1500 cargo nextest run --workspace --no-fail-fast

step "real clients against the broker binary"
TRIBUTARY_BROKER_BIN="$PWD/target/debug/broker" pytest_stage 1500 e2e/python

step "workload generator and history checker (synthetic histories, single-node runs)"
TRIBUTARY_BROKER_BIN="$PWD/target/debug/broker" pytest_stage 900 e2e/workload

step "multi-node clusters: separate processes on loopback, in network namespaces and as containers"
# CI runs as root with a Docker engine: the netns and docker scenarios must run there, not skip.
if [ "$(id -u)" = 0 ]; then export TRIBUTARY_REQUIRE_NETNS=1; fi
if [ "$(id -u)" = 0 ] && docker info >/dev/null 2>&1; then export TRIBUTARY_REQUIRE_DOCKER=1; fi
TRIBUTARY_BROKER_BIN="$PWD/target/debug/broker" pytest_stage 1500 e2e/cluster

step "operator: generated CRDs match the Rust types"
scripts/check-crds.sh

step "operator: Helm chart lint/render and schema validation (Helm engine, Kubernetes schemas)"
.venv/bin/pip install -q --disable-pip-version-check -r scripts/chart-requirements.txt
.venv/bin/python scripts/check-chart.py target/debug/crdgen

step "container images: build (FROM scratch) and serve kcat through the broker image"
limit 900 scripts/image-test.sh
