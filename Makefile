# Coffer build, test and local-cluster targets.
#
#   make build    static binary bin/coffer (CGO_ENABLED=0, -trimpath)
#   make run      build, then run a one-node in-memory dev server
#   make test     go vet, then every test (unit, cluster and e2e)
#   make cluster  start a local 3-node cluster (scripts/cluster.sh start)
#   make bench    the performance suite on a fresh local 3-node cluster
#   make fuzz     every go-fuzz target for FUZZTIME each (default 60s)
#   make docker   the coffer:latest image FROM scratch, and deploy/ (root key,
#                 TLS material) for docker-compose.yml
#   make clean    remove bin/ and tmp/

SHELL   := /bin/bash
GO      ?= go
BIN     := bin/coffer
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

# Test knobs: two packages at a time keeps 2-core CI machines responsive.
TEST_P       ?= 2
TEST_TIMEOUT ?= 9m
TEST_FLAGS   ?=

.PHONY: all build run test vet bench fuzz docker cluster cluster-stop cluster-status clean

all: build

# The Go build cache makes this cheap when nothing changed, so build always
# runs rather than tracking Go sources in make.
build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/coffer

run: build
	$(BIN) server -dev

# The standard performance suite on a fresh local 3-node cluster (5-15
# minutes with the default 1,000,000 secrets; BENCH_SECRETS=0 skips them).
BENCH_SECRETS ?= 1000000
bench: build
	$(GO) run ./scripts/benchsuite -bin $(BIN) -secrets $(BENCH_SECRETS)

# Every fuzz target in turn, FUZZTIME each (scripts/fuzz.sh; failing inputs
# land in the package's testdata/fuzz/ and fail the run).
FUZZTIME ?= 60s
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

docker: build
	scripts/docker-setup.sh

vet:
	$(GO) vet ./...

test: vet
	$(GO) test ./... -count=1 -p $(TEST_P) -timeout $(TEST_TIMEOUT) $(TEST_FLAGS)

# Progress goes to stderr and only the export lines to stdout, so
# `eval "$(make -s cluster)"` sets COFFER_ADDR and COFFER_TOKEN.
cluster:
	@$(MAKE) --no-print-directory -s build >&2
	@scripts/cluster.sh start

cluster-stop:
	@scripts/cluster.sh stop

cluster-status:
	@scripts/cluster.sh status

clean:
	-@if [ -x scripts/cluster.sh ]; then scripts/cluster.sh stop >/dev/null 2>&1 || true; fi
	rm -rf bin tmp
