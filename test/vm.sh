#!/usr/bin/env bash
# Builds static test binaries (CGO_ENABLED=0 go test -c) for the packages
# with real-kernel tests and runs each inside the VM rig (kernel 6.1) under
# cgroup v2 and v1. A package in the list that does not compile yet (or has
# no tests) is reported and skipped, not fatal.
#   SHMWATCH_SHARED  path of the shared rigs (default: <repo>/../shared)
#   VM_PACKAGES      packages to run (default below)
#   VM_MODES         cgroup modes (default "v2 v1")
#   SHMWATCH_REAL_KERNEL  passed into the VM (required: a skipped real-kernel test fails)
set -euo pipefail
repo=$(git rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "$0")/.." && pwd))
cd "$repo"
shared=${SHMWATCH_SHARED:-$repo/../shared}
rig=$shared/rigs/vm
GO=${GO:-go}
packages=${VM_PACKAGES:-./cgroupfs ./cgroupfs/oomwatch ./shmscan}
modes=${VM_MODES:-v2 v1}

bash "$rig/setup.sh"
out=$(mktemp -d /tmp/shmwatch-vm.XXXXXX)
trap 'rm -rf "$out"' EXIT

failed=()
for pkg in $packages; do
  dir=$("$GO" list -f '{{.Dir}}' "$pkg" 2>/dev/null) || { echo "vm.sh: $pkg: not a package, skipped"; continue; }
  ls "$dir"/*_test.go >/dev/null 2>&1 || { echo "vm.sh: $pkg: no tests, skipped"; continue; }
  bin=$out/$(basename "$dir").test
  if ! CGO_ENABLED=0 "$GO" test -c -o "$bin" "$pkg"; then
    echo "vm.sh: $pkg does not compile yet, skipped"
    continue
  fi
  args=(-test.count=1 -test.v)
  # The test binary runs with cwd /rig/work, so its testdata goes there too.
  add=()
  [ -d "$dir/testdata" ] && add=(--add "$dir/testdata")
  [ -n "${SHMWATCH_REAL_KERNEL:-}" ] && add+=(--env "SHMWATCH_REAL_KERNEL=$SHMWATCH_REAL_KERNEL")
  for mode in $modes; do
    echo "vm.sh: $pkg under cgroup $mode"
    if "$rig/run.sh" --cgroup "$mode" --mem 1G --timeout 600 "${add[@]}" -- "$bin" "${args[@]}" \
        | grep -E '^(=== RUN|--- |    |PASS|FAIL|ok|panic)' | grep -vE '^=== RUN|^ +--- PASS: [^ ]*/seed#'; then
      rc=${PIPESTATUS[0]}
    else
      rc=${PIPESTATUS[0]}
    fi
    if [ "$rc" -ne 0 ]; then failed+=("$pkg@$mode(rc=$rc)"); fi
  done
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "vm.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "vm.sh: all passed"
