#!/usr/bin/env bash
# `make test`: installs what is missing, starts throwaway Redis and PostgreSQL, builds the
# release binary that the end-to-end tests run, runs every fuzz target for a few seconds
# (SLUICE_FUZZ_SECONDS, default 10; 0 skips), builds the image the container tests run
# (scripts/image.sh), runs `swift test` (arguments are passed on), and stops the servers
# whatever happens. `make chaos` is this with the chaos test alone at 100,000 events.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

servers=$(mktemp -d /tmp/sluice-test-XXXXXX)
trap 'scripts/servers.sh stop "$servers"' EXIT
scripts/servers.sh start "$servers" >/dev/null
# shellcheck disable=SC1091
source "$servers/env"

# Release once, as the image ships it (the Swift runtime linked in): some concurrency errors show
# only in release, the end-to-end tests run it, and scripts/image.sh below puts it in the image.
swift build -c release --static-swift-stdlib

# The fuzz smoke run: every parser's libFuzzer target, briefly (`make fuzz` runs them longer).
fuzz_seconds=${SLUICE_FUZZ_SECONDS:-10}
if (( fuzz_seconds > 0 )); then scripts/fuzz.sh "$fuzz_seconds"; fi

# The example functions' own tests (the end-to-end tests run them in the pipeline).
(cd examples/python-score && python3 -m unittest -q test_handler)
(cd examples/python-lambda && python3 -m unittest -q test_handler)
(cd examples/node-tag && node --test >/dev/null)
# The Swift package example (its own binary, depending on Sluice by path): its tests, and the
# binary the end-to-end tests run the pipeline with.
swift build --package-path examples/swift-risk --build-tests
swift test --package-path examples/swift-risk --skip-build

# openapi-spec-validator and schemathesis, for the gateway's API tests.
SLUICE_PYTHON=$(scripts/python-tools.sh)
export SLUICE_PYTHON
# The image, built with podman from the Dockerfile (and the base images it needs, made once).
SLUICE_IMAGE=$(scripts/image.sh)
export SLUICE_IMAGE
# shellcheck source=scripts/podman-env.sh
source scripts/podman-env.sh
export SLUICE_BIN="$PWD/.build/release/sluice"
export SLUICE_TEST_SERVERS_DIR="$servers"
export SLUICE_SERVERS_SCRIPT="$PWD/scripts/servers.sh"
# One test at a time: the end-to-end tests each run a pipeline of processes on 2 cores.
swift test --no-parallel "$@"
