#!/bin/sh
# /init of the kernel matrix's guests (test/kernels/run.sh builds it into
# the initramfs). It runs as PID 1 under busybox: mounts what the tests
# need, loads the modules listed in /etc/rg/modules, runs each test
# program listed in /rg/tests.list and prints one marker line per step on the
# serial console, which the host parses:
#
#   RG-BOOT release=R version=V uptime=S       init started, S seconds after boot
#   RG-MODULE NAME ok|FAIL [error]              one per module
#   RG-BEGIN NAME                               a test binary starts
#   RG-RESULT NAME PASS|FAIL rc=N pass=P fail=F skip=S secs=T
#   RG-DONE uptime=S                            then the VM powers off
#
# Nothing here may hang: the host kills the VM after its timeout anyway.

export PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME=/root TMPDIR=/tmp

uptime_s() { cut -d' ' -f1 /proc/uptime; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t bpf -o mode=0700 bpf /sys/fs/bpf
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
hostname rg-kernel
ip link set lo up

release=$(uname -r)
# RUSTYGATE_KERNEL: major.minor of the running kernel, for the tests'
# per-kernel expectations (the host passes its label on the kernel
# command line too, so a mismatch shows).
version=$(echo "$release" | cut -d. -f1,2)
export RUSTYGATE_KERNEL="${RUSTYGATE_KERNEL:-$version}"
export RUSTYGATE_KERNEL_RELEASE="$release"
export RUSTYGATE_REQUIRE_BPF=1
# (A newline first: the firmware's last line may lack one.)
echo
echo "RG-BOOT release=$release version=$version label=$RUSTYGATE_KERNEL uptime=$(uptime_s) cpus=$(nproc) mem_kb=$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)"

# Modules, dependencies first (run.sh resolved the order).
if [ -f /etc/rg/modules ]; then
	while read -r mod; do
		[ -n "$mod" ] || continue
		if err=$(insmod "/lib/modules/rg/$mod.ko" 2>&1); then
			echo "RG-MODULE $mod ok"
		else
			echo "RG-MODULE $mod FAIL $err"
		fi
	done </etc/rg/modules
fi

# The tests, one per line: NAME KIND BINARY [EXTRA ARGS...]. KIND "test"
# is a go test binary (run verbosely; its top-level results are counted),
# "cmd" a program that passes with exit status 0.
while read -r name kind bin args; do
	case "$name" in '' | '#'*) continue ;; esac
	mkdir -p "/tmp/rg-work/$name"
	echo "RG-BEGIN $name"
	start=$(uptime_s)
	rm -f /tmp/rg-rc
	# shellcheck disable=SC2086 # args are split on purpose
	{
		cd "/tmp/rg-work/$name" || exit 1
		case "$kind" in
		test) "/rg/bin/$bin" -test.v -test.count=1 -test.timeout 300s $args </dev/null ;;
		*) "/rg/bin/$bin" $args </dev/null ;;
		esac
		echo $? >/tmp/rg-rc
	} 2>&1 | tee "/tmp/rg-$name.out"
	rc=$(cat /tmp/rg-rc 2>/dev/null || echo 255)
	end=$(uptime_s)
	if [ "$kind" = test ]; then
		pass=$(grep -c '^--- PASS: ' "/tmp/rg-$name.out")
		fail=$(grep -c '^--- FAIL: ' "/tmp/rg-$name.out")
		skip=$(grep -c '^--- SKIP: ' "/tmp/rg-$name.out")
	else
		pass=0 fail=1 skip=0
		[ "$rc" = 0 ] && pass=1 fail=0
	fi
	verdict=FAIL
	[ "$rc" = 0 ] && verdict=PASS
	secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
	echo "RG-RESULT $name $verdict rc=$rc pass=$pass fail=$fail skip=$skip secs=$secs"
done </rg/tests.list

echo "RG-DMESG-BEGIN"
dmesg
echo "RG-DMESG-END"
echo "RG-DONE uptime=$(uptime_s)"
sync
poweroff -f
# poweroff should not return; if it does, the sysrq trigger powers off.
echo o >/proc/sysrq-trigger
sleep 10
