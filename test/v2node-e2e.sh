#!/usr/bin/env bash
# The agent on the k8s rig's cgroup v2 node (../shared/rigs/k8s-v2node: a 6.1 VM with the
# same kubelet, added to the running k8s rig): the Helm chart pinned to that node, then two
# pods whose PID 1 writes 24 MiB to /dev/shm and grows until the 64Mi limit OOM-kills it,
# in a loop (restartPolicy Always): one with a memory emptyDir at /dev/shm, one with the
# runtime's shm. When the kubelet shows k kills (restartCount, last state OOMKilled), a
# scrape has shmwatch_pod_oom_kills_total k for the pod, and scan's last kill names the shm
# mount and its 24 MiB. Prints the guest kernel's memory.events of each pod next to it.
# Needs the k8s rig up (KUBECONFIG) and helm; boots and removes the node itself. Run it
# under flock -o /tmp/locks/k8s-rig.lock, after e2e.sh and helm-e2e.sh (a DaemonSet that
# tolerates everything would land on the node while it is up).
set -euo pipefail
ROOT="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
cd "$ROOT"
SHARED="${SHMWATCH_SHARED:-$ROOT/../shared}"
R="$SHARED/rigs/k8s-v2node"
export PATH="/usr/local/go/bin:$PATH"
HELM=$(bash test/helm.sh)
# AGENT_PORT: its own (hostNetwork), so it can share the node with make e2e's DaemonSet.
NS=shmwatch-v2node REL=shmwatch-v2 TAG=v2node PORT=19852 AGENT_PORT=9852 SHM_MIB=24
t0=$(date +%s)
log() { echo "[v2node-e2e +$(( $(date +%s) - t0 ))s] $*" >&2; }
fails=0
check() { # check NAME WANT GOT
	if [ "$2" = "$3" ]; then log "ok   $1: $3"; else log "FAIL $1: got $3, want $2"; fails=$((fails + 1)); fi
}
pf=""
cleanup() { # V2NODE_KEEP=1 leaves the node, the agent and the pods up
	[ -n "${V2NODE_KEEP:-}" ] && return
	set +e
	[ -n "$pf" ] && kill "$pf" 2>/dev/null
	"$HELM" uninstall "$REL" -n "$NS" --wait >/dev/null 2>&1
	kubectl delete ns "$NS" --ignore-not-found --wait=false >/dev/null 2>&1
	bash "$R/down.sh" >/dev/null 2>&1
}
trap cleanup EXIT

log "v2node up"
bash "$R/up.sh" >&2
# shellcheck disable=SC1091
. /var/lib/k8s-rig-v2node/env.sh
NODE="$K8S_V2NODE_NAME"
check "node cgroup" cgroup2fs "$(bash "$R/exec.sh" /usr/bin/stat -fc %T /sys/fs/cgroup)"

log "image localhost/shmwatch:$TAG into the node"
IMAGE_REF="localhost/shmwatch:$TAG" bash test/e2e/image.sh "$ROOT/bin/shmwatch-$TAG.tar" >/dev/null
bash "$R/import-image.sh" "$ROOT/bin/shmwatch-$TAG.tar" >/dev/null

log "helm install, pinned to $NODE (hostNetwork: the API is reached from the node's network only)"
"$HELM" install "$REL" deploy/helm/shmwatch -n "$NS" --create-namespace --wait --timeout 240s \
	--set hostNetwork=true --set auth.mode=none --set image.registry=localhost --set image.repository=shmwatch \
	--set image.tag="$TAG" --set image.pullPolicy=Never --set service.port="$AGENT_PORT" --set-string "nodeSelector.kubernetes\.io/hostname=$NODE" \
	2>&1 | grep -v 'symbolic link' >&2
# helm's --wait can return before the DaemonSet controller has made the pod on a node that just
# joined (no pod desired yet counts as ready), so wait for the pod itself.
agent=""
for _ in $(seq 120); do
	agent=$(kubectl -n "$NS" get pod -l app.kubernetes.io/instance="$REL" -o jsonpath='{.items[*].metadata.name}')
	[ -n "$agent" ] && break
	sleep 1
done
if [ -z "$agent" ]; then log "FAIL no agent pod on $NODE 120 s after helm install"; exit 1; fi
kubectl -n "$NS" wait --for=condition=Ready "pod/$agent" --timeout=240s >/dev/null
log "agent pod $agent"

