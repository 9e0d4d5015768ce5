#!/usr/bin/env bash
# test/load.sh -- issue 8 item 4: 20 concurrent scrapers against shmwatch serve on the bench
# harness's 1000-pod tree (real cgroups, processes, tmpfs). Every scrape must answer 200 with the
# tree's pods, the scrapers of one round must share collections (kernel reads are not multiplied),
# and memory must stay bounded. Slow (tree ~30 s, 4 GiB), so `make load`, not CI.
# Env: N (1000), SCRAPERS (20), ROUNDS (5), BENCH_DIR (../shared/bench), PORT (19102).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000} SCRAPERS=${SCRAPERS:-20} ROUNDS=${ROUNDS:-5} PORT=${PORT:-19102}
BENCH_DIR=${BENCH_DIR:-$(cd .. && pwd)/shared/bench}
[[ $(id -u) == 0 ]] || { echo "load: needs root" >&2; exit 1; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl bc; }
CGO_ENABLED=0 go build -trimpath -o bin/shmwatch ./cmd/shmwatch
work=$(mktemp -d)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; bash "$BENCH_DIR/rmpods.sh" >/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
bash "$BENCH_DIR/rmpods.sh" >/dev/null
bash "$BENCH_DIR/mkpods.sh" "$N" | tail -1

bin/shmwatch serve --web.listen-address=127.0.0.1:$PORT --cgroup-root=/benchroot \
  --log-root=/tmp/benchroot/log/pods --log.level=warn 2>"$work/stderr" &
pid=$!
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.2; done
rss() { awk '/^VmRSS|^VmHWM/ {printf "%s %d MiB  ", $1, $2/1024}' "/proc/$pid/status"; }
echo "load: before: $(rss)"

worst=0 fail=0 maxcol=0
for r in $(seq "$ROUNDS"); do
  start=$(date +%s%N)
  for i in $(seq "$SCRAPERS"); do
    curl -s -o "$work/r$i.prom" -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$PORT/metrics" >"$work/r$i.code" &
  done
  wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
  collections=$(for i in $(seq "$SCRAPERS"); do grep '^shmwatch_scrape_collector_duration_seconds{collector="cgroup"}' "$work/r$i.prom" || echo missing; done | sort -u | wc -l)
  for i in $(seq "$SCRAPERS"); do
    read -r code t <"$work/r$i.code"
    pods=$(grep -c '^shmwatch_pod_info{' "$work/r$i.prom" || true)
    if [[ $code != 200 || $pods != "$N" ]]; then fail=$((fail + 1)); echo "load: round $r scraper $i: HTTP $code, $pods pods"; fi
    worst=$(echo "$t $worst" | awk '{print ($1 > $2) ? $1 : $2}')
  done
  (( collections > maxcol )) && maxcol=$collections
  echo "load: round $r: $SCRAPERS scrapes, $collections collection(s), $(( ($(date +%s%N) - start) / 1000000 )) ms wall"
done
echo "load: after: $(rss)"
echo "LOAD: pods=$N scrapers=$SCRAPERS rounds=$ROUNDS failed=$fail max_collections_per_round=$maxcol worst_scrape_s=$worst $(rss)"
grep -q panic "$work/stderr" && { echo "load: panic in stderr" >&2; exit 1; }
[[ $fail == 0 ]]
