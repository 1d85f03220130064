#!/usr/bin/env bash
# Peer comparison benchmark: RustyGate against nginx (and HAProxy when
# installed) as reverse proxies in front of the same nginx backend, all on
# 127.0.0.1, driven by wrk.
#
#   test/bench/peer.sh                 # the default targets, the scaling table, the targets summary
#   FULL=1 test/bench/peer.sh          # also every other feature variant (make bench)
#   DURATION=2 ROUNDS=1 test/bench/peer.sh
#   TARGETS="direct nginx" SCALING=0 test/bench/peer.sh
#   CPUS=16 test/bench/peer.sh         # the scaling table on 16 CPUs (the default: all)
#
# The report, in this order: the table of the targets below; the bar run;
# the HTTPS, compression and rate-limit tables of the targets that ran; the
# scaling table; the HTTP/2 rows (test/bench/h2peer.sh); and last the
# targets summary (see "Targets summary" below).
#
# Targets (each a process started by this script and stopped by a trap on
# exit, failure or Ctrl-C):
#   direct     the backend itself: nginx on 127.0.0.1:18001, 64-byte body
#              (the same nginx also answers on 127.0.0.1:18011, the second
#              backend of rg_2backends)
#   nginx      nginx reverse proxy on 127.0.0.1:18002 (access log off)
#   rustygate  RustyGate on 127.0.0.1:18080 (access log on, to a file)
#   rg_1cpu    RustyGate on 127.0.0.1:18087 started with GOMAXPROCS=1: one
#              CPU and one event loop, the nginx proxy's budget (one worker)
#              (rustygate-1cpu.yaml)
#   haproxy    HAProxy on 127.0.0.1:18003 (only when haproxy is installed)
# HTTPS targets, all serving the same ECDSA P-256 certificate (SANs localhost
# and 127.0.0.1), issued by a CA generated with openssl into the temporary
# directory at start-up, in front of the same backend:
#   nginx_tls  nginx reverse proxy over TLS on 127.0.0.1:18004, one worker
#              like the nginx row, TLS 1.2 and 1.3, shared session cache
#              (nginx-proxy-tls.conf)
#   rg_tls     RustyGate's HTTPS listener (server.tls) on 127.0.0.1:18089,
#              access log on, both CPUs               (rustygate-tls.yaml)
#   rg_tls_1cpu  the same on 127.0.0.1:18091 with GOMAXPROCS=1, the budget
#              of nginx_tls's worker                  (rustygate-tls-1cpu.yaml)
# Each HTTPS target is measured twice per round: keep-alive, by wrk over
# https:// like the plain rows, and new connections, by tlshs
# (test/bench/tlshs, built into the temporary directory): HS_CONNS clients,
# each opening a fresh TCP connection, a full TLS 1.3 handshake (X25519, no
# session resumption: no ticket, no session cache), one GET with
# "Connection: close", then closing; completed requests per second are
# handshakes per second. The client verifies the certificate against the
# generated CA.
# RustyGate feature variants, each its own RustyGate process with the access
# log on, like rustygate, and no admin listener; the table compares their
# req/s with the plain rustygate row. rg_policies, rg_policies_rs256,
# rg_tracing_otlp and rg_wasm (the rows of the targets summary) run by
# default; the others only with FULL=1:
#   rg_2backends  127.0.0.1:18082, the route with two backends (18001 and
#                 18011), round_robin            (rustygate-2backends.yaml)
#   rg_policies   127.0.0.1:18083, cors + rate_limit (never reached) + jwt
#                 HS256; wrk sends "Origin:" and "Authorization: Bearer" with
#                 a token signed here with openssl; the token cache on
#                 (cache_size 10000, cache_ttl 5m: the signature is
#                 verified once)                  (rustygate-policies.yaml)
#   rg_policies_rs256  127.0.0.1:18159, the same with jwt RS256: an RSA 2048
#                 key pair generated with openssl at start-up (public key
#                 exported as RG_BENCH_JWT_PUBKEY), the token signed with it,
#                 token cache on          (rustygate-policies-rs256.yaml)
#   rg_tracing    127.0.0.1:18084, tracing on, ratio 1.0, OTLP endpoint a
#                 closed port (127.0.0.1:18099): spans are created and
#                 batched, exports fail and are dropped: span creation, not
#                 export                          (rustygate-tracing.yaml)
#   rg_tracing_otlp  127.0.0.1:18131, tracing on, ratio 1.0, exporting over
#                 OTLP/HTTP to a real receiver: test/bench/otlpsink (built
#                 into the temporary directory) on 127.0.0.1:18130 walks
#                 every export down to its spans (protobuf wire format and
#                 span ids checked, about 3 µs of CPU per span, where a
#                 full decode cost as much as the gateway) and counts
#                 them; the report gives the
#                 spans received and those the gateway dropped (its metrics,
#                 admin 127.0.0.1:18132)   (rustygate-tracing-otlp.yaml)
#   rg_tracing0   127.0.0.1:18085, tracing on, ratio 0 (rustygate-tracing0.yaml)
#   rg_wasm       127.0.0.1:18086, plugins/examples/add_header.wasm on the
#                 route (built with `make plugins` when missing)
#                                                 (rustygate-wasm.yaml)
#   rg_access     127.0.0.1:18094, the access middlewares of a protected
#                 route: ip_filter (allowed), basic_auth (bcrypt, served
#                 from its cache after the first request) and headers;
#                 wrk sends the user's credentials  (rustygate-access.yaml)
#   rg_waf_get    127.0.0.1:18101, the waf middleware with the OWASP CRS at
#                 paranoia level 1; wrk GETs /search with four query
#                 arguments                       (rustygate-waf.yaml)
#   rg_waf_post   127.0.0.1:18102, the same WAF; wrk POSTs a 2 KiB JSON
#                 document with a Lua script      (rustygate-waf-post.yaml)
#                 Both send "Host: api.example.com" (a numeric Host scores
#                 3 points in the CRS).
#   rg_rl_local   127.0.0.1:18110, rate_limit scope local per IP, never
#                 reached                   (rustygate-ratelimit-local.yaml)
#   rg_rl_cluster 127.0.0.1:18111, the same limit with scope cluster,
#                 counted in a redis-server started on 127.0.0.1:18112
#                 (rustygate-ratelimit-cluster.yaml); the report adds Redis
#                 commands and Redis CPU per request and the ratios to
#                 rg_rl_local (targets: >= 0.85x req/s, <= +0.5 ms p99)
# Compression targets (default only with FULL=1), GET of a JSON document
# of the backend (1 KiB: /json/1k.json, 64 KiB: /json/64k.json, written by
# this script; records of ids, names, prices, flags and tags) with
# "Accept-Encoding: gzip", each size its own row:
#   gz_nginx_1k, gz_nginx_64k  nginx proxy with `gzip on` (default level 1)
#              on 127.0.0.1:18005, one worker like the nginx row
#                                                 (nginx-proxy-gzip.conf)
#   gz_rg_1k, gz_rg_64k  RustyGate with the compress middleware at its
#              defaults (gzip level 5) on 127.0.0.1:18097, access log on,
#              GOMAXPROCS=1: one CPU, the budget of nginx's one worker, as
#              rg_1cpu                            (rustygate-compress.yaml)
# The two rows of a proxy share its process. Checked before measuring: the
# 64 KiB document comes back gzip-encoded and decodes to 65536 bytes. The
# report compares RustyGate with nginx size by size (target: >= 0.8x).
# Each variant is checked once before measuring (rg_policies and
# rg_policies_rs256: the token gets 200 and no token 401, CORS and
# rate-limit headers present; rg_wasm: the
# response carries X-RustyGate-Plugin: executed; rg_2backends: both backends
# answer; rg_access: the credentials get 200, none 401; rg_waf_*: the
# benchmark request gets 200 and an SQL injection 403); a failed check
# stops the script.
#
# Environment knobs:
#   DURATION      seconds per measured wrk run            (default 8)
#   ROUNDS        interleaved rounds over all targets     (default 3)
#   WARMUP        seconds of warm-up per target           (default 2)
#   BAR_DURATION  seconds of the task-list bar run        (default 10)
#   HS_CONNS      concurrent tlshs clients of the handshake runs (default 64)
#   RG_BIN        RustyGate binary (built with `make build` when missing)
#                                                          (default bin/rustygate)
#   OUT           output directory                        (default test/bench/out/)
#   FULL          1 adds the other RustyGate variants and the compression
#                 targets to the default targets (make bench sets it)
#                                                          (default 0)
#   TARGETS       targets to run, space separated
#                   (default "direct nginx rustygate rg_1cpu haproxy nginx_tls
#                   rg_tls rg_tls_1cpu rg_policies rg_policies_rs256
#                   rg_tracing_otlp rg_wasm"; with FULL=1 also
#                   "rg_2backends rg_tracing rg_tracing0 rg_access rg_waf_get
#                   rg_waf_post rg_rl_local rg_rl_cluster gz_nginx_1k
#                   gz_nginx_64k gz_rg_1k gz_rg_64k")
#   KEEP_TMP      1 keeps the temporary directory (logs, nginx prefixes)
#   PAIRED        1 pairs each variant of the targets summary with a run of
#                 plain RustyGate next to it in every round (see "Targets
#                 summary"); 0 compares them with the plain row only
#                                                          (default 1)
#   H2            1 appends the HTTP/2 rows of test/bench/h2peer.sh (h2load
#                 against nginx, HAProxy and RustyGate over h2c and h2, ports
#                 18120-18125), 0 leaves them out       (default 1)
#   SCALING       0 leaves the scaling table out          (default 1)
#   CPUS          CPUs the scaling table uses: the first CPUS of those this
#                 shell may run on    (default: all of them, `nproc`)
#   SCALE_LOOPS   loop counts (and nginx worker counts) of the scaling table,
#                 at most 4      (default "1 2", then 4 and 8 while below CPUS)
#   SCALE_CONNS   wrk connections of the scaling rows     (default 64)
#
# Every target gets `wrk -t2 -c64 -d${DURATION}s --latency`, the targets
# interleaved round by round so drift in machine speed hits all of them
# alike (rg_policies also gets its two headers); the WAF rows, which slow
# the machine down after them, get their rounds after all the others'. The table reports medians
# over rounds; ratios are against the nginx proxy (for the HTTPS rows: the
# nginx_tls row), and for the rg_* rows
# also against the plain rustygate row ("vs RustyGate"). The bar line is `wrk -t4 -c100 -d${BAR_DURATION}s --latency`
# against RustyGate: PASS when > 10000 req/s and p99 < 5 ms.
#
# The handshake rows get `tlshs -c$HS_CONNS -d$DURATION` in the same rounds.
#
# Scaling table (SCALING=1, after the rounds above): for each loop count k
# of SCALE_LOOPS, three processes of its own, each started under taskset:
# an nginx backend (nginx-backend.conf, one worker per backend CPU), the
# nginx proxy (nginx-proxy.conf with worker_processes k) and RustyGate
# (rustygate.yaml with server.event_loops k and GOMAXPROCS=k, access log on,
# no admin listener), on ports 18140+4i (backend; 18141+4i its unused
# second server), 18142+4i (nginx) and 18143+4i (RustyGate) for the i-th
# k: 18140-18155. Pinning over the first CPUS CPUs: the proxy on the first
# k, the backend on the next half of the rest, wrk (one thread per CPU)
# on the remaining ones; when one CPU is left the backend and wrk share it,
# when none is left all three share all CPUS (on a 2-CPU machine: k=1
# proxy on CPU 0, backend and wrk on CPU 1; k=2 all on both). The table's
# header says how each k was pinned, and each process's affinity is
# checked after start-up. wrk -c$SCALE_CONNS -d$DURATION, ROUNDS rounds
# interleaved over nginx and RustyGate for every k after a warm-up;
# medians; req/s, p99, the proxy's CPU per request and the ratios.
#
# Targets summary (the last lines): one row per target of the HTTP/1.1
# engine with the ratio measured in this run, the bound and met/MISSED:
# plain RustyGate (the rustygate row) against the nginx proxy row: req/s
# >= 1.0x, p99 <= 1.0x, CPU µs/request <= 1.0x; against plain RustyGate:
# rg_policies and rg_policies_rs256 >= 0.9x, rg_tracing_otlp >= 0.85x,
# rg_wasm >= 0.9x; ratios of the medians, and round by round. A row whose
# target did not run reads "not measured". With PAIRED=1 (the default)
# each of those four variants is paired in every round with a run of plain
# RustyGate right next to it (before it in odd rounds, after it in even
# ones; not counted in the plain row), and its ratio is the median of the
# round ratios to that run: the machine's speed drifts within a round.
#
# Exit status: 0 whatever the numbers are (a missed target too); non-zero
# only when a process could not be started (or a port was already taken, or
# a tool is missing, or a variant failed its check, or a scaling process
# is not pinned).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2}
BAR_DURATION=${BAR_DURATION:-10}
HS_CONNS=${HS_CONNS:-64}
RG_BIN=${RG_BIN:-$ROOT/bin/rustygate}
OUT=${OUT:-$ROOT/test/bench/out}
FULL=${FULL:-0}
BASE_TARGETS="direct nginx rustygate rg_1cpu haproxy nginx_tls rg_tls rg_tls_1cpu"
# The variants of the targets summary: measured by default.
TARGET_VARIANTS="rg_policies rg_policies_rs256 rg_tracing_otlp rg_wasm"
RG_VARIANTS="rg_2backends rg_policies rg_policies_rs256 rg_tracing rg_tracing_otlp rg_tracing0 rg_wasm rg_access rg_waf_get rg_waf_post rg_rl_local rg_rl_cluster"
GZ_TARGETS="gz_nginx_1k gz_nginx_64k gz_rg_1k gz_rg_64k"
if [[ $FULL == 1 ]]; then
	TARGETS=${TARGETS:-$BASE_TARGETS $RG_VARIANTS $GZ_TARGETS}
