#!/usr/bin/env bash
# Build the static shmwatch binary and pack it into a docker-archive image tar without Docker
# or a registry (layer tar + config json + manifest.json, the format `ctr images import` reads),
# then import it into the node's containerd (k8s.io namespace) so pods can use it with
# imagePullPolicy: Never.
#
# usage: test/e2e/image.sh [OUT.tar]      (run from anywhere inside the repo)
#   IMAGE_REF   image reference (default localhost/shmwatch:e2e)
#   NO_IMPORT=1 only write the tar
#   K8S_RIG_STATE  rig state dir whose env.sh gives CONTAINERD_ADDRESS (default /var/lib/k8s-rig)
set -euo pipefail

ROOT="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
REF="${IMAGE_REF:-localhost/shmwatch:e2e}"
OUT="${1:-$ROOT/bin/shmwatch-e2e-image.tar}"
STATE="${K8S_RIG_STATE:-/var/lib/k8s-rig}"
export PATH="/usr/local/go/bin:$PATH"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# rootfs: the binary at /shmwatch plus the few files a non-root process expects.
rootfs="$work/rootfs"
mkdir -p "$rootfs"/{etc,tmp,proc,sys,dev}
chmod 1777 "$rootfs/tmp"
printf 'root:x:0:0:root:/:/shmwatch\nnobody:x:65534:65534:nobody:/:/shmwatch\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
version="$(git -C "$ROOT" describe --tags --always --dirty 2>/dev/null || echo dev)"
(cd "$ROOT" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
  -ldflags "-s -w -X github.com/shmwatch/shmwatch/agent.Version=$version" \
  -o "$rootfs/shmwatch" ./cmd/shmwatch)

# pack_archive REF ROOTFS OUT: one-layer docker-archive. Layer and config are content-addressed
# (sha256 of their bytes) and the layer tar is reproducible (fixed owner, mtime, order).
pack_archive() {
  local ref="$1" root="$2" out="$3" a="$work/archive" diff cfg
  mkdir -p "$a"
  tar -C "$root" --numeric-owner --owner=0 --group=0 --mtime='1970-01-01' --sort=name -cf "$a/layer.tar" .
  diff="$(sha256sum "$a/layer.tar" | cut -d' ' -f1)"
  mkdir -p "$a/$diff" && mv "$a/layer.tar" "$a/$diff/layer.tar"
  cat > "$a/config.json" <<JSON
{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z",
 "config":{"Env":["PATH=/"],"Entrypoint":["/shmwatch"],"Cmd":["serve"],"WorkingDir":"/",
           "ExposedPorts":{"9850/tcp":{}},"Labels":{"org.opencontainers.image.version":"$version"}},
 "rootfs":{"type":"layers","diff_ids":["sha256:$diff"]},
 "history":[{"created":"1970-01-01T00:00:00Z","created_by":"shmwatch test/e2e/image.sh"}]}
JSON
  cfg="$(sha256sum "$a/config.json" | cut -d' ' -f1)"
  mv "$a/config.json" "$a/$cfg.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]\n' "$cfg" "$ref" "$diff" > "$a/manifest.json"
  mkdir -p "$(dirname "$out")"
  tar -C "$a" --numeric-owner --owner=0 --group=0 -cf "$out" manifest.json "$cfg.json" "$diff"
}
pack_archive "$REF" "$rootfs" "$OUT"
echo "image.sh: wrote $OUT ($REF, $(du -h "$OUT" | cut -f1))" >&2

[ "${NO_IMPORT:-0}" = 1 ] && exit 0
# shellcheck disable=SC1091
[ -z "${CONTAINERD_ADDRESS:-}" ] && [ -f "$STATE/env.sh" ] && . "$STATE/env.sh"
: "${CONTAINERD_ADDRESS:?CONTAINERD_ADDRESS unset and no $STATE/env.sh: is the rig up?}"
ctr --address "$CONTAINERD_ADDRESS" -n k8s.io images import "$OUT" >&2
ctr --address "$CONTAINERD_ADDRESS" -n k8s.io images ls -q | grep -x "$REF" >/dev/null || { echo "image.sh: $REF not in containerd after import" >&2; exit 1; }
echo "image.sh: imported $REF into containerd ($CONTAINERD_ADDRESS, k8s.io)" >&2
