#!/usr/bin/env bash
# L4 (TCP proxy) benchmark: RustyGate's l4 listeners against HAProxy in
# TCP mode and against no proxy at all, in front of the same backend, all
# on 127.0.0.1.
#
#   test/l4bench/run.sh                 # or: make bench-l4
#   DURATION=2 ROUNDS=1 test/l4bench/run.sh
#   TARGETS="direct rg-splice haproxy" test/l4bench/run.sh
#
# Targets (each a process started by this script and stopped by a trap on
# exit, failure or Ctrl-C; the backend is `l4bench serve` on 127.0.0.1:19101):
#   direct          the backend itself, no proxy
#   rg-splice       RustyGate, l4 listener with datapath splice  (127.0.0.1:19102)
#   rg-kernel       RustyGate, l4 listener with datapath kernel  (127.0.0.1:19103);
#                   when the gateway cannot splice in the kernel it falls back
#                   to splice(2): the script reads the gateway's "l4
#                   connection" log lines (field datapath) and labels the row
#                   with what actually relayed (a fallback row is a control:
#                   it must agree with rg-splice within noise)
#   haproxy         HAProxy mode tcp, nbthread 2, default buffers (127.0.0.1:19104)
#   haproxy-splice  HAProxy mode tcp, nbthread 2, option splice-auto (127.0.0.1:19105)
# Configs: test/l4bench/{rustygate-splice,rustygate-kernel}.yaml,
# test/l4bench/{haproxy,haproxy-splice}.cfg.
#
# Each round runs `l4bench measure` against every target in turn (targets
# interleaved, so drift in machine speed hits all of them alike):
#   bulk up     client -> sink, one connection, DURATION seconds
#   bulk down   source -> client, one connection, DURATION seconds
#   echo        both ways at once on one connection, DURATION seconds
#   RTT         RTT_COUNT round trips of 64 bytes on one connection
#   CPU/GiB     utime+stime of the proxy process (/proc/PID/stat) during
#               bulk up, bulk down and echo, per GiB it relayed (echo bytes
#               count twice)
# The table reports medians over ROUNDS rounds.
#
# Environment knobs:
#   DURATION   seconds per throughput test               (default 5)
#   ROUNDS     interleaved rounds                        (default 3)
#   RTT_COUNT  64-byte round trips per RTT test          (default 20000)
#   WARMUP     seconds per throughput test in warm-up    (default 1)
#   RG_BIN     RustyGate binary (built with `make build` when missing)
#                                                        (default bin/rustygate)
#   OUT        output directory                          (default test/l4bench/out/)
#   TARGETS    targets to run (default "direct rg-splice rg-kernel haproxy haproxy-splice")
#   KEEP_TMP   1 keeps the temporary directory (logs, l4bench binary)
#
# Exit status: 0 whatever the numbers are; non-zero only when a process
# could not be started, a port was taken, a tool is missing or a
# measurement failed.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
RTT_COUNT=${RTT_COUNT:-20000}
WARMUP=${WARMUP:-1}
RG_BIN=${RG_BIN:-$ROOT/bin/rustygate}
OUT=${OUT:-$ROOT/test/l4bench/out}
TARGETS=${TARGETS:-direct rg-splice rg-kernel haproxy haproxy-splice}
KEEP_TMP=${KEEP_TMP:-0}

