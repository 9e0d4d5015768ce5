#!/usr/bin/env bash
# Re-captures the fixtures in this directory from real kernels:
#   bash capture.sh host          # this machine (root, v1 memory hierarchy)
#   bash capture.sh vm-v1 vm-v2   # the VM rig (../shared/rigs/vm, kernel 6.1)
# Each run writes <target>/<name> for every "=== name ===" section capture-guest.sh prints.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHMWATCH_SHARED:-$(git -C "$here" rev-parse --show-toplevel)/../shared}
split() { # $1 = output dir; stdin = capture-guest.sh output
  mkdir -p "$1"
  awk -v d="$1" '/^=== .* ===$/ {f=d "/" $2; printf "" > f; next} {print >> f}'
}
for t in "$@"; do
  case "$t" in
    host) sh "$here/capture-guest.sh" | split "$here/host-v1" ;;
    vm-v1|vm-v2)
      "$shared/rigs/vm/run.sh" --cgroup "${t#vm-}" --add "$here/capture-guest.sh" -- /bin/busybox sh capture-guest.sh | split "$here/$t" ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
done
