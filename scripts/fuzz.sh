#!/usr/bin/env bash
# `make fuzz` (and, for a few seconds each, `make test`): builds the libFuzzer targets of Fuzz/
# with AddressSanitizer and runs each for SECONDS (default 300), starting from the bad-input
# corpus in Tests/Corpus, small gen_events.py workloads and what earlier runs found
# (.build/fuzz/corpus/TARGET). A crash, a sanitizer report or a broken property (see
# Fuzz/Sources/FuzzSupport) fails the run and leaves the input under .build/fuzz/artifacts/.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
shift $(( $# > 0 ? 1 : 0 ))
targets=("$@")
(( ${#targets[@]} )) || targets=(FuzzJSON FuzzNDJSON FuzzText FuzzJSONArray FuzzCSV FuzzXML FuzzChunk)
work=.build/fuzz
mkdir -p "$work/artifacts" "$work/seeds"

# SwiftPM keeps the file list of a path dependency (this package) from the first build: a
# source file added or removed since would be missing ("cannot find … in scope"), so the build
# starts over when the list changed.
sources=$(find Sources -name '*.swift' | sort | md5sum | cut -d' ' -f1)
if [[ -d $work/build && $(cat "$work/sources" 2>/dev/null) != "$sources" ]]; then rm -rf "$work/build"; fi
echo "$sources" >"$work/sources"
# (-Xswiftc: SwiftPM's --sanitize instruments only Fuzz/'s own targets; the parsers are in ours.)
swift build --package-path Fuzz -c release --build-path "$work/build" \
  --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log" >&2; echo "the fuzz targets did not build (log: $work/build.log)" >&2; exit 1; }
bin=$(swift build --package-path Fuzz -c release --build-path "$work/build" --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address --show-bin-path)

# Seeds: the corpus by format, and three well-formed events in every format gen_events.py
# writes (plain text has none: its seeds are the corpus's text and NDJSON files).
for format in ndjson json csv xml; do
  python3 ../shared/bench/gen_events.py --count 3 --seed 11 --format "$format" --now 2026-01-01T00:00:00Z \
    --out "$work/seeds/events.$format" >/dev/null
done
seeds() {
  local dir=$work/seeds/$1
  rm -rf "$dir"; mkdir -p "$dir"
  shift
  for ext in "$@"; do
    cp Tests/Corpus/uploads/*."$ext" "$dir/"
    if [[ -f $work/seeds/events.$ext ]]; then cp "$work/seeds/events.$ext" "$dir/"; fi
  done
  echo "$dir"
}
declare -A seed_dirs=(
  [FuzzJSON]=$(seeds json json ndjson) [FuzzNDJSON]=$(seeds ndjson ndjson) [FuzzText]=$(seeds text txt ndjson)
  [FuzzJSONArray]=$(seeds jsonarray json) [FuzzCSV]=$(seeds csv csv) [FuzzXML]=$(seeds xml xml)
)
chunk=$work/seeds/chunk; mkdir -p "$chunk"
events=$(python3 -c 'import json,sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1])], separators=(",",":")))' "$work/seeds/events.ndjson")
printf 'v\0001\000n\0003\000job\000j-1\000trace\0000af7651916cd43dd8448eb211c80319c\000received\0001700000000000\000events\000%s' "$events" >"$chunk/entry"
# A chunk of rows (version 2, as ingest writes a CSV upload's).
printf 'v\0002\000n\0002\000job\000j-1\000shape\000{"metadata":{"event_id":0},"user":{"id":1},"payload":{"properties":2}}\000rows\000[["e-1","u-1",{"page":"/p/1"}],["e-2",null,null]]' >"$chunk/rows"
seed_dirs[FuzzChunk]=$chunk

failed=()
for target in "${targets[@]}"; do
  corpus=$work/corpus/$target
  mkdir -p "$corpus"
  # Leak checks off: the Swift runtime keeps type metadata for the life of the process.
  if SWIFT_BACKTRACE=enable=no "$bin/$target" "$corpus" "${seed_dirs[$target]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -detect_leaks=0 -artifact_prefix="$work/artifacts/$target-" -print_final_stats=1 >"$work/$target.log" 2>&1; then
    runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$work/$target.log")
    echo "$target: ${runs:-?} inputs in ${seconds}s, no failure ($(find "$corpus" -type f | wc -l) in its corpus)"
  else
    echo "$target FAILED; the input is under $work/artifacts/, the report in $work/$target.log:" >&2
    grep -m1 -A12 -E 'Fatal error|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY' "$work/$target.log" >&2 || tail -20 "$work/$target.log" >&2
    failed+=("$target")
  fi
done
(( ${#failed[@]} == 0 )) || { echo "fuzz targets failed: ${failed[*]}" >&2; exit 1; }
