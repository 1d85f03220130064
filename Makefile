# RustyGate build, test and benchmark entry points.
#
#   make build     static binary in bin/rustygate
#   make run       build, start the demo backend on :8001 and the gateway
#                  with config/default.yaml (Ctrl-C stops both)
#   make test      lint, then the whole test suite with the race detector
#   make test-conformance  the http-wasm TCK through the gateway (in make test too)
#   make test-kubernetes   the Kubernetes provider against a real API server
#   make lint      gofmt (must list nothing) and go vet
#   make bench     Go micro-benchmarks, then the peer comparison
#                  (test/bench/peer.sh FULL=1: nginx, RustyGate, HAProxy;
#                  HTTP and HTTPS; every RustyGate feature row; the scaling
#                  table, 1 and 2 loops against 1 and 2 nginx workers pinned
#                  with taskset; HTTP/2; and last the targets summary;
#                  peer.sh takes about 18 minutes on 2 CPUs)
#   make soak      bounded soak run checking RSS and goroutines stay flat
#   make idlemem   memory per idle keep-alive connection (0, 10k, 50k)
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
	./l7:FuzzParseRequest \
	./l7:FuzzNormalizePath

# Extra flags for the soak program (see test/soak/main.go), e.g.
#   make soak SOAK_FLAGS='-requests 200000 -concurrency 32'
SOAK_FLAGS ?=

# Flags for test/idlemem, e.g. IDLEMEM_FLAGS='-conns 0,10000 -loops off'.
IDLEMEM_FLAGS ?=

.PHONY: all build run test lint bench soak idlemem idlemem-vm fuzz clean

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

# test-kernels runs the BPF tests (loader/, l4/, test/kernels/guest) inside
# each kernel of test/kernels/kernels.list (Debian 6.1 and 6.12 LTS),
# booted with qemu under software emulation; fails unless all pass on
# every kernel. Needs root, qemu-system-x86, busybox-static and cpio.
# Kernels and initramfs images are cached in /var/cache/rustygate-kernels;
# logs and the summary in test/kernels/out/. One kernel:
#   make test-kernels KERNELS=6.12
# See docs/kernels.md.
.PHONY: test-kernels
test-kernels:
	KERNELS='$(KERNELS)' GO='$(GO)' test/kernels/run.sh

# test-kubernetes runs the Kubernetes provider tests (build tag
# kubernetes) against a real kube-apiserver and etcd, built from their Go
# modules by tools/kube/assets.sh (cold: about 5 minutes on 2 cores) and
# cached in /var/cache/rustygate-k8s; controller-runtime's envtest starts
# them from KUBEBUILDER_ASSETS, offline. Needs root (network namespaces
# for the backends). See docs/kubernetes.md.
.PHONY: test-kubernetes
test-kubernetes:
	assets=$$(GO='$(GO)' tools/kube/assets.sh); \
	KUBEBUILDER_ASSETS=$$assets $(GO) test -tags kubernetes $(TEST_FLAGS) -run 'Kubernetes|Translate' ./test/ ./providers/kubernetes/

# test-browser runs only the real-browser CORS test (test/e2e_browser_test.go),
# which needs headless Chromium (Debian package chromium).
.PHONY: test-browser
test-browser:
	$(GO) test -race -count=1 -run TestBrowser ./test/

# test-conformance runs only the official http-wasm TCK through the gateway
# on every engine (test/e2e_conformance_test.go; `make test` runs it too).
# The runner is bundled in test/conformance/http-wasm-tck/ (linux/amd64);
# RUSTYGATE_HTTP_WASM_TCK=/path/to/http-wasm-tck uses another one.
.PHONY: test-conformance
test-conformance:
	$(GO) test -race -count=1 -run TestHTTPWasmTCK -v ./test/

