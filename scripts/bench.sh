#!/usr/bin/env bash
# `make bench`: the pipeline of functions/ (ingest → validate → enrich → transform → load, with
# quarantine and jobs), each function its own release-built process, on a gen_events.py
# workload, next to baselines measured in the same run on the same servers:
#   raw Redis — redis-benchmark XADD of entries the size of an event, and XREADGROUP of them
#   raw COPY  — psql \copy of the same events, already flattened, into a table shaped like the warehouse
# Checks that the job's counts equal the workload's manifest (a fast wrong answer is no result).
# Then: latency under a paced load (bench/paced.py), the privacy middleware's cost, the gateway
# with wrk, analytics and erasure on a million rows, cold start (bench/cold_start.py) and a
# 100 MB CSV upload through the gateway, and the hop to a function's own process
# (scripts/bench-hop.sh). Writes bench/results/*.json and prints a summary.
#   BENCH_EVENTS (default 200000), BENCH_FORMAT (ndjson|json|csv|xml, default ndjson),
#   BENCH_RATE / BENCH_SECONDS (the paced load, default 5000 events/s for 60 s),
#   BENCH_CSV_MB (default 100), BENCH_BINARY (another sluice binary to measure instead). `make soak` (BENCH_SOAK_SECONDS, default 600) runs only the
#   paced load, for that long, and writes bench/results/soak.json.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${BENCH_EVENTS:-200000}
format=${BENCH_FORMAT:-ndjson}
rate=${BENCH_RATE:-5000}
seconds=${BENCH_SECONDS:-60}
soak=${BENCH_SOAK_SECONDS:-}
case $format in
  ndjson) type=application/x-ndjson ;; json) type=application/json ;;
  csv) type=text/csv ;; xml) type=application/xml ;;
  *) echo "BENCH_FORMAT must be ndjson, json, csv or xml" >&2; exit 2 ;;
esac
scripts/install-deps.sh
# The binary as the image ships it: scripts/image.sh builds it (the Swift runtime linked in,
# symbols stripped: .build/image/sluice) and the image the container start-up is measured on.
image=$(scripts/image.sh)
sluice=$PWD/.build/image/sluice
# BENCH_BINARY: another build's binary (the previous commit's, say) measured in its place, to
# set its figures beside this build's on the same day; the container start stays this image's.
if [[ -n ${BENCH_BINARY:-} ]]; then sluice=$BENCH_BINARY; fi
# shellcheck source=scripts/podman-env.sh
source scripts/podman-env.sh

servers=$(mktemp -d /tmp/sluice-bench-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/servers.sh stop "$servers"
}
trap cleanup EXIT
scripts/servers.sh start "$servers" >/dev/null
# shellcheck disable=SC1091
source "$servers/env"
# The pseudonym key of the pii-mask middleware (validate and quarantine declare it).
export SLUICE_PSEUDONYM_KEY="bench pseudonym key, not a secret"
export SLUICE_WEBHOOK_SECRET="bench webhook secret, not a secret"
# Functions answer only requests the gateway vouched for: where the bench calls a function's own
# port it plays the gateway, with a key pair of its own (`sluice keys`) and `sluice assert`.
eval "$("$sluice" keys)"
# An assertion is for one function, request and body, and is accepted once: assertion METHOD TARGET FUNCTION [OPTIONS].
assertion() { "$sluice" assert --method "$1" --target "$2" --function "$3" --subject bench --roles admin,analyst,ingest "${@:4}"; }
redis_port=$(cat "$servers/redis.port")

now() { date +%s.%N; }
# Waits until the function on port $1 answers /health/ready; fails the run with its log ($2) if not.
wait_ready() {
  for _ in $(seq 1 400); do curl -fs "http://127.0.0.1:$1/health/ready" >/dev/null && return 0; sleep 0.05; done
  echo "the function on port $1 did not become ready:" >&2; tail "$2" >&2; exit 1
}
rate() { python3 -c "import sys; print(round(float(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2]))))" "$@"; }

# The workload (timestamps relative to now, so freshness rules apply as they would live), and
# the same events flattened into warehouse rows for the COPY baseline.
generated_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# Default rates: 2 % of the users have withdrawn their consent (recorded below, before the upload).
python3 ../shared/bench/gen_events.py --count "$count" --seed 7 --format "$format" \
  --now "$generated_at" --out "$servers/events.$format" --manifest "$servers/manifest.json"
python3 ../shared/bench/gen_events.py --count "$count" --seed 7 --format ndjson \
  --now "$generated_at" --out "$servers/events-flat.ndjson"
python3 - "$servers" <<'PY'
import csv, json, sys
from datetime import datetime
d = sys.argv[1]
with open(f"{d}/events-flat.ndjson") as source, open(f"{d}/rows.csv", "w", newline="") as out:
    w = csv.writer(out)
    for line in source:
        try:
            e = json.loads(line)
            m, u, c, p = e.get("metadata", {}), e.get("user", {}), e.get("context", {}), e.get("payload", {})
            loc = c.get("location", {}) or {}
            j = lambda v: json.dumps(v) if v is not None else None
            datetime.fromisoformat(m["timestamp"].replace("Z", "+00:00"))
            if not all(isinstance(v, str) for v in (m["event_id"], u["id"], p["event_type"])):
                continue
            w.writerow([m.get("event_id"), None, p.get("event_type"), m.get("timestamp"), u.get("id"), u.get("session_id"),
                        m.get("source"), m.get("version"), c.get("device_type"), None, c.get("os_version"), c.get("app_version"),
                        loc.get("country"), None, loc.get("region"), j(p.get("properties")), j(p.get("custom_data")),
                        j(u.get("attributes")), "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"])
        except (ValueError, AttributeError, KeyError, TypeError):
            pass  # the malformed share of the workload, which a COPY would refuse
PY
rows=$(wc -l <"$servers/rows.csv")
event_bytes=$(( $(stat -c %s "$servers/events-flat.ndjson") / count ))

