#!/usr/bin/env bash
# Builds a container image from a compiled binary without pulling anything: assembles a root
# filesystem (the binary, the shared libraries `ldd` reports, /etc/passwd and /etc/group with the
# user tributary:10001, a writable /tmp and data directory) and builds docker/<name>.Dockerfile
# FROM scratch on it. Prints the image size.
#
#   scripts/build-image.sh broker|operator [BINARY] [TAG]
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: build-image.sh broker|operator [BINARY] [TAG]}"
binary="${2:-target/debug/$name}"
tag="${3:-tributary/$name:dev}"
[ -x "$binary" ] || { echo "error: $binary is not an executable; build it first" >&2; exit 1; }

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$ctx/home"
cp "$binary" "$root/usr/local/bin/$name"
strip "$root/usr/local/bin/$name" 2>/dev/null || true
# Every library the dynamic loader resolves, at the same path, plus the loader itself.
ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
tributary:x:10001:10001:tributary:/var/lib/tributary:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
tributary:x:10001:
GROUP
echo "hosts: files dns" > "$root/etc/nsswitch.conf"
chmod 1777 "$root/tmp"
cp "docker/$name.Dockerfile" "$ctx/Dockerfile"
docker build -q -t "$tag" "$ctx" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$tag")
echo "built $tag from $binary: $((size / 1024 / 1024)) MiB ($size bytes)"