else
	TARGETS=${TARGETS:-$BASE_TARGETS $TARGET_VARIANTS}
fi
KEEP_TMP=${KEEP_TMP:-0}
PAIRED=${PAIRED:-1}
SCALING=${SCALING:-1}
CPUS=${CPUS:-}
SCALE_LOOPS=${SCALE_LOOPS:-}
SCALE_CONNS=${SCALE_CONNS:-64}
SCALE_PORT0=18140 # the scaling table's processes: 4 ports per loop count, 18140-18155
SCALE_MAX_KS=4

WRK_THREADS=2
WRK_CONNS=64
BAR_THREADS=4
BAR_CONNS=100
BAR_MIN_RPS=10000
BAR_MAX_P99_MS=5
BODY_BYTES=64

case $RG_BIN in /*) ;; *) RG_BIN=$ROOT/$RG_BIN ;; esac
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac

declare -A PORT=(
	[direct]=18001 [nginx]=18002 [haproxy]=18003 [rustygate]=18080
	[rg_2backends]=18082 [rg_policies]=18083 [rg_policies_rs256]=18159 [rg_tracing]=18084 [rg_tracing0]=18085 [rg_wasm]=18086
	[rg_tracing_otlp]=18131
	[rg_1cpu]=18087 [nginx_tls]=18004 [rg_tls]=18089 [rg_tls_1cpu]=18091
	[rg_access]=18094
	[gz_nginx_1k]=18005 [gz_nginx_64k]=18005 [gz_rg_1k]=18097 [gz_rg_64k]=18097
	[rg_waf_get]=18101 [rg_waf_post]=18102
	[rg_rl_local]=18110 [rg_rl_cluster]=18111
)
declare -A LABEL=(
	[direct]="direct (nginx backend)"
	[nginx]="nginx proxy"
	[haproxy]="HAProxy"
	[rustygate]="RustyGate"
	[rg_2backends]="rg_2backends: RustyGate, 2 backends round_robin"
	[rg_policies]="rg_policies: RustyGate + cors, rate_limit, jwt"
	[rg_policies_rs256]="rg_policies_rs256: RustyGate + cors, rate_limit, jwt RS256"
	[rg_tracing]="rg_tracing: RustyGate + tracing ratio 1.0 (export fails)"
	[rg_tracing_otlp]="rg_tracing_otlp: RustyGate + tracing ratio 1.0, exported (OTLP/HTTP sink)"
	[rg_tracing0]="rg_tracing0: RustyGate + tracing ratio 0"
	[rg_wasm]="rg_wasm: RustyGate + wasm add_header"
	[rg_access]="rg_access: RustyGate + the middlewares of rustygate-access.yaml"
	[rg_1cpu]="rg_1cpu: RustyGate on 1 CPU (GOMAXPROCS=1, one event loop)"
	[nginx_tls]="nginx_tls: nginx proxy, HTTPS"
	[rg_tls]="rg_tls: RustyGate, HTTPS"
	[rg_tls_1cpu]="rg_tls_1cpu: RustyGate, HTTPS, on 1 CPU (GOMAXPROCS=1)"
	[gz_nginx_1k]="gz_nginx_1k: nginx proxy, gzip on, 1 KiB JSON"
	[gz_nginx_64k]="gz_nginx_64k: nginx proxy, gzip on, 64 KiB JSON"
	[gz_rg_1k]="gz_rg_1k: RustyGate + compress on 1 CPU, 1 KiB JSON"
	[gz_rg_64k]="gz_rg_64k: RustyGate + compress on 1 CPU, 64 KiB JSON"
	[rg_waf_get]="rg_waf_get: RustyGate + waf (CRS PL1), GET with query args"
	[rg_waf_post]="rg_waf_post: RustyGate + waf (CRS PL1), POST 2 KiB JSON"
	[rg_rl_local]="rg_rl_local: RustyGate + rate_limit scope local"
	[rg_rl_cluster]="rg_rl_cluster: RustyGate + rate_limit scope cluster (Redis)"
)
# Path (after the URL's "/") that wrk requests on a target, when not "/".
declare -A WRK_PATH=(
	[gz_nginx_1k]=json/1k.json [gz_nginx_64k]=json/64k.json
	[gz_rg_1k]=json/1k.json [gz_rg_64k]=json/64k.json
)
# Targets served by the process of another target (its other size).
declare -A SHARES=([gz_nginx_64k]=gz_nginx_1k [gz_rg_64k]=gz_rg_1k)
# HTTPS targets, and the plain listener each HTTPS RustyGate also opens
# (its port must be free too; it is not measured).
declare -A TLS_TARGET=([nginx_tls]=1 [rg_tls]=1 [rg_tls_1cpu]=1)
declare -A PLAIN_PORT=([rg_tls]=18090 [rg_tls_1cpu]=18093)
# RustyGate configuration of each RustyGate target.
declare -A RG_CONF=(
	[rustygate]=rustygate.yaml
	[rg_2backends]=rustygate-2backends.yaml
	[rg_policies]=rustygate-policies.yaml
	[rg_policies_rs256]=rustygate-policies-rs256.yaml
	[rg_tracing]=rustygate-tracing.yaml
	[rg_tracing_otlp]=rustygate-tracing-otlp.yaml
	[rg_tracing0]=rustygate-tracing0.yaml
	[rg_wasm]=rustygate-wasm.yaml
	[rg_access]=rustygate-access.yaml
	[rg_1cpu]=rustygate-1cpu.yaml
	[rg_tls]=rustygate-tls.yaml
	[rg_tls_1cpu]=rustygate-tls-1cpu.yaml
	[gz_rg_1k]=rustygate-compress.yaml
	[gz_rg_64k]=rustygate-compress.yaml
	[rg_waf_get]=rustygate-waf.yaml
	[rg_waf_post]=rustygate-waf-post.yaml
	[rg_rl_local]=rustygate-ratelimit-local.yaml
	[rg_rl_cluster]=rustygate-ratelimit-cluster.yaml
)
# Request path (with query) of targets that do not request /.
declare -A URL_PATH=(
	[rg_waf_get]="/search?q=red+running+shoes&size=42&sort=price_asc&page=2"
)
# wrk Lua script of targets that do not send a plain GET (written into
# $TMP at start-up).
declare -A WRK_SCRIPT=()
# Environment of RustyGate targets that need one.
declare -A RG_ENV=(
	[rg_1cpu]=GOMAXPROCS=1
	[rg_tls_1cpu]=GOMAXPROCS=1
	[gz_rg_1k]=GOMAXPROCS=1
	[gz_rg_64k]=GOMAXPROCS=1
)
declare -A PID=()
# CPUs (a taskset list) a process is pinned to: the scaling table's.
declare -A PIN=()

BACKEND2_PORT=18011 # second server block of nginx-backend.conf (rg_2backends)
OTLP_CLOSED_PORT=18099 # tracing endpoint of rg_tracing and rg_tracing0: must stay closed
REDIS_PORT=18112       # the redis-server of rg_rl_cluster
OTLP_SINK_PORT=18130   # test/bench/otlpsink, the receiver of rg_tracing_otlp
OTLP_ADMIN_PORT=18132  # admin listener (metrics) of rg_tracing_otlp

# rg_policies: the Origin wrk sends (allowed in rustygate-policies.yaml) and
# the HS256 secret (read by rustygate-policies.yaml from the environment).
BENCH_ORIGIN=http://bench.example
export RG_BENCH_JWT_SECRET=${RG_BENCH_JWT_SECRET:-rustygate-peer-benchmark-hs256-secret-0123456789}
# rg_wasm: the plugin path in rustygate-wasm.yaml is under this directory.
export RG_BENCH_ROOT=$ROOT
WASM_PLUGIN=$ROOT/plugins/examples/add_header.wasm
# rg_access: the credentials of the basic_auth user of rustygate-access.yaml.
ACCESS_AUTH="Authorization: Basic $(printf '%s' 'bench:rustygate-bench-password' | base64)"

die() {
	printf 'peer.sh: error: %s\n' "$*" >&2
	exit 1
}
note() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- setup

for tool in wrk nginx curl awk; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install -y nginx wrk curl)"
done

selected=()
for t in $TARGETS; do
	[[ -n ${PORT[$t]:-} ]] || die "unknown target '$t' (known: $BASE_TARGETS $RG_VARIANTS $GZ_TARGETS)"
	if [[ $t == haproxy ]] && ! command -v haproxy >/dev/null 2>&1; then
		note "haproxy not installed: skipping the HAProxy target"
		continue
	fi
	selected+=("$t")
done
((${#selected[@]})) || die "no targets selected"

want() {
	local t
	for t in "${selected[@]}"; do [[ $t == "$1" ]] && return 0; done
	return 1
}

# is_rg NAME: NAME is a RustyGate target (plain or variant).
is_rg() { [[ -n ${RG_CONF[$1]:-} ]]; }

# is_tls NAME: NAME is an HTTPS target.
is_tls() { [[ -n ${TLS_TARGET[$1]:-} ]]; }

if [[ $SCALING == 1 ]]; then
	command -v taskset >/dev/null 2>&1 || die "taskset not found (util-linux), needed to pin the scaling table's processes; SCALING=0 leaves the table out"
fi

any_tls=0
for t in "${selected[@]}"; do is_tls "$t" && any_tls=1; done
if ((any_tls)); then
	command -v openssl >/dev/null 2>&1 || die "openssl not found (needed to generate the HTTPS targets' certificate; apt-get install -y openssl)"
	command -v go >/dev/null 2>&1 || die "go not found (needed to build test/bench/tlshs, the handshake client of the HTTPS targets)"
fi

# url_of NAME: the URL wrk, curl and tlshs request on target NAME.
url_of() {
	if is_tls "$1"; then
		printf 'https://127.0.0.1:%s/' "${PORT[$1]}"
	else
		printf 'http://127.0.0.1:%s%s' "${PORT[$1]}" "${URL_PATH[$1]:-/}"
	fi
}

if want rg_policies || want rg_policies_rs256; then
	command -v openssl >/dev/null 2>&1 || die "openssl not found (needed to sign the rg_policies JWTs; apt-get install -y openssl)"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rustygate-peer.XXXXXX")
chmod 755 "$TMP" # nginx workers drop root privileges and must reach their prefix
STAMP=$(date +%Y%m%d-%H%M%S)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)

# cpu_stat: the machine's steal and total CPU ticks (/proc/stat): steal is
# time the hypervisor gave to other guests while this one had work.
cpu_stat() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t; exit }' /proc/stat; }
# steal_pct "S0 T0" "S1 T1": the steal share of the CPU time between two cpu_stat readings.
steal_pct() {
	awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; if (t > 0) printf "%.0f", 100 * (y[1] - x[1]) / t; else print "nan" }'
}
declare -A ROUND_STEAL0=() ROUND_STEAL1=()
STEAL_GROUP=early
RUN_DIR=$OUT/peer-$STAMP

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
	local rc=$? name pid i
	trap - EXIT INT TERM
	for name in "${!PID[@]}"; do
		pid=${PID[$name]}
		kill -TERM "$pid" 2>/dev/null || true
	done
	for name in "${!PID[@]}"; do
		pid=${PID[$name]}
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	if [[ $KEEP_TMP == 1 ]]; then
		note "temporary files kept in $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Extra request headers of a target, one per line (curl and wrk -H).
declare -A HDR=()

# hdr_args NAME: sets HDR_ARGS to the -H options of NAME's extra headers.
hdr_args() {
	local line
	HDR_ARGS=()
	while IFS= read -r line; do
		[[ -n $line ]] && HDR_ARGS+=(-H "$line")
	done <<<"${HDR[$1]:-}"
	return 0
}

# b64url: base64url without padding (RFC 7515) of stdin.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# hs256_token SECRET: a JWT {"sub":"bench","aud":"api","exp":now+1 day}
# signed with HS256 and SECRET.
hs256_token() {
	local head payload sig
	head=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64url)
	payload=$(printf '{"sub":"bench","aud":"api","exp":%d}' "$(($(date +%s) + 86400))" | b64url)
	sig=$(printf '%s' "$head.$payload" | openssl dgst -sha256 -hmac "$1" -binary | b64url)
	[[ -n $head && -n $payload && -n $sig ]] || die "could not sign the rg_policies JWT with openssl"
	printf '%s.%s.%s' "$head" "$payload" "$sig"
}

# rs256_token KEYFILE: the same claims signed with RS256 (RSASSA-PKCS1-v1_5,
# SHA-256) and the RSA private key in KEYFILE.
rs256_token() {
	local head payload sig
	head=$(printf '%s' '{"alg":"RS256","typ":"JWT"}' | b64url)
	payload=$(printf '{"sub":"bench","aud":"api","exp":%d}' "$(($(date +%s) + 86400))" | b64url)
	sig=$(printf '%s' "$head.$payload" | openssl dgst -sha256 -sign "$1" -binary | b64url)
	[[ -n $head && -n $payload && -n $sig ]] || die "could not sign the rg_policies_rs256 JWT with openssl"
	printf '%s.%s.%s' "$head" "$payload" "$sig"
}

# gen_rs256_key DIR: an RSA 2048 key pair in DIR/rs256.key and
# DIR/rs256.pub (the public key, read by rustygate-policies-rs256.yaml).
gen_rs256_key() {
	mkdir -p "$1"
	{
		openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1/rs256.key" &&
			openssl pkey -in "$1/rs256.key" -pubout -out "$1/rs256.pub"
	} >"$1/openssl.log" 2>&1 || { cat "$1/openssl.log" >&2; die "could not generate the rg_policies_rs256 RSA key with openssl"; }
}

# wait_ready NAME LOGFILE: the target's process is alive and its port answers
# GET / (with the target's extra headers) with 200 and the 64-byte body,
# within 10 s; over HTTPS with a certificate that verifies against the
# generated CA.
wait_ready() {
	local name=$1 logfile=$2 port=${PORT[$1]} pid=${PID[$1]} i code size
	local -a tls_args=()
	hdr_args "$name"
	is_tls "$name" && tls_args=(--cacert "$TLS_DIR/ca.crt")
	for ((i = 0; i < 100; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			note "---- last lines of $logfile:"
			tail -n 20 "$logfile" >&2 || true
			die "${LABEL[$name]} exited during start-up (see above)"
		fi
		if read -r code size < <(curl -s -o /dev/null --max-time 1 "${HDR_ARGS[@]}" "${tls_args[@]}" \
			-w '%{http_code} %{size_download}\n' "$(url_of "$name")" 2>/dev/null); then
			if [[ $code == 200 ]]; then
				[[ $size == "$BODY_BYTES" ]] ||
					die "${LABEL[$name]} on 127.0.0.1:$port answered with a $size-byte body, want $BODY_BYTES"
				note "${LABEL[$name]} ready on 127.0.0.1:$port (pid $pid)"
				return 0
			fi
			# RustyGate is up and its jwt refuses the token: no use waiting.
			[[ $name == rg_policies* && $code == 401 ]] && break
		fi
		sleep 0.1
	done
	note "---- last lines of $logfile:"
	tail -n 20 "$logfile" >&2 || true
	[[ $name == rg_policies && ${code:-} == 401 ]] &&
		die "${LABEL[$name]} rejects the benchmark JWT (401): the token signed by peer.sh with RG_BENCH_JWT_SECRET does not verify against rustygate-policies.yaml"
	[[ $name == rg_policies_rs256 && ${code:-} == 401 ]] &&
		die "${LABEL[$name]} rejects the benchmark JWT (401): the token signed by peer.sh with the generated RSA key does not verify against its public key (RG_BENCH_JWT_PUBKEY)"
	die "${LABEL[$name]} did not answer 200 on 127.0.0.1:$port within 10s (last status: ${code:-none})"
}

# pin_cmd NAME: sets PIN_CMD to the taskset prefix of NAME's pinning
# (empty when NAME is not pinned).
pin_cmd() {
	PIN_CMD=()
	[[ -n ${PIN[$1]:-} ]] && PIN_CMD=(taskset -c "${PIN[$1]}")
	return 0
}

# start_nginx NAME CONF
start_nginx() {
	local name=$1 conf=$2 prefix=$TMP/nginx-$1
	mkdir -p "$prefix/tmp"
	nginx -t -q -p "$prefix/" -c "$conf" -e "$prefix/error.log" >"$prefix/stderr.log" 2>&1 ||
		{ cat "$prefix/stderr.log" >&2; die "nginx config $conf does not load"; }
	pin_cmd "$name"
	"${PIN_CMD[@]}" nginx -p "$prefix/" -c "$conf" -e "$prefix/error.log" >"$prefix/stderr.log" 2>&1 &
	PID[$name]=$!
	wait_ready "$name" "$prefix/error.log"
}

start_haproxy() {
	local log=$TMP/haproxy.log
	haproxy -c -q -f "$HERE/haproxy.cfg" >"$log" 2>&1 ||
		{ cat "$log" >&2; die "haproxy config $HERE/haproxy.cfg does not load"; }
	haproxy -db -f "$HERE/haproxy.cfg" >"$log" 2>&1 &
	PID[haproxy]=$!
	wait_ready haproxy "$log"
}

RG_LOG=$TMP/rustygate.log
# start_rustygate NAME: RustyGate with the configuration of target NAME
# (relative to test/bench/ unless absolute), its stderr (process and access
# log) in $TMP/NAME.log.
start_rustygate() {
	local name=$1 conf=${RG_CONF[$1]} log=$TMP/$1.log
	[[ $conf == /* ]] || conf=$HERE/$conf
	if [[ ! -x $RG_BIN ]]; then
		note "RustyGate binary $RG_BIN missing: running make build"
		make -C "$ROOT" build >&2 ||
			die "cannot build RustyGate (make build failed): the RustyGate targets cannot run; use TARGETS=\"direct nginx haproxy\" to measure the peers alone"
		[[ -x $RG_BIN ]] || die "make build did not produce $RG_BIN (set RG_BIN to the binary)"
	fi
	"$RG_BIN" validate "$conf" >"$TMP/$name-validate.log" 2>&1 ||
		{ cat "$TMP/$name-validate.log" >&2; die "RustyGate rejects $conf"; }
	pin_cmd "$name"
	# shellcheck disable=SC2086 # word splitting wanted: VAR=value words
	env ${RG_ENV[$name]:-} "${PIN_CMD[@]}" "$RG_BIN" run -c "$conf" 2>"$log" >/dev/null &
	PID[$name]=$!
	wait_ready "$name" "$log"
}

# headers_of NAME [CURL ARGS...]: the response headers (lower-cased names)
# of GET / on target NAME, with the given extra curl arguments.
headers_of() {
	local port=${PORT[$1]}
	shift
	curl -s -o /dev/null -D - --max-time 5 "$@" "http://127.0.0.1:$port/" 2>/dev/null |
		tr -d '\r' | awk -F': ' 'NF >= 2 { $1 = tolower($1) } { print }' OFS=': '
}

# check_backend2: the second backend (rg_2backends) answers 200 with the
# 64-byte body.
check_backend2() {
	local code size
	read -r code size < <(curl -s -o /dev/null --max-time 2 \
		-w '%{http_code} %{size_download}\n' "http://127.0.0.1:$BACKEND2_PORT/" 2>/dev/null) || true
	[[ ${code:-} == 200 && ${size:-} == "$BODY_BYTES" ]] ||
		die "second backend 127.0.0.1:$BACKEND2_PORT (nginx-backend.conf) answered ${code:-nothing} with ${size:-no} bytes, want 200 with $BODY_BYTES"
	note "second backend ready on 127.0.0.1:$BACKEND2_PORT"
}

# verify_2backends: after a few requests, RustyGate's access log names both
# backends.
verify_2backends() {
	local log=$TMP/rg_2backends.log i
	for ((i = 0; i < 8; i++)); do
		curl -s -o /dev/null --max-time 2 "http://127.0.0.1:${PORT[rg_2backends]}/" || true
	done
	sleep 0.3 # the access log is flushed every 100 ms
	if ! grep -q "127.0.0.1:${PORT[direct]}" "$log" || ! grep -q "127.0.0.1:$BACKEND2_PORT" "$log"; then
		tail -n 8 "$log" >&2
		die "${LABEL[rg_2backends]}: the access log does not show both backends (127.0.0.1:${PORT[direct]} and 127.0.0.1:$BACKEND2_PORT) after 8 requests"
	fi
	note "  check: requests reach both backends"
}

# verify_policies NAME: with the token and Origin, 200 with CORS and
# rate-limit headers; without the token, 401 (so jwt really runs).
verify_policies() {
	local name=$1 h code
	hdr_args "$name"
	h=$(headers_of "$name" "${HDR_ARGS[@]}")
	code=$(awk 'NR == 1 { print $2 }' <<<"$h")
	[[ $code == 200 ]] ||
		die "${LABEL[$name]}: GET / with the benchmark JWT answered ${code:-nothing}, want 200 (401: the token is rejected)"
	grep -qix "access-control-allow-origin: $BENCH_ORIGIN" <<<"$h" ||
		{ printf '%s\n' "$h" >&2; die "${LABEL[$name]}: no 'Access-Control-Allow-Origin: $BENCH_ORIGIN' in the response: cors is not on"; }
	grep -qi '^ratelimit-limit: ' <<<"$h" ||
		{ printf '%s\n' "$h" >&2; die "${LABEL[$name]}: no RateLimit-Limit header in the response: rate_limit is not on"; }
	grep -qi '^ratelimit-remaining: 0$' <<<"$h" &&
		die "${LABEL[$name]}: RateLimit-Remaining is 0: the limit would trigger during the run"
	code=$(headers_of "$name" -H "Origin: $BENCH_ORIGIN" | awk 'NR == 1 { print $2 }')
	[[ $code == 401 ]] ||
		die "${LABEL[$name]}: GET / without a token answered ${code:-nothing}, want 401: jwt is not on"
	note "  check: token -> 200 with CORS and RateLimit headers; no token -> 401"
}

# verify_access: with the credentials 200, without them 401 (so
# basic_auth really runs).
verify_access() {
	local name=rg_access code
	hdr_args "$name"
	code=$(headers_of "$name" "${HDR_ARGS[@]}" | awk 'NR == 1 { print $2 }')
	[[ $code == 200 ]] ||
		die "${LABEL[$name]}: GET / with the benchmark credentials answered ${code:-nothing}, want 200"
	code=$(headers_of "$name" | awk 'NR == 1 { print $2 }')
	[[ $code == 401 ]] ||
		die "${LABEL[$name]}: GET / without credentials answered ${code:-nothing}, want 401: basic_auth is not on"
	note "  check: credentials -> 200; none -> 401"
}

# write_waf_post FILE: a 2 KiB JSON order in FILE.json and a wrk script
# POSTing it in FILE.
write_waf_post() {
	local items="" i
	for ((i = 1; i <= 19; i++)); do
		items+=$(printf '{"sku":"SKU-%04d","name":"Trail running shoe, size %d","qty":%d,"unit_price":%d.99,"gift_wrap":false},' "$i" $((36 + i)) $((1 + i % 3)) $((40 + i)))
	done
	printf '{"order_id":"8f14e45f-ceea-467a-9575-8b2c3d0e1a2b","customer":{"name":"Jane O%sConnor","email":"jane.oconnor@example.com"},"items":[%s],"notes":"Please leave the parcel at the door."}' \
		"'" "${items%,}" >"$1.json"
	WAF_BODY_BYTES=$(wc -c <"$1.json")
	cat >"$1" <<LUA
local f = assert(io.open("$1.json", "rb"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = f:read("*a")
f:close()
LUA
}

# verify_waf NAME: the benchmark request passes (200) and an SQL
# injection on the same target is refused (403), so the WAF really runs.
verify_waf() {
	local name=$1 code
	local -a data=()
	hdr_args "$name"
	[[ -n ${WRK_SCRIPT[$name]:-} ]] && data=(-H "Content-Type: application/json" --data-binary "@${WRK_SCRIPT[$name]}.json")
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${HDR_ARGS[@]}" "${data[@]}" "$(url_of "$name")")
	[[ $code == 200 ]] || die "${LABEL[$name]}: the benchmark request answered ${code:-nothing}, want 200 (the WAF refuses it?)"
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${HDR_ARGS[@]}" "http://127.0.0.1:${PORT[$name]}/?id=1%27%20OR%20%271%27=%271")
	[[ $code == 403 ]] || die "${LABEL[$name]}: an SQL injection answered ${code:-nothing}, want 403: the WAF is not on"
	note "  check: benchmark request -> 200; SQL injection -> 403"
}

# verify_wasm: the plugin adds X-RustyGate-Plugin: executed.
verify_wasm() {
	local h
	h=$(headers_of rg_wasm)
	grep -qix 'x-rustygate-plugin: executed' <<<"$h" ||
		{ printf '%s\n' "$h" >&2; die "${LABEL[rg_wasm]}: the response has no 'X-RustyGate-Plugin: executed' header: the plugin did not run"; }
	note "  check: response carries X-RustyGate-Plugin: executed"
}

# start_otlpsink: builds test/bench/otlpsink and starts it on
# 127.0.0.1:$OTLP_SINK_PORT, the receiver of rg_tracing_otlp.
start_otlpsink() {
	local i
	note "building test/bench/otlpsink"
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$OTLP_SINK" ./test/bench/otlpsink) >&2 ||
		die "cannot build test/bench/otlpsink (go build failed)"
	"$OTLP_SINK" -listen "127.0.0.1:$OTLP_SINK_PORT" 2>"$TMP/otlpsink.log" &
	PID[otlpsink]=$!
	for ((i = 0; i < 100; i++)); do
		otlp_stats >/dev/null && { note "OTLP sink ready on 127.0.0.1:$OTLP_SINK_PORT (pid ${PID[otlpsink]})"; return 0; }
		kill -0 "${PID[otlpsink]}" 2>/dev/null || break
		sleep 0.1
	done
	cat "$TMP/otlpsink.log" >&2
	die "the OTLP sink did not start on 127.0.0.1:$OTLP_SINK_PORT"
}

# otlp_stats: the sink's "spans N exports M bad K".
otlp_stats() { curl -sf --max-time 2 "http://127.0.0.1:$OTLP_SINK_PORT/stats"; }

# otlp_dropped REASON: rustygate_tracing_spans_dropped_total{reason} of
# rg_tracing_otlp (exported with REASON "exported").
otlp_metric() {
	local name=rustygate_tracing_spans_dropped_total sel="{reason=\"$1\"}"
	[[ $1 == exported ]] && name=rustygate_tracing_spans_exported_total sel=""
	curl -sf --max-time 2 "http://127.0.0.1:$OTLP_ADMIN_PORT/metrics" |
		awk -v m="$name$sel" '$1 == m { printf "%.0f", $2; found = 1 } END { if (!found) print "?" }'
}

# verify_tracing_otlp: after a few requests, the sink receives their spans
# (a partial batch is sent after tracing.batch_timeout, 1s).
verify_tracing_otlp() {
	local i spans
	for ((i = 0; i < 4; i++)); do
		curl -s -o /dev/null --max-time 2 "$(url_of rg_tracing_otlp)" || true
	done
	for ((i = 0; i < 50; i++)); do
		spans=$(otlp_stats | awk '{ print $2 }')
		((${spans:-0} >= 8)) && { note "  check: the sink received $spans spans for 4 requests"; return 0; }
		sleep 0.1
	done
	die "${LABEL[rg_tracing_otlp]}: the OTLP sink received ${spans:-no} spans for 4 requests within 5s, want 8 (sink: $(otlp_stats))"
}

# cpu_ticks PID: utime+stime of PID and its direct children (the nginx
# worker under its master), in clock ticks.
cpu_ticks() {
	local total=0 p line kids
	kids=$(cat /proc/"$1"/task/*/children 2>/dev/null || pgrep -P "$1" 2>/dev/null || true)
	for p in "$1" $kids; do
		line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		# Drop "pid (comm) " (comm may hold spaces); then field 0 is the
		# state, 11 utime and 12 stime.
		read -ra f <<<"${line##*) }"
		total=$((total + f[11] + f[12]))
	done
	echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# to_ms VALUE: wrk latency ("850.00us", "1.23ms", "2.01s", "1.00m") in ms.
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/)      { sub(/us$/, "", v); printf "%.3f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
		else if (v ~ /m$/)  { sub(/m$/, "", v);  printf "%.3f", v * 60000 }
		else if (v ~ /s$/)  { sub(/s$/, "", v);  printf "%.3f", v * 1000 }
		else                { printf "nan" }
	}'
}

