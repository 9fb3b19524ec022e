# Sluice: `make dev` runs everything locally, `make test` proves it against real servers.
SHELL := /bin/bash

.PHONY: deps build dev test bench clean

deps:
	scripts/install-deps.sh

build: deps
	swift build -c release

dev: build
	.build/release/sluice dev

test:
	scripts/test.sh

bench: deps
	scripts/bench.sh

clean:
	rm -rf .build .sluice
