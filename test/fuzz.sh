#!/usr/bin/env bash
# Runs every go test -fuzz target in the module, one at a time, for FUZZTIME
# each (first argument, default 10s). Targets are discovered per package with
# `go test -list '^Fuzz'`, so new ones in any package are picked up.
set -euo pipefail
cd "$(git rev-parse --show-toplevel 2>/dev/null || dirname "$0")"
[ -f go.mod ] || cd "$(dirname "$0")/.."
FUZZTIME=${1:-${FUZZTIME:-10s}}
GO=${GO:-go}
command -v "$GO" >/dev/null || { echo "fuzz.sh: $GO not found" >&2; exit 1; }

ran=0
failed=()
for pkg in $("$GO" list ./...); do
  dir=$("$GO" list -f '{{.Dir}}' "$pkg")
  # Only packages with test files can have fuzz targets.
  ls "$dir"/*_test.go >/dev/null 2>&1 || continue
  targets=$("$GO" test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true)
  for name in $targets; do
    echo "fuzz.sh: $pkg $name for $FUZZTIME"
    if "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"; then
      ran=$((ran + 1))
    else
      failed+=("$pkg.$name")
    fi
  done
done
echo "fuzz.sh: $ran targets passed, ${#failed[@]} failed ${failed[*]:-}"
[ ${#failed[@]} -eq 0 ]
