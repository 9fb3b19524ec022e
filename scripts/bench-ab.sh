#!/usr/bin/env bash
# `make bench-ab BASELINE=/path/to/sluice`: this build's pipeline against another binary (the
# previous commit's, say), in one run on the same Redis and PostgreSQL, so that the machine's
# noise falls on both alike. Each of BENCH_AB_ROUNDS rounds (default 6) runs both binaries, in
# alternating order: the pipeline's functions (ingest, validate, enrich, transform, load,
# quarantine, jobs), each its own process, take one upload of BENCH_AB_EVENTS (default 50,000)
# gen_events.py NDJSON events to the job's end, from a fresh database and an empty Redis.
# Every run must load the same rows. Prints each run's events/s and CPU per event (every
# process, Redis and PostgreSQL included) and the median ratios this/baseline; writes
# bench/results/ab.json.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=${BASELINE:?set BASELINE to the sluice binary to compare with}
current=${CURRENT:-$PWD/.build/release/sluice}
# Each binary runs with the manifests and datasets of its own checkout: a build whose pipeline
# reads settings from elsewhere (datasets/) must not be given another build's manifests.
# BASELINE_FUNCTIONS_DIR, default the `functions` of the checkout BASELINE was built in.
baseline_functions=${BASELINE_FUNCTIONS_DIR:-$(cd "$(dirname "$baseline")/../.." 2>/dev/null && pwd)/functions}
[[ -d $baseline_functions ]] || baseline_functions=$PWD/functions
current_functions=$PWD/functions
rounds=${BENCH_AB_ROUNDS:-6}
count=${BENCH_AB_EVENTS:-50000}
[[ -x $baseline ]] || { echo "BASELINE $baseline is not an executable" >&2; exit 2; }
if [[ -z ${CURRENT:-} ]]; then swift build -c release --static-swift-stdlib >&2; fi
[[ -x $current ]] || { echo "$current is not an executable" >&2; exit 2; }
scripts/install-deps.sh

