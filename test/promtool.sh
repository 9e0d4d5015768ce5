#!/usr/bin/env bash
# Checks the alerting rules, their unit tests, the PrometheusRule copy, every
# PromQL expression of the Grafana dashboard and (when present) the golden
# scrape bin/metrics.prom. Runs from the repo root; installs promtool (Debian
# package prometheus) and jq when missing.
#   bash test/promtool.sh          check
#   bash test/promtool.sh --write  regenerate deploy/prometheus/prometheusrule.yaml from rules.yaml
set -euo pipefail
cd "$(dirname "$0")/.."

RULES=deploy/prometheus/rules.yaml
TESTS=deploy/prometheus/rules_test.yaml
PROMRULE=deploy/prometheus/prometheusrule.yaml
DASHBOARD=deploy/grafana/shmwatch.json

need() { # need <command> <debian package>
	command -v "$1" >/dev/null 2>&1 && return
	echo "promtool.sh: installing $2 for $1" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q --no-install-recommends "$2" >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$2" >/dev/null; }
	command -v "$1" >/dev/null
}

# The PrometheusRule is rules.yaml indented under spec:, nothing else, so the
# two can be compared byte for byte.
gen_prometheusrule() {
	cat <<'HDR'
# Generated from rules.yaml by test/promtool.sh --write. Do not edit by hand.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: shmwatch
  namespace: shmwatch
  labels:
    app.kubernetes.io/name: shmwatch
spec:
HDR
	grep -v '^#' "$RULES" | sed 's/^\(.\)/  \1/'
}

need promtool prometheus
need jq jq

if [[ "${1:-}" == --write ]]; then
	gen_prometheusrule >"$PROMRULE"
	echo "wrote $PROMRULE"
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== promtool check rules $RULES"
promtool check rules "$RULES"

echo "== promtool test rules $TESTS"
promtool test rules "$TESTS"

echo "== $PROMRULE in sync with $RULES"
gen_prometheusrule >"$tmp/prometheusrule.yaml"
if ! diff -u "$PROMRULE" "$tmp/prometheusrule.yaml"; then
	echo "FAIL: $PROMRULE differs from $RULES; run: bash test/promtool.sh --write" >&2
	exit 1
fi
# The copy must also be a valid rule file once unwrapped.
sed -n '/^spec:/,$p' "$PROMRULE" | tail -n +2 | sed 's/^  //' >"$tmp/unwrapped.yaml"
promtool check rules "$tmp/unwrapped.yaml"

echo "== every PromQL expression of $DASHBOARD parses"
# Grafana variables are replaced by values of the right type before parsing.
jq -r '[.. | objects | select(has("expr")) | .expr] + [.templating.list[]? | select(.type == "query") | (.query | if type == "object" then .query else . end)] | .[]' "$DASHBOARD" |
	sed -e 's/\$__rate_interval/5m/g; s/\$__interval/1m/g; s/\$__range/1h/g' \
		-e 's/\$\(namespace\|pod\|node\|instance\|job\|container\|volume\|datasource\)\b/x/g; s/\${\([a-z_]*\)\(:[a-z]*\)\?}/x/g' |
	sed -e 's/^label_values(\(.*\), *[a-z_]*)$/\1/' -e 's/^label_values(\([^,]*\))$/\1/' >"$tmp/exprs.txt"
n=$(wc -l <"$tmp/exprs.txt")
[[ $n -gt 0 ]] || { echo "FAIL: no expressions found in $DASHBOARD" >&2; exit 1; }
{
	echo "groups:"
	echo "  - name: dashboard"
	echo "    rules:"
	i=0
	while IFS= read -r e; do
		i=$((i + 1))
		printf '      - record: dashboard:expr_%d\n        expr: %s\n' "$i" "$(jq -Rn --arg e "$e" '$e')"
	done <"$tmp/exprs.txt"
} >"$tmp/dashboard_rules.yaml"
promtool check rules "$tmp/dashboard_rules.yaml"

if [[ -f bin/metrics.prom ]]; then
	echo "== promtool check metrics < bin/metrics.prom"
	promtool check metrics <bin/metrics.prom
else
	echo "== bin/metrics.prom absent: golden scrape lint skipped"
fi
echo "promtool.sh: OK"
