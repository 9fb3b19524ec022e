# Sluice: `make dev` runs everything locally, `make test` proves it against real servers.
SHELL := /bin/bash

.PHONY: deps build image dev test unit bench bench-ab bench-hop soak chaos fuzz render clean

deps:
	scripts/install-deps.sh

build: deps
	swift build -c release --static-swift-stdlib

# The image (localhost/sluice:latest) with podman, from the Dockerfile; see docs/deploying.md.
image: deps
	scripts/image.sh

dev: build
	.build/release/sluice dev

test:
	scripts/test.sh

# The fast loop, before every commit: the unit tests (no servers, no processes), in parallel;
# the linear-cost checks (megabyte inputs timed against each other) run in `make test`.
unit:
	swift test --parallel --skip SluiceEndToEndTests --skip SluiceIntegrationTests --skip LinearCostTests

bench: deps
	scripts/bench.sh

# The hop to a function's own process alone (also part of `make bench`).
bench-hop: deps
	swift build -c release --static-swift-stdlib
	scripts/bench-hop.sh

# This build's pipeline against another binary, in one run: `make bench-ab BASELINE=/path/to/sluice`.
bench-ab: deps
	scripts/bench-ab.sh

# The paced load alone (5,000 events/s) for BENCH_SOAK_SECONDS (600), memory sampled every 5 s.
soak: deps
	BENCH_SOAK_SECONDS=$${BENCH_SOAK_SECONDS:-600} scripts/bench.sh

# kill -9 of every function, redis-server and PostgreSQL in turn during a 100,000-event run.
chaos:
	SLUICE_CHAOS_EVENTS=100000 SLUICE_CHAOS_ROUNDS=2 SLUICE_FUZZ_SECONDS=0 scripts/test.sh --filter ChaosEndToEndTests

# Every parser's libFuzzer target for FUZZ_SECONDS each (default 300).
fuzz: deps
	scripts/fuzz.sh $${FUZZ_SECONDS:-300}

# Writes infra/ from functions/ (a test fails when it is out of date).
render:
	swift build -c release --static-swift-stdlib --product sluice
	SLUICE_FUNCTIONS_DIR=functions .build/release/sluice render k8s > infra/k8s.yaml
	SLUICE_FUNCTIONS_DIR=functions .build/release/sluice render compose > infra/compose.yaml

clean:
	rm -rf .build .sluice
