#!/usr/bin/env bash
# Renders the kustomize base, its components and the example overlays, and
# validates every rendering:
#   - strict decode into client-go types + least-privilege asserts (go test ./deploy);
#   - with KUBECONFIG set: kubectl apply --dry-run=server against that cluster
#     (ServiceMonitor/PrometheusRule only when the Prometheus Operator CRDs exist).
# Runs from the repo root. kubectl comes from the k8s rig cache, else PATH, else
# kustomize is built from the Go module proxy (about 90 s the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

RIG_KUBECTL=${K8S_RIG_CACHE:-/var/cache/k8s-rig}/bin-v1.33.13/kubectl
# v5.6.0 = what kubectl 1.33 embeds; newer releases need Go >= 1.27.
KUSTOMIZE_MOD=sigs.k8s.io/kustomize/kustomize/v5@v5.6.0

kubectl_bin=""
if [[ -x $RIG_KUBECTL ]]; then
	kubectl_bin=$RIG_KUBECTL
elif command -v kubectl >/dev/null 2>&1; then
	kubectl_bin=$(command -v kubectl)
fi

render() { # render <dir>: kustomize build to stdout
	if [[ -n $kubectl_bin ]]; then
		"$kubectl_bin" kustomize "$1"
	else
		(cd /tmp && GOFLAGS= go run "$KUSTOMIZE_MOD" build "$OLDPWD/$1")
	fi
}
echo "== renderer: ${kubectl_bin:-go run $KUSTOMIZE_MOD}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# An overlay with every component, so each component is rendered and checked
# with the base (kustomize wants relative paths).
mkdir -p "$tmp/all"
rel=$(realpath --relative-to="$tmp/all" "$ROOT/deploy/kubernetes")
cat >"$tmp/all/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel
components:
  - $rel/servicemonitor
  - $rel/priorityclass
  - $rel/hostnetwork
YAML

declare -A renders=(
	[base]=deploy/kubernetes
	[example-operator]=deploy/examples/operator
	[example-rig]=deploy/examples/rig
	[all-components]="$tmp/all"
)
for name in base example-operator example-rig all-components; do
	out="$tmp/$name.yaml"
	render "${renders[$name]}" >"$out"
	echo "== $name: $(grep -c '^kind:' "$out") objects: $(grep '^kind:' "$out" | awk '{print $2}' | sort | tr '\n' ' ')"
	SHMWATCH_MANIFESTS=$out go test -count=1 ./deploy -run 'TestOnlyExpectedKinds|TestClusterRole|TestDaemonSet|TestChecker|TestService'
done

# The Helm chart, with helm v4 (test/helm.sh) and v3 (the chart is apiVersion v2 for
# both): v3 from $SHMWATCH_HELM3, else built from the Go module proxy (pinned; about
# 2-4 min the first time) into bin/helm3, with the ldflags of its release builds (helm's
# Makefile): the Kubernetes version it assumes (1.36, from its client-go) and its own.
HELM3_MOD=helm.sh/helm/v3/cmd/helm@v3.21.4
HELM3_LDFLAGS="-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=36
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=36
-X helm.sh/helm/v3/internal/version.version=v3.21.4"
helm_bin=$(bash test/helm.sh)
helm3_bin=${SHMWATCH_HELM3:-$ROOT/bin/helm3/helm}
[[ -n ${SHMWATCH_HELM3:-} || -x $helm3_bin ]] || (cd /tmp && GOFLAGS= GOBIN="$ROOT/bin/helm3" go install -ldflags "$HELM3_LDFLAGS" "$HELM3_MOD") >&2
for h in "$helm_bin" "$helm3_bin"; do
	echo "== helm: $h ($("$h" version --short 2>/dev/null))"
	"$h" lint --strict deploy/helm/shmwatch 2>&1 | grep -v 'found symbolic link'
	for values in deploy/helm/shmwatch/ci/*-values.yaml; do
		"$h" lint --strict deploy/helm/shmwatch --values "$values" 2>&1 | grep -v 'found symbolic link' | grep -E 'linted|ERROR|WARNING'
	done
	echo "== helm template ($h): default values and each ci/*-values.yaml (strict decode, least privilege, switches, drift vs kustomize and deploy/prometheus)"
	SHMWATCH_HELM=$h go test -count=1 ./deploy -run 'Helm'
done

echo "== source files (go test ./deploy without a rendering)"
go test -count=1 ./deploy

if [[ -z ${KUBECONFIG:-} ]]; then
	echo "== KUBECONFIG unset: kubectl apply --dry-run=server skipped"
	echo "manifests.sh: OK"
	exit 0
fi
[[ -n $kubectl_bin ]] || { echo "FAIL: KUBECONFIG is set but no kubectl found" >&2; exit 1; }
k() { "$kubectl_bin" "$@"; }

# Namespaced objects cannot be dry-run into a namespace that does not exist.
# Never create it here (an e2e run may own it): when it is missing, dry-run
# them in "default" instead; the Namespace object itself is dry-run as is.
ns_sub=""
if ! k get namespace shmwatch >/dev/null 2>&1; then
	ns_sub='s/^\(  *namespace:\) shmwatch$/\1 default/'
	echo "== namespace shmwatch absent: namespaced objects are dry-run in default"
fi
have_operator=0
if k get crd servicemonitors.monitoring.coreos.com prometheusrules.monitoring.coreos.com >/dev/null 2>&1; then
	have_operator=1
fi
for name in base example-rig all-components; do
	f="$tmp/$name.yaml"
	if [[ $have_operator == 0 ]]; then
		# Drop the ServiceMonitor document: its CRD is not installed.
		awk 'BEGIN{RS="\n---\n"; ORS="\n---\n"} !/kind: ServiceMonitor/' "$f" >"$f.core"
		f="$f.core"
	fi
	if [[ -n $ns_sub ]]; then
		sed "$ns_sub" "$f" >"$f.ns"
		f="$f.ns"
	fi
	echo "== kubectl apply --dry-run=server: $name"
	k apply --dry-run=server -f "$f"
done
if [[ $have_operator == 1 ]]; then
	echo "== kubectl apply --dry-run=server: PrometheusRule"
	sed "${ns_sub:-s/^//}" deploy/prometheus/prometheusrule.yaml >"$tmp/prometheusrule.yaml"
	k apply --dry-run=server -f "$tmp/prometheusrule.yaml"
else
	echo "== Prometheus Operator CRDs absent: ServiceMonitor/PrometheusRule dry-run skipped"
fi
echo "manifests.sh: OK"
