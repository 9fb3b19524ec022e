#!/usr/bin/env bash
# The cost of the hop to a function in a process of its own (`make bench` runs it; alone:
# `scripts/bench-hop.sh [SLUICE_BINARY]`). The same no-op — every event forwarded unchanged — in
# process (bench/functions/noop: filter, in the sluice process), in a Python process
# (noop-python, standard library), in a Swift process (noop-swift: `sluice process noop`) and in
# the Swift process `sluice new --lang swift` writes (noop-swiftc: Foundation's JSON coders),
# each called by `sluice invoke NAME --repeat N` one chunk at a time, with chunks of 1 and of 500
# events. Writes bench/results/hop.json and prints each call's p50 / p90 and the hop's cost:
# per chunk (1 event, minus in process) and per event (500 events, minus in process, / 500),
# and each as a ratio to in process, all from this one run.
#   BENCH_HOP_CALLS (default 2000 calls of 1 event; a tenth as many of 500 events)
set -euo pipefail
cd "$(dirname "$0")/.."
sluice=${1:-$PWD/.build/release/sluice}
calls=${BENCH_HOP_CALLS:-2000}
work=$(mktemp -d /tmp/sluice-hop-XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import json, sys
event = {"metadata": {"event_id": "e-1", "timestamp": "2026-12-01T00:00:00Z", "version": "1.0.0", "source": "bench"},
         "user": {"id": "u-1", "session_id": "s-1"}, "context": {"device_type": "mobile", "location": {"country": "DE"}},
         "payload": {"event_type": "click", "properties": {"page": "/p/1", "value": 0}}}
for n in (1, 500):
    with open(f"{sys.argv[1]}/events-{n}.ndjson", "w") as out:
        out.writelines(json.dumps(dict(event, id=f"e-{i}", metadata=dict(event["metadata"], event_id=f"e-{i}"))) + "\n" for i in range(n))
PY
# The functions: bench/functions, and the Swift function `sluice new --lang swift` writes, as it
# comes (every event kept), built with -O. `sluice process` is found on PATH by noop-swift's
# manifest; nothing here needs Redis or PostgreSQL.
cp -r bench/functions "$work/functions"
"$sluice" new noop-swiftc --lang swift --directory "$work/functions/noop-swiftc" > /dev/null
cat > "$work/functions/noop-swiftc/function.yaml" <<'YAML'
description: Keeps every event, in the Swift process `sluice new --lang swift` writes, built with -O.
runtime:
  build: [sh, build.sh, release]
  command: [.build/noop-swiftc]
triggers: [{stream: noop-swiftc}]
YAML
export PATH="$(dirname "$sluice"):$PATH" SLUICE_FUNCTIONS_DIR=$work/functions SLUICE_LOG_LEVEL=warning
for function in noop noop-python noop-swift noop-swiftc; do
  "$sluice" invoke "$function" --file "$work/events-1.ndjson" --repeat "$calls" >> "$work/results.ndjson"
  "$sluice" invoke "$function" --file "$work/events-500.ndjson" --repeat $((calls / 10)) >> "$work/results.ndjson"
done
python3 - "$work/results.ndjson" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
by = {(r["function"], r["events"]): r for r in rows}
base1, base500 = by[("noop", 1)], by[("noop", 500)]
result = {"calls": {f"{k[0]}/{k[1]}": v for k, v in by.items()}, "hop": {}}
print("the hop to a function's process (a no-op; `sluice invoke --repeat`, one chunk at a time):")
print(f"  in process        1 event: p50 {base1['p50_ms']} ms, p90 {base1['p90_ms']} ms; 500 events: p50 {base500['p50_ms']} ms")
for name, label in (("noop-python", "Python process"), ("noop-swift", "Swift process"), ("noop-swiftc", "Swift (sluice new)")):
    one, many = by[(name, 1)], by[(name, 500)]
    hop = {
        "per_chunk_p50_ms": round(one["p50_ms"] - base1["p50_ms"], 3),
        "per_chunk_p90_ms": round(one["p90_ms"] - base1["p90_ms"], 3),
        "per_event_us": round((many["mean_ms"] - base500["mean_ms"]) * 1000 / 500, 2),
        "ratio_to_in_process_1_event_p50": round(one["p50_ms"] / base1["p50_ms"], 1),
        "ratio_to_in_process_500_events_mean": round(many["mean_ms"] / base500["mean_ms"], 1),
    }
    result["hop"][name] = hop
    print(f"  {label:<16}  1 event: p50 {one['p50_ms']} ms, p90 {one['p90_ms']} ms; 500 events: p50 {many['p50_ms']} ms"
          f"  → the hop: {hop['per_chunk_p90_ms']} ms p90 per chunk, {hop['per_event_us']} µs per event"
          f" ({hop['ratio_to_in_process_500_events_mean']} x in process for 500 events)")
print("  (Dapr publishes 1.4 ms p90 added per service invocation through its sidecars)")
json.dump(result, open("bench/results/hop.json", "w"), indent=1)
PY
