#!/usr/bin/env bash
# Long churn soak (issue 8 item 2): runs TestChurn against the real cgroup v1
# memory hierarchy with SHMWATCH_SOAK_CYCLES pod create/delete cycles (default
# 2000) and prints its CHURN: summary line. Needs root; runs from the repo root
# on a fresh Debian machine (installs util-linux if missing).
#   bash test/soak.sh            # 2000 cycles
#   SHMWATCH_SOAK_CYCLES=10000 bash test/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export SHMWATCH_SOAK_CYCLES="${SHMWATCH_SOAK_CYCLES:-2000}"
GO="${GO:-go}"

if [ "$(id -u)" -ne 0 ]; then
	echo "soak.sh: needs root (creates cgroups, mounts tmpfs)" >&2
	exit 1
fi
if ! command -v unshare >/dev/null 2>&1; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q --no-install-recommends util-linux >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends util-linux >/dev/null; }
fi

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
status=0
"$GO" test -count=1 -run '^TestChurn$' -v -timeout 60m ./cmd/shmwatch/ >"$out" 2>&1 || status=$?
if grep -q -- '--- SKIP: TestChurn' "$out"; then
	grep -A3 -- '--- SKIP' "$out" >&2
	echo "soak.sh: TestChurn skipped" >&2
	exit 1
fi
grep -E 'CHURN:|--- (PASS|FAIL)|^(ok|FAIL)' "$out" || true
if [ "$status" -ne 0 ]; then
	tail -n 60 "$out" >&2
fi
exit "$status"