servers=$(mktemp -d /tmp/sluice-ab-XXXXXX)
pids=()
stop_functions() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_functions
  scripts/servers.sh stop "$servers"
}
trap cleanup EXIT
scripts/servers.sh start "$servers" >/dev/null
# shellcheck disable=SC1091
source "$servers/env"
base_url=${SLUICE_DATABASE_URL%/*}
redis_port=$(cat "$servers/redis.port")
export SLUICE_PSEUDONYM_KEY="bench pseudonym key, not a secret"
eval "$("$current" keys)"

python3 ../shared/bench/gen_events.py --count "$count" --seed 7 --format ndjson --no-consent-rate 0 \
  --now "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --out "$servers/events.ndjson" --manifest "$servers/manifest.json"

ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat" 2>/dev/null || echo 0; }
all_ticks() {
  local total=0 pid postmaster
  postmaster=$(head -1 "$servers/pg/postmaster.pid")
  for pid in "${pids[@]}" "$(cat "$servers/redis.pid")" "$postmaster" $(pgrep -P "$postmaster"); do
    total=$(( total + $(ticks "$pid") ))
  done
  echo "$total"
}

# One run of binary $1 as run number $2: prints "events_per_second cpu_us_per_event loaded".
run() (
  trap stop_functions EXIT
  local sluice=$1 n=$2 port=18180 fn ready answer job state start end before after
  if [[ $sluice == "$baseline" ]]; then export SLUICE_FUNCTIONS_DIR=$baseline_functions; else export SLUICE_FUNCTIONS_DIR=$current_functions; fi
  PGOPTIONS="-c client_min_messages=warning" psql "$base_url/postgres" -qc "DROP DATABASE IF EXISTS ab_$n" -c "CREATE DATABASE ab_$n OWNER sluice" >/dev/null
  export SLUICE_DATABASE_URL="$base_url/ab_$n"
  redis-cli -p "$redis_port" FLUSHALL >/dev/null
  "$sluice" migrate >/dev/null 2>&1
  declare -A ports=()
  for fn in ingest validate enrich transform load quarantine jobs; do
    ports[$fn]=$port
    SLUICE_LOG_LEVEL=warning "$sluice" serve "$fn" --port "$port" --host 127.0.0.1 >"$servers/$fn-$n.log" 2>&1 &
    pids+=($!)
    port=$((port + 1))
  done
  for fn in "${!ports[@]}"; do
    ready=0
    for _ in $(seq 1 400); do
      if curl -fs "http://127.0.0.1:${ports[$fn]}/health/ready" >/dev/null; then ready=1; break; fi
      sleep 0.05
    done
    [[ $ready == 1 ]] || { echo "$fn did not become ready:" >&2; tail "$servers/$fn-$n.log" >&2; exit 1; }
  done
  local ingest="http://127.0.0.1:${ports[ingest]}"
  # A binary with one-time assertions bound to a function and a body (issue 31) needs them per
  # request; an older one takes the plain form (both may be measured against each other).
  local bound=()
  if "$sluice" assert --help 2>&1 | grep -q -- '--function'; then bound=(--function ingest); fi
  local upload=()
  (( ${#bound[@]} )) && upload=(--data-file "$servers/events.ndjson")
  before=$(all_ticks); start=$(date +%s.%N)
  answer=$(curl -fsS -XPOST -H "Content-Type: application/x-ndjson" \
    -H "X-Sluice-Assertion: $("$sluice" assert --method POST --target /api/v1/ingest --subject bench --roles ingest "${bound[@]}" "${upload[@]}")" \
    --data-binary "@$servers/events.ndjson" "$ingest/api/v1/ingest")
  [[ $answer =~ \"job_id\":\"([0-9a-f-]+)\" ]] || { echo "ingest answered: $answer" >&2; exit 1; }
  job=${BASH_REMATCH[1]}
  local assertion minted deadline=$(( $(date +%s) + 600 ))
  assertion=$("$sluice" assert --method GET --target "/api/v1/jobs/$job" --subject bench --roles ingest "${bound[@]}"); minted=$(date +%s)
  while :; do
    # A bound assertion is accepted once: a fresh one per poll; a plain one every 30 s.
    if (( ${#bound[@]} )) || (( $(date +%s) - minted >= 30 )); then
      assertion=$("$sluice" assert --method GET --target "/api/v1/jobs/$job" --subject bench --roles ingest "${bound[@]}"); minted=$(date +%s)
    fi
    state=$(curl -fsS -H "X-Sluice-Assertion: $assertion" "$ingest/api/v1/jobs/$job")
    [[ $state =~ \"status\":\"(completed|failed|cancelled)\" ]] && break
    (( $(date +%s) < deadline )) || { echo "job $job did not end: $state" >&2; exit 1; }
    sleep 0.05
  done
  end=$(date +%s.%N); after=$(all_ticks)
  [[ $state =~ \"status\":\"completed\" ]] || { echo "job $job did not complete: $state" >&2; exit 1; }
  local loaded
  loaded=$(psql "$SLUICE_DATABASE_URL" -tAc "SELECT count(*) FROM events")
  python3 -c "import sys; c, s, e, t = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]); \
print(round(c / (e - s)), round(t * 10000 / c, 1), sys.argv[5])" "$count" "$start" "$end" $(( after - before )) "$loaded"
)

# A warm-up of each first (page cache, PostgreSQL's buffers), not counted.
run "$baseline" 0 >/dev/null
run "$current" 0 >/dev/null
results=()
for round in $(seq 1 "$rounds"); do
  if (( round % 2 )); then order=("baseline" "current"); else order=("current" "baseline"); fi
  for which in "${order[@]}"; do
    if [[ $which == baseline ]]; then binary=$baseline; else binary=$current; fi
    line=$(run "$binary" "$round$which")
    read -r rate cpu rows <<<"$line"
    echo "round $round $which: $rate events/s, $cpu µs CPU/event, $rows rows"
    results+=("$round $which $line")
  done
done
mkdir -p bench/results
printf '%s\n' "${results[@]}" >"$servers/results"
python3 - "$count" "$baseline" "$current" "$servers/results" <<'PY'
import json, statistics, sys
count, baseline, current = int(sys.argv[1]), sys.argv[2], sys.argv[3]
runs = {}
for line in open(sys.argv[4]):
    r, which, rate, cpu, rows = line.split()
    runs.setdefault(int(r), {})[which] = {"events_per_second": int(rate), "cpu_us_per_event": float(cpu), "rows": int(rows)}
rows = {run[w]["rows"] for run in runs.values() for w in run}
if len(rows) != 1:
    sys.exit(f"the runs loaded different rows: {sorted(rows)}")
wall = [r["baseline"]["events_per_second"] / r["current"]["events_per_second"] for r in runs.values()]
cpu = [r["current"]["cpu_us_per_event"] / r["baseline"]["cpu_us_per_event"] for r in runs.values()]
summary = {"events": count, "rows": rows.pop(), "baseline": baseline, "current": current, "rounds": runs,
           "median_time_ratio": round(statistics.median(wall), 3), "time_ratio_range": [round(min(wall), 3), round(max(wall), 3)],
           "median_cpu_ratio": round(statistics.median(cpu), 3), "cpu_ratio_range": [round(min(cpu), 3), round(max(cpu), 3)]}
json.dump(summary, open("bench/results/ab.json", "w"), indent=2)
print(f"this build / baseline, median of {len(runs)} rounds: time {summary['median_time_ratio']} "
      f"({summary['time_ratio_range'][0]}–{summary['time_ratio_range'][1]}), CPU per event {summary['median_cpu_ratio']} "
      f"({summary['cpu_ratio_range'][0]}–{summary['cpu_ratio_range'][1]}); every run loaded {summary['rows']} rows")
PY
