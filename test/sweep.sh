#!/usr/bin/env bash
# test/sweep.sh -- the issue-7 cost table: runs the bench harness's sweep.sh on `shmwatch serve`
# over mkpods.sh trees of 100, 500 and 1000 pods (floor, CPU per scrape, x_floor, idle CPU, RSS,
# series, p99). Slow (~12 min, 4 GiB at 1000 pods), so not part of `make test`: `make sweep`.
# Env: NS ("100 500 1000"), BENCH_DIR (../shared/bench), SHMWATCH (bin/shmwatch, built when it is
# bin/shmwatch), PORT (19100), EXTRA_FLAGS (more shmwatch flags), GOGC (50, as deployed). Needs root and a v1 memory hierarchy.
set -euo pipefail
cd "$(dirname "$0")/.."
NS=${NS:-100 500 1000}
BENCH_DIR=${BENCH_DIR:-$(cd .. && pwd)/shared/bench}
SHMWATCH=${SHMWATCH:-bin/shmwatch}
PORT=${PORT:-19100}
EXTRA_FLAGS=${EXTRA_FLAGS:-}

if [[ $(id -u) != 0 ]]; then echo "sweep: needs root (the harness builds real cgroups)" >&2; exit 1; fi
if [[ ! -e /sys/fs/cgroup/memory/memory.limit_in_bytes ]]; then
  echo "sweep: no writable cgroup v1 memory hierarchy at /sys/fs/cgroup/memory" >&2; exit 1
fi
if [[ ! -x $BENCH_DIR/sweep.sh ]]; then echo "sweep: no bench harness at $BENCH_DIR" >&2; exit 1; fi
for tool in curl bc unshare; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq curl bc util-linux; break; }
done
if [[ $SHMWATCH == bin/shmwatch ]]; then
  CGO_ENABLED=0 go build -trimpath -o bin/shmwatch ./cmd/shmwatch
fi
SHMWATCH=$(realpath "$SHMWATCH")
bash "$BENCH_DIR/build.sh" >/dev/null

# The harness tree: pods under --cgroup-root=/benchroot, emptyDirs under its kubelet root, names
# from its log dir (degraded metadata; there is no API server).
STATE_DIR=${STATE_DIR:-/tmp/benchroot-state}
# GOGC as the DaemonSet and the chart set it (deploy/kubernetes/daemonset.yaml).
CMD="env GOGC=${GOGC:-50} $SHMWATCH serve --web.listen-address=127.0.0.1:$PORT --cgroup-root=/benchroot \
--log-root=/tmp/benchroot/log/pods --log.level=warn $EXTRA_FLAGS"
STATE_DIR=$STATE_DIR bash "$BENCH_DIR/sweep.sh" "$NS" -- "$CMD" "http://127.0.0.1:$PORT/metrics" shmwatch
