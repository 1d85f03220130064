#!/usr/bin/env bash
# HTTP/2 front benchmark: nginx (listen ... http2), HAProxy (bind ... proto
# h2, and ALPN h2 over TLS) and RustyGate as HTTP/2 reverse proxies in front
# of the same HTTP/1.1 nginx backend (64-byte body), all on 127.0.0.1,
# driven by h2load (Debian package nghttp2-client). Run by peer.sh at its
# end (its backend is then reused), or alone:
#
#   test/bench/h2peer.sh
#   ROUNDS=1 REQUESTS=50000 test/bench/h2peer.sh
#
# Rows, each measured over h2c with prior knowledge and over h2 (TLS 1.3,
# ALPN h2; an ECDSA P-256 certificate generated with openssl at start-up):
#   nginx      nginx-h2.conf, one worker: 18120 h2c, 18121 h2
#   haproxy    haproxy-h2.cfg, one thread: 18122 h2c, 18123 h2
#   rustygate  rustygate-h2.yaml, both CPUs, access log on: 18124 h2c, 18125 h2
# The backend is nginx-backend.conf on 18001 (started here unless it
# answers already).
#
# Each run is `h2load -n $REQUESTS -c 32 -m 10 -t 2`; the targets are
# interleaved round by round and the table gives medians over rounds of
# req/s, p99 latency (from h2load's per-request log) and the server's CPU
# (utime+stime of the process and its children) per request.
#
# Environment: ROUNDS (3), REQUESTS (200000), RG_BIN (bin/rustygate),
# RG_CONF (test/bench/rustygate-h2.yaml), OUT (test/bench/out/), KEEP_TMP
# (0). The servers' logs are kept in the run's directory.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-200000}
RG_BIN=${RG_BIN:-$ROOT/bin/rustygate}
RG_CONF=${RG_CONF:-$HERE/rustygate-h2.yaml}
OUT=${OUT:-$ROOT/test/bench/out}
KEEP_TMP=${KEEP_TMP:-0}
H2LOAD_ARGS=(-n "$REQUESTS" -c 32 -m 10 -t 2)
case $RG_BIN in /*) ;; *) RG_BIN=$ROOT/$RG_BIN ;; esac

declare -A PORT=([nginx_h2c]=18120 [nginx_h2]=18121 [haproxy_h2c]=18122 [haproxy_h2]=18123
	[rustygate_h2c]=18124 [rustygate_h2]=18125)
declare -A PID=()
TARGETS=(nginx haproxy rustygate)
MODES=(h2c h2)

die() {
	printf 'h2peer.sh: error: %s\n' "$*" >&2
	exit 1
}
note() { printf '%s\n' "$*" >&2; }

for tool in h2load nginx curl openssl awk; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install -y nghttp2-client nginx curl openssl)"
done
if ! command -v haproxy >/dev/null 2>&1; then
	note "haproxy not installed: no HAProxy rows"
	TARGETS=(nginx rustygate)
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rustygate-h2peer.XXXXXX")
chmod 755 "$TMP"
RUN_DIR=$OUT/h2peer-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN_DIR/raw"

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
	local rc=$? name pid i
	trap - EXIT INT TERM
	for name in "${!PID[@]}"; do kill -TERM "${PID[$name]}" 2>/dev/null || true; done
	cp "$TMP"/*.log "$TMP"/nginx/error.log "$RUN_DIR/" 2>/dev/null || true
	for name in "${!PID[@]}"; do
		pid=${PID[$name]}
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	[[ $KEEP_TMP == 1 ]] && note "temporary files kept in $TMP" || rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for p in "${PORT[@]}"; do
	port_open "$p" && die "port 127.0.0.1:$p is already taken"
done

# cpu_ticks PID: utime+stime of PID and its direct children.
cpu_ticks() {
	local total=0 p line kids
	kids=$(cat /proc/"$1"/task/*/children 2>/dev/null || true)
	for p in "$1" $kids; do
		line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		read -ra f <<<"${line##*) }"
		total=$((total + f[11] + f[12]))
	done
	echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# url_of TARGET MODE
url_of() {
	if [[ $2 == h2 ]]; then
		printf 'https://127.0.0.1:%s/' "${PORT[$1_$2]}"
	else
		printf 'http://127.0.0.1:%s/' "${PORT[$1_$2]}"
	fi
}

# wait_ready TARGET: both of its ports answer 200 with the 64-byte body
# over HTTP/2 within 10 s.
wait_ready() {
	local t=$1 m i out
	for m in "${MODES[@]}"; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "${PID[$t]}" 2>/dev/null || die "$t exited during start-up (logs in $TMP)"
			if [[ $m == h2 ]]; then
				out=$(curl -sk --http2 -o /dev/null -w '%{http_code} %{size_download} %{http_version}' --max-time 1 "$(url_of "$t" "$m")" 2>/dev/null) || true
			else
				out=$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code} %{size_download} %{http_version}' --max-time 1 "$(url_of "$t" "$m")" 2>/dev/null) || true
			fi
			[[ $out == "200 64 2" ]] && break
			sleep 0.1
		done
		[[ $out == "200 64 2" ]] || die "$t $m on $(url_of "$t" "$m") answered '${out:-nothing}', want '200 64 2' (code, bytes, HTTP version)"
	done
	note "$t ready (pid ${PID[$t]})"
}

