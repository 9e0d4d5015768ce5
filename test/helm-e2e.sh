#!/usr/bin/env bash
# The Helm chart on the k8s rig (../shared/rigs/k8s), with /metrics guarded by
# Kubernetes RBAC as it is by default on the node's network:
#   helm install --wait (hostNetwork=true, the image test/e2e/image.sh imports);
#   the agent measures pods (its own pod's series) and kubectl exec'd scan sees the host;
#   a pod that writes 8 MiB to the runtime's /dev/shm is measured at 8 MiB, and its
#   series are gone after it is deleted;
#   auth table: no token 401, garbage 401, revoked token 401, ServiceAccount
#   without the binding 403, with it 200; the cost of a cache miss and a hit;
#   API server stopped: the cached token still 200, a new token refused;
#   helm uninstall leaves nothing.
# Needs KUBECONFIG (the rig) and helm (PATH or SHMWATCH_HELM). Run it under
# flock -o /tmp/locks/k8s-rig.lock (-o: the API server it restarts through up.sh
# must not inherit the lock): it stops and restarts the rig's API server.
set -euo pipefail
ROOT="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
cd "$ROOT"
SHARED="${SHMWATCH_SHARED:-$ROOT/../shared}"
STATE="${K8S_RIG_STATE:-/var/lib/k8s-rig}"
kc="${KUBECONFIG:-$STATE/admin.kubeconfig}"
# shellcheck disable=SC1091
[ -f "$STATE/env.sh" ] && . "$STATE/env.sh"
export KUBECONFIG="$kc" PATH="/usr/local/go/bin:$PATH"
HELM=$(bash test/helm.sh)
NS=shmwatch-helm-e2e REL=shmwatch-e2e PORT=9851 TAG=helm-e2e
URL="https://127.0.0.1:$PORT/metrics"
t0=$(date +%s)
log() { echo "[helm-e2e +$(( $(date +%s) - t0 ))s] $*" >&2; }
fails=0
check() { # check NAME WANT GOT
	if [ "$2" = "$3" ]; then log "ok   $1: $3"; else log "FAIL $1: got $3, want $2"; fails=$((fails + 1)); fi
}
status() { # status [TOKEN]: HTTP status of GET /metrics
	if [ -n "${1:-}" ]; then
		curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "$URL"
	else
		curl -sk -o /dev/null -w '%{http_code}' "$URL"
	fi
}
apiserver_up() { kubectl get --raw /readyz >/dev/null 2>&1; }
cleanup() {
	set +e
	apiserver_up || "$SHARED/rigs/k8s/up.sh" >/dev/null
	"$HELM" uninstall "$REL" -n "$NS" --wait >/dev/null 2>&1
	kubectl delete clusterrolebinding "$REL-scraper" --ignore-not-found >/dev/null
	kubectl delete ns "$NS" --ignore-not-found --wait=false >/dev/null
}
trap cleanup EXIT

log "image localhost/shmwatch:$TAG"
IMAGE_REF="localhost/shmwatch:$TAG" bash test/e2e/image.sh "$ROOT/bin/shmwatch-$TAG.tar" >/dev/null

log "helm install --wait"
"$HELM" install "$REL" deploy/helm/shmwatch -n "$NS" --create-namespace --wait --timeout 180s \
	--set hostNetwork=true --set image.registry=localhost --set image.repository=shmwatch \
	--set image.tag="$TAG" --set image.pullPolicy=Never --set service.port="$PORT" 2>&1 | grep -v 'symbolic link' >&2
check "DaemonSet ready" 1 "$(kubectl -n "$NS" get ds "$REL" -o jsonpath='{.status.numberReady}')"

kubectl -n "$NS" create serviceaccount scraper >/dev/null
kubectl -n "$NS" create serviceaccount nobody >/dev/null
kubectl -n "$NS" create serviceaccount revoked >/dev/null
kubectl create clusterrolebinding "$REL-scraper" --clusterrole="$REL-metrics-reader" --serviceaccount="$NS:scraper" >/dev/null
scraper=$(kubectl -n "$NS" create token scraper)
scraper2=$(kubectl -n "$NS" create token scraper)
nobody=$(kubectl -n "$NS" create token nobody)
revoked=$(kubectl -n "$NS" create token revoked)
kubectl -n "$NS" delete serviceaccount revoked >/dev/null