oompod() { # name extra-yaml
	cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $NS}
spec:
  nodeName: $NODE
  restartPolicy: Always
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
  tolerations: [{key: k8s-rig/v2node, operator: Exists}]
  containers:
  - name: hog
    image: localhost/rig-busybox:1
    imagePullPolicy: Never
    resources: {limits: {memory: 64Mi}}
    command: [sh, -c, "dd if=/dev/zero of=/dev/shm/fill bs=1M count=$SHM_MIB 2>/dev/null; a=0123456789abcdef; while :; do a=\$a\$a; done"]
$2
---
EOF
}
{ oompod oom-emptydir "    volumeMounts: [{name: dshm, mountPath: /dev/shm}]
  volumes: [{name: dshm, emptyDir: {medium: Memory}}]"; oompod oom-runtime ""; } | kubectl apply -f - >/dev/null

# kubelet_kills POD: containers the kubelet saw OOM-killed (restarts, plus one if down now).
kubelet_kills() {
	kubectl -n "$NS" get pod "$1" -o jsonpath='{.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].lastState.terminated.reason} {.status.containerStatuses[0].state.running.startedAt}' |
		awk '{k=$1; if ($2 != "OOMKilled") {print "none"; exit} if ($3 == "") k++; print k}'
}
for p in oom-emptydir oom-runtime; do
	for _ in $(seq 120); do
		k=$(kubelet_kills "$p" 2>/dev/null || echo none)
		[ "$k" != none ] && [ "$k" -ge 2 ] && break
		sleep 2
	done
	log "$p: the kubelet counts $k OOM kills"
done

kubectl -n "$NS" port-forward "pod/$agent" "$PORT:$AGENT_PORT" >/dev/null 2>&1 &
pf=$!
for _ in $(seq 30); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" && break; sleep 1; done
for p in oom-emptydir oom-runtime; do
	got="" want=""
	for _ in $(seq 30); do
		before=$(kubelet_kills "$p")
		got=$(curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v p="pod=\"$p\"" '/^shmwatch_pod_oom_kills_total\{/ && index($0, p) {printf "%d", $2}')
		want=$(kubelet_kills "$p")
		[ "$before" = "$want" ] && [ "$got" = "$want" ] && break
		sleep 1
	done
	check "$p: shmwatch_pod_oom_kills_total = the kubelet's count" "$want" "${got:-absent}"
	uid=$(kubectl -n "$NS" get pod "$p" -o jsonpath='{.metadata.uid}')
	log "$p: guest memory.events of the pod cgroup: $(bash "$R/exec.sh" -c "cat /sys/fs/cgroup/kubepods/*/pod$uid/memory.events /sys/fs/cgroup/kubepods/pod$uid/memory.events 2>/dev/null" | tr '\n' ' ')"
done

log "scan in the agent's pod"
scan=$(kubectl -n "$NS" exec "$agent" -- /shmwatch scan 2>/dev/null || true)
json=$(kubectl -n "$NS" exec "$agent" -- /shmwatch scan -o json 2>/dev/null || true)
echo "$scan" | head -2 >&2
for p in oom-emptydir oom-runtime; do
	echo "$scan" | grep "$NS/$p" >&2 || true
	last=$(jq -c --arg p "$p" '.pods[] | select(.name == $p) | .oom.last[-1]' <<<"$json")
	log "$p: last kill $last"
	source=$([ "$p" = oom-emptydir ] && echo emptydir || echo runtime)
	named=$(jq -r '[.shm[]?.source] | first // "none"' <<<"$last")
	used=$(jq -r '[.shm[]?.used_bytes] | first // "absent"' <<<"$last")
	shmem=$(jq -r '.memory.shmem_bytes // "absent"' <<<"$last")
	# Between restarts no container shows the shm: the emptyDir is found by the pod's uid,
	# the runtime's by its sandbox's id, both in the host mount table (docs/oom.md).
	check "$p: the kill names its shm" "$source" "$named"
	check "$p: shm at the kill holds the $SHM_MIB MiB written (statfs; memcg shmem $shmem)" yes \
		"$( [[ $used =~ ^[0-9]+$ ]] && [ "$used" -ge $((SHM_MIB << 20)) ] && echo yes || echo "no (statfs $used)")"
done
[ "$fails" = 0 ] || { log "FAILED: $fails checks"; exit 1; }
log "v2node-e2e: OK"
