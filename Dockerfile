# syntax=docker/dockerfile:1
#
# RustyGate container image: a static binary on distroless, running as the
# non-root user (uid 65532) by default.
#
#   docker build -t rustygate --build-arg VERSION=$(git describe --tags --always --dirty) \
#       --build-arg COMMIT=$(git rev-parse --short HEAD) .
#   docker run --rm -p 8080:8080 rustygate             # curl localhost:8080/
#   docker run --rm -p 8080:8080 -p 127.0.0.1:8081:8081 \
#       -v "$PWD/conf:/etc/rustygate:ro" rustygate     # conf/config.yaml
#
# Needs BuildKit (the default builder since Docker 23; on older Docker set
# DOCKER_BUILDKIT=1). Multi-arch: docker buildx build --platform
# linux/amd64,linux/arm64 .
# (the builder runs on the build machine and cross-compiles; the eBPF
# objects embedded in the binary are little endian, valid on both).
#
# The binary is built by `make build`, the same target developers and CI
# use: CGO_ENABLED=0, -trimpath, -ldflags "-s -w -X main.version=...
# -X main.commit=..." (see the Makefile's LDFLAGS). `go test ./deploy/`
# checks that this stays so.
#
# Configuration: /etc/rustygate/config.yaml ($RUSTYGATE_CONFIG), a copy of
# config/container.yaml: no backend needed (GET / answers "RustyGate is
# running", other paths 404), the admin listener on 0.0.0.0:8081 because
# the gateway's own default, 127.0.0.1:8081, is unreachable from outside a
# container. Mount a directory over /etc/rustygate (not a single file) with
# your config.yaml; edits are hot-reloaded: the gateway watches the
# directory and picks up renames and Kubernetes ConfigMap symlink swaps.
# Your file must set admin.listen too (e.g. "0.0.0.0:8081") for probes and
# metrics from outside the container.
#
# Health: distroless has no shell and no curl, so there is no HEALTHCHECK
# instruction. Probe the admin listener from outside instead:
#   curl -fsS http://HOST:8081/livez          -> 200 "ok" (alive; /healthz too)
#   curl -fsS http://HOST:8081/readyz         -> 200 "ready", 503 while starting or draining
# (Kubernetes: httpGet probes on /livez and /readyz, port 8081; see deploy/helm.)
#
# Kernel datapath (XDP/TCX connection limiter, bans; docs/kernel-datapath.md).
# The default user has no capabilities, so the gateway runs the userspace
# datapath (datapath.mode auto falls back with reason no_privileges, or
# not_needed when nothing needs the kernel). For the kernel datapath run as
# root inside the container with only the capabilities it needs (Docker gives
# a non-root user no ambient capabilities), share the host's bpffs so the
# pinned maps outlive the container and `bpftool` on the host sees them, and
# use the host's network to guard the host's interfaces:
#
#   docker run --rm --user 0:0 --network host \
#       --cap-drop ALL --cap-add BPF --cap-add NET_ADMIN --cap-add PERFMON \
#       -v /sys/fs/bpf:/sys/fs/bpf \
#       -v "$PWD/conf:/etc/rustygate:ro" rustygate
#
# CAP_BPF loads the programs and maps, CAP_NET_ADMIN attaches them, CAP_PERFMON
# relaxes the verifier for a CAP_BPF loader. CAP_SYS_ADMIN is not needed: the
# gateway would need it only to mount bpffs itself, and the -v above brings in
# the host's, already mounted. So the host must have bpffs at /sys/fs/bpf
# (systemd mounts it at boot; otherwise run `mount -t bpf bpf /sys/fs/bpf` on
# the host first). uid 0 owns the host's /sys/fs/bpf, so the gateway can
# create its pin directory (datapath.bpffs) there.
# `rustygate bpf status` lists links only with CAP_SYS_ADMIN: run it as root
# on the host, or with `docker exec --privileged`.
# Without --network host the limiter guards the container's own eth0. If the
# log says reason=no_bpf_syscall, the seccomp profile blocks bpf(2): use a
# newer Docker or a custom profile. On kernels before 5.11 also pass
# --ulimit memlock=-1.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS builder
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
ARG COMMIT=none
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    make build BIN=/out/rustygate VERSION=${VERSION} COMMIT=${COMMIT} \
    && mkdir -p /out/etc/rustygate \
    && cp config/container.yaml /out/etc/rustygate/config.yaml

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=none
LABEL org.opencontainers.image.title="RustyGate" \
      org.opencontainers.image.description="eBPF-accelerated L4/L7 reverse proxy and API gateway" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=builder /out/rustygate /usr/local/bin/rustygate
COPY --from=builder /out/etc/rustygate /etc/rustygate
ENV RUSTYGATE_CONFIG=/etc/rustygate/config.yaml
# 8080: the proxy listener (server.listen). The admin listener (8081:
# /livez, /readyz, /metrics, /admin/*) is not exposed, so that `docker run
# -P` does not publish it on every host address: publish it explicitly,
# on loopback (-p 127.0.0.1:8081:8081) or to the network your probes and
# Prometheus use.
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/rustygate"]
CMD ["run"]