# run_wrk NAME THREADS CONNS SECONDS OUTFILE: runs wrk (under the taskset
# prefix WRK_PIN, empty but for the scaling table) against the target and
# sets RPS, P99_MS, REQS, ERRS, CPU_TICKS (CPU of the target's process).
WRK_PIN=()
run_wrk() {
	local name=$1 threads=$2 conns=$3 secs=$4 outfile=$5 before after p99
	local -a script=()
	hdr_args "$name"
	[[ -n ${WRK_SCRIPT[$name]:-} ]] && script=(-s "${WRK_SCRIPT[$name]}")
	before=$(cpu_ticks "${PID[$name]}")
	"${WRK_PIN[@]}" wrk -t"$threads" -c"$conns" -d"${secs}s" --latency "${HDR_ARGS[@]}" "${script[@]}" "$(url_of "$name")${WRK_PATH[$name]:-}" >"$outfile" 2>&1 || true
	after=$(cpu_ticks "${PID[$name]}")
	CPU_TICKS=$((after - before))
	RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$outfile")
	p99=$(awk '$1 == "99%" { print $2 }' "$outfile")
	REQS=$(awk '/ requests in / { print $1 }' "$outfile")
	ERRS=$(awk '
		/Non-2xx or 3xx responses:/ { n += $NF }
		/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
		END { print n + 0 }' "$outfile")
	if [[ -z $RPS || -z $p99 || -z $REQS ]]; then
		note "wrk against ${LABEL[$name]} produced no result (see $outfile)"
		RPS=nan P99_MS=nan REQS=0
		return 0
	fi
	P99_MS=$(to_ms "$p99")
	if ! kill -0 "${PID[$name]}" 2>/dev/null; then
		note "${LABEL[$name]} died during the run"
	fi
}

# gen_tls_certs: a CA and a server certificate for localhost and
# 127.0.0.1 issued by it, both ECDSA P-256, valid two days, into $TLS_DIR
# (ca.crt, server.crt, server.key), which the EXIT trap removes with $TMP.
gen_tls_certs() {
	local d=$TLS_DIR log=$TLS_DIR/openssl.log
	mkdir -p "$d"
	printf '%s\n' 'basicConstraints = critical, CA:FALSE' \
		'keyUsage = critical, digitalSignature' 'extendedKeyUsage = serverAuth' \
		'subjectAltName = DNS:localhost, IP:127.0.0.1' >"$d/server.ext"
	{
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" &&
			openssl req -x509 -new -key "$d/ca.key" -sha256 -days 2 -subj "/CN=RustyGate peer benchmark CA" \
				-addext 'basicConstraints = critical, CA:TRUE' -addext 'keyUsage = critical, keyCertSign, cRLSign' \
				-out "$d/ca.crt" &&
			openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/server.key" &&
			openssl req -new -key "$d/server.key" -subj /CN=localhost -out "$d/server.csr" &&
			openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -sha256 -days 2 \
				-set_serial "0x$(openssl rand -hex 8)" -extfile "$d/server.ext" -out "$d/server.crt"
	} >"$log" 2>&1 || { cat "$log" >&2; die "could not generate the benchmark certificate with openssl"; }
	chmod 644 "$d"/*
	note "certificate: ECDSA P-256 for localhost and 127.0.0.1, issued by a generated CA, in $d"
}

# run_hs NAME SECONDS OUTFILE: runs tlshs (fresh connection and full TLS 1.3
# handshake per request) against HTTPS target NAME and sets HS_RATE, HS_P99_MS,
# HS_DONE, HS_ERRS, HS_CLIENT_US (tlshs's own CPU per request) and CPU_TICKS
# (CPU of the target's process).
run_hs() {
	local name=$1 secs=$2 outfile=$3 before after line
	before=$(cpu_ticks "${PID[$name]}")
	"$TLSHS" -url "$(url_of "$name")" -cacert "$TLS_DIR/ca.crt" -servername localhost \
		-c "$HS_CONNS" -d "${secs}s" -bytes "$BODY_BYTES" >"$outfile" 2>&1 || true
	after=$(cpu_ticks "${PID[$name]}")
	CPU_TICKS=$((after - before))
	line=$(grep '^result ' "$outfile" || true)
	if [[ -z $line ]]; then
		note "tlshs against ${LABEL[$name]} produced no result (see $outfile)"
		HS_RATE=nan HS_P99_MS=nan HS_DONE=0 HS_ERRS=0 HS_CLIENT_US=nan
		return 0
	fi
	HS_RATE=$(sed -n 's/.* handshakes_per_sec=\([^ ]*\).*/\1/p' <<<"$line")
	HS_P99_MS=$(sed -n 's/.* p99_ms=\([^ ]*\).*/\1/p' <<<"$line")
	HS_DONE=$(sed -n 's/.* completed=\([^ ]*\).*/\1/p' <<<"$line")
	HS_ERRS=$(sed -n 's/.* errors=\([^ ]*\).*/\1/p' <<<"$line")
	HS_CLIENT_US=$(sed -n 's/.* client_cpu_us=\([^ ]*\).*/\1/p' <<<"$line")
	if ! kill -0 "${PID[$name]}" 2>/dev/null; then
		note "${LABEL[$name]} died during the run"
	fi
}

# median v1 v2 ...: median of numeric values, "nan" values ignored.
median() {
	printf '%s\n' "$@" | awk '$1 != "nan" && $1 != "" && $1 != "-" { v[n++] = $1 + 0 }
		END {
			if (n == 0) { print "nan"; exit }
			for (i = 1; i < n; i++) { x = v[i]; for (j = i - 1; j >= 0 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
			if (n % 2) print v[int(n / 2)]; else print (v[n / 2 - 1] + v[n / 2]) / 2
		}'
}

# ratio A B: A/B to two decimals, "-" when either is missing.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}

# gen_json BYTES: a JSON document of exactly BYTES bytes (records of ids,
# names, prices, stock counts, flags and tags, drawn from a fixed seed;
# blanks pad the end), on stdout.
gen_json() {
	awk -v size="$1" 'BEGIN {
		srand(42)
		n = split("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon", w, " ")
		s = "{\"items\":["
		for (i = 0; length(s) < size - 160; i++) {
			if (i) s = s ","
			s = s sprintf("{\"id\":%d,\"name\":\"%s %s\",\"price\":%.2f,\"stock\":%d,\"active\":%s,\"tags\":[\"%s\",\"%s\"]}",
				100000 + i * 37, w[int(rand() * n) + 1], w[int(rand() * n) + 1], rand() * 1000, int(rand() * 500),
				(rand() < 0.5 ? "true" : "false"), w[int(rand() * n) + 1], w[int(rand() * n) + 1])
		}
		s = s "],\"count\":" i "}"
		while (length(s) < size) s = s " "
		printf "%s", s
	}'
}

# shared_started NAME: NAME is served by the process of another target
# (SHARES) that is already started; NAME then gets its PID.
shared_started() {
	local other=${SHARES[$1]:-}
	[[ -n $other && -n ${PID[$other]:-} ]] || return 1
	PID[$1]=${PID[$other]}
	note "${LABEL[$1]} served by the process of ${LABEL[$other]}"
}

# verify_gzip NAME: the target's document comes back gzip-encoded, with
# Vary, and decodes to its size; records the encoded size in GZ_BYTES.
declare -A GZ_BYTES=()
verify_gzip() {
	local name=$1 port=${PORT[$1]} doc=${WRK_PATH[$1]} h size want=1024
	[[ $doc == */64k.json ]] && want=65536
	h=$(curl -s -D - -o "$TMP/$name.gz" --max-time 5 -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/$doc" | tr -d '\r')
	grep -qix 'content-encoding: gzip' <<<"$h" ||
		{ printf '%s\n' "$h" >&2; die "${LABEL[$name]}: /$doc is not gzip-encoded"; }
	grep -qi '^vary: .*accept-encoding' <<<"$h" ||
		{ printf '%s\n' "$h" >&2; die "${LABEL[$name]}: /$doc has no Vary: Accept-Encoding"; }
	size=$(gzip -dc <"$TMP/$name.gz" | wc -c)
	((size == want)) || die "${LABEL[$name]}: /$doc decodes to $size bytes, want $want"
	GZ_BYTES[$name]=$(wc -c <"$TMP/$name.gz")
	note "  check: /$doc gzip-encoded, ${GZ_BYTES[$name]} bytes, decodes to $size"
}

# start_redis: the redis-server of rg_rl_cluster on 127.0.0.1:$REDIS_PORT,
# no persistence.
start_redis() {
	command -v redis-server >/dev/null 2>&1 || die "redis-server not found (apt-get install -y redis-server): rg_rl_cluster cannot run"
	port_open "$REDIS_PORT" && die "port 127.0.0.1:$REDIS_PORT (redis-server of rg_rl_cluster) is already in use by another process"
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
	PID[redis]=$!
	for ((i = 0; i < 100; i++)); do
		[[ $(redis_cli PING 2>/dev/null) == PONG ]] && return 0
		sleep 0.05
	done
	die "redis-server did not start (see $TMP/redis.log)"
}
redis_cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
# redis_cmds: commands the redis-server has run so far.
redis_cmds() { redis_cli INFO stats | tr -d '\r' | awk -F: '$1 == "total_commands_processed" { print $2 }'; }

# verify_rl_cluster: rate-limit headers come back and the key is in Redis.
verify_rl_cluster() {
	headers_of rg_rl_cluster | grep -qi '^ratelimit-limit: 100000000' || die "rg_rl_cluster: no RateLimit-Limit header"
	[[ -n $(redis_cli --scan --pattern 'bench:rl:*' | head -1) ]] || die "rg_rl_cluster: no rate-limit key in Redis"
	note "  check: RateLimit-Limit present, the key is in Redis"
}

# rl_report: the cluster limiter against the local one, same rounds.
declare -A RCMDS_OF=() RTICKS_OF=()
rl_report() {
	local l c lp cp r added
	want rg_rl_local && want rg_rl_cluster || return 0
	# shellcheck disable=SC2086 # word splitting wanted: one value per round
	l=$(median ${RPS_OF[rg_rl_local]}) c=$(median ${RPS_OF[rg_rl_cluster]})
	# shellcheck disable=SC2086
	lp=$(median ${P99_OF[rg_rl_local]}) cp=$(median ${P99_OF[rg_rl_cluster]})
	echo
	echo "Rate limit, scope cluster against scope local (same rounds; one Redis on loopback):"
	echo
	echo "| row | median req/s | median p99 ms | RustyGate CPU µs/req | Redis commands/req | Redis CPU µs/req |"
	echo "|---|---:|---:|---:|---:|---:|"
	printf '| rg_rl_local | %s | %s | %s | 0 | - |\n' "$(fmt0 "$l")" "$(fmt2 "$lp")" "$(per_req "${TICKS_OF[rg_rl_local]}" "${REQS_OF[rg_rl_local]}")"
	printf '| rg_rl_cluster | %s | %s | %s | %s | %s |\n' "$(fmt0 "$c")" "$(fmt2 "$cp")" "$(per_req "${TICKS_OF[rg_rl_cluster]}" "${REQS_OF[rg_rl_cluster]}")" \
		"$(awk -v a="${RCMDS_OF[rg_rl_cluster]:-0}" -v n="${REQS_OF[rg_rl_cluster]}" 'BEGIN { if (n > 0) printf "%.2f", a / n; else print "-" }')" \
		"$(per_req "${RTICKS_OF[rg_rl_cluster]:-0}" "${REQS_OF[rg_rl_cluster]}")"
	r=$(ratio "$c" "$l")
	added=$(awk -v a="$cp" -v b="$lp" 'BEGIN { if (a == "nan" || b == "nan") print "-"; else printf "%.2f", a - b }')
	echo
	echo "- req/s cluster/local ${r}x ($(verdict "$r" '>=' 0.85)); p99 added ${added} ms ($(verdict "$added" '<=' 0.5))"
	echo "  per round: req/s $(per_round "${RPS_OF[rg_rl_cluster]}" "${RPS_OF[rg_rl_local]}")"
	echo "- Redis commands per request include the heartbeat (1/s) and the ban follower's blocking read (2/s)."
}

# ---------------------------------------------------------------- scaling table

# expand_cpus LIST: the CPU ids of a cpuset list ("0-3,6"), space separated.
expand_cpus() {
	local part i
	local -a parts out=()
	IFS=, read -ra parts <<<"$1"
	for part in "${parts[@]}"; do
		if [[ $part == *-* ]]; then
			for ((i = ${part%-*}; i <= ${part#*-}; i++)); do out+=("$i"); done
		else
			out+=("$part")
		fi
	done
	echo "${out[*]}"
}

# cpu_range FROM COUNT: the taskset list of CPUS_USE[FROM..FROM+COUNT).
cpu_range() {
	local IFS=,
	echo "${CPUS_USE[*]:$1:$2}"
}

# cpu_text LIST: LIST with runs of consecutive ids written a-b ("0-3,6").
cpu_text() {
	awk -v l="$1" 'BEGIN {
		n = split(l, c, ",")
		for (i = 1; i <= n; i = j + 1) {
			for (j = i; j < n && c[j + 1] == c[j] + 1; j++) {}
			out = out (i > 1 ? "," : "") (j > i ? c[i] "-" c[j] : c[i])
		}
		print out
	}'
}

# workers N, loops N: "1 worker" or "N workers", "1 loop" or "N loops".
workers() { if (($1 == 1)); then echo "1 worker"; else echo "$1 workers"; fi; }
loops() { if (($1 == 1)); then echo "1 loop"; else echo "$1 loops"; fi; }

# on_cpus LIST: "CPU 0" or "CPUs 0-3".
on_cpus() { if [[ $1 == *,* ]]; then echo "CPUs $(cpu_text "$1")"; else echo "CPU $1"; fi; }

# cpu_count LIST: the number of CPUs in a taskset list.
cpu_count() { awk -v l="$1" 'BEGIN { print split(l, c, ",") }'; }

# scale_plan: from CPUS (default: every CPU this shell may run on) and
# SCALE_LOOPS (default 1, 2, then 4 and 8 while they leave a CPU for the
# backend and wrk), the loop counts K of the scaling table and, for each,
# the CPUs of the proxy (SC_PROXY), of the backend (SC_BACKEND) and of wrk
# (SC_WRK), and SC_HOW, the sentence saying so. With k CPUs for the proxy
# and r = CPUS - k left: the proxy gets the first k, the backend the next
# r/2 and wrk the rest; with r = 1 backend and wrk share that CPU; with
# r = 0 proxy, backend and wrk share all CPUS.
declare -a CPUS_USE=() SCALE_KS=()
declare -A SC_PROXY=() SC_BACKEND=() SC_WRK=() SC_HOW=()
scale_plan() {
	local allowed k r b nb nw
	allowed=$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status)
	[[ -n $allowed ]] || die "cannot read the CPUs this process may use (Cpus_allowed_list in /proc/self/status)"
	read -ra CPUS_USE <<<"$(expand_cpus "$allowed")"
	CPUS=${CPUS:-${#CPUS_USE[@]}}
	[[ $CPUS =~ ^[1-9][0-9]*$ ]] || die "CPUS=$CPUS: want a number of CPUs"
	((CPUS <= ${#CPUS_USE[@]})) ||
		die "CPUS=$CPUS but this process may run on ${#CPUS_USE[@]} CPUs only ($allowed)"
	CPUS_USE=("${CPUS_USE[@]:0:CPUS}")
	if [[ -z $SCALE_LOOPS ]]; then
		SCALE_LOOPS=1
		((CPUS >= 2)) && SCALE_LOOPS+=" 2"
		for k in 4 8; do ((k < CPUS)) && SCALE_LOOPS+=" $k"; done
	fi
	read -ra SCALE_KS <<<"$SCALE_LOOPS"
	((${#SCALE_KS[@]} >= 1 && ${#SCALE_KS[@]} <= SCALE_MAX_KS)) ||
		die "SCALE_LOOPS=\"$SCALE_LOOPS\": want 1 to $SCALE_MAX_KS loop counts (the scaling table has ports 18140-18155)"
	for k in "${SCALE_KS[@]}"; do
		[[ $k =~ ^[1-9][0-9]*$ ]] && ((k <= CPUS)) ||
			die "SCALE_LOOPS: '$k' is not a loop count from 1 to CPUS=$CPUS"
		[[ -z ${SC_PROXY[$k]:-} ]] || die "SCALE_LOOPS: $k is listed twice"
		r=$((CPUS - k))
		if ((r == 0)); then
			SC_PROXY[$k]=$(cpu_range 0 "$CPUS") SC_BACKEND[$k]=${SC_PROXY[$k]} SC_WRK[$k]=${SC_PROXY[$k]}
			SC_HOW[$k]="proxy, backend ($(workers "$CPUS")) and wrk (-t$CPUS) share $(on_cpus "${SC_PROXY[$k]}"): no CPU is left to keep them apart"
			continue
		fi
		SC_PROXY[$k]=$(cpu_range 0 "$k")
		if ((r == 1)); then
			SC_BACKEND[$k]=$(cpu_range "$k" 1) SC_WRK[$k]=$(cpu_range "$k" 1)
			SC_HOW[$k]="proxy on $(on_cpus "${SC_PROXY[$k]}"); backend (1 worker) and wrk (-t1) share $(on_cpus "${SC_WRK[$k]}")"
			continue
		fi
		b=$((r / 2))
		SC_BACKEND[$k]=$(cpu_range "$k" "$b") SC_WRK[$k]=$(cpu_range $((k + b)) $((r - b)))
		nb=$b nw=$((r - b))
		SC_HOW[$k]="proxy on $(on_cpus "${SC_PROXY[$k]}"); backend ($(workers "$nb")) on $(on_cpus "${SC_BACKEND[$k]}"); wrk (-t$nw) on $(on_cpus "${SC_WRK[$k]}")"
	done
	for k in "${SCALE_KS[@]}"; do
		[[ $SCALE_CONNS =~ ^[1-9][0-9]*$ ]] && ((SCALE_CONNS >= $(cpu_count "${SC_WRK[$k]}"))) ||
			die "SCALE_CONNS=$SCALE_CONNS: want at least one connection per wrk thread ($(cpu_count "${SC_WRK[$k]}") with $(loops "$k"))"
	done
}

# render_conf SRC DST OLD NEW [OLD NEW]...: DST is SRC with every OLD
# replaced by its NEW; each OLD must occur in SRC.
render_conf() {
	local src=$1 dst=$2 text old new
	shift 2
	text=$(<"$src")
	while (($# >= 2)); do
		old=$1 new=$2
		shift 2
		[[ $text == *"$old"* ]] || die "$src no longer contains '$old': update render_conf's callers in peer.sh"
		text=${text//"$old"/"$new"}
	done
	printf '%s\n' "$text" >"$dst"
}

# scale_setup: for each loop count k (the i-th), the processes of the
# scaling table, registered as targets and pinned (PIN): sc_be_k, an nginx
# backend (nginx-backend.conf with one worker per backend CPU, on port
# 18140+4i; its second server block on 18141+4i, unused), sc_nginx_k, the
# nginx proxy (nginx-proxy.conf with k workers, on 18142+4i) and sc_rg_k,
# RustyGate (rustygate.yaml, access log on, event_loops k and GOMAXPROCS=k,
# on 18143+4i, no admin listener).
scale_setup() {
	local i k be be2 ng rg dir=$TMP/scaling
	mkdir -p "$dir"
	for i in "${!SCALE_KS[@]}"; do
		k=${SCALE_KS[$i]}
		be=$((SCALE_PORT0 + 4 * i)) be2=$((SCALE_PORT0 + 4 * i + 1)) ng=$((SCALE_PORT0 + 4 * i + 2)) rg=$((SCALE_PORT0 + 4 * i + 3))
		PORT[sc_be_$k]=$be PORT[sc_nginx_$k]=$ng PORT[sc_rg_$k]=$rg
		LABEL[sc_be_$k]="scaling backend for $(loops "$k") / $(workers "$k")"
		LABEL[sc_nginx_$k]="nginx proxy, $(workers "$k"), pinned"
		LABEL[sc_rg_$k]="RustyGate, $(loops "$k"), pinned"
		PIN[sc_be_$k]=${SC_BACKEND[$k]} PIN[sc_nginx_$k]=${SC_PROXY[$k]} PIN[sc_rg_$k]=${SC_PROXY[$k]}
		render_conf "$HERE/nginx-backend.conf" "$dir/backend-$k.conf" \
			"worker_processes 1;" "worker_processes $(cpu_count "${SC_BACKEND[$k]}");" \
			"listen 127.0.0.1:${PORT[direct]} " "listen 127.0.0.1:$be " \
			"listen 127.0.0.1:$BACKEND2_PORT " "listen 127.0.0.1:$be2 "
		render_conf "$HERE/nginx-proxy.conf" "$dir/nginx-$k.conf" \
			"worker_processes 1;" "worker_processes $k;" \
			"server 127.0.0.1:${PORT[direct]};" "server 127.0.0.1:$be;" \
			"listen 127.0.0.1:${PORT[nginx]} " "listen 127.0.0.1:$ng "
		render_conf "$HERE/rustygate.yaml" "$dir/rustygate-$k.yaml" \
			"server: { listen: \"127.0.0.1:${PORT[rustygate]}\" }" "server: { listen: \"127.0.0.1:$rg\", event_loops: \"$k\" }" \
			"admin:  { listen: \"127.0.0.1:18081\" }" "admin:  { listen: \"off\" }" \
			"\"http://127.0.0.1:${PORT[direct]}\"" "\"http://127.0.0.1:$be\""
		RG_CONF[sc_rg_$k]=$dir/rustygate-$k.yaml
		RG_ENV[sc_rg_$k]=GOMAXPROCS=$k
		for p in "$be" "$be2" "$ng" "$rg"; do
			port_open "$p" && die "port 127.0.0.1:$p (scaling table, $(loops "$k") / $(workers "$k")) is already in use by another process"
		done
	done
	return 0
}

# verify_pinned NAME: the process of NAME and its children (nginx's
# workers) may run on the CPUs of PIN[NAME] only.
verify_pinned() {
	local want got p kids
	want=$(expand_cpus "${PIN[$1]}")
	kids=$(cat /proc/"${PID[$1]}"/task/*/children 2>/dev/null || true)
	for p in "${PID[$1]}" $kids; do
		got=$(awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
		[[ $(expand_cpus "$got") == "$want" ]] ||
			die "${LABEL[$1]}: process $p may run on CPUs $got, want ${PIN[$1]} (taskset did not pin it)"
	done
}

# scale_start: starts the scaling table's processes (after scale_setup),
# each checked to be pinned.
scale_start() {
	local k t
	for k in "${SCALE_KS[@]}"; do
		start_nginx "sc_be_$k" "$TMP/scaling/backend-$k.conf"
		start_nginx "sc_nginx_$k" "$TMP/scaling/nginx-$k.conf"
		start_rustygate "sc_rg_$k"
		for t in "sc_be_$k" "sc_nginx_$k" "sc_rg_$k"; do verify_pinned "$t"; done
		note "  check: pinned: ${SC_HOW[$k]}"
	done
}

# scale_measure: warm-up, then ROUNDS rounds over the scaling rows
# (nginx then RustyGate for each loop count), wrk pinned to its CPUs.
scale_measure() {
	local r k t n
	note "scaling warm-up: ${WARMUP}s per row"
	for ((r = 0; r <= ROUNDS; r++)); do
		for k in "${SCALE_KS[@]}"; do
			n=$(cpu_count "${SC_WRK[$k]}")
			WRK_PIN=(taskset -c "${SC_WRK[$k]}")
			for t in "sc_nginx_$k" "sc_rg_$k"; do
				if ((r == 0)); then
					run_wrk "$t" "$n" "$SCALE_CONNS" "$WARMUP" "$RUN_DIR/raw/warmup-$t.txt"
					continue
				fi
				note "scaling round $r/$ROUNDS: ${LABEL[$t]} (wrk -t$n -c$SCALE_CONNS -d${DURATION}s on $(on_cpus "${SC_WRK[$k]}"))"
				run_wrk "$t" "$n" "$SCALE_CONNS" "$DURATION" "$RUN_DIR/raw/$t-round$r.txt"
				RPS_OF[$t]+="$RPS "
				P99_OF[$t]+="$P99_MS "
				REQS_OF[$t]=$((${REQS_OF[$t]:-0} + REQS))
				TICKS_OF[$t]=$((${TICKS_OF[$t]:-0} + CPU_TICKS))
				ERRS_OF[$t]=$((${ERRS_OF[$t]:-0} + ERRS))
				note "  $(printf '%.0f' "$RPS" 2>/dev/null || echo "$RPS") req/s, p99 $P99_MS ms"
			done
		done
	done
	WRK_PIN=()
}

# scale_report: the scaling table.
scale_report() {
	local k ng rg ngp rgp ngc rgc errs
	echo
	echo "Scaling: RustyGate with k event loops (server.event_loops k, GOMAXPROCS=k; access log on)"
	echo "against the nginx proxy with k workers (nginx-proxy.conf, access log off), each with its own"
	echo "nginx backend, all pinned with taskset on $CPUS CPUs ($(cpu_text "$(cpu_range 0 "$CPUS")")):"
	for k in "${SCALE_KS[@]}"; do
		echo "- $(loops "$k") / $(workers "$k"): ${SC_HOW[$k]}"
	done
	echo "wrk -c$SCALE_CONNS -d${DURATION}s --latency, one thread per wrk CPU, $ROUNDS interleaved rounds after a ${WARMUP}s warm-up;"
	echo "medians; CPU is the proxy's utime+stime per request (nginx: master and workers)."
	echo
	echo "| loops / workers | proxy CPUs | nginx req/s | RustyGate req/s | req/s RG/nginx | nginx p99 ms | RustyGate p99 ms | nginx CPU µs/req | RustyGate CPU µs/req | CPU RG/nginx | wrk errors |"
	echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for k in "${SCALE_KS[@]}"; do
		# shellcheck disable=SC2086 # word splitting wanted: one value per round
		ng=$(median ${RPS_OF[sc_nginx_$k]}) rg=$(median ${RPS_OF[sc_rg_$k]})
		# shellcheck disable=SC2086
		ngp=$(median ${P99_OF[sc_nginx_$k]}) rgp=$(median ${P99_OF[sc_rg_$k]})
		ngc=$(per_req "${TICKS_OF[sc_nginx_$k]}" "${REQS_OF[sc_nginx_$k]}")
		rgc=$(per_req "${TICKS_OF[sc_rg_$k]}" "${REQS_OF[sc_rg_$k]}")
		errs=$((${ERRS_OF[sc_nginx_$k]:-0} + ${ERRS_OF[sc_rg_$k]:-0}))
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$k" "$(cpu_text "${SC_PROXY[$k]}")" \
			"$(fmt0 "$ng")" "$(fmt0 "$rg")" "$(ratio "$rg" "$ng")" "$(fmt2 "$ngp")" "$(fmt2 "$rgp")" \
			"$ngc" "$rgc" "$(ratio "$rgc" "$ngc")" "$errs"
	done
	for k in "${SCALE_KS[@]}"; do
		echo "- $k per round: req/s RG/nginx $(per_round "${RPS_OF[sc_rg_$k]}" "${RPS_OF[sc_nginx_$k]}")"
	done
}

# ---------------------------------------------------------------- start

for t in "${selected[@]}"; do
	if port_open "${PORT[$t]}"; then
		die "port 127.0.0.1:${PORT[$t]} (${LABEL[$t]}) is already in use by another process"
	fi
	if [[ -n ${PLAIN_PORT[$t]:-} ]] && port_open "${PLAIN_PORT[$t]}"; then
		die "port 127.0.0.1:${PLAIN_PORT[$t]} (the plain listener of ${LABEL[$t]}) is already in use by another process"
	fi
done
# Every proxy needs the backend, even when the direct target is not measured.
if ! want direct && port_open "${PORT[direct]}"; then
	die "port 127.0.0.1:${PORT[direct]} (backend) is already in use by another process"
fi
if port_open "$BACKEND2_PORT"; then
	die "port 127.0.0.1:$BACKEND2_PORT (second backend) is already in use by another process"
fi
if want rg_tracing_otlp; then
	for p in "$OTLP_SINK_PORT" "$OTLP_ADMIN_PORT"; do
		port_open "$p" && die "port 127.0.0.1:$p (the OTLP sink or the admin listener of rg_tracing_otlp) is already in use by another process"
	done
fi
if { want rg_tracing || want rg_tracing0; } && port_open "$OTLP_CLOSED_PORT"; then
	die "port 127.0.0.1:$OTLP_CLOSED_PORT must be closed (the rg_tracing* OTLP endpoint, where exports are meant to fail) but something listens there"
fi

if [[ $SCALING == 1 ]]; then
	scale_plan
	scale_setup
fi

if want rg_wasm && [[ ! -f $WASM_PLUGIN ]]; then
	note "WASM plugin $WASM_PLUGIN missing: running make plugins"
	make -C "$ROOT" plugins >&2 || die "make plugins failed: the rg_wasm target cannot run"
	[[ -f $WASM_PLUGIN ]] || die "make plugins did not produce $WASM_PLUGIN"
fi
want rg_access && HDR[rg_access]=$ACCESS_AUTH
for t in $GZ_TARGETS; do
	HDR[$t]="Accept-Encoding: gzip"
done
for t in rg_waf_get rg_waf_post; do
	want "$t" && HDR[$t]="Host: api.example.com"
done
if want rg_waf_post; then
	WRK_SCRIPT[rg_waf_post]=$TMP/waf-post.lua
	write_waf_post "${WRK_SCRIPT[rg_waf_post]}"
fi
if want rg_policies; then
	BENCH_JWT=$(hs256_token "$RG_BENCH_JWT_SECRET")
	HDR[rg_policies]="Authorization: Bearer $BENCH_JWT
Origin: $BENCH_ORIGIN"
fi
if want rg_policies_rs256; then
	gen_rs256_key "$TMP/jwt"
	export RG_BENCH_JWT_PUBKEY=$TMP/jwt/rs256.pub # read by rustygate-policies-rs256.yaml
	HDR[rg_policies_rs256]="Authorization: Bearer $(rs256_token "$TMP/jwt/rs256.key")
Origin: $BENCH_ORIGIN"
fi

TLS_DIR=$TMP/tls
export RG_BENCH_TLS_DIR=$TLS_DIR # read by rustygate-tls*.yaml
TLSHS=$TMP/tlshs
OTLP_SINK=$TMP/otlpsink
if ((any_tls)); then
	gen_tls_certs
	note "building test/bench/tlshs"
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$TLSHS" ./test/bench/tlshs) >&2 ||
		die "cannot build test/bench/tlshs (go build failed)"
fi

note "starting targets (temporary files in $TMP)"
mkdir -p "$TMP/nginx-direct/json"
gen_json 1024 >"$TMP/nginx-direct/json/1k.json"
gen_json 65536 >"$TMP/nginx-direct/json/64k.json"
start_nginx direct "$HERE/nginx-backend.conf"
check_backend2
want nginx && start_nginx nginx "$HERE/nginx-proxy.conf"
if want nginx_tls; then
	# Beside the certificate: nginx reads relative certificate paths from
	# the configuration file's directory.
	cp "$HERE/nginx-proxy-tls.conf" "$TLS_DIR/"
	start_nginx nginx_tls "$TLS_DIR/nginx-proxy-tls.conf"
fi
want haproxy && start_haproxy
for t in gz_nginx_1k gz_nginx_64k; do
	want "$t" && ! shared_started "$t" && start_nginx "$t" "$HERE/nginx-proxy-gzip.conf"
done
want rg_rl_cluster && start_redis
want rg_tracing_otlp && start_otlpsink
for t in "${selected[@]}"; do
	is_rg "$t" || continue
	shared_started "$t" && continue
	start_rustygate "$t"
	case $t in
	rg_tracing_otlp) verify_tracing_otlp ;;
	rg_2backends) verify_2backends ;;
	rg_policies | rg_policies_rs256) verify_policies "$t" ;;
	rg_wasm) verify_wasm ;;
	rg_access) verify_access ;;
	rg_waf_get | rg_waf_post) verify_waf "$t" ;;
	rg_rl_cluster) verify_rl_cluster ;;
	esac
done
for t in $GZ_TARGETS; do
	want "$t" && verify_gzip "$t"
done
if [[ $SCALING == 1 ]]; then
	scale_start
fi

# ---------------------------------------------------------------- measure

mkdir -p "$RUN_DIR/raw"

declare -A RPS_OF=() P99_OF=() REQS_OF=() TICKS_OF=() ERRS_OF=() CPU_US_OF=()
declare -A HS_RATE_OF=() HS_P99_OF=() HS_DONE_OF=() HS_TICKS_OF=() HS_ERRS_OF=() HS_CLIENT_OF=()

note "warm-up: ${WARMUP}s per target"
for t in "${selected[@]}"; do
	run_wrk "$t" "$WRK_THREADS" "$WRK_CONNS" "$WARMUP" "$RUN_DIR/raw/warmup-$t.txt"
	is_tls "$t" && run_hs "$t" "$WARMUP" "$RUN_DIR/raw/warmup-hs-$t.txt"
done

# measure_round T R: round R of target T (wrk, and tlshs for the HTTPS rows).
measure_round() {
	local t=$1 r=$2
	# The steal of each round, over the rows before the WAF's.
	[[ $STEAL_GROUP == early && -z ${ROUND_STEAL0[$r]:-} ]] && ROUND_STEAL0[$r]=$(cpu_stat)
	note "round $r/$ROUNDS: ${LABEL[$t]} (wrk -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s)"
	[[ $t == rg_rl_cluster ]] && rc0=$(redis_cmds) rt0=$(cpu_ticks "${PID[redis]}")
	[[ $t == rg_tracing_otlp ]] && st0=$(cpu_ticks "${PID[otlpsink]}")
	run_wrk "$t" "$WRK_THREADS" "$WRK_CONNS" "$DURATION" "$RUN_DIR/raw/$t-round$r.txt"
	if [[ $t == rg_rl_cluster ]]; then
		RCMDS_OF[$t]=$((${RCMDS_OF[$t]:-0} + $(redis_cmds) - rc0))
		RTICKS_OF[$t]=$((${RTICKS_OF[$t]:-0} + $(cpu_ticks "${PID[redis]}") - rt0))
	fi
	# The receiver's CPU: it shares the machine with the gateway it measures.
	[[ $t == rg_tracing_otlp ]] && SINK_TICKS=$((${SINK_TICKS:-0} + $(cpu_ticks "${PID[otlpsink]}") - st0))
	RPS_OF[$t]+="$RPS "
	P99_OF[$t]+="$P99_MS "
	CPU_US_OF[$t]+="$(awk -v t="$CPU_TICKS" -v hz="$CLK_TCK" -v n="$REQS" 'BEGIN { if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print "nan" }') "
	REQS_OF[$t]=$((${REQS_OF[$t]:-0} + REQS))
	TICKS_OF[$t]=$((${TICKS_OF[$t]:-0} + CPU_TICKS))
	ERRS_OF[$t]=$((${ERRS_OF[$t]:-0} + ERRS))
	note "  $(printf '%.0f' "$RPS" 2>/dev/null || echo "$RPS") req/s, p99 $P99_MS ms"
	[[ $STEAL_GROUP == early ]] && ROUND_STEAL1[$r]=$(cpu_stat)
	is_tls "$t" || return 0
	note "round $r/$ROUNDS: ${LABEL[$t]}, new connections (tlshs -c$HS_CONNS -d${DURATION}s)"
	run_hs "$t" "$DURATION" "$RUN_DIR/raw/hs-$t-round$r.txt"
	HS_RATE_OF[$t]+="$HS_RATE "
	HS_P99_OF[$t]+="$HS_P99_MS "
	HS_CLIENT_OF[$t]+="$HS_CLIENT_US "
	HS_DONE_OF[$t]=$((${HS_DONE_OF[$t]:-0} + HS_DONE))
	HS_TICKS_OF[$t]=$((${HS_TICKS_OF[$t]:-0} + CPU_TICKS))
	HS_ERRS_OF[$t]=$((${HS_ERRS_OF[$t]:-0} + HS_ERRS))
	note "  $(printf '%.0f' "$HS_RATE" 2>/dev/null || echo "$HS_RATE") handshakes/s, p99 $HS_P99_MS ms, errors $HS_ERRS"
}

# The WAF rows run after every round of the others: the CRS leaves the
# machine slower for a while after its runs (interleaved with them, every
# feature row fell after round 1, rg_policies from 0.96x of plain in round 1
# to 0.70x over three rounds), which would weigh on the rows after them.
early=() late=()
for t in "${selected[@]}"; do
	case $t in
	rg_waf_get | rg_waf_post) late+=("$t") ;;
	*) early+=("$t") ;;
	esac
done
# The variants of the targets summary are each paired with a run of plain
# RustyGate next to them in every round (before them in odd rounds, after
# them in even ones): the machine's speed drifts within a round, and a
# variant measured minutes after the plain row carried that drift into its
# ratio. The paired runs are kept apart from the plain row's figures.
declare -A PAIR_OF=()
is_paired() {
	[[ $PAIRED == 1 ]] && want rustygate && [[ " $TARGET_VARIANTS " == *" $1 "* ]]
}
measure_pair() {
	local t=$1 r=$2
	note "round $r/$ROUNDS: plain RustyGate, paired with $t (wrk -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s)"
	run_wrk rustygate "$WRK_THREADS" "$WRK_CONNS" "$DURATION" "$RUN_DIR/raw/pair-$t-round$r.txt"
	PAIR_OF[$t]+="$RPS "
	note "  $(printf '%.0f' "$RPS" 2>/dev/null || echo "$RPS") req/s, p99 $P99_MS ms"
}
STEAL_GROUP=early
for group in early late; do
	declare -n members=$group
	STEAL_GROUP=$group
	for ((r = 1; r <= ROUNDS; r++)); do
		for t in "${members[@]}"; do
			if is_paired "$t" && ((r % 2 == 1)); then
				measure_pair "$t" "$r"
			fi
			measure_round "$t" "$r"
			if is_paired "$t" && ((r % 2 == 0)); then
				measure_pair "$t" "$r"
			fi
		done
	done
	unset -n members
done

BAR=""
if want rustygate; then
	note "bar run: wrk -t$BAR_THREADS -c$BAR_CONNS -d${BAR_DURATION}s against RustyGate"
	run_wrk rustygate "$BAR_THREADS" "$BAR_CONNS" "$BAR_DURATION" "$RUN_DIR/raw/rustygate-bar.txt"
	verdict=$(awk -v rps="$RPS" -v p99="$P99_MS" -v minr="$BAR_MIN_RPS" -v maxp="$BAR_MAX_P99_MS" \
		'BEGIN { print (rps != "nan" && p99 != "nan" && rps + 0 > minr && p99 + 0 < maxp) ? "PASS" : "FAIL" }')
	BAR=$(printf 'Bar (wrk -t%d -c%d -d%ss against RustyGate): %.0f req/s, p99 %s ms, errors %s -> %s (needs > %d req/s and p99 < %s ms)' \
		"$BAR_THREADS" "$BAR_CONNS" "$BAR_DURATION" "$RPS" "$P99_MS" "$ERRS" "$verdict" "$BAR_MIN_RPS" "$BAR_MAX_P99_MS")
	BAR_REQS=$REQS BAR_TICKS=$CPU_TICKS
fi
if want rg_1cpu; then
	note "bar run: wrk -t$BAR_THREADS -c$BAR_CONNS -d${BAR_DURATION}s against RustyGate on 1 CPU"
	run_wrk rg_1cpu "$BAR_THREADS" "$BAR_CONNS" "$BAR_DURATION" "$RUN_DIR/raw/rg_1cpu-bar.txt"
	verdict=$(awk -v rps="$RPS" -v p99="$P99_MS" -v minr="$BAR_MIN_RPS" -v maxp="$BAR_MAX_P99_MS" \
		'BEGIN { print (rps != "nan" && p99 != "nan" && rps + 0 > minr && p99 + 0 < maxp) ? "PASS" : "FAIL" }')
	BAR=$BAR${BAR:+$'\n\n'}$(printf 'Bar (wrk -t%d -c%d -d%ss against RustyGate on 1 CPU): %.0f req/s, p99 %s ms, errors %s -> %s (needs > %d req/s and p99 < %s ms)' \
		"$BAR_THREADS" "$BAR_CONNS" "$BAR_DURATION" "$RPS" "$P99_MS" "$ERRS" "$verdict" "$BAR_MIN_RPS" "$BAR_MAX_P99_MS")
fi

if [[ $SCALING == 1 ]]; then
	note "scaling table: loop counts ${SCALE_KS[*]} on $CPUS CPUs"
	scale_measure
fi

# Stop RustyGate now so that its access log is complete, then count lines.
LOG_LINE=""
if want rustygate; then
	RG_PID=${PID[rustygate]}
	rg_pid=$RG_PID
	kill -TERM "$rg_pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$rg_pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$rg_pid" 2>/dev/null; then
		note "RustyGate did not stop within 10s of SIGTERM; killing it"
		kill -KILL "$rg_pid" 2>/dev/null || true
	fi
	wait "$rg_pid" 2>/dev/null || true
	unset 'PID[rustygate]'
	lines=$(wc -l <"$RG_LOG")
	sent=0
	for f in "$RUN_DIR"/raw/rustygate-*.txt "$RUN_DIR"/raw/warmup-rustygate.txt "$RUN_DIR"/raw/pair-*.txt; do
		[[ -f $f ]] || continue
		n=$(awk '/ requests in / { print $1 }' "$f")
		sent=$((sent + ${n:-0}))
	done
	LOG_LINE="RustyGate log: $lines lines on stderr for ~$sent requests sent by wrk (access log on; nginx proxy and HAProxy log nothing)"
fi

# ---------------------------------------------------------------- report

# per_round A B: A/B round by round ("v1 v2 ..." each), two decimals each.
per_round() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		n = split(a, x, " "); split(b, y, " ")
		for (i = 1; i <= n; i++) {
			if (x[i] == "nan" || y[i] == "nan" || y[i] + 0 == 0) r = "-"; else r = sprintf("%.2f", x[i] / y[i])
			printf "%s%s", (i > 1 ? " " : ""), r
		}
	}'
}

# tls_report: the handshake table of the HTTPS targets and, for each
# RustyGate HTTPS row, its ratios to nginx_tls against the targets (of the
# medians, then round by round: the rounds show how much the machine moved).
tls_report() {
	local t hs hs_p99 kr kp hr
	echo
	echo "New TLS connections: tlshs -c$HS_CONNS -d${DURATION}s per round, each request on a fresh"
	echo "connection with a full TLS 1.3 handshake (X25519, ECDSA P-256 certificate verified"
	echo "against the generated CA, SNI localhost, no session resumption), GET / with"
	echo "\"Connection: close\"; handshakes/s = completed requests/s; latency = connect +"
	echo "handshake + request + response. Server CPU per handshake as above; tlshs CPU is the"
	echo "client's own (median over rounds): client and server share the two CPUs."
	echo
	echo "| target | median handshakes/s | median p99 ms | hs/s vs nginx_tls | p99 vs nginx_tls | server CPU µs/handshake | tlshs CPU µs/handshake | errors |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for t in "${selected[@]}"; do
		is_tls "$t" || continue
		# shellcheck disable=SC2086 # word splitting wanted: one value per round
		hs=$(median ${HS_RATE_OF[$t]})
		# shellcheck disable=SC2086
		hs_p99=$(median ${HS_P99_OF[$t]})
		# shellcheck disable=SC2086
		printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" "$(fmt0 "$hs")" "$(fmt2 "$hs_p99")" \
			"$(ratio "$hs" "$tls_ref_hs")" "$(ratio "$hs_p99" "$tls_ref_hs_p99")" \
			"$(per_req "${HS_TICKS_OF[$t]}" "${HS_DONE_OF[$t]}")" "$(awk -v v="$(median ${HS_CLIENT_OF[$t]})" \
				'BEGIN { if (v == "nan") print "-"; else printf "%.1f", v }')" "${HS_ERRS_OF[$t]}"
	done
	want nginx_tls || { echo; echo "(nginx_tls was not among the targets: no TLS ratios.)"; return 0; }
	echo
	echo "TLS targets against nginx_tls (same run): keep-alive req/s >= 0.85x, p99 <= 1.5x; handshakes/s >= 0.8x."
	for t in rg_tls rg_tls_1cpu; do
		want "$t" || continue
		# shellcheck disable=SC2086 # word splitting wanted: one value per round
		kr=$(ratio "$(median ${RPS_OF[$t]})" "$tls_ref_rps")
		# shellcheck disable=SC2086
		kp=$(ratio "$(median ${P99_OF[$t]})" "$tls_ref_p99")
		# shellcheck disable=SC2086
		hr=$(ratio "$(median ${HS_RATE_OF[$t]})" "$tls_ref_hs")
		echo "- ${LABEL[$t]}: keep-alive req/s ${kr}x ($(verdict "$kr" '>=' 0.85)), p99 ${kp}x ($(verdict "$kp" '<=' 1.5)), handshakes/s ${hr}x ($(verdict "$hr" '>=' 0.8))"
		echo "  per round: req/s $(per_round "${RPS_OF[$t]}" "${RPS_OF[nginx_tls]}"); p99 $(per_round "${P99_OF[$t]}" "${P99_OF[nginx_tls]}"); handshakes/s $(per_round "${HS_RATE_OF[$t]}" "${HS_RATE_OF[nginx_tls]}")"
	done
}

# gz_report: RustyGate's compress against nginx's gzip, size by size.
gz_report() {
	local size rg ng r
	want gz_rg_1k || want gz_rg_64k || return 0
	want gz_nginx_1k || want gz_nginx_64k || return 0
	echo
	echo "Compression: GET of a JSON document (1 KiB, 64 KiB) with \"Accept-Encoding: gzip\":"
	echo "nginx with \`gzip on\` (level 1, one worker) against RustyGate's compress at its"
	echo "defaults (gzip level 5; GOMAXPROCS=1, one event loop; access log on); same backend,"
	echo "same rounds."
	echo "Target: RustyGate >= 0.8x nginx's req/s. Bytes: the encoded document."
	echo
	echo "| size | nginx gzip req/s | RustyGate req/s | ratio | nginx CPU µs/req | RustyGate CPU µs/req | nginx bytes | RustyGate bytes |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for size in 1k 64k; do
		want "gz_rg_$size" && want "gz_nginx_$size" || continue
		# shellcheck disable=SC2086 # word splitting wanted: one value per round
		rg=$(median ${RPS_OF[gz_rg_$size]})
		# shellcheck disable=SC2086
		ng=$(median ${RPS_OF[gz_nginx_$size]})
		r=$(ratio "$rg" "$ng")
		printf '| %s | %s | %s | %s (%s) | %s | %s | %s | %s |\n' "$size" "$(fmt0 "$ng")" "$(fmt0 "$rg")" "$r" "$(verdict "$r" '>=' 0.8)" \
			"$(per_req "${TICKS_OF[gz_nginx_$size]}" "${REQS_OF[gz_nginx_$size]}")" \
			"$(per_req "${TICKS_OF[gz_rg_$size]}" "${REQS_OF[gz_rg_$size]}")" \
			"${GZ_BYTES[gz_nginx_$size]:--}" "${GZ_BYTES[gz_rg_$size]:--}"
	done
	for size in 1k 64k; do
		want "gz_rg_$size" && want "gz_nginx_$size" || continue
		echo "- $size per round: req/s $(per_round "${RPS_OF[gz_rg_$size]}" "${RPS_OF[gz_nginx_$size]}")"
	done
	echo
	echo "CPU per request is the whole process's (the two rows of a proxy share it, each"
	echo "counted during its own runs)."
}

ref_rps=nan ref_p99=nan rg_rps=nan
if want nginx; then
	# shellcheck disable=SC2086 # word splitting wanted: one value per round
	ref_rps=$(median ${RPS_OF[nginx]})
	# shellcheck disable=SC2086
	ref_p99=$(median ${P99_OF[nginx]})
fi
if want rustygate; then
	# shellcheck disable=SC2086 # word splitting wanted: one value per round
	rg_rps=$(median ${RPS_OF[rustygate]})
fi
# The HTTPS rows are compared with nginx over HTTPS.
tls_ref_rps=nan tls_ref_p99=nan tls_ref_hs=nan tls_ref_hs_p99=nan
if want nginx_tls; then
	# shellcheck disable=SC2086 # word splitting wanted: one value per round
	tls_ref_rps=$(median ${RPS_OF[nginx_tls]})
	# shellcheck disable=SC2086
	tls_ref_p99=$(median ${P99_OF[nginx_tls]})
	# shellcheck disable=SC2086
	tls_ref_hs=$(median ${HS_RATE_OF[nginx_tls]})
	# shellcheck disable=SC2086
	tls_ref_hs_p99=$(median ${HS_P99_OF[nginx_tls]})
fi

# per_req TICKS N: CPU microseconds per request.
per_req() {
	awk -v ticks="$1" -v hz="$CLK_TCK" -v n="$2" \
		'BEGIN { if (n > 0) printf "%.1f", ticks * 1e6 / hz / n; else print "-" }'
}
# fmt0 V / fmt2 V: V with 0 or 2 decimals, "-" when missing.
fmt0() { awk -v v="$1" 'BEGIN { if (v == "nan" || v == "") print "-"; else printf "%.0f", v }'; }
fmt2() { awk -v v="$1" 'BEGIN { if (v == "nan" || v == "") print "-"; else printf "%.2f", v }'; }
# verdict VALUE OP BOUND: "met" or "missed" (OP is >= or <=), "-" when missing.
verdict() {
	awk -v v="$1" -v op="$2" -v b="$3" 'BEGIN {
		if (v == "-" || v == "") { print "-"; exit }
		ok = (op == ">=") ? (v + 0 >= b + 0) : (v + 0 <= b + 0)
		print ok ? "met" : "MISSED"
	}'
}

# target_line WHAT MEASURED RATIO OP BOUND PER_ROUND: a row of the
# targets table; RATIO "-" when a row it needs was not measured.
target_line() {
	local result
	result=$(verdict "$3" "$4" "$5")
	[[ $result == - ]] && result="not measured"
	[[ $result == met ]] && TARGETS_MET=$((TARGETS_MET + 1))
	[[ $result == "not measured" ]] || TARGETS_MEASURED=$((TARGETS_MEASURED + 1))
	TARGETS_ALL=$((TARGETS_ALL + 1))
	printf '| %s | %s | %s %sx | %s | %s |\n' "$1" "$2" "$4" "$5" "$result" "$6"
}

# vs_plain NAME OP BOUND WHAT: the targets row of variant NAME against the
# plain RustyGate row (req/s ratio of the medians).
vs_plain() {
	local name=$1 r="-" rps per="-" ur pair
	if want "$name" && want rustygate; then
		# shellcheck disable=SC2086 # word splitting wanted: one value per round
		rps=$(median ${RPS_OF[$name]})
		ur=$(ratio "$rps" "$rg_rps")
		if [[ -n ${PAIR_OF[$name]:-} ]]; then
			# Paired: the median of the round ratios to the plain run next to it.
			per=$(per_round "${RPS_OF[$name]}" "${PAIR_OF[$name]}")
			# shellcheck disable=SC2086 # word splitting wanted: one value per round
			pair=$(median ${PAIR_OF[$name]})
			# shellcheck disable=SC2086
			r=$(median $per)
			[[ $r == nan ]] && r="-" || r=$(printf '%.2f' "$r")
			target_line "$4" "${r}x paired ($(fmt0 "$rps") req/s; plain next to it $(fmt0 "$pair"); against the plain row ${ur}x)" "$r" "$2" "$3" "$per"
		else
			r=$ur
			per=$(per_round "${RPS_OF[$name]}" "${RPS_OF[rustygate]}")
			target_line "$4" "${r}x ($(fmt0 "$rps") / $(fmt0 "$rg_rps") req/s)" "$r" "$2" "$3" "$per"
		fi
	else
		target_line "$4" "- (needs $name and rustygate in TARGETS)" "-" "$2" "$3" "-"
	fi
}

# targets_report: the targets of the HTTP/1.1 engine, each with the ratio
# this run measured, its bound and met or MISSED.
targets_report() {
	local r rp ng_us rg_us workers
	TARGETS_MET=0 TARGETS_ALL=0 TARGETS_MEASURED=0
	workers=$(awk '$1 == "worker_processes" { print $2 + 0 }' "$HERE/nginx-proxy.conf")
	echo
	echo "## Targets (this run)"
	echo
	echo "Plain = the RustyGate row (event_loops auto: one loop per CPU, $(nproc) here; access log on);"
	echo "nginx = the nginx proxy row ($workers worker; access log off). Ratios of the medians over the rounds;"
	echo "\"per round\" gives the same ratio round by round (how much the machine moved)."
	[[ $PAIRED == 1 ]] && echo "The variants against plain are paired: in each round plain RustyGate ran again next to the variant" \
		"(before it in odd rounds, after it in even ones), and the ratio is the median of those round ratios."
	echo
	echo "| target | measured | bound | result | per round |"
	echo "|---|---|---|---|---|"
	if want rustygate && want nginx; then
		r=$(ratio "$rg_rps" "$ref_rps")
		target_line "plain req/s vs nginx" "${r}x ($(fmt0 "$rg_rps") / $(fmt0 "$ref_rps") req/s)" "$r" ">=" 1.00 \
			"$(per_round "${RPS_OF[rustygate]}" "${RPS_OF[nginx]}")"
		# shellcheck disable=SC2086 # word splitting wanted: one value per round
		rp=$(median ${P99_OF[rustygate]})
		r=$(ratio "$rp" "$ref_p99")
		target_line "plain p99 vs nginx" "${r}x ($(fmt2 "$rp") / $(fmt2 "$ref_p99") ms)" "$r" "<=" 1.00 \
			"$(per_round "${P99_OF[rustygate]}" "${P99_OF[nginx]}")"
		rg_us=$(per_req "${TICKS_OF[rustygate]}" "${REQS_OF[rustygate]}")
		ng_us=$(per_req "${TICKS_OF[nginx]}" "${REQS_OF[nginx]}")
		r=$(ratio "$rg_us" "$ng_us")
		target_line "plain CPU µs/req vs nginx" "${r}x ($rg_us / $ng_us µs)" "$r" "<=" 1.00 \
			"$(per_round "${CPU_US_OF[rustygate]}" "${CPU_US_OF[nginx]}")"
	else
		target_line "plain req/s vs nginx" "- (needs rustygate and nginx in TARGETS)" "-" ">=" 1.00 "-"
		target_line "plain p99 vs nginx" "- (needs rustygate and nginx in TARGETS)" "-" "<=" 1.00 "-"
		target_line "plain CPU µs/req vs nginx" "- (needs rustygate and nginx in TARGETS)" "-" "<=" 1.00 "-"
	fi
	vs_plain rg_policies ">=" 0.90 "cors + rate_limit + jwt HS256 (token cache) vs plain"
	vs_plain rg_policies_rs256 ">=" 0.90 "cors + rate_limit + jwt RS256 (token cache) vs plain"
	vs_plain rg_tracing_otlp ">=" 0.85 "tracing ratio 1.0, exported to an OTLP receiver, vs plain"
	vs_plain rg_wasm ">=" 0.90 "wasm add_header vs plain"
	if want rg_1cpu && want nginx; then
		echo
		# shellcheck disable=SC2086 # word splitting wanted: one value per round
		echo "Not a target, for reading the first three rows: rg_1cpu (RustyGate held to one CPU, one loop: nginx's budget)" \
			"against nginx: req/s $(ratio "$(median ${RPS_OF[rg_1cpu]})" "$ref_rps")x, p99 $(ratio "$(median ${P99_OF[rg_1cpu]})" "$ref_p99")x," \
			"CPU/req $(ratio "$(per_req "${TICKS_OF[rg_1cpu]}" "${REQS_OF[rg_1cpu]}")" "$(per_req "${TICKS_OF[nginx]}" "${REQS_OF[nginx]}")")x;" \
			"the scaling table compares them pinned, loop for worker."
	fi
	echo "The target of no allocation per request on these paths is checked by TestProxyAllocations (make test), not here."
	echo
	echo "$TARGETS_MET of $TARGETS_MEASURED measured targets met in this run$( ((TARGETS_ALL > TARGETS_MEASURED)) && echo "; $((TARGETS_ALL - TARGETS_MEASURED)) not measured (their rows were not among TARGETS)")."
}

variants=()
for t in "${selected[@]}"; do
	[[ $t == rg_* ]] && variants+=("$t")
done

{
	echo "# RustyGate peer benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- machine: $(nproc) CPUs, $(uname -sr); load generator, proxies and backend share them"
	echo "- load average before the run: $LOADAVG, after: $(cut -d' ' -f1-3 /proc/loadavg) (other load on the machine skews every number)"
	steal=""
	for ((r = 1; r <= ROUNDS; r++)); do
		[[ -n ${ROUND_STEAL1[$r]:-} ]] && steal+="${steal:+, }round $r $(steal_pct "${ROUND_STEAL0[$r]}" "${ROUND_STEAL1[$r]}")%"
	done
	[[ -n $steal ]] && echo "- CPU steal during the rounds (before the WAF rows; time the hypervisor gave to other guests while this one had work; above a few percent, the machine itself was slower): $steal"
	echo "- wrk -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s --latency, $ROUNDS interleaved rounds, ${WARMUP}s warm-up per target; medians over rounds"
	echo "- backend: $(nginx -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1, ${BODY_BYTES}-byte body"
	want haproxy && echo "- $(haproxy -v 2>/dev/null | head -1 | awk '{print "HAProxy " $3}')"
	want rustygate && echo "- RustyGate: $({ "$RG_BIN" version 2>/dev/null || echo unknown; } | head -1)"
	echo
	echo "| target | median req/s | median p99 ms | req/s vs nginx | p99 vs nginx | vs RustyGate | server CPU µs/req | wrk errors |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for t in "${selected[@]}"; do
		# shellcheck disable=SC2086 # word splitting wanted: one value per round
		rps=$(median ${RPS_OF[$t]})
		# shellcheck disable=SC2086
		p99=$(median ${P99_OF[$t]})
		cpu_us=$(per_req "${TICKS_OF[$t]}" "${REQS_OF[$t]}")
		# vs RustyGate: req/s against the plain rustygate row, for it and the rg_* rows.
		vs_rg=""
		[[ $t == rustygate || $t == rg_* ]] && vs_rg=$(ratio "$rps" "$rg_rps")
		ref_r=$ref_rps ref_p=$ref_p99
		is_tls "$t" && ref_r=$tls_ref_rps ref_p=$tls_ref_p99
		printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" "$(fmt0 "$rps")" "$(fmt2 "$p99")" \
			"$(ratio "$rps" "$ref_r")" "$(ratio "$p99" "$ref_p")" "$vs_rg" "$cpu_us" "${ERRS_OF[$t]}"
	done
	echo
	echo "Server CPU is utime+stime of the process under test (nginx: master and worker;"
	echo "for the direct row, the backend) during the measured rounds, per request."
	echo "The nginx proxy and HAProxy run with logging off; RustyGate writes an access"
	echo "log line per request. wrk errors are non-2xx responses plus socket errors"
	echo "(connect/read/write/timeout) summed over the measured rounds."
	((any_tls)) && echo "HTTPS rows (nginx_tls, rg_tls*): wrk over https:// on keep-alive connections; their \"vs nginx\" ratios are against the nginx_tls row."
	if ((${#variants[@]})); then
		echo
		echo "RustyGate variants: each its own RustyGate process, access log on and"
		echo "otherwise configured like the RustyGate row but for one feature; \"vs RustyGate\""
		echo "is its median req/s over that of the plain RustyGate row measured in the same"
		echo "rounds (the cost of the feature end to end; the CPU column gives it per request)."
		want rustygate || echo "(rustygate was not among the targets: no \"vs RustyGate\" ratios.)"
		for t in "${variants[@]}"; do
			case $t in
			rg_2backends) echo "- rg_2backends: end-to-end req/s with 2 backends vs 1: the route of the RustyGate row with backends 127.0.0.1:${PORT[direct]} and 127.0.0.1:$BACKEND2_PORT, round_robin (two server blocks of the same one-worker backend nginx, so the backend capacity is unchanged)." ;;
			rg_policies) echo "- rg_policies: cors (Origin $BENCH_ORIGIN allowed), rate_limit per IP at 100000000 per 60 s (never triggers) and jwt HS256 (audience api, token cache on: cache_size 10000, cache_ttl 5m) on the route; wrk sends 'Origin: $BENCH_ORIGIN' and 'Authorization: Bearer <HS256 token signed by peer.sh>' to this target only, so the signature is verified once and later requests hit the cache. Checked before measuring: token -> 200, no token -> 401." ;;
			rg_policies_rs256) echo "- rg_policies_rs256: rg_policies with jwt RS256: an RSA 2048 key pair generated with openssl at start-up, the token signed with its private key, the public key in public_key_file; token cache on as in rg_policies. Checked before measuring: token -> 200, no token -> 401." ;;
			rg_tracing) echo "- rg_tracing: tracing on, ratio 1.0, OTLP endpoint 127.0.0.1:$OTLP_CLOSED_PORT where nothing listens: every request creates and batches its spans, the exports fail and the spans are dropped. This measures span creation, not export." ;;
			rg_tracing_otlp) echo "- rg_tracing_otlp: tracing on, ratio 1.0, exporting over OTLP/HTTP (batches of up to 1024 spans, queue of 8192) to test/bench/otlpsink on 127.0.0.1:$OTLP_SINK_PORT, which decodes every export: span creation and export. At the end of the run the sink had received: $(otlp_stats 2>/dev/null || echo '?'); the gateway counted $(otlp_metric exported) spans exported, $(otlp_metric queue_full) dropped on a full queue and $(otlp_metric export_failed) in failed exports (a request never waits for the exporter). The sink used $(per_req "${SINK_TICKS:-0}" "${REQS_OF[rg_tracing_otlp]}") µs of CPU per request during the measured rounds, on the CPUs the gateway, the backend and wrk share (a collector elsewhere would leave them that time). Checked before measuring: the spans of 4 requests reach the sink." ;;
			rg_tracing0) echo "- rg_tracing0: tracing on with ratio 0: no trace is sampled (wrk sends no traceparent), spans are non-recording; the cost of tracing enabled but not sampling." ;;
			rg_wasm) echo "- rg_wasm: WASM plugin plugins/examples/add_header.wasm on the route (handle_request + handle_response per request); checked before measuring: X-RustyGate-Plugin: executed." ;;
			rg_access) echo "- rg_access: the middlewares listed in test/bench/rustygate-access.yaml on the route (ip_filter allowing the client, basic_auth with one bcrypt user whose verification is cached, headers setting and removing request and response headers); wrk sends the user's 'Authorization: Basic' to this target only. Checked before measuring: credentials -> 200, none -> 401." ;;
			rg_waf_get) echo "- rg_waf_get: the waf middleware, OWASP CRS at paranoia level 1 (Coraza), on the route; wrk GETs ${URL_PATH[rg_waf_get]} with 'Host: api.example.com'. The route runs off the event loops (the WAF declares it). Checked before measuring: 200, and 403 for an SQL injection." ;;
			rg_waf_post) echo "- rg_waf_post: the same WAF; wrk POSTs a ${WAF_BODY_BYTES:-2048}-byte JSON order (Content-Type application/json, parsed by the CRS's JSON body processor) with 'Host: api.example.com'. Checked before measuring: 200, and 403 for an SQL injection." ;;
			rg_1cpu) echo "- rg_1cpu: the RustyGate row's configuration with GOMAXPROCS=1, so event_loops auto runs one loop on one CPU: the same CPU budget as the nginx proxy's single worker (the RustyGate row uses both CPUs, two loops)." ;;
			rg_tls) echo "- rg_tls: HTTPS (server.tls) with the nginx_tls certificate, both CPUs; \"vs RustyGate\" is the end-to-end cost of TLS against the plain row. TLS connections are served on a goroutine each, not on the event loops." ;;
			rg_tls_1cpu) echo "- rg_tls_1cpu: rg_tls with GOMAXPROCS=1, the CPU budget of nginx_tls's single worker." ;;
			rg_rl_local) echo "- rg_rl_local: rate_limit scope local per IP at 100000000 per 60 s (never triggers): the baseline of rg_rl_cluster." ;;
			rg_rl_cluster) echo "- rg_rl_cluster: the same limit with scope cluster: one EVALSHA of the GCRA script per request in a redis-server on 127.0.0.1:$REDIS_PORT (default timeout 10ms, on_error local); the route runs off the event loops (the limiter waits on Redis and declares it)." ;;
			esac
		done
	fi
	if want rustygate; then
		echo
		rg_secs=$(awk -v t="${TICKS_OF[rustygate]}" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
		rg_us=$(awk -v t="${TICKS_OF[rustygate]}" -v hz="$CLK_TCK" -v n="${REQS_OF[rustygate]}" \
			'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }')
		bar_us=$(awk -v t="$BAR_TICKS" -v hz="$CLK_TCK" -v n="$BAR_REQS" \
			'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }')
		echo "RustyGate CPU: ${rg_secs}s (utime+stime from /proc/$RG_PID/stat) for ${REQS_OF[rustygate]} requests in the measured rounds = ${rg_us} µs/request; bar run ${bar_us} µs/request"
		echo
		echo "$LOG_LINE"
		echo
		echo "$BAR"
	fi
	((any_tls)) && tls_report
	gz_report
	rl_report
	if [[ $SCALING == 1 ]]; then
		scale_report
	fi
	echo
	echo "Raw wrk output: $RUN_DIR/raw/"
} | tee "$RUN_DIR/summary.md"

# The HTTP/2 rows (test/bench/h2peer.sh), on the same backend.
if [[ ${H2:-1} == 1 ]]; then
	if command -v h2load >/dev/null 2>&1; then
		echo >>"$RUN_DIR/summary.md"
		ROUNDS=$ROUNDS OUT=$OUT RG_BIN=$RG_BIN "$HERE/h2peer.sh" | tee -a "$RUN_DIR/summary.md" ||
			note "h2peer.sh failed: no HTTP/2 rows"
	else
		note "h2load not installed (apt-get install -y nghttp2-client): no HTTP/2 rows"
	fi
fi

# The targets last, where a reader of `make bench` looks.
targets_report | tee -a "$RUN_DIR/summary.md"

cp "$RUN_DIR/summary.md" "$OUT/latest.md"
exit 0
