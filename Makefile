# RustyGate build, test and benchmark entry points.
#
#   make build     static binary in bin/rustygate
#   make run       build, start the demo backend on :8001 and the gateway
#                  with config/default.yaml (Ctrl-C stops both)
#   make test      lint, then the whole test suite with the race detector
#   make lint      gofmt (must list nothing) and go vet
#   make bench     Go micro-benchmarks, then the peer comparison
#                  (test/bench/peer.sh: nginx, RustyGate, HAProxy)
#   make soak      bounded soak run checking RSS and goroutines stay flat
#   make fuzz      each fuzz target in FUZZ_TARGETS for FUZZTIME
#   make clean     remove build and benchmark output
#
# Knobs: GO, VERSION, COMMIT, FUZZTIME, FUZZ_TARGETS, SOAK_FLAGS,
# TEST_FLAGS, BENCH_FLAGS.

SHELL        := bash
.SHELLFLAGS  := -eu -o pipefail -c

GO       ?= go
GOFMT    ?= gofmt
BIN      ?= bin/rustygate
CONFIG   ?= config/default.yaml

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

TEST_FLAGS  ?= -race -count=1 -timeout 20m
BENCH_FLAGS ?= -benchmem

# Fuzz targets as package:FuzzFunc. Add a new target by appending to this list.
FUZZTIME     ?= 30s
FUZZ_TARGETS ?= \
	./config:FuzzParse \
	./l7:FuzzRouter \
	./l7:FuzzParseRequest

# Extra flags for the soak program (see test/soak/main.go), e.g.
#   make soak SOAK_FLAGS='-requests 200000 -concurrency 32'
SOAK_FLAGS ?=

.PHONY: all build run test lint bench soak fuzz clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rustygate

# The demo backend runs in the background for as long as the gateway runs in
# the foreground; the trap stops it however the gateway ends (exit, Ctrl-C).
run: build
	@$(BIN) demo-backend --listen :8001 & demo=$$!; \
	trap 'kill $$demo 2>/dev/null || true; wait $$demo 2>/dev/null || true' EXIT; \
	trap 'exit 130' INT; trap 'exit 143' TERM; \
	echo "demo backend pid $$demo on :8001; gateway config $(CONFIG) (Ctrl-C stops both)"; \
	$(BIN) run -c $(CONFIG)

test: lint
	$(GO) test $(TEST_FLAGS) ./...

lint:
	@files=$$(find . -name '*.go' -not -path './vendor/*' -not -path '*/testdata/*' -not -path './.git/*'); \
	if [ -n "$$files" ]; then \
		unformatted=$$($(GOFMT) -l $$files); \
		if [ -n "$$unformatted" ]; then \
			echo "gofmt: these files need formatting (run gofmt -w):"; \
			echo "$$unformatted"; \
			exit 1; \
		fi; \
	fi
	$(GO) vet ./...

bench: build
	$(GO) test -run '^$$' -bench . $(BENCH_FLAGS) ./...
	RG_BIN=$(BIN) test/bench/peer.sh

soak: build
	RG_BIN=$(BIN) $(GO) run ./test/soak -spawn $(SOAK_FLAGS)

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		if ! $(GO) test -list "^$$fn\$$" "$$pkg" | grep -x "$$fn" >/dev/null; then \
			echo "fuzz: no $$fn in $$pkg (fix FUZZ_TARGETS)"; exit 1; \
		fi; \
		echo "== fuzz $$fn in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
	done

clean:
	rm -rf bin/ test/bench/out/ test/soak/out/
	$(GO) clean -testcache
