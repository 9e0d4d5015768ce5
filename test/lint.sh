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
echo "lint: gofmt, go vet, staticcheck ${STATICCHECK_VERSION} clean"
