#!/usr/bin/env bash
# make e2e: the shmwatch DaemonSet on a real Kubernetes node (test/e2e/).
# With KUBECONFIG set (.ci/run brings the k8s rig up and exports it) the cluster is used as is;
# without it this script brings the rig up itself and tears it down on exit, even on failure.
# Steps: build + import the image (test/e2e/image.sh), kubectl apply -k test/e2e, wait for the
# DaemonSet, go test -tags e2e, dump the agent's logs on failure, delete what was applied.
#   SHMWATCH_SHARED  shared dir (default: <repo>/../shared); the rig is $SHMWATCH_SHARED/rigs/k8s
#   K8S_RIG_STATE    rig state dir (default /var/lib/k8s-rig)
#   E2E_RUN          go test -run filter (default: all)
#   E2E_LOG          test log (default bin/e2e.log)
set -euo pipefail

ROOT="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
cd "$ROOT"
SHARED="${SHMWATCH_SHARED:-$ROOT/../shared}"
RIG="$SHARED/rigs/k8s"
STATE="${K8S_RIG_STATE:-/var/lib/k8s-rig}"
LOG="${E2E_LOG:-$ROOT/bin/e2e.log}"
export SHMWATCH_SHARED="$SHARED" K8S_RIG_DIR="$RIG" PATH="/usr/local/go/bin:$PATH"
t0=$(date +%s)
log() { echo "[e2e.sh +$(( $(date +%s) - t0 ))s] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (the tests read the node's cgroups and mounts)"
command -v go >/dev/null || die "Go toolchain not found (expected /usr/local/go/bin/go)"
need=()
for c in git curl nsenter tar sha256sum jq; do command -v "$c" >/dev/null || need+=("$c"); done
if [ "${#need[@]}" -gt 0 ]; then
  log "apt-get install for: ${need[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    git curl util-linux tar coreutils jq >/dev/null
fi

own_rig=0 applied=0
cleanup() {
  local rc=$?
  set +e
  # An interrupted scenario 6 can leave the rig's API server stopped: up.sh restarts it.
  if [ -x "$RIG/up.sh" ] && [ -f "$STATE/pids/kube-apiserver.pid" ] && ! kubectl get --raw /readyz >/dev/null 2>&1; then
    log "API server not ready: re-running $RIG/up.sh"
    "$RIG/up.sh" >/dev/null
  fi
  if [ "$applied" = 1 ]; then
    if [ "$rc" != 0 ]; then
      log "FAILED (exit $rc): agent logs and state follow"
      kubectl -n shmwatch get pods -o wide
      kubectl -n shmwatch describe pods | tail -40
      kubectl -n shmwatch logs -l app.kubernetes.io/name=shmwatch --all-containers --prefix --tail=300
      kubectl -n shmwatch logs -l app.kubernetes.io/name=shmwatch --all-containers --prefix --previous --tail=100 2>/dev/null
    fi
    log "deleting the overlay"
    kubectl delete -k test/e2e --ignore-not-found --wait=true --timeout=120s >&2
  fi
  # test namespaces the suite could not delete (interrupted run)
  kubectl delete ns -l app.kubernetes.io/part-of=shmwatch-e2e --ignore-not-found --wait=false >/dev/null 2>&1
  if [ "$own_rig" = 1 ]; then
    log "tearing the rig down"
    "$RIG/down.sh"
  fi
  log "done (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${KUBECONFIG:-}" ]; then
  [ -x "$RIG/up.sh" ] || die "KUBECONFIG unset and no rig at $RIG (set SHMWATCH_SHARED)"
  log "KUBECONFIG unset: bringing the k8s rig up ($RIG/up.sh)"
  own_rig=1
  # Scenario 9's storm runs 200 pods at once: more than the kubelet's default 110.
  KUBECONFIG="$(K8S_RIG_KUBELET_EXTRA="${K8S_RIG_KUBELET_EXTRA:---max-pods=250}" "$RIG/up.sh")"
  export KUBECONFIG
fi
# On the rig: kubectl on PATH and CONTAINERD_ADDRESS for ctr (keep the caller's KUBECONFIG).
if [ -f "$STATE/env.sh" ]; then
  kc="$KUBECONFIG"
  # shellcheck disable=SC1091
  . "$STATE/env.sh"
  export KUBECONFIG="$kc"
fi
command -v kubectl >/dev/null || die "kubectl not on PATH"
kubectl get --raw /readyz >/dev/null || die "cluster at $KUBECONFIG is not ready"

log "building and importing the image"
bash test/e2e/image.sh

existed=0
kubectl -n shmwatch get ds shmwatch >/dev/null 2>&1 && existed=1
log "kubectl apply -k test/e2e"
applied=1
kubectl apply -k test/e2e >&2
# A DaemonSet left by an interrupted run keeps its old pods; the image tag is reused.
[ "$existed" = 1 ] && kubectl -n shmwatch rollout restart ds/shmwatch >&2
kubectl -n shmwatch rollout status ds/shmwatch --timeout=180s >&2

mkdir -p "$(dirname "$LOG")"
log "go test -tags e2e ./test/e2e/ (log: $LOG)"
go test -tags e2e -count=1 -v -timeout 15m ${E2E_RUN:+-run "$E2E_RUN"} ./test/e2e/ 2>&1 | tee "$LOG"
log "e2e passed in $(( $(date +%s) - t0 ))s"

# podmeta against this real API server: informer mapping, and a forbidden
# service account that is granted access later (degraded -> api).
log "go test -run Rig ./agent/podmeta/ against $KUBECONFIG"
SHMWATCH_TEST_KUBECONFIG="$KUBECONFIG" SHMWATCH_TEST_NODE="${K8S_RIG_NODE_NAME:-$(hostname | tr 'A-Z' 'a-z')}" \
  go test -count=1 -v -timeout 5m -run 'Rig' ./agent/podmeta/ 2>&1 | tee -a "$LOG"
log "e2e and podmeta rig tests passed in $(( $(date +%s) - t0 ))s"

# The Helm chart with /metrics behind Kubernetes RBAC (its own namespace and port).
log "test/helm-e2e.sh: the chart, the auth table, API server down, uninstall"
bash test/helm-e2e.sh 2>&1 | tee -a "$LOG"
log "helm e2e passed in $(( $(date +%s) - t0 ))s"

# The cgroup v2 node (../shared/rigs/k8s-v2node, booted and removed by the script): the
# chart pinned to it, PID 1 OOM-killed in a loop with a memory emptyDir and the runtime's shm.
log "test/v2node-e2e.sh: the agent on the cgroup v2 node, OOM kills counted and attributed"
bash test/v2node-e2e.sh 2>&1 | tee -a "$LOG"
log "v2 node e2e passed in $(( $(date +%s) - t0 ))s"
