# redraft: the two commands a new user needs are `make run` and `make test`.
GO      ?= go
BIN     := bin/redraft
PKGS    := ./...
export GOFLAGS := -buildvcs=false

.PHONY: all build run test test-unit test-integration test-e2e chaos bench fuzz lint deps deps-browser clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/redraft

## run: build and start a local demo cluster (3 nodes, 2 redis-server groups); Ctrl-C stops it.
run: deps build
	bash scripts/run-local.sh

## test: every test (unit, in-process and integration with real redis-server), with -race.
## Packages run one at a time (-p 1): the latency bounds they assert are about redraft, not
## about two test binaries fighting over two cores.
test: deps deps-browser lint
	$(GO) test -race -count=1 -p 1 -timeout 25m $(PKGS)

test-unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

test-integration: deps deps-browser
	$(GO) test -race -count=1 -timeout 20m ./integration/...

test-e2e:
	bash scripts/e2e.sh

## chaos: the fault-injection suite (docs/faults.md) for DURATION (default 10m) with faults
## drawn from SEED (default: random, printed), built without -race; XDC=1 runs it over three
## DCs, then the convergence test TestConvergeLong for another DURATION; CONVERGE=1 runs only
## TestConvergeLong. Prints a summary and fails on any violation. Example: make chaos SEED=7 DURATION=3m
SEED     ?=
DURATION ?= 10m
CHAOS_TESTS = $(if $(CONVERGE),TestConvergeLong,$(if $(XDC),TestChaosXDC|TestConvergeLong,TestChaos))
chaos: deps
	REDRAFT_CHAOS_SEED=$(SEED) REDRAFT_CHAOS_DURATION=$(DURATION) \
	  $(GO) test -count=1 -v -timeout 0 -run '^($(CHAOS_TESTS))$$' ./integration/

## bench: redis-benchmark against Redis directly and through redraft, with ratios.
bench: deps
	bash scripts/bench.sh

## fuzz: run the RESP reader fuzzer for a while (its seed corpus runs in `make test`).
fuzz:
	$(GO) test ./router/resp -run '^$$' -fuzz Fuzz -fuzztime 60s

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## deps: install redis-server and redis-tools from Debian's packages when missing.
deps:
	@bash scripts/ensure-redis.sh

## deps-browser: install chromium from Debian's packages when missing (the dashboard's browser
## tests, integration/dashboard_test.go; `make run` does not need it).
deps-browser:
	@bash scripts/ensure-chromium.sh

clean:
	rm -rf bin .run
