# shmwatch image: a static binary on distroless/static (no shell, no libc).
# Build: docker build -t ghcr.io/shmwatch/shmwatch:dev .
# Not built in CI here (no container engine); test/e2e.sh packs the same
# static binary into an image tar without Docker. See docs/install.md.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/shmwatch/shmwatch/agent.Version=${VERSION}" \
      -o /out/shmwatch ./cmd/shmwatch

# The root variant, not :nonroot: the agent runs as uid 0 (with every
# capability but SYS_PTRACE dropped) because uid 0 owns the cgroup, kubelet
# and pod-log files it reads. docs/security.md explains. The user is set by
# the DaemonSet (runAsUser: 0) either way.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/shmwatch /shmwatch
EXPOSE 9850
ENTRYPOINT ["/shmwatch", "serve"]
