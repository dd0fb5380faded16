#!/usr/bin/env bash
# Fails when the committed CRD YAML (crds/ and the Helm chart's copy) differs from what the
# `crdgen` binary prints from the Rust types. Regenerate with: scripts/check-crds.sh --write
set -euo pipefail
cd "$(dirname "$0")/.."
generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT
cargo run -q -p operator --bin crdgen > "$generated"
targets=(crds/tributary-crds.yaml charts/tributary-operator/crds/tributary-crds.yaml)
if [ "${1:-}" = "--write" ]; then
  for t in "${targets[@]}"; do cp "$generated" "$t"; done
  echo "CRDs regenerated"
  exit 0
fi
status=0
for t in "${targets[@]}"; do
  if ! diff -u "$t" "$generated" >/dev/null; then
    echo "error: $t is stale; run scripts/check-crds.sh --write" >&2
    diff -u "$t" "$generated" | head -40 >&2 || true
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "CRDs up to date"
exit "$status"