# test-acme runs the automatic HTTPS tests (certs/acme_test.go, and
# test/e2e_acme_test.go through the binary) against
# Pebble, Let's Encrypt's test CA, a tool of the module (go.mod's tool
# directive), which the tests build and start on loopback; `make test`
# runs them too. `make pebble` builds it into bin/pebble for manual use.
.PHONY: test-acme pebble
test-acme:
	$(GO) test -race -count=1 -run 'TestACME' ./certs/ ./test/

pebble:
	$(GO) build -o bin/pebble github.com/letsencrypt/pebble/v2/cmd/pebble

# jaeger builds the Jaeger all-in-one binary (module tools/jaeger, pinned
# there) into bin/jaeger unless it is already there: a cold build takes
# minutes and gives a binary of about 120 MB.
.PHONY: jaeger test-jaeger
jaeger:
	@if [ -x bin/jaeger ]; then \
		echo "bin/jaeger is already built (remove it to rebuild)"; \
	else \
		echo "building bin/jaeger (slow the first time)"; \
		cd tools/jaeger && $(GO) build -o ../../bin/jaeger github.com/jaegertracing/jaeger/cmd/jaeger; \
	fi

# test-jaeger runs the tracing end-to-end test (test/e2e_jaeger_test.go)
# against a real Jaeger started from bin/jaeger.
test-jaeger:
	$(MAKE) jaeger
	$(GO) test -race -count=1 -run TestJaeger ./test/

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
	$(GO) vet -tags kubernetes ./test/

bench: build
	$(GO) test -run '^$$' -bench . $(BENCH_FLAGS) ./...
	RG_BIN=$(BIN) FULL=1 test/bench/peer.sh

soak: build
	RG_BIN=$(BIN) $(GO) run ./test/soak -spawn $(SOAK_FLAGS)

idlemem:
	$(GO) run ./test/idlemem $(IDLEMEM_FLAGS)

# idlemem-vm measures 0, 10k and 50k idle connections in the 6.12 guest of
# the kernel matrix, where RLIMIT_NOFILE can be raised (the host may not
# allow 50,000 descriptors). Slow under emulation: 10-25 minutes.
idlemem-vm:
	RG_IDLEMEM=6.12 RG_KERNEL_MEM=2048 RG_KERNEL_TIMEOUT=1800 RG_L4SOAK=off KERNELS=6.12 \
		RG_KERNEL_LIST=test/kernels/idlemem.list RG_KERNEL_OUT=test/kernels/out-idlemem GO='$(GO)' test/kernels/run.sh

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		if ! $(GO) test -list "^$$fn\$$" "$$pkg" | grep -x "$$fn" >/dev/null; then \
			echo "fuzz: no $$fn in $$pkg (fix FUZZ_TARGETS)"; exit 1; \
		fi; \
		echo "== fuzz $$fn in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
	done

# WASM plugin examples (plugins/examples/NAME -> plugins/examples/NAME.wasm):
# http-wasm guests built as WASI reactors (//go:wasmexport needs
# -buildmode=c-shared, which exports _initialize instead of running main).
PLUGINS ?= add_header add_header_v2 deny loop trap

.PHONY: plugins
plugins:
	@for p in $(PLUGINS); do \
		cmd="$(GO) build -trimpath -buildmode=c-shared -o plugins/examples/$$p.wasm ./plugins/examples/$$p"; \
		echo "GOOS=wasip1 GOARCH=wasm $$cmd"; \
		GOOS=wasip1 GOARCH=wasm $$cmd; \
	done

clean:
	rm -rf bin/ test/bench/out/ test/soak/out/
	$(GO) clean -testcache

# generate rebuilds the eBPF programs (bpf/*.c) into their committed Go
# bindings and objects (bpf/*_bpfel.go, bpf/*_bpfel.o) with bpf2go, a Go
# tool of this module. Needs clang, llvm and libbpf-dev; CI regenerates and
# fails when the result differs from what is committed.
.PHONY: generate bench-kernel
generate:
	$(GO) generate ./bpf/