TLS_DIR=$TMP/tls
mkdir -p "$TLS_DIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
	-addext 'subjectAltName = DNS:localhost, IP:127.0.0.1' \
	-keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.crt" >"$TLS_DIR/openssl.log" 2>&1 ||
	{ cat "$TLS_DIR/openssl.log" >&2; die "openssl could not generate the certificate"; }
cat "$TLS_DIR/server.crt" "$TLS_DIR/server.key" >"$TLS_DIR/server.pem"
chmod 644 "$TLS_DIR"/*
export RG_BENCH_TLS_DIR=$TLS_DIR

if ! port_open 18001; then
	mkdir -p "$TMP/backend/tmp"
	nginx -p "$TMP/backend/" -c "$HERE/nginx-backend.conf" -e "$TMP/backend/error.log" >"$TMP/backend/stderr.log" 2>&1 &
	PID[backend]=$!
	for ((i = 0; i < 100; i++)); do port_open 18001 && break; sleep 0.1; done
	port_open 18001 || die "the backend (nginx-backend.conf) did not start"
fi

mkdir -p "$TMP/nginx/tmp"
cp "$HERE/nginx-h2.conf" "$TLS_DIR/nginx-h2.conf"
nginx -p "$TMP/nginx/" -c "$TLS_DIR/nginx-h2.conf" -e "$TMP/nginx/error.log" >"$TMP/nginx/stderr.log" 2>&1 &
PID[nginx]=$!
wait_ready nginx
if [[ " ${TARGETS[*]} " == *" haproxy "* ]]; then
	haproxy -db -f "$HERE/haproxy-h2.cfg" >"$TMP/haproxy.log" 2>&1 &
	PID[haproxy]=$!
	wait_ready haproxy
fi
if [[ ! -x $RG_BIN ]]; then
	make -C "$ROOT" build >&2 || die "cannot build RustyGate"
fi
"$RG_BIN" run -c "$RG_CONF" 2>"$TMP/rustygate.log" >/dev/null &
PID[rustygate]=$!
wait_ready rustygate

# run TARGET MODE ROUND: one h2load run; appends "rps p99_ms cpu_us errors".
declare -A RES=()
run() {
	local t=$1 m=$2 r=$3 raw=$RUN_DIR/raw/$1-$2-$3 before after rps done_ p99 errs
	before=$(cpu_ticks "${PID[$t]}")
	h2load "${H2LOAD_ARGS[@]}" --log-file="$raw.log" "$(url_of "$t" "$m")" >"$raw.txt" 2>&1 || true
	after=$(cpu_ticks "${PID[$t]}")
	rps=$(awk '/^finished in/ { gsub(",", "", $4); print $4 }' "$raw.txt")
	done_=$(awk '/^requests:/ { print $8 }' "$raw.txt")
	errs=$(awk '/^requests:/ { print $10 + $12 }' "$raw.txt")
	p99=$(awk '{ print $3 }' "$raw.log" | sort -n | awk '{ a[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.2f", a[i] / 1000 }')
	local cpu
	cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="${done_:-0}" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }')
	rm -f "$raw.log"
	RES[$t,$m]+="${rps:-0} $p99 $cpu ${errs:-0};"
	note "round $r: $t $m: ${rps:-0} req/s, p99 $p99 ms, $cpu µs/req CPU, errors ${errs:-?}"
}

# Warm-up, then the interleaved rounds.
for t in "${TARGETS[@]}"; do
	for m in "${MODES[@]}"; do h2load -n 20000 -c 32 -m 10 -t 2 "$(url_of "$t" "$m")" >/dev/null 2>&1 || true; done
done
for ((r = 1; r <= ROUNDS; r++)); do
	for m in "${MODES[@]}"; do
		for t in "${TARGETS[@]}"; do run "$t" "$m" "$r"; done
	done
done

# med FIELD TARGET MODE: the median of a field over the rounds.
med() {
	tr ';' '\n' <<<"${RES[$2,$3]}" | awk -v f="$1" 'NF { print $f }' | sort -g |
		awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print 0 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

{
	echo "## HTTP/2 front: h2load ${H2LOAD_ARGS[*]}, medians of $ROUNDS rounds"
	echo
	echo "- machine: $(nproc) CPUs, $(uname -sr); h2load, proxies and backend share them"
	echo "- backend: nginx, HTTP/1.1, 64-byte body; RustyGate writes an access log line per request, nginx and HAProxy log nothing"
	echo
	echo "| mode | target | median req/s | vs nginx | median p99 ms | server CPU µs/req | errors (last round) |"
	echo "|---|---|---|---|---|---|---|"
	for m in "${MODES[@]}"; do
		ref=$(med 1 nginx "$m")
		for t in "${TARGETS[@]}"; do
			rps=$(med 1 "$t" "$m")
			last=${RES[$t,$m]%;}
			last=${last##*;}
			printf '| %s | %s | %.0f | %s | %s | %s | %s |\n' "$m" "$t" "$rps" "$(ratio "$rps" "$ref")" \
				"$(med 2 "$t" "$m")" "$(med 3 "$t" "$m")" "${last##* }"
		done
	done
	echo
	echo "Raw h2load output: $RUN_DIR/raw/"
} | tee "$RUN_DIR/summary.md"
cp "$RUN_DIR/summary.md" "$OUT/h2-latest.md"
