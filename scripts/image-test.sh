#!/usr/bin/env bash
# Builds the broker and operator images (scripts/build-image.sh, FROM scratch, nothing pulled),
# starts the broker image with its Kafka port published on a free host port, and produces to and
# consumes from it with kcat (a real librdkafka client). Skips, saying so, when no Docker engine
# is reachable. Uses target/debug binaries unless BROKER_BIN / OPERATOR_BIN say otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
  echo "SKIP image test: no Docker engine reachable (docker info failed)"
  exit 0
fi
broker_bin="${BROKER_BIN:-target/debug/broker}"
operator_bin="${OPERATOR_BIN:-target/debug/operator}"
scripts/build-image.sh broker "$broker_bin" tributary/broker:test
scripts/build-image.sh operator "$operator_bin" tributary/operator:test

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
name="tributary-image-test-$$"
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
# Advertise the published host port so the client's metadata round trip lands back here.
docker run -d --name "$name" -p "127.0.0.1:$port:9092" tributary/broker:test \
  --override listeners=PLAINTEXT://0.0.0.0:9092 \
  --override "advertised.listeners=PLAINTEXT://127.0.0.1:$port" \
  --override http.listener=0.0.0.0:9644 \
  --override log.dirs=/var/lib/tributary/data >/dev/null
uid=$(docker inspect -f '{{.Config.User}}' "$name")
[ "$uid" = "10001:10001" ] || { echo "error: image runs as '$uid', expected 10001:10001" >&2; exit 1; }

for _ in $(seq 1 50); do
  if kcat -b "127.0.0.1:$port" -L -m 2 >/dev/null 2>&1; then break; fi
  sleep 0.2
done
topic="image-test"
expected=$(printf 'message-%s\n' $(seq 1 20))
printf '%s\n' "$expected" | kcat -b "127.0.0.1:$port" -P -t "$topic" -X acks=all -m 10
got=$(kcat -b "127.0.0.1:$port" -C -t "$topic" -o beginning -e -q -m 10)
if [ "$got" != "$expected" ]; then
  echo "error: consumed messages differ from produced ones" >&2
  diff <(echo "$expected") <(echo "$got") >&2 || true
  docker logs "$name" 2>&1 | tail -20 >&2
  exit 1
fi
echo "ok   broker image served kcat: produced and consumed 20 messages through 127.0.0.1:$port"