# Baseline 1: raw XADD of entries the size of an average event, pipelined.
start=$(now)
redis-benchmark -p "$redis_port" -n "$count" -P 64 -q XADD bench:raw '*' f "$(head -c "$event_bytes" /dev/zero | tr '\0' x)" >/dev/null
end=$(now)
raw_xadd=$(rate "$count" "$start" "$end")
# … and reading them back in batches of 500, as the functions do (XREADGROUP … COUNT 500).
redis-cli -p "$redis_port" XGROUP CREATE bench:raw g 0 >/dev/null
start=$(now)
redis-benchmark -p "$redis_port" -n $(( count / 500 )) -c 1 -q XREADGROUP GROUP g c COUNT 500 STREAMS bench:raw '>' >/dev/null
end=$(now)
raw_xreadgroup=$(rate "$count" "$start" "$end")
[[ $(redis-cli -p "$redis_port" XPENDING bench:raw g | head -1) == "$count" ]] || { echo "XREADGROUP did not read every entry" >&2; exit 1; }

# Baseline 2: raw COPY of the flattened rows into an unindexed copy of the warehouse table.
"$sluice" migrate >/dev/null 2>&1
psql "$SLUICE_DATABASE_URL" -qc "CREATE TABLE bench_copy (LIKE events INCLUDING DEFAULTS)"
start=$(now)
psql "$SLUICE_DATABASE_URL" -qc "\\copy bench_copy FROM '$servers/rows.csv' CSV"
end=$(now)
raw_copy=$(rate "$rows" "$start" "$end")

# PostgreSQL's own floors for the warehouse, on the same rows without their duplicates: a raw
# COPY into `events` as migrated (primary key, two more indexes, the rollup trigger), and the
# load function's SQL (COPY into a staging table, then INSERT … SELECT DISTINCT ON … ON CONFLICT
# DO NOTHING, one transaction per chunk) in chunks of load's batch (500). Each ends in a TRUNCATE,
# which also clears the rollups, so the pipeline starts from an empty warehouse.
columns="event_id, job_id, event_type, event_time, user_id, session_id, source, version, device_type, device_class, os_version, app_version, country, country_name, region, properties, custom_data, attributes, received_at, loaded_at"
sort -t, -u -k1,1 "$servers/rows.csv" >"$servers/unique-rows.csv"
unique_rows=$(wc -l <"$servers/unique-rows.csv")
start=$(now)
psql "$SLUICE_DATABASE_URL" -q -v ON_ERROR_STOP=1 -c "\\copy events ($columns) FROM '$servers/unique-rows.csv' CSV"
end=$(now)
copy_indexed=$(rate "$unique_rows" "$start" "$end")
psql "$SLUICE_DATABASE_URL" -qc "TRUNCATE events"
mkdir -p "$servers/load-chunks"
split -l 500 -d -a 5 "$servers/unique-rows.csv" "$servers/load-chunks/chunk-"
{
  echo "CREATE TEMP TABLE events_staging (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;"
  for chunk in "$servers"/load-chunks/chunk-*; do
    echo "BEGIN;"
    echo "\\copy events_staging ($columns) FROM '$chunk' CSV"
    echo "INSERT INTO events ($columns) SELECT DISTINCT ON (event_id) $columns FROM events_staging ORDER BY event_id ON CONFLICT (event_id) DO NOTHING;"
    echo "COMMIT;"
  done
} >"$servers/load.sql"
start=$(now)
psql "$SLUICE_DATABASE_URL" -q -v ON_ERROR_STOP=1 -f "$servers/load.sql" >/dev/null
end=$(now)
load_sql=$(rate "$unique_rows" "$start" "$end")
[[ $(psql "$SLUICE_DATABASE_URL" -tAc "SELECT count(*) FROM events") == "$unique_rows" ]] || { echo "the load SQL floor did not load every row" >&2; exit 1; }
psql "$SLUICE_DATABASE_URL" -qc "TRUNCATE events"

# Sluice: every function of functions/ in its own process.
port=18080
declare -A ports fn_pids
for fn in ingest validate enrich transform load quarantine jobs warehouse privacy; do
  ports[$fn]=$port
  SLUICE_LOG_LEVEL=warning "$sluice" serve "$fn" --port "$port" --host 127.0.0.1 >"$servers/$fn.log" 2>&1 &
  pids+=($!)
  fn_pids[$fn]=$!
  port=$((port + 1))
done
for fn in "${!ports[@]}"; do
  ready=0
  for _ in $(seq 1 400); do
    if curl -fs "http://127.0.0.1:${ports[$fn]}/health/ready" >/dev/null; then ready=1; break; fi
    sleep 0.05
  done
  [[ $ready == 1 ]] || { echo "$fn did not become ready:" >&2; tail "$servers/$fn.log" >&2; exit 1; }
done
ingest="http://127.0.0.1:${ports[ingest]}"
pid_args=()  # bench/paced.py samples the memory of each
for fn in "${!fn_pids[@]}"; do pid_args+=(--pid "$fn=${fn_pids[$fn]}"); done
# The paced load's pool: events whose ids get a suffix per pass (consents all given).
python3 ../shared/bench/gen_events.py --count 50000 --seed 8 --format ndjson --no-consent-rate 0 \
  --out "$servers/pool.ndjson" --manifest "$servers/pool-manifest.json"
mkdir -p bench/results
if [[ -n $soak ]]; then
  python3 bench/paced.py --url "$ingest" --assertion-command "$sluice assert --method POST --target /api/v1/ingest --function ingest --streamed --count 500 --subject bench --roles ingest" \
    --pool "$servers/pool.ndjson" --rate "$rate" --seconds "$soak" \
    --database-url "$SLUICE_DATABASE_URL" "${pid_args[@]}" --out bench/results/soak.json
  exit
