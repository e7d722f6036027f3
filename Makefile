# Ferry: thin wrappers over scripts/, CMake and CTest. `make help` lists the targets.
BUILD ?= build
JOBS  ?= $(shell nproc)
BUILD_TYPE ?= RelWithDebInfo

.PHONY: help deps build run run-ha demo console-screenshots bench bench-relay test test-unit test-integration test-e2e format clean up down compose-test chaos fuzz

help:
	@echo "make run               install, build, start PostgreSQL under .ferry/ and ferry-broker on 127.0.0.1:7420"
	@echo "make run-ha            the same on a pg_auto_failover formation (monitor + 3 nodes) under .ferry/ha, 2 brokers"
	@echo "make test              install, build, run every test on a temporary PostgreSQL"
	@echo "make test-unit | test-integration | test-e2e   one label only"
	@echo "make demo              the order/cart example end to end (outbox, relay, inbox)"
	@echo "make bench             the standard workloads (W1-W5, pg-limit) -> bench/RESULTS.md"
	@echo "make bench-relay       relay throughput and latency on this machine"
	@echo "make up | down         docker-compose stack: postgres, migrate, 2 brokers, relay, order/cart"
	@echo "make compose-test      build the images, start each stack (simple, HA), test it, stop it (works offline)"
	@echo "make chaos             fault injection (broker kills, PostgreSQL crashes, relay kills, failovers), checked"
	@echo "make fuzz              libFuzzer targets (clang), 60 s each"
	@echo "make console-screenshots  the console's browser tests, saving docs/console/*.png (1280x800)"
	@echo "make build | deps | format | clean"

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

run: build
	@scripts/run-local.sh

run-ha: build
	@scripts/run-local.sh --ha

demo: build
	@scripts/demo.sh

bench: build
	@bench/run.sh

bench-relay: build
	@bench/relay.sh

test: build
	@scripts/with-test-postgres.sh ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)

console-screenshots: build
	@FERRY_BIN=$(BUILD)/bin FERRY_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console scripts/with-test-postgres.sh \
	  node --test tests/console/console.test.mjs

test-unit: build
	@ctest --test-dir $(BUILD) --output-on-failure -L unit

test-integration: build
	@scripts/with-test-postgres.sh ctest --test-dir $(BUILD) --output-on-failure -L integration

test-e2e: build
	@scripts/with-test-postgres.sh ctest --test-dir $(BUILD) --output-on-failure -L e2e

format:
	@find services tests bench fuzz examples -name node_modules -prune -o \( -name '*.cc' -o -name '*.h' \) -print | xargs clang-format -i

clean:
	@rm -rf $(BUILD)

# docker-compose (deploy/README.md). `up` expects a Docker engine and the debian:bookworm image
# (on a machine without a registry, `make compose-test` shows how both are made).
up:
	@docker-compose up -d --build

down:
	@docker-compose down

compose-test:
	@scripts/compose-test.sh

chaos: build
	@tests/chaos/run.sh $(or $(CHAOS_SECONDS),60)

fuzz: deps
	@scripts/fuzz.sh $(or $(FUZZ_SECONDS),60)
