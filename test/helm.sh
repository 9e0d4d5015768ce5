#!/usr/bin/env bash
# test/helm.sh -- prints the helm (v4) the scripts use: $SHMWATCH_HELM, else helm on PATH, else
# the pinned release, built once from Go's module proxy into bin/ (2-4 min the first time), as
# .ci/run installs it.
set -euo pipefail
ROOT="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
if [[ -n ${SHMWATCH_HELM:-} ]]; then echo "$SHMWATCH_HELM"; exit; fi
if command -v helm >/dev/null; then command -v helm; exit; fi
[[ -x $ROOT/bin/helm ]] || (cd /tmp && GOFLAGS= GOBIN="$ROOT/bin" go install helm.sh/helm/v4/cmd/helm@v4.3.2) >&2
echo "$ROOT/bin/helm"
