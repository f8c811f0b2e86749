# baton's Makefile. `make` (or `make help`) lists the targets: every target
# with a `## ` comment is documented there.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

GO ?= go
# golangci-lint installed with `go install` lands here; put it on PATH.
export PATH := $(shell $(GO) env GOPATH)/bin:$(PATH)
GOLANGCI_LINT_VERSION ?= v2.15.0
TEST_TIMEOUT ?= 15m
FUZZTIME ?= 20s
BENCH_ARGS ?=
CHAOS_ARGS ?=
# The packages holding the tests behind the build tag topology.
TOPOLOGY_PKGS ?= ./internal/redistest/ ./internal/topology/ ./internal/asynqx/
TOPOLOGY_TIMEOUT ?= 5m

.PHONY: help build test test/short test/race test/topology test/browser lint bench chaos demo fuzz tidy clean

help: ## Show this list of targets
	@echo "Usage: make <target> [VAR=value]"
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z0-9_\/-]+:.*## / { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo
	@echo "Variables: GO=$(GO) TEST_TIMEOUT=$(TEST_TIMEOUT) TOPOLOGY_TIMEOUT=$(TOPOLOGY_TIMEOUT) FUZZTIME=$(FUZZTIME) BENCH_ARGS= CHAOS_ARGS="

build: ## Build the CLI into bin/baton
	$(GO) build -o bin/baton ./cmd/baton

test: ## Run all tests with the race detector (installs redis-server and gcc if missing, as root)
	@scripts/ensure-redis.sh --with-cc
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

test/short: ## Run all tests without the race detector (faster)
	@scripts/ensure-redis.sh
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

test/race: test ## Alias of test

test/topology: ## Cluster and Sentinel tests on real nodes: a 3+3 Redis Cluster, a master, a replica and 3 sentinels (build tag topology)
	@scripts/ensure-redis.sh --with-cc --topology
	$(GO) test -race -count=1 -timeout $(TOPOLOGY_TIMEOUT) -tags topology $(TOPOLOGY_PKGS)

test/browser: ## Headless Chromium test of the dashboard (installs chromium as root when missing)
	@scripts/ensure-redis.sh
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else echo "chromium is missing: install it with: sudo apt-get install -y chromium chromium-driver"; exit 1; fi; }
	BATON_ARTIFACTS=$${BATON_ARTIFACTS:-$(CURDIR)/artifacts} $(GO) test -tags browser -count=1 -run TestBrowser -v ./dash

lint: ## Check gofmt, run go vet and golangci-lint (when installed), with and without the topology tag
	@files="$$(gofmt -l .)"; \
	if [ -n "$$files" ]; then \
		echo "gofmt: these files are not formatted (fix with: gofmt -w .):"; \
		echo "$$files"; \
		exit 1; \
	fi
	$(GO) vet ./...
	$(GO) vet -tags topology ./...
	@if command -v golangci-lint >/dev/null 2>&1; then \
		echo "golangci-lint run ./... (and again with the topology build tag)"; \
		golangci-lint run ./...; \
		golangci-lint run --build-tags topology ./...; \
	else \
		echo "golangci-lint not installed, skipped; install: $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)"; \
	fi

bench: ## Run the throughput benchmark (go run ./cmd/baton bench $$BENCH_ARGS)
	$(GO) run ./cmd/baton bench $(BENCH_ARGS)

ASYNQX_BENCH_ARGS ?=
.PHONY: bench/asynqx
bench/asynqx: ## Measure internal/asynqx (batched dequeue, group commit, fused completion) against raw asynq ($$ASYNQX_BENCH_ARGS)
	$(GO) run ./internal/asynqx/asynqxbench $(ASYNQX_BENCH_ARGS)

chaos: ## Run the chaos suite (kills workers and Redis mid-run)
	$(GO) run ./internal/chaos $(CHAOS_ARGS)

demo: ## Run the research pipeline demo on an embedded Redis
	$(GO) run ./cmd/baton demo

fuzz: ## Run every Fuzz target for FUZZTIME (default 20s) each
	@targets="$$($(GO) test -list '^Fuzz' ./... | awk '/^Fuzz/ { names = names " " $$1; next } /^ok / { n = split(names, a, " "); for (i = 1; i <= n; i++) print $$2, a[i]; names = "" } /^(\?|FAIL)/ { names = "" }')"; \
	if [ -z "$$targets" ]; then echo "no Fuzz targets found"; exit 0; fi; \
	while read -r pkg name; do \
		echo "==> $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
	done <<< "$$targets"

tidy: ## Tidy go.mod and go.sum
	$(GO) mod tidy

clean: ## Remove build output (bin/)
	rm -rf bin
