#!/usr/bin/env bash
# gofmt, go vet and staticcheck (pinned; from the Go module proxy), all must be clean.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2}

unformatted=$(gofmt -l $(git ls-files '*.go'; git ls-files --others --exclude-standard '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go vet -tags e2e ./test/e2e/
go run "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}" ./...
go run "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}" -tags e2e ./test/e2e/
# The agent links one API group (core/v1). client-go's kubernetes/scheme (pulled in by its typed
# clientsets and discovery) registers all ~57 groups at init and cost ~14 MB of RSS
# (docs/performance.md); keep it out of the binary.
heavy=$(go list -deps ./cmd/shmwatch | grep -E '^k8s.io/client-go/(kubernetes/scheme|discovery)$' || true)
if [ -n "$heavy" ]; then
  echo "cmd/shmwatch links $heavy: use agent/podmeta's core/v1 REST client"; exit 1
fi
echo "lint: gofmt, go vet, staticcheck ${STATICCHECK_VERSION} clean; no client-go scheme in the binary"