# bench-kernel floods a gateway in a network namespace and compares the
# kernel datapath with its userspace twin: gateway CPU and a legitimate
# client's latency (test/bench/kernel; needs root). Report in
# test/bench/out/kernel.md; flags via BENCH_KERNEL_FLAGS, e.g.
#   make bench-kernel BENCH_KERNEL_FLAGS='-rounds 1 -attempts 20000'
bench-kernel:
	$(GO) run ./test/bench/kernel $(BENCH_KERNEL_FLAGS)

# L4 (TCP proxy) benchmark and integrity soak.
#   bench-l4      test/l4bench/run.sh: direct, RustyGate (datapath splice and
#                 kernel; kernel is splice(2) until kernel splicing lands) and
#                 HAProxy mode tcp; table in test/l4bench/out/latest.md. Knobs
#                 via the environment (DURATION, ROUNDS, TARGETS, ...).
#   soak-l4       short integrity soak (CI, well under 90 s): checksummed
#                 64 MiB and 1 GiB transfers both ways, short connections and
#                 abrupt resets through a spawned gateway (test/l4soak).
#   soak-l4-long  the full soak: 200 x 64 MiB, 20 x 1 GiB, 10000 short
#                 connections, 1000 resets.
# Extra soak flags via L4SOAK_FLAGS, e.g. L4SOAK_FLAGS='-datapath kernel'.
L4SOAK_FLAGS ?=
.PHONY: bench-l4 soak-l4 soak-l4-long
bench-l4: build
	RG_BIN=$(BIN) test/l4bench/run.sh

soak-l4: build
	RG_BIN=$(BIN) $(GO) run ./test/l4soak -spawn -transfers64 20 -transfers1g 3 -short 2000 -resets 200 $(L4SOAK_FLAGS)

soak-l4-long: build
	RG_BIN=$(BIN) $(GO) run ./test/l4soak -spawn -transfers64 200 -transfers1g 20 -short 10000 -resets 1000 $(L4SOAK_FLAGS)

# release cross-compiles the static, stripped binaries the same way `build`
# does (CGO_ENABLED=0, -trimpath, LDFLAGS with the version and commit) for
# every platform in RELEASE_PLATFORMS into DIST (dist/ by default; it is
# emptied first), writes DIST/SHA256SUMS and lists the sizes. Linux binaries
# embed the eBPF objects (bpf/*_bpfel.o: little endian, amd64 and arm64
# alike); darwin binaries run the userspace datapath.
#   make release VERSION=v1.2.3
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64 darwin/arm64 darwin/amd64
DIST              ?= dist
SHA256SUM         ?= $(shell command -v sha256sum >/dev/null 2>&1 && echo sha256sum || echo 'shasum -a 256')

.PHONY: release
release:
	rm -rf $(DIST)
	mkdir -p $(DIST)
	@for p in $(RELEASE_PLATFORMS); do \
		os=$${p%%/*}; arch=$${p##*/}; out=$(DIST)/rustygate-$$os-$$arch; \
		echo "==> $$out ($(VERSION), commit $(COMMIT))"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$out ./cmd/rustygate; \
	done
	cd $(DIST) && $(SHA256SUM) rustygate-* > SHA256SUMS
	@echo "==> $(DIST)/SHA256SUMS"; cat $(DIST)/SHA256SUMS
	@echo "==> sizes"; for f in $(DIST)/rustygate-*; do \
		wc -c < $$f | awk -v f=$$f '{ printf "%10d bytes  %5.1f MiB  %s\n", $$1, $$1 / 1048576, f }'; \
	done

# Kernel splicing (sockmap) for l4 listeners with `datapath: kernel`:
#   soak-splice   the loader's integrity soak of kernel splicing (root)
#   bench-splice  splice(2) vs kernel splicing micro-benchmarks (root)
.PHONY: soak-splice bench-splice
soak-splice:
	RUSTYGATE_SPLICE_SOAK=1 $(GO) test -p 1 -count=1 -run TestSpliceIntegritySoak -v -timeout 60m ./loader/

bench-splice:
	$(GO) test -p 1 -run '^$$' -bench BenchmarkSplice ./loader/