case $RG_BIN in /*) ;; *) RG_BIN=$ROOT/$RG_BIN ;; esac
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac

BACKEND_PORT=19101
declare -A PORT=([direct]=$BACKEND_PORT [rg-splice]=19102 [rg-kernel]=19103 [haproxy]=19104 [haproxy-splice]=19105)
declare -A LABEL=(
	[direct]="direct (no proxy)"
	[rg-splice]="RustyGate, datapath splice"
	[rg-kernel]="RustyGate, datapath kernel"
	[haproxy]="HAProxy mode tcp"
	[haproxy-splice]="HAProxy mode tcp, splice-auto"
)
declare -A PID=()

die() {
	printf 'l4bench/run.sh: error: %s\n' "$*" >&2
	exit 1
}
note() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- setup

for tool in go awk; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done

selected=()
for t in $TARGETS; do
	[[ -n ${PORT[$t]:-} ]] || die "unknown target '$t' (known: ${!PORT[*]})"
	if [[ $t == haproxy* ]] && ! command -v haproxy >/dev/null 2>&1; then
		note "haproxy not installed (apt-get install -y haproxy): skipping $t"
		continue
	fi
	selected+=("$t")
done
((${#selected[@]})) || die "no targets selected"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rustygate-l4bench.XXXXXX")
STAMP=$(date +%Y%m%d-%H%M%S)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
RUN_DIR=$OUT/l4-$STAMP
CLK_TCK=$(getconf CLK_TCK)

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
	local rc=$? name pid i
	trap - EXIT INT TERM
	for name in "${!PID[@]}"; do
		kill -TERM "${PID[$name]}" 2>/dev/null || true
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

port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_port NAME PORT LOGFILE: the process is alive and accepts on PORT within 10 s.
wait_port() {
	local name=$1 port=$2 logfile=$3 pid=${PID[$1]} i
	for ((i = 0; i < 100; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			note "---- last lines of $logfile:"
			tail -n 20 "$logfile" >&2 || true
			die "$name exited during start-up (see above)"
		fi
		if port_open "$port"; then
			note "$name ready on 127.0.0.1:$port (pid $pid)"
			return 0
		fi
		sleep 0.1
	done
	note "---- last lines of $logfile:"
	tail -n 20 "$logfile" >&2 || true
	die "$name does not accept on 127.0.0.1:$port within 10s"
}

for t in "${selected[@]}"; do
	if port_open "${PORT[$t]}"; then
		die "port 127.0.0.1:${PORT[$t]} (${LABEL[$t]}) is already in use by another process"
	fi
done
port_open "$BACKEND_PORT" && die "port 127.0.0.1:$BACKEND_PORT (backend) is already in use by another process"

note "building l4bench (temporary files in $TMP)"
(cd "$ROOT" && go build -o "$TMP/l4bench" ./test/l4bench) || die "cannot build ./test/l4bench"
L4BENCH=$TMP/l4bench

want_rg=0
for t in "${selected[@]}"; do [[ $t == rg-* ]] && want_rg=1; done
if ((want_rg)) && [[ ! -x $RG_BIN ]]; then
	note "RustyGate binary $RG_BIN missing: running make build"
	make -C "$ROOT" build >&2 || die "cannot build RustyGate (make build failed)"
	[[ -x $RG_BIN ]] || die "make build did not produce $RG_BIN (set RG_BIN to the binary)"
fi

"$L4BENCH" serve -listen "127.0.0.1:$BACKEND_PORT" >"$TMP/backend.log" 2>&1 &
PID[backend]=$!
wait_port backend "$BACKEND_PORT" "$TMP/backend.log"

for t in "${selected[@]}"; do
	log=$TMP/$t.log
	case $t in
	direct) continue ;;
	rg-*)
		cfg=$HERE/rustygate-${t#rg-}.yaml
		"$RG_BIN" validate "$cfg" >"$log" 2>&1 || { cat "$log" >&2; die "RustyGate rejects $cfg"; }
		"$RG_BIN" run -c "$cfg" >"$log" 2>&1 &
		;;
	haproxy*)
		cfg=$HERE/$t.cfg
		haproxy -c -q -f "$cfg" >"$log" 2>&1 || { cat "$log" >&2; die "haproxy rejects $cfg"; }
		haproxy -db -f "$cfg" >"$log" 2>&1 &
		;;
	esac
	PID[$t]=$!
	wait_port "$t" "${PORT[$t]}" "$log"
done

# ---------------------------------------------------------------- measure

mkdir -p "$RUN_DIR/raw"

# measure TARGET SECONDS RTT OUTFILE: one l4bench measure run.
measure() {
	local t=$1 secs=$2 rtt=$3 outfile=$4 pidarg=()
	[[ $t != direct ]] && pidarg=(-pid "${PID[$t]}")
	"$L4BENCH" measure -addr "127.0.0.1:${PORT[$t]}" "${pidarg[@]}" -clk-tck "$CLK_TCK" \
		-duration "${secs}s" -rtt "$rtt" >"$outfile" 2>&1 ||
		{ cat "$outfile" >&2; die "measuring ${LABEL[$t]} failed (see above)"; }
	kill -0 "${PID[$t]:-${PID[backend]}}" 2>/dev/null || die "${LABEL[$t]} died during the run"
}

# value KEY FILE: the value of KEY in a measure output line, or nan.
value() {
	awk -v k="$1" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) { print kv[2]; found = 1 } } }
		END { if (!found) print "nan" }' "$2"
}

median() {
	printf '%s\n' "$@" | awk '$1 != "nan" && $1 != "" { v[n++] = $1 + 0 }
		END {
			if (n == 0) { print "nan"; exit }
			for (i = 1; i < n; i++) { x = v[i]; for (j = i - 1; j >= 0 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
			if (n % 2) print v[int(n / 2)]; else print (v[n / 2 - 1] + v[n / 2]) / 2
		}'
}

fmtnum() {
	awk -v v="$1" -v p="$2" 'BEGIN { if (v == "nan" || v == "") print "-"; else printf "%." p "f", v }'
}

KEYS=(up_mibs down_mibs echo_mibs rtt_p50_us rtt_p99_us cpu_s_per_gib)
declare -A VALS=()

note "warm-up: ${WARMUP}s per throughput test, 1000 round trips, per target"
for t in "${selected[@]}"; do
	measure "$t" "$WARMUP" 1000 "$RUN_DIR/raw/warmup-$t.txt"
done

for ((r = 1; r <= ROUNDS; r++)); do
	for t in "${selected[@]}"; do
		note "round $r/$ROUNDS: ${LABEL[$t]}"
		f=$RUN_DIR/raw/$t-round$r.txt
		measure "$t" "$DURATION" "$RTT_COUNT" "$f"
		for k in "${KEYS[@]}"; do
			VALS[$t.$k]+="$(value "$k" "$f") "
		done
		note "  $(cat "$f")"
	done
done

# ---------------------------------------------------------------- report

# datapath_used TARGET: sets DP_KERNEL and DP_TOTAL, the "l4 connection"
# lines of the target's log that went through the kernel and in all, and
# DP_WHY, the gateway's warning about kernel splicing, if any.
datapath_used() {
	local log=$TMP/$1.log
	DP_TOTAL=$(grep -c '"msg":"l4 connection"' "$log" || true)
	DP_KERNEL=$(grep '"msg":"l4 connection"' "$log" | grep -c '"datapath":"kernel"' || true)
	DP_WHY=$(grep '"level":"WARN"' "$log" | grep -i 'kernel splic' | head -1 |
		sed -n 's/.*"msg":"\([^"]*\)".*/\1/p' || true)
}