check "no token" 401 "$(status)"
check "garbage token" 401 "$(status garbage.not.a-token)"
check "revoked token (ServiceAccount deleted)" 401 "$(status "$revoked")"
check "ServiceAccount without the binding" 403 "$(status "$nobody")"
sleep 2 # RBAC propagation of the new binding
miss=$(curl -sk -o /dev/null -w '%{http_code} %{time_total}' -H "Authorization: Bearer $scraper" "$URL")
hit=$(curl -sk -o /dev/null -w '%{http_code} %{time_total}' -H "Authorization: Bearer $scraper" "$URL")
check "ServiceAccount with the binding" 200 "${miss% *}"
log "cost: first scrape (TokenReview + SubjectAccessReview) ${miss#* } s, cached ${hit#* } s"
own=$(curl -sk -H "Authorization: Bearer $scraper" "$URL" | grep -c "namespace=\"$NS\"" || true)
check "agent measures its own pod (series in $NS > 0)" yes "$([ "$own" -gt 0 ] && echo yes || echo "no ($own)")"
failures=$(curl -sk -H "Authorization: Bearer $scraper" "$URL" | grep '^shmwatch_metrics_auth_failures_total' | tr '\n' ' ')
log "failures metric: $failures"

# series_of POD: the pod's series in one scrape.
series_of() { curl -sk -H "Authorization: Bearer $scraper" "$URL" | grep -c "pod=\"$1\"" || true; }
log "a pod writes 8 MiB to the runtime's /dev/shm"
kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: shm-writer}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: writer
    image: localhost/rig-busybox:1
    imagePullPolicy: Never
    command: [sh, -c, "dd if=/dev/zero of=/dev/shm/fill bs=1M count=8 && exec sleep 3600"]
EOF
kubectl -n "$NS" wait --for=condition=Ready pod/shm-writer --timeout=60s >/dev/null
used=""
for _ in $(seq 30); do
	used=$(curl -sk -H "Authorization: Bearer $scraper" "$URL" | awk '/^shmwatch_shm_used_bytes\{/ && /pod="shm-writer"/ {printf "%d", $2}')
	[ "$used" = 8388608 ] && break
	sleep 1
done
check "shm pod measured (shmwatch_shm_used_bytes)" 8388608 "${used:-absent}"
kubectl -n "$NS" delete pod shm-writer --wait=true --timeout=60s >/dev/null
gone=""
for i in $(seq 30); do
	[ "$(series_of shm-writer)" = 0 ] && { gone="yes"; log "series gone ${i} s after the delete returned"; break; }
	sleep 1
done
check "series gone after delete" yes "${gone:-no ($(series_of shm-writer) left)}"

scan=$(kubectl -n "$NS" exec "ds/$REL" -- /shmwatch scan 2>&1 || true)
check "kubectl exec scan sees pods by name" yes "$(grep -q "$NS" <<<"$scan" && echo yes || echo "no: $(head -c 300 <<<"$scan")")"

log "stopping the API server"
apid=$(cat "$STATE/pids/kube-apiserver.pid")
kill "$apid"
# up.sh starts the API server only once the old process is gone (graceful shutdown takes a while).
for _ in $(seq 100); do kill -0 "$apid" 2>/dev/null || break; sleep 0.2; done
kill -0 "$apid" 2>/dev/null && kill -KILL "$apid"
for _ in $(seq 60); do apiserver_up || break; sleep 1; done
check "API server down" down "$(apiserver_up && echo up || echo down)"
check "API down: cached token" 200 "$(status "$scraper")"
check "API down: new token refused" 503 "$(status "$scraper2")"
log "restarting the API server (up.sh)"
"$SHARED/rigs/k8s/up.sh" >/dev/null
check "API back: new token" 200 "$(status "$scraper2")"

log "helm uninstall"
"$HELM" uninstall "$REL" -n "$NS" --wait >/dev/null
left=$(kubectl get ds,svc,sa -n "$NS" -l app.kubernetes.io/instance="$REL" -o name 2>/dev/null | wc -l)
left=$((left + $(kubectl get clusterrole,clusterrolebinding -l app.kubernetes.io/instance="$REL" -o name | wc -l)))
check "objects left after uninstall" 0 "$left"
[ "$fails" = 0 ] || { log "FAILED: $fails checks"; exit 1; }
log "helm-e2e: OK"
