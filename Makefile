# smsgate developer entry points. `make` alone lists them.
# The scripts behind them live in scripts/ and say what they do in their headers.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# cargo from rustup, also when ~/.cargo/env was never sourced (CI, sudo).
export PATH := $(PATH):$(HOME)/.cargo/bin

CARGO ?= cargo
# Extra arguments for `make bench` / `make test`, e.g. make bench ARGS="--help".
ARGS ?=

.PHONY: help up down logs test bench fmt lint build migrate sqlx-prepare clean-test-dbs

help: ## list the targets
	@echo "smsgate: make <target>"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-15s %s\n", $$1, $$2}'

up: ## start PostgreSQL/RabbitMQ if needed, build, migrate, run api + dispatcher + mock HKT in the background
	@scripts/up.sh

down: ## stop what `make up` started
	@scripts/down.sh

logs: ## follow the logs of the processes `make up` started
	@ls .run/*.log >/dev/null 2>&1 || { echo "no logs yet: run make up first"; exit 1; }
	tail -n 50 -F .run/*.log

test: ## run the whole test suite (sets up services; what CI runs)
	@scripts/test.sh $(ARGS)

bench: ## run the benchmark harness (starts its own stack of release binaries), write docs/benchmarks.md
	@scripts/ensure-services.sh
	@scripts/ensure-wrk.sh || true
	$(CARGO) build --release --locked -p smsgate-api -p smsgate-dispatcher -p smsgate-modem-agent -p smsgate-mock-hkt -p smsgate-bench --bins
	./target/release/bench $(ARGS)

fmt: ## format the code
	$(CARGO) fmt --all

lint: ## check formatting and run clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build: ## release build of every binary in the workspace
	$(CARGO) build --workspace --release

migrate: ## apply database migrations to DATABASE_URL (from the environment or .env)
	$(CARGO) run --release -p smsgate-api -- migrate

sqlx-prepare: ## rewrite .sqlx/ (the query macros' offline data) after changing a query; commit it
	@scripts/sqlx-prepare.sh $(ARGS)

clean-test-dbs: ## drop leftover smsgate_test_* databases
	@scripts/clean-test-dbs.sh
