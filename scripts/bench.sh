#!/usr/bin/env bash
# `make bench`: the proving chain end to end on release builds, each function its own
# process, next to baselines measured in the same run on the same servers:
#   raw Redis  — redis-benchmark XADD of entries the size of a chunk's events
#   raw COPY   — psql \copy of the same rows into a table
# Writes bench/results/runtime.json and prints a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${BENCH_EVENTS:-200000}
scripts/install-deps.sh
swift build -c release >/dev/null

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
redis_port=$(cat "$servers/redis.port")

now() { date +%s.%N; }
rate() { python3 -c "import sys; print(round(float(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2]))))" "$@"; }

# Workload: the proving chain's events, as NDJSON and as CSV for the COPY baseline.
python3 - "$count" "$servers" <<'PY'
import json, sys
n, d = int(sys.argv[1]), sys.argv[2]
with open(f"{d}/events.ndjson", "w") as nd, open(f"{d}/rows.csv", "w") as csv:
    for i in range(n):
        e = {"id": f"b-{i}", "seq": i, "payload": {"text": f"event {i}: lorem ipsum dolor sit amet", "value": i / 8}}
        line = json.dumps(e, separators=(",", ":"))
        nd.write(line + "\n")
        csv.write(f'"{e["id"]}","' + line.replace('"', '""') + '"\n')
PY

# Baseline 1: raw XADD of ~120-byte entries, pipelined.
start=$(now)
redis-benchmark -p "$redis_port" -n "$count" -P 64 -q XADD bench:raw '*' f "$(head -c 120 /dev/zero | tr '\0' x)" >/dev/null
end=$(now)
raw_xadd=$(rate "$count" "$start" "$end")

# Baseline 2: raw COPY of the same rows.
psql "$SLUICE_DATABASE_URL" -qc "CREATE UNLOGGED TABLE bench_copy (event_id text, event jsonb)"
start=$(now)
psql "$SLUICE_DATABASE_URL" -qc "\\copy bench_copy FROM '$servers/rows.csv' CSV"
end=$(now)
raw_copy=$(rate "$count" "$start" "$end")

# Sluice: intake → filter → tag → sink, each its own process.
.build/release/sluice migrate >/dev/null
port=18080
for fn in intake filter tag sink; do
  .build/release/sluice serve "$fn" --port "$port" --host 127.0.0.1 >"$servers/$fn.log" 2>&1 &
  pids+=($!)
  port=$((port + 1))
done
for p in 18080 18081 18082 18083; do
  for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$p/health/ready" >/dev/null && break; sleep 0.05; done
done
start=$(now)
job=$(curl -fs -XPOST --data-binary "@$servers/events.ndjson" http://127.0.0.1:18080/intake | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
while :; do
  loaded=$(psql "$SLUICE_DATABASE_URL" -tAc "SELECT count(*) FROM sink_events WHERE job_id = '$job'")
  [[ "$loaded" -ge "$count" ]] && break
  sleep 0.05
done
end=$(now)
e2e=$(rate "$count" "$start" "$end")
latency=$(psql "$SLUICE_DATABASE_URL" -tAc "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric,1) || ' ' || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric,1) FROM (SELECT extract(epoch FROM loaded_at - (SELECT created_at FROM jobs WHERE id = '$job')) * 1000 AS ms FROM sink_events WHERE job_id = '$job') t")

mkdir -p bench/results
python3 - "$count" "$raw_xadd" "$raw_copy" "$e2e" "$latency" <<'PY'
import json, sys, platform, os
count, xadd, copy, e2e = (int(x) for x in sys.argv[1:5])
p50, p99 = (float(x) for x in sys.argv[5].split())
result = {
    "events": count, "machine": f"{os.cpu_count()} cores, {platform.machine()}",
    "raw_xadd_per_s": xadd, "raw_copy_rows_per_s": copy,
    "sluice_end_to_end_events_per_s": e2e, "ratio_to_raw_copy": round(e2e / copy, 3),
    "ms_since_upload_p50": p50, "ms_since_upload_p99": p99,
}
json.dump(result, open("bench/results/runtime.json", "w"), indent=1)
print(f"raw XADD           {xadd:>9} entries/s")
print(f"raw COPY           {copy:>9} rows/s")
print(f"sluice end to end  {e2e:>9} events/s  ({e2e / copy:.2f} x raw COPY)  intake → filter → tag → sink, 4 processes")
print(f"loaded after upload start: p50 {p50} ms, p99 {p99} ms")
PY