fi
# Cold start: process start to the first 200 from /health/ready, median of 10, every function,
# measured before the workloads, while the servers are idle: after them PostgreSQL is still
# busy writing and vacuuming (a million-row erasure), and that is not the process starting.
SLUICE_JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" SLUICE_UPSTREAM_INGEST="$ingest" python3 bench/cold_start.py --binary "$sluice" \
  --port $((port + 10)) --runs 10 --out bench/results/cold_start.json \
  ingest validate enrich transform load quarantine jobs notify warehouse privacy calls gateway >/dev/null
# The same for a container of the image (`podman run`, host network, read-only root), validate.
SLUICE_JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" python3 bench/cold_start.py --podman "$image" \
  --port $((port + 11)) --runs 10 --out bench/results/container_start.json validate >/dev/null

for user in $(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["consent_withdrawn_users"]))' "$servers/manifest.json"); do
  curl -fsS -o /dev/null -XPUT -H 'Content-Type: application/json' -H "X-Sluice-Assertion: $(assertion PUT "/api/v1/consents/$user" privacy --data '{"purpose": "analytics", "granted": false}')" \
    -d '{"purpose": "analytics", "granted": false}' "http://127.0.0.1:${ports[privacy]}/api/v1/consents/$user"
done
# CPU time (user + system, in clock ticks) of each process, and of Redis and every PostgreSQL
# process together: where the run's CPU goes, per event. Children that ended count too (fields
# 16 and 17): Redis forks to rewrite its append-only file, and that costs a share of a core.
ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat" 2>/dev/null || echo 0; }
postgres_ticks() {
  local postmaster total=0
  postmaster=$(head -1 "$servers/pg/postmaster.pid")
  for pid in $postmaster $(pgrep -P "$postmaster"); do total=$(( total + $(ticks "$pid") )); done
  echo "$total"
}
cpu_snapshot() {
  local out="" fn
  for fn in "${!fn_pids[@]}"; do out+="$fn=$(ticks "${fn_pids[$fn]}") "; done
  echo "${out}redis=$(ticks "$(cat "$servers/redis.pid")") postgres=$(postgres_ticks)"
}
cpu_before=$(cpu_snapshot)
start=$(now)
upload_assertion=$(assertion POST /api/v1/ingest ingest --data-file "$servers/events.$format")
answer=$(curl -fsS -XPOST -H "Content-Type: $type" -H "X-Sluice-Assertion: $upload_assertion" --data-binary "@$servers/events.$format" "$ingest/api/v1/ingest")
accepted=$(now)
[[ $answer =~ \"job_id\":\"([0-9a-f-]+)\" ]] || { echo "ingest answered: $answer" >&2; exit 1; }
job=${BASH_REMATCH[1]}
deadline=$(( $(date +%s) + 900 ))
# Polled with curl alone: a python3 per poll would cost the pipeline a good share of a core.
# An assertion is valid for a minute and accepted once: a batch every 30 s (or when used up), one per poll.
poll_assertions=(); poll_minted=0
while :; do
  if (( ${#poll_assertions[@]} == 0 || $(date +%s) - poll_minted >= 30 )); then
    mapfile -t poll_assertions < <(assertion GET "/api/v1/jobs/$job" ingest --count 600); poll_minted=$(date +%s)
  fi
  poll_assertion=${poll_assertions[-1]}; unset 'poll_assertions[-1]'
  state=$(curl -fsS -H "X-Sluice-Assertion: $poll_assertion" "$ingest/api/v1/jobs/$job")
  [[ $state =~ \"status\":\"(completed|failed|cancelled)\" ]] && break
  (( $(date +%s) < deadline )) || { echo "job $job did not end: $state" >&2; exit 1; }
  sleep 0.05
done
end=$(now)
cpu_after=$(cpu_snapshot)
latency=$(psql "$SLUICE_DATABASE_URL" -tAc "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric,1) || ' ' || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric,1) FROM (SELECT extract(epoch FROM loaded_at - received_at) * 1000 AS ms FROM events WHERE job_id = '$job') t")
rss=$(for pid in "${pids[@]}"; do awk '/VmHWM/ {print $2}' "/proc/$pid/status"; done | paste -sd' ')
# What Redis holds per event for deduplication: a first-seen mark, kept for validate's dedup_ttl.
# Its size: MEMORY USAGE of 500 marks (key, value, entry) plus each key's share of the main and
# expires hash tables.
dedup_ttl_hours=$(sed -n 's/^ *dedup_ttl: *\([0-9][0-9]*\)h\b.*/\1/p' functions/validate/function.yaml)
[[ -n $dedup_ttl_hours ]] || { echo "validate's dedup_ttl is not a whole number of hours (Nh)" >&2; exit 1; }
redis-cli -p "$redis_port" --scan --pattern '{sluice}:dedup:*' >"$servers/dedup-keys"
dedup_marks=$(wc -l <"$servers/dedup-keys")
dedup_sample=$(head -500 "$servers/dedup-keys" | sed 's/^/MEMORY USAGE /' | redis-cli -p "$redis_port" | awk '{s += $1; n++} END {print s / n}')
dedup_overhead=$(redis-cli -p "$redis_port" memory stats | awk '/^overhead.hashtable.(main|expires)$/ {getline; s += $1} /^keys.count$/ {getline; k = $1} END {print s / k}')
dedup_bytes=$(python3 -c "import sys; print(round(float(sys.argv[1]) + float(sys.argv[2])))" "$dedup_sample" "$dedup_overhead")

# Latency under a paced load: RATE events/s for SECONDS in uploads of 250 (bench/paced.py).
python3 bench/paced.py --url "$ingest" --assertion-command "$sluice assert --method POST --target /api/v1/ingest --function ingest --streamed --count 500 --subject bench --roles ingest" \
  --pool "$servers/pool.ndjson" --rate "$rate" --seconds "$seconds" \
  --database-url "$SLUICE_DATABASE_URL" "${pid_args[@]}" --out bench/results/latency.json >/dev/null

# What the privacy middleware costs: validate as functions/ declares it (pii-mask, consent,
# geo-restrict), with pii-mask only, and with none (copies of functions/), on the same 500-event
# chunks (a fifth carrying PII), POST /invoke, mean ms per chunk. Each variant has a Redis
# database of its own, so that each sees the events as new (not as the others' duplicates).
declare -A variants=([all]="[pii-mask, consent, geo-restrict]" [maskonly]="[pii-mask]" [none]="[]")
declare -A variant_ports
database=1
for variant in all maskonly none; do
  copy="$servers/functions-$variant"
  cp -r functions "$copy"
  sed -i "s/^middleware: \[.*\]/middleware: ${variants[$variant]}/" "$copy/validate/function.yaml"
  grep -qF "middleware: ${variants[$variant]}" "$copy/validate/function.yaml" || { echo "could not set validate's middleware" >&2; exit 1; }
  # Calls store events, so only a masking function may expose `async`: no variant exposes it
  # (POST /invoke is measured, the same in each).
  sed -i "s/^expose: \[async\]/expose: []/" "$copy/validate/function.yaml"
  variant_ports[$variant]=$port
  SLUICE_REDIS_URL="${SLUICE_REDIS_URL%/*}/$database" SLUICE_FUNCTIONS_DIR="$copy" SLUICE_LOG_LEVEL=warning \
    "$sluice" serve validate --port "$port" --host 127.0.0.1 >"$servers/validate-$variant.log" 2>&1 &
  pids+=($!)
  wait_ready "$port" "$servers/validate-$variant.log"
  port=$((port + 1))
  database=$((database + 1))
done
python3 ../shared/bench/gen_events.py --count 10000 --seed 9 --format ndjson \
  --out "$servers/mask.ndjson" --manifest "$servers/mask-manifest.json"
masking=$(python3 - "$servers/mask.ndjson" "${variant_ports[all]}" "${variant_ports[maskonly]}" "${variant_ports[none]}" "$sluice" <<'PY'
import json, subprocess, sys, time, urllib.request
lines = [json.loads(line) for line in open(sys.argv[1])]
minted = [0.0, ""]
def assertion():
    # The gateway's assertion for POST /invoke, valid a minute and accepted once: a batch every 30 s, one per call.
    if not minted[1] or time.monotonic() - minted[0] > 30:
        minted[1] = subprocess.run([sys.argv[5], "assert", "--method", "POST", "--target", "/invoke", "--function", "validate", "--streamed",
                                    "--count", "200", "--subject", "bench", "--roles", "admin"],
                                   check=True, capture_output=True, text=True).stdout.split()
        minted[0] = time.monotonic()
    return minted[1].pop()
chunks = [json.dumps(lines[i:i + 500]).encode() for i in range(0, len(lines), 500)]
def mean_ms(port, bodies):
    start = time.perf_counter()
    for body in bodies:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invoke", data=body,
                                         headers={"Content-Type": "application/json", "X-Sluice-Assertion": assertion()})
        urllib.request.urlopen(request).read()
    return (time.perf_counter() - start) / len(bodies) * 1000
# Each variant sees every chunk once: two to warm up (consents and pseudonyms are cached after
# a subject's first chunk), then the measured 18.
ports = [int(p) for p in sys.argv[2:5]]
for port in ports:
    mean_ms(port, chunks[:2])
print(" ".join(str(round(mean_ms(port, chunks[2:]), 2)) for port in ports))
PY
)

# The gateway: authenticated requests through it (HS256, then RS256) against the same small
# route answered by ingest directly, without a token, in the same run. Rate limits are lifted
# (a copy of functions/ with a huge bucket) so the limiter is measured, not hit.
functions_copy="$servers/functions"
cp -r functions "$functions_copy"
cp -r datasets "$servers/datasets"  # beside the functions, where sluice looks for them
sed -i 's/ingest:  {per_second: 100, burst: 200}/ingest:  {per_second: 1000000, burst: 1000000}/' "$functions_copy/gateway/function.yaml"
grep -q 'per_second: 1000000' "$functions_copy/gateway/function.yaml" || { echo "could not lift the gateway's rate limit" >&2; exit 1; }
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$servers/jwt-private.pem" 2>/dev/null
openssl pkey -in "$servers/jwt-private.pem" -pubout -out "$servers/jwt-public.pem"
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
hs_port=$port; rs_port=$((port + 1))
SLUICE_FUNCTIONS_DIR="$functions_copy" SLUICE_JWT_SECRET="$secret" SLUICE_UPSTREAM_INGEST="$ingest" SLUICE_UPSTREAM_WAREHOUSE="http://127.0.0.1:${ports[warehouse]}" \
  SLUICE_UPSTREAM_PRIVACY="http://127.0.0.1:${ports[privacy]}" SLUICE_LOG_LEVEL=warning \
  "$sluice" serve gateway --port "$hs_port" --host 127.0.0.1 >"$servers/gateway-hs.log" 2>&1 &
pids+=($!)
SLUICE_FUNCTIONS_DIR="$functions_copy" SLUICE_JWT_PUBLIC_KEY="$servers/jwt-public.pem" SLUICE_UPSTREAM_INGEST="$ingest" SLUICE_UPSTREAM_WAREHOUSE="http://127.0.0.1:${ports[warehouse]}" SLUICE_LOG_LEVEL=warning \
  "$sluice" serve gateway --port "$rs_port" --host 127.0.0.1 >"$servers/gateway-rs.log" 2>&1 &
pids+=($!)
wait_ready "$hs_port" "$servers/gateway-hs.log"
wait_ready "$rs_port" "$servers/gateway-rs.log"
hs_token=$(SLUICE_JWT_SECRET="$secret" "$sluice" token --subject bench --roles ingest --ttl 3600)
rs_token=$(env -u SLUICE_JWT_SECRET "$sluice" token --subject bench --roles ingest --ttl 600 --key "$servers/jwt-private.pem")
route="/api/v1/jobs/$job"
[[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $hs_token" "http://127.0.0.1:$hs_port$route") == 200 ]] || { echo "the HS256 gateway does not answer 200" >&2; tail "$servers/gateway-hs.log" >&2; exit 1; }
[[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $rs_token" "http://127.0.0.1:$rs_port$route") == 200 ]] || { echo "the RS256 gateway does not answer 200" >&2; tail "$servers/gateway-rs.log" >&2; exit 1; }
# wrk: requests/s and the 99th percentile (in ms); non-2xx answers are counted as failures.
measure() {
  local out
  out=$(wrk -t2 -c16 -d8s --latency "$@")
  python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
print(round(rps), round(p99, 2), int(bad.group(1)) if bad else 0)
PY
}
direct=$(measure -H "X-Sluice-Assertion: $(assertion GET "$route")" "$ingest$route")
via_hs=$(measure -H "Authorization: Bearer $hs_token" "http://127.0.0.1:$hs_port$route")
via_rs=$(measure -H "Authorization: Bearer $rs_token" "http://127.0.0.1:$rs_port$route")
gateway="$direct $via_hs $via_rs"

# The analytics summary on a million rows: the day before now, spread over 24 hours, 50,000
# users, 8 event types, written in one INSERT (the triggers record its deltas), vacuumed as
# autovacuum keeps a live table. Measured: how long the warehouse's refresher takes to fold the
# million rows into the rollups, then the summary for the last hour by minute, the last day
# (all million rows) by hour and by minute, each from the rollups and with exact=true (every
# event read), median of 7 calls each, through the gateway.
# User ids in the pseudonym form (u_ and 32 letters a–p), so that an erasure can name one.
psql "$SLUICE_DATABASE_URL" -qc "INSERT INTO events (event_id, event_type, event_time, user_id, received_at)
  SELECT 'bench-' || i, 'type-' || (i % 8), now() - make_interval(secs => (i % 86400)),
         'u_' || lpad(translate(to_hex(i % 50000), '0123456789abcdef', 'abcdefghijklmnop'), 32, 'a'), now()
  FROM generate_series(1, 1000000) AS i"
inserted=$(date +%s.%N)
until [ "$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT count(*) FROM events_rollup_delta")" = 0 ]; do sleep 0.1; done
rollup_catch_up=$(python3 -c "import time; print(round(time.time() - $inserted, 2))")
psql "$SLUICE_DATABASE_URL" -qc "VACUUM ANALYZE events" -c "VACUUM ANALYZE events_rollup"
analyst_token=$(SLUICE_JWT_SECRET="$secret" "$sluice" token --subject bench-analyst --roles analyst --ttl 600)
summary_ms() {
  local times=()
  for _ in 1 2 3 4 5 6 7; do
    times+=("$(curl -fsS -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $analyst_token" "http://127.0.0.1:$hs_port/api/v1/analytics/summary?$1")")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 4p | awk '{printf "%.1f", $1 * 1000}'
}
day_ago=$(date -u -d '-24 hours' +%Y-%m-%dT%H:%M:00Z)
summaries=""
for query in "window=1m" "from=$day_ago&window=1h" "from=$day_ago&window=1m"; do
  summaries="$summaries $(summary_ms "$query") $(summary_ms "$query&exact=true")"
done

# Erasure of one subject (20 of the million rows), through the gateway: the answer's duration.
admin_token=$(SLUICE_JWT_SECRET="$secret" "$sluice" token --subject bench-admin --roles admin --ttl 600)
subject="u_$(python3 -c "print('0123'.translate(str.maketrans('0123456789abcdef', 'abcdefghijklmnop')).rjust(32, 'a'))")"
erasure=$(curl -fsS -XDELETE -H "Authorization: Bearer $admin_token" "http://127.0.0.1:$hs_port/api/v1/subjects/$subject")
erasure=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["removed"]["events"], r["duration_ms"])' "$erasure")

# A CSV of BENCH_CSV_MB (100) MB through the gateway (HS256) to a fresh ingest: the time until
# its 202, the peak memory of both, then the time until the job completes, with its counts.
# Its workload withdraws nobody's consent: those the first workload withdrew are granted again.
for user in $(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["consent_withdrawn_users"]))' "$servers/manifest.json"); do
  curl -fsS -o /dev/null -XPUT -H 'Content-Type: application/json' -H "X-Sluice-Assertion: $(assertion PUT "/api/v1/consents/$user" privacy --data '{"purpose": "analytics", "granted": false}')" \
    -d '{"purpose": "analytics", "granted": true}' "http://127.0.0.1:${ports[privacy]}/api/v1/consents/$user"
done
csv_mb=${BENCH_CSV_MB:-100}
csv_events=$(( csv_mb * 1000000 / 195 + 1000 ))
python3 ../shared/bench/gen_events.py --count "$csv_events" --seed 12 --format csv --no-consent-rate 0 \
  --out "$servers/big.csv" --manifest "$servers/big-manifest.json"
csv_ingest_port=$((port + 20)); csv_gateway_port=$((port + 21))
SLUICE_LOG_LEVEL=warning "$sluice" serve ingest --port $csv_ingest_port --host 127.0.0.1 >"$servers/ingest-csv.log" 2>&1 &
csv_ingest_pid=$!; pids+=($!)
SLUICE_FUNCTIONS_DIR="$functions_copy" SLUICE_JWT_SECRET="$secret" SLUICE_UPSTREAM_INGEST="http://127.0.0.1:$csv_ingest_port" SLUICE_LOG_LEVEL=warning \
  "$sluice" serve gateway --port $csv_gateway_port --host 127.0.0.1 >"$servers/gateway-csv.log" 2>&1 &
csv_gateway_pid=$!; pids+=($!)
wait_ready "$csv_ingest_port" "$servers/ingest-csv.log"
wait_ready "$csv_gateway_port" "$servers/gateway-csv.log"
# The stages are paused (SIGSTOP) until the 202: what is measured is the front door (gateway,
# ingest, Redis), which in a deployment has cores of its own; on these 2 shared cores the
# stages would otherwise take most of them meanwhile. They resume to finish the job.
stage_pids=()
for fn in validate enrich transform load quarantine jobs; do stage_pids+=("${fn_pids[$fn]}"); done
kill -STOP "${stage_pids[@]}"
csv_start=$(now)
csv_answer=$(curl -fsS -XPOST -H "Authorization: Bearer $hs_token" -H 'Content-Type: text/csv' --data-binary "@$servers/big.csv" \
  "http://127.0.0.1:$csv_gateway_port/api/v1/ingest")
csv_accepted=$(now)
kill -CONT "${stage_pids[@]}"
csv_peaks="$(awk '/VmHWM/ {print $2}' /proc/$csv_ingest_pid/status) $(awk '/VmHWM/ {print $2}' /proc/$csv_gateway_pid/status)"
csv_job=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["job_id"])' "$csv_answer")
while :; do
  csv_state=$(curl -fsS -H "X-Sluice-Assertion: $(assertion GET "/api/v1/jobs/$csv_job")" "$ingest/api/v1/jobs/$csv_job")
  status=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["status"])' "$csv_state")
  [[ $status == completed || $status == failed || $status == cancelled ]] && break
  sleep 0.2
done
csv_done=$(now)
python3 - "$servers/big.csv" "$csv_start" "$csv_accepted" "$csv_done" "$csv_peaks" "$csv_state" "$servers/big-manifest.json" <<'PY'
import json, os, sys
path, start, accepted, done = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
ingest_kb, gateway_kb = (int(x) for x in sys.argv[5].split())
job, expected = json.loads(sys.argv[6]), json.load(open(sys.argv[7]))["expected"]
size = os.path.getsize(path)
json.dump({
    "bytes": size, "events": json.load(open(sys.argv[7]))["count"], "via": "gateway (HS256) to ingest, the stages paused until the 202",
    "seconds_to_202": round(accepted - start, 2), "mb_per_s_to_202": round(size / 1e6 / (accepted - start), 1),
    "seconds_to_completed": round(done - start, 2), "job": job["status"], "counts": job["counts"],
    "counts_match_manifest": all(job["counts"].get(k) == v for k, v in expected.items()),
    "peak_rss_mb": {"ingest": round(ingest_kb / 1024, 1), "gateway": round(gateway_kb / 1024, 1)},
}, open("bench/results/csv_upload.json", "w"), indent=1)
PY

# A CSV dataset: BENCH_DATASET_ROWS (200,000) orders, a shape of their own, uploaded through the
# gateway to a dataset that does not exist yet (its schema detected from the first 500 rows), then
# validated, transformed and loaded into datasets.bench_orders with the stages running: rows/s
# from the upload's start to the job's end.
dataset_rows=${BENCH_DATASET_ROWS:-200000}
python3 - "$servers/orders.csv" "$dataset_rows" <<'PY'
import sys, datetime
path, rows = sys.argv[1], int(sys.argv[2])
now = datetime.datetime.now(datetime.timezone.utc)
with open(path, "w") as out:
    out.write("order_id,order_date,customer_ref,amount,country,paid\n")
    for n in range(rows):
        when = (now - datetime.timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.write(f"ord-{n},{when},cust-{n % 5000},{(n % 50000) / 100:.2f},{('DE', 'FR', 'GB', 'NL')[n % 4]},{'true' if n % 3 else 'false'}\n")
PY
dataset_token=$(SLUICE_JWT_SECRET="$secret" "$sluice" token --subject bench-datasets --roles ingest,admin --ttl 600)
dataset_start=$(now)
dataset_answer=$(curl -fsS -XPOST -H "Authorization: Bearer $dataset_token" -H 'Content-Type: text/csv' --data-binary "@$servers/orders.csv" \
  "http://127.0.0.1:$csv_gateway_port/api/v1/datasets/bench_orders/ingest")
dataset_job=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["job_id"])' "$dataset_answer")
while :; do
  dataset_state=$(curl -fsS -H "X-Sluice-Assertion: $(assertion GET "/api/v1/jobs/$dataset_job")" "$ingest/api/v1/jobs/$dataset_job")
  status=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["status"])' "$dataset_state")
  [[ $status == completed || $status == failed || $status == cancelled ]] && break
  sleep 0.2
done
dataset_done=$(now)
dataset_table=$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT count(*) FROM datasets.bench_orders")
python3 - "$servers/orders.csv" "$dataset_rows" "$dataset_start" "$dataset_done" "$dataset_state" "$dataset_table" <<'PY'
import json, os, sys
path, rows, start, done = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
job, table = json.loads(sys.argv[5]), int(sys.argv[6])
json.dump({
    "rows": rows, "bytes": os.path.getsize(path), "via": "gateway (HS256) to ingest, a new dataset detected from its first rows, every stage running",
    "seconds_to_completed": round(done - start, 2), "rows_per_s": round(rows / (done - start)),
    "job": job["status"], "loaded": job["counts"]["loaded"], "rows_in_table": table,
    "counts_match": job["status"] == "completed" and job["counts"]["loaded"] == rows and table == rows,
}, open("bench/results/csv_dataset.json", "w"), indent=1)
PY

# The hop to a function in a process of its own (Python, Swift) against the same no-op in
# process: per chunk and per event (scripts/bench-hop.sh, bench/results/hop.json).
scripts/bench-hop.sh "$sluice"

DEDUP_MARKS="$dedup_marks" DEDUP_BYTES="$dedup_bytes" DEDUP_TTL_HOURS="$dedup_ttl_hours" COPY_INDEXED="$copy_indexed" LOAD_SQL="$load_sql" CPU_BEFORE="$cpu_before" CPU_AFTER="$cpu_after" python3 - "$count" "$format" "$raw_xadd" "$raw_copy" "$start" "$accepted" "$end" "$latency" "$state" "$servers/manifest.json" "$rss" "$raw_xreadgroup" "$gateway" "$rollup_catch_up $summaries" "$masking" "$erasure" <<'PY'
import json, sys, platform, os
count, fmt, xadd, copy = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
start, accepted, end = (float(x) for x in sys.argv[5:8])
p50, p99 = (float(x) for x in sys.argv[8].split())
job = json.loads(sys.argv[9])
expected = json.load(open(sys.argv[10]))["expected"]
peaks = [int(x) for x in sys.argv[11].split()]
xreadgroup = int(sys.argv[12])
copy_indexed, load_sql = int(os.environ["COPY_INDEXED"]), int(os.environ["LOAD_SQL"])
dedup_marks, dedup_bytes, dedup_ttl_hours = int(os.environ["DEDUP_MARKS"]), int(os.environ["DEDUP_BYTES"]), int(os.environ["DEDUP_TTL_HOURS"])
# Redis memory for the marks of 1,000 events/s sustained, each kept dedup_ttl.
dedup_gib_per_1000 = round(dedup_bytes * 1000 * dedup_ttl_hours * 3600 / 2**30, 1)
def ticks(text):
    return {k: int(v) for k, v in (item.split("=") for item in text.split())}
cpu_before, cpu_after = ticks(os.environ["CPU_BEFORE"]), ticks(os.environ["CPU_AFTER"])
hz = os.sysconf("SC_CLK_TCK")
cpu_us_per_event = {k: round((cpu_after[k] - cpu_before[k]) / hz / count * 1e6, 1) for k in cpu_after}
paced = json.load(open("bench/results/latency.json"))
cold = json.load(open("bench/results/cold_start.json"))
container = json.load(open("bench/results/container_start.json"))["validate"]
csv_upload = json.load(open("bench/results/csv_upload.json"))
csv_dataset = json.load(open("bench/results/csv_dataset.json"))
g = sys.argv[13].split()
catch_up, hour_1m, hour_1m_exact, day_1h, day_1h_exact, day_1m, day_1m_exact = (float(x) for x in sys.argv[14].split())
privacy_ms, mask_ms, nomask_ms = (float(x) for x in sys.argv[15].split())
erased_rows, erasure_ms = (int(x) for x in sys.argv[16].split())
direct_rps, direct_p99, direct_bad, hs_rps, hs_p99, hs_bad, rs_rps, rs_p99, rs_bad = int(g[0]), float(g[1]), int(g[2]), int(g[3]), float(g[4]), int(g[5]), int(g[6]), float(g[7]), int(g[8])
e2e = round(count / (end - start))
upload = round(count / (accepted - start))
mismatches = {k: (job["counts"].get(k), v) for k, v in expected.items() if job["counts"].get(k) != v}
result = {
    "events": count, "format": fmt, "machine": f"{os.cpu_count()} cores, {platform.machine()}",
    "raw_xadd_per_s": xadd, "raw_copy_rows_per_s": copy,
    "sluice_ingest_events_per_s": upload, "sluice_end_to_end_events_per_s": e2e,
    "ratio_to_raw_copy": round(e2e / copy, 3),
    "loaded_minus_received_ms_p50": p50, "loaded_minus_received_ms_p99": p99,
    "raw_xreadgroup_count_500_per_s": xreadgroup,
    "postgres_floors_rows_per_s": {"copy_into_indexed_events": copy_indexed, "load_function_sql_chunks_of_500": load_sql},
    "ratio_to_load_sql_floor": round(e2e / load_sql, 3),
    "cpu_us_per_event": cpu_us_per_event, "cpu_us_per_event_total": round(sum(cpu_us_per_event.values()), 1),
    "paced": {k: v for k, v in paced.items() if k != "memory"},
    "cold_start_median_ms": {k: v["median_ms"] for k, v in cold.items()},
    "container_start_to_ready_ms": {"function": "validate", **container, "ratio_to_process": round(container["median_ms"] / cold["validate"]["median_ms"], 2)},
    "csv_upload": csv_upload,
    "csv_dataset": csv_dataset,
    "peak_rss_mb_max": round(max(peaks) / 1024, 1), "job": job["status"], "counts": job["counts"],
    "redis_dedup": {"marks_after_run": dedup_marks, "bytes_per_mark": dedup_bytes, "dedup_ttl_hours": dedup_ttl_hours,
                    "gib_per_1000_events_per_s_over_dedup_ttl": dedup_gib_per_1000},
    "counts_match_manifest": not mismatches,
    "gateway": {
        "route": "GET /api/v1/jobs/{id}", "wrk": "-t2 -c16 -d8s",
        "direct_unauthenticated": {"requests_per_s": direct_rps, "p99_ms": direct_p99, "non_2xx": direct_bad},
        "via_gateway_hs256": {"requests_per_s": hs_rps, "p99_ms": hs_p99, "non_2xx": hs_bad},
        "via_gateway_rs256": {"requests_per_s": rs_rps, "p99_ms": rs_p99, "non_2xx": rs_bad},
    },
    "validate_ms_per_500_event_chunk": {"pii_mask_consent_geo": privacy_ms, "pii_mask_only": mask_ms, "no_middleware": nomask_ms, "via": "POST /invoke"},
    "erasure_of_one_subject_in_1m_rows": {"rows_removed": erased_rows, "duration_ms": erasure_ms},
    "analytics_summary_1m_rows": {
        "rollup_catch_up_s": catch_up,
        "median_ms": {
            "last_hour_by_minute": {"rollups": hour_1m, "exact": hour_1m_exact},
            "last_day_by_hour": {"rollups": day_1h, "exact": day_1h_exact},
            "last_day_by_minute": {"rollups": day_1m, "exact": day_1m_exact},
        },
    },
}
json.dump(result, open("bench/results/pipeline.json", "w"), indent=1)
print(f"raw XADD              {xadd:>9} entries/s")
print(f"raw COPY              {copy:>9} rows/s")
print(f"  into `events`        {copy_indexed:>9} rows/s  ({copy_indexed / copy:.2f} x raw COPY: a raw COPY into the warehouse table, its 3 indexes and rollup trigger)")
print(f"  load's SQL           {load_sql:>9} rows/s  ({load_sql / copy:.2f} x raw COPY: staging COPY + INSERT … ON CONFLICT, chunks of 500, PostgreSQL alone)")
print(f"sluice ingest         {upload:>9} events/s  (upload of {count} {fmt} events answered)")
print(f"sluice end to end     {e2e:>9} events/s  ({e2e / copy:.2f} x raw COPY, {e2e / load_sql:.2f} x load's SQL alone)  ingest → validate → enrich → transform → load, 7 processes")
print(f"loaded − received     p50 {p50} ms, p99 {p99} ms  (the {count} events pushed at once: mostly queueing)")
l = paced["loaded_minus_received_ms"]
print(f"  at {paced['rate_events_per_s']:,} events/s   p50 {l['p50']} ms, p95 {l['p95']} ms, p99 {l['p99']} ms, max {l['max']} ms"
      f"  ({paced['seconds']} s, uploads of {paced['batch']}, {paced['achieved_events_per_s']:,} events/s sent, {paced['loaded']:,} loaded, {paced['uploads_sent_late']} uploads late)")
print(f"raw XREADGROUP        {xreadgroup:>9} entries/s  (COUNT 500)")
print("cold start, median of 10 (process start to /health/ready 200):")
print("  " + ", ".join(f"{k} {v['median_ms']} ms" for k, v in cold.items()))
print(f"container start, median of 10 (podman run of the image to /health/ready 200): validate {container['median_ms']} ms "
      f"({container['median_ms'] / cold['validate']['median_ms']:.1f} x the process alone)")
c = csv_upload
print(f"CSV of {c['bytes'] / 1e6:.0f} MB ({c['events']:,} events) through the gateway, stages paused: 202 after {c['seconds_to_202']} s ({c['mb_per_s_to_202']} MB/s), "
      f"completed after {c['seconds_to_completed']} s; peak RSS ingest {c['peak_rss_mb']['ingest']} MB, gateway {c['peak_rss_mb']['gateway']} MB; counts match: {c['counts_match_manifest']}")
d = csv_dataset
print(f"CSV dataset           {d['rows_per_s']:>9} rows/s  ({d['rows']:,} orders, {d['bytes'] / 1e6:.0f} MB, to a new dataset detected on upload, "
      f"through the gateway, every stage running: completed after {d['seconds_to_completed']} s; {d['rows_in_table']:,} rows in its table; counts match: {d['counts_match']})")
print(f"peak RSS per process  {max(peaks) / 1024:.1f} MB at most")
print(f"Redis dedup marks     {dedup_bytes} bytes per event, {dedup_marks:,} after the run; kept {dedup_ttl_hours} h (dedup_ttl): "
      f"{dedup_gib_per_1000} GiB of Redis memory per 1,000 events/s sustained")
total = sum(cpu_us_per_event.values())
print(f"CPU per event         {total:.1f} µs in all (so 2 cores allow at most {2e6 / total:,.0f} events/s): "
      + ", ".join(f"{k} {v}" for k, v in sorted(cpu_us_per_event.items(), key=lambda kv: -kv[1])))
print(f"job {job['status']}: {json.dumps(job['counts'])}")
print(f"GET /api/v1/jobs/{{id}}, wrk -t2 -c16 -d8s:")
print(f"  ingest directly     {direct_rps:>9} requests/s, p99 {direct_p99} ms  (no token)")
print(f"  gateway, HS256      {hs_rps:>9} requests/s, p99 {hs_p99} ms  ({hs_rps / direct_rps:.2f} x direct)")
print(f"  gateway, RS256      {rs_rps:>9} requests/s, p99 {rs_p99} ms  ({rs_rps / direct_rps:.2f} x direct; verified tokens cached)")
print(f"validate, 500 events   {privacy_ms} ms with pii-mask + consent + geo-restrict, {mask_ms} ms with pii-mask only, {nomask_ms} ms with none")
print(f"                       (POST /invoke, mean of 18 chunks each after 2 to warm up; a fifth of the events carry PII)")
print(f"erasure of one subject {erasure_ms} ms, {erased_rows} rows removed from the 1,000,000-row warehouse (DELETE /api/v1/subjects, through the gateway)")
print(f"analytics summary on 1,000,000 rows over 24 h (through the gateway, median of 7; rollups vs exact=true):")
print(f"  rollups caught up   {catch_up} s after the million-row INSERT")
print(f"  last hour by minute {hour_1m:>7} ms  (exact {hour_1m_exact} ms)")
print(f"  last day by hour    {day_1h:>7} ms  (exact {day_1h_exact} ms, all 1,000,000 rows)")
print(f"  last day by minute  {day_1m:>7} ms  (exact {day_1m_exact} ms, 1,440 windows)")
if direct_bad or hs_bad or rs_bad:
    print(f"NON-2XX ANSWERS: direct {direct_bad}, HS256 {hs_bad}, RS256 {rs_bad}")
    sys.exit(1)
if mismatches:
    print(f"COUNTS DIFFER FROM THE MANIFEST (got, expected): {mismatches}")
    sys.exit(1)
if not csv_dataset["counts_match"]:
    print("THE CSV DATASET'S ROWS DIFFER FROM ITS UPLOAD")
    sys.exit(1)
if not csv_upload["counts_match_manifest"] or paced["refused"]:
    print("THE CSV JOB'S COUNTS DIFFER FROM ITS MANIFEST, OR PACED UPLOADS WERE REFUSED")
    sys.exit(1)
PY