sleep 0.3 # the gateway flushes its log every 100 ms
KERNEL_NOTE=""
for t in "${selected[@]}"; do
	[[ $t == rg-kernel ]] || continue
	datapath_used "$t"
	if ((DP_KERNEL == 0)); then
		LABEL[$t]="RustyGate, datapath kernel → fell back to splice(2)"
		KERNEL_NOTE="- **rg-kernel fell back to splice(2)**: 0 of $DP_TOTAL connections were spliced in the kernel${DP_WHY:+ (gateway: \"$DP_WHY\")}; the row is a control and should match rg-splice within noise"
	else
		LABEL[$t]="RustyGate, datapath kernel (sockmap: $DP_KERNEL/$DP_TOTAL conns)"
		KERNEL_NOTE="- rg-kernel: $DP_KERNEL of $DP_TOTAL connections were spliced in the kernel (sockmap), the others with splice(2)"
	fi
done

{
	echo "# RustyGate L4 benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- machine: $(nproc) CPUs, $(uname -sr); load generator, proxy and backend share them"
	echo "- load average before the run: $LOADAVG, after: $(cut -d' ' -f1-3 /proc/loadavg) (other load on the machine skews every number)"
	echo "- one TCP connection per test; ${DURATION}s per throughput test, $RTT_COUNT round trips of 64 bytes; $ROUNDS interleaved rounds, medians"
	echo "- backend: \`l4bench serve\` (Go; 256 KiB reads and writes); client: \`l4bench measure\` (Go)"
	want_hap=0
	for t in "${selected[@]}"; do [[ $t == haproxy* ]] && want_hap=1; done
	if ((want_hap)); then
		echo "- $(haproxy -v 2>/dev/null | sed -n 1p | awk '{print "HAProxy " $3}'): nbthread 2, mode tcp; \`haproxy\` with default buffers (no splice), \`haproxy-splice\` with \`option splice-auto\`"
	fi
	if ((want_rg)); then
		echo "- RustyGate: $("$RG_BIN" version 2>/dev/null | sed -n 1p), GOMAXPROCS = $(nproc); io.Copy between *net.TCPConn = splice(2)"
		[[ -n $KERNEL_NOTE ]] && echo "$KERNEL_NOTE"
	fi
	echo
	echo "| target | bulk up MiB/s | bulk down MiB/s | echo MiB/s | RTT p50 µs | RTT p99 µs | proxy CPU s/GiB |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for t in "${selected[@]}"; do
		row="| ${LABEL[$t]} "
		for k in "${KEYS[@]}"; do
			# shellcheck disable=SC2086 # word splitting wanted: one value per round
			m=$(median ${VALS[$t.$k]})
			case $k in
			*_mibs) row+="| $(fmtnum "$m" 0) " ;;
			rtt_*) row+="| $(fmtnum "$m" 1) " ;;
			cpu_*) row+="| $(fmtnum "$m" 2) " ;;
			esac
		done
		echo "$row|"
	done
	echo
	echo "bulk up: client -> sink, MiB/s counted by the sink; bulk down: source -> client; echo: MiB/s"
	echo "echoed back on one connection writing and reading at once (the proxy moves twice that)."
	echo "RTT: 64-byte ping-pong on one connection, TCP_NODELAY. proxy CPU s/GiB: utime+stime of"
	echo "the proxy process during bulk up, bulk down and echo, per GiB relayed (echo counted both"
	echo "ways); \"-\" for direct, which has no proxy. Per-round values: $RUN_DIR/raw/"
} | tee "$RUN_DIR/summary.md"

cp "$RUN_DIR/summary.md" "$OUT/latest.md"
exit 0
