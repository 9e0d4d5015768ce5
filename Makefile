# shmwatch — see README.md. Every target runs on a fresh Debian machine as root.
GO        ?= go
BIN       := bin/shmwatch
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/shmwatch/shmwatch/agent.Version=$(VERSION)
FUZZTIME  ?= 10s

.PHONY: all build run audit test unit fuzz fuzz-long vm lint rules manifests e2e bench sweep soak load vulncheck clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/shmwatch

# The main job: one scan of this host.
run: build
	./$(BIN) scan

audit: build
	./$(BIN) audit; test $$? -le 1

# The whole suite. e2e joins in when KUBECONFIG names a cluster (.ci/run brings one up).
test: unit fuzz vm lint rules manifests
	@if [ -n "$$KUBECONFIG" ]; then $(MAKE) e2e; else echo "make test: KUBECONFIG unset, e2e skipped (see make e2e)"; fi

# Unit and real-kernel tests (root on a v1 memory hierarchy runs the real-kernel ones).
# -p 1: the real-kernel tests count the node's dying memcgs, which another
# package's churn test running at the same time would move.
unit:
	$(GO) test -p 1 -count=1 ./...

# Every go test -fuzz target, briefly.
fuzz:
	bash test/fuzz.sh $(FUZZTIME)

fuzz-long:
	bash test/fuzz.sh 3m

# The real-kernel tests again inside a 6.1 VM, cgroup v2 and v1.
vm:
	bash test/vm.sh

lint:
	bash test/lint.sh

rules:
	bash test/promtool.sh

manifests:
	bash test/manifests.sh

e2e:
	bash test/e2e.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

sweep: build
	bash test/sweep.sh

soak: build
	bash test/soak.sh

load:
	bash test/load.sh

vulncheck:
	$(GO) run golang.org/x/vuln/cmd/govulncheck@latest ./...

clean:
	rm -rf bin
