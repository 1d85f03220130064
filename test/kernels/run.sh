#!/usr/bin/env bash
# make test-kernels: runs the BPF tests on each kernel of kernels.list, for
# real, in qemu (software emulation: no /dev/kvm needed).
#
# For each kernel: download its Debian package with apt (cached), extract
# vmlinuz and the modules the tests need (veth, clsact, cls_bpf and their
# dependencies), build a busybox initramfs with them (cached), append the
# test binaries (CGO_ENABLED=0 go test -c of loader/, l4/ and
# test/kernels/guest, built once per run), boot it, and read the verdicts
# init.sh prints on the serial console. Fails unless every test passes on
# every kernel. Logs: test/kernels/out/LABEL/console.log; summary:
# test/kernels/out/summary.txt (one line per kernel) and summary.md.
#
# Environment (all optional):
#   KERNELS             labels to run, comma-separated (default: all of kernels.list)
#   RG_KERNEL_CACHE     cache of packages, kernels and initramfs images
#                       (default /var/cache/rustygate-kernels; delete it to start afresh)
#   RG_KERNEL_OUT       logs and summaries (default test/kernels/out)
#   RG_KERNEL_TIMEOUT   hard limit per VM in seconds (default 900)
#   RG_KERNEL_MEM       guest memory in MiB (default 1024)
#   RG_KERNEL_CPUS      guest vCPUs (default 2)
#   RG_KERNEL_ACCEL     qemu -accel (default tcg,thread=single)
#   RG_KERNEL_QEMU_CPU  qemu -cpu (default max)
#   RG_KERNEL_LIST      the kernel list (default test/kernels/kernels.list)
#   RG_L4SOAK           auto|force|off: the kernel-splicing soak (see l4soak_hook)
#   RG_L4SOAK_ARGS      its arguments (default: the short form)
#   RG_L4SOAK_DATAPATH  its l4 datapath (default kernel)
#   RG_IDLEMEM          kernel labels whose guest also runs test/idlemem at
#                       0, 10000 and 50000 idle connections (default off;
#                       make idlemem-vm sets 6.12): the guest runs as root
#                       with every capability, so it can raise RLIMIT_NOFILE
#                       to what 50,000 connections need where the host
#                       cannot. Under emulation it takes 10-25 minutes.
#   RG_IDLEMEM_ARGS     its arguments (default -conns 0,10000,50000 -timeout 25m)
#   GO                  the go command (default go)
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/test/kernels
GO=${GO:-go}
CACHE=${RG_KERNEL_CACHE:-/var/cache/rustygate-kernels}
OUT=${RG_KERNEL_OUT:-$HERE/out}
LIST=${RG_KERNEL_LIST:-$HERE/kernels.list}
ONLY=${KERNELS:-}
VM_TIMEOUT=${RG_KERNEL_TIMEOUT:-900}
VM_MEM=${RG_KERNEL_MEM:-1024}
VM_CPUS=${RG_KERNEL_CPUS:-2}
# One host thread for all vCPUs: on a shared 2-core machine it was not
# slower than multi-threaded TCG (31.8 s vs 54.0 s for 6.12 under load),
# and it cannot race the guest's code patching across vCPUs (multi-threaded
# TCG once crashed 6.12 at boot with an int3 Oops). The guest still has
# RG_KERNEL_CPUS CPUs.
VM_ACCEL=${RG_KERNEL_ACCEL:-tcg,thread=single}
VM_CPU=${RG_KERNEL_QEMU_CPU:-max}
BUSYBOX=${BUSYBOX:-/bin/busybox}
SETPRIV=${SETPRIV:-/usr/bin/setpriv}

# Modules loaded in the guest (dependencies are added from each module's
# depends= field). veth: the tests' network namespaces; sch_ingress
# (clsact) and cls_bpf, act_bpf: tc attachment the pre-TCX way;
# xfrm_user and nfnetlink: netlink.NewHandle() (vishvananda/netlink, used
# by the loader and its tests) opens NETLINK_XFRM and NETLINK_NETFILTER
# sockets besides NETLINK_ROUTE, and fails with "protocol not supported"
# without them. A full system autoloads them; nothing does in the guest.
MODULES=(veth sch_ingress cls_bpf act_bpf xfrm_user nfnetlink)

# The test binaries: NAME=PACKAGE, run in this order in each VM.
TESTS=(guest=./test/kernels/guest loader=./loader l4=./l4)

# Bump when the layout of the base initramfs changes without a change to
# the files hashed into its cache key.
BASE_FORMAT=1

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'test-kernels: %s\n' "$*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "needs root (apt-get download into $CACHE, mknod for the initramfs)"
for tool in qemu-system-x86_64 cpio gzip xz apt-get apt-cache dpkg ldd sha256sum timeout flock; do
	command -v "$tool" >/dev/null || die "missing $tool (apt-get install qemu-system-x86 busybox-static cpio xz-utils)"
done
[ -x "$BUSYBOX" ] || die "missing $BUSYBOX (apt-get install busybox-static)"
if ldd "$BUSYBOX" >/dev/null 2>&1; then
	die "$BUSYBOX is dynamically linked: install busybox-static"
fi
[ -x "$SETPRIV" ] || die "missing $SETPRIV (util-linux): loader's TestUnprivileged runs it"

mkdir -p "$CACHE"/{debs,kernels,initramfs} "$OUT"

# locked runs "$@" holding the cache lock (other users of the machine
# share the cache). Call it in a subshell only: the lock lasts as long as
# the subshell.
locked() {
	exec 9>"$CACHE/.lock"
	flock 9
	"$@"
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- packages

# resolve_package follows metapackages (a package that depends on a
# linux-image-N... package) down to the kernel image package.
resolve_package() {
	local pkg=$1 dep
	for _ in 1 2 3 4; do
		dep=$(apt-cache depends "$pkg" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ <>]*\)$/\1/p' | head -1)
		[ -n "$dep" ] || break
		pkg=$dep
	done
	echo "$pkg"
}

# cached_deb prints the newest cached .deb of package $1, if any.
cached_deb() {
	local f
	f=$(find "$CACHE/debs" -maxdepth 1 -name "$(printf '%s' "$1" | sed 's/[][*?]/\\&/g')_*.deb" | sort -V | tail -1)
	[ -n "$f" ] && echo "$f"
}

# fetch_deb PACKAGE prints the path of its .deb, downloading it with
# apt-get download when it is not cached. apt refreshes its lists (once per
# kernel) when the package is unknown or its file is gone from the mirror.
UPDATED=0
fetch_deb() {
	local want=$1 pkg deb tmp
	pkg=$(resolve_package "$want")
	if deb=$(cached_deb "$pkg"); then
		touch "$deb"
		echo "$deb"
		return
	fi
	tmp=$(mktemp -d "$CACHE/debs/partial.XXXXXX")
	chmod 755 "$tmp"
	# apt drops to _apt for downloads: let it write here.
	if id _apt >/dev/null 2>&1; then chown _apt "$tmp"; fi
	if ! (cd "$tmp" && apt-get download -qq "$pkg" >&2); then
		if [ "$UPDATED" = 0 ]; then
			log "apt-get update (no $pkg on the mirror with the current lists)"
			apt-get update -qq >&2 || true
			UPDATED=1
			pkg=$(resolve_package "$want")
			(cd "$tmp" && apt-get download -qq "$pkg" >&2) || {
				rm -rf "$tmp"
				die "apt-get download $pkg failed"
			}
		else
			rm -rf "$tmp"
			die "apt-get download $pkg failed"
		fi
	fi
	deb=$(find "$tmp" -maxdepth 1 -name '*.deb' | head -1)
	[ -n "$deb" ] || die "apt-get download $pkg left no .deb"
	mv "$deb" "$CACHE/debs/"
	rm -rf "$tmp"
	echo "$CACHE/debs/$(basename "$deb")"
}

# ---------------------------------------------------------------- kernels

# module_depends prints the depends= field of an uncompressed module.
module_depends() {
	tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | head -1 | tr ',' ' '
}

# decompress_module SRC DST writes the uncompressed module (busybox
# insmod does not read compressed ones).
decompress_module() {
	case "$1" in
	*.ko.xz) xz -dc "$1" >"$2" ;;
	*.ko.zst) zstd -qdc "$1" >"$2" ;;
	*.ko.gz) gzip -dc "$1" >"$2" ;;
	*.ko) cp "$1" "$2" ;;
	*) return 1 ;;
	esac
}

# extract_kernel DEB prints the kernel directory of the cache it made (or
# found) from the package: vmlinuz, config, release, and modules/ with
# modules.order (dependencies first).
extract_kernel() {
	local deb=$1 kdir tmp release moddir
	kdir=$CACHE/kernels/$(basename "$deb" .deb)
	if [ -f "$kdir/ok" ] && [ "$(cat "$kdir/modules.wanted")" = "${MODULES[*]}" ]; then
		touch "$kdir"
		echo "$kdir"
		return
	fi
	rm -rf "$kdir" "$kdir.new"
	tmp=$(mktemp -d "$CACHE/kernels/x.XXXXXX")
	dpkg -x "$deb" "$tmp"
	release=$(ls "$tmp/lib/modules")
	[ "$(echo "$release" | wc -l)" = 1 ] || die "$deb: expected one lib/modules/RELEASE, found: $release"
	moddir=$tmp/lib/modules/$release
	mkdir -p "$kdir.new/modules"
	cp "$tmp/boot/vmlinuz-$release" "$kdir.new/vmlinuz"
	cp "$tmp/boot/config-$release" "$kdir.new/config"
	echo "$release" >"$kdir.new/release"

	local -A seen=()
	local order=()
	add_module() {
		local name=$1 file dep
		name=${name//-/_}
		[ -z "${seen[$name]:-}" ] || return 0
		seen[$name]=1
		file=$(find "$moddir/kernel" \( -name "$name.ko*" -o -name "${name//_/-}.ko*" \) | head -1)
		if [ -z "$file" ]; then
			if grep -Eq "/(${name}|${name//_/-})\.ko$" "$moddir/modules.builtin" 2>/dev/null; then
				echo "  $name: built in" >&2
				return 0
			fi
			die "$release: no module $name (not built in either)"
		fi
		decompress_module "$file" "$kdir.new/modules/$name.ko" || die "$file: cannot decompress"
		for dep in $(module_depends "$kdir.new/modules/$name.ko"); do
			add_module "$dep"
		done
		order+=("$name")
	}
	local m
	for m in "${MODULES[@]}"; do add_module "$m"; done
	printf '%s\n' "${order[@]}" >"$kdir.new/modules.order"
	echo "${MODULES[*]}" >"$kdir.new/modules.wanted"
	rm -rf "$tmp"
	touch "$kdir.new/ok"
	mv "$kdir.new" "$kdir"
	echo "$kdir"
}

# ---------------------------------------------------------------- initramfs

# copy_elf FILE DEST_ROOT copies an executable and the shared libraries
# it loads (ldd) to the same paths under DEST_ROOT.
copy_elf() {
	local f=$1 root=$2 lib
	install -D -m 755 "$f" "$root$f"
	for lib in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*'); do
		[ -e "$root$lib" ] || install -D -m 755 "$(readlink -f "$lib")" "$root$lib"
	done
}

# base_key KDIR: what the base initramfs is made of.
base_key() {
	{
		echo "format $BASE_FORMAT"
		sha256sum "$HERE/init.sh" "$BUSYBOX" "$SETPRIV"
		ldd "$SETPRIV" | grep -o '/[^ ]*' | xargs -r readlink -f | xargs -r sha256sum
		cat "$1/release" "$1/modules.order"
		(cd "$1/modules" && sha256sum ./*.ko)
	} | sha256sum | cut -c1-16
}

# build_base KDIR prints the cached base initramfs of a kernel (gzip'd
# newc cpio, padded to 4 bytes so the test archives can follow it):
# busybox, util-linux's setpriv (busybox's lacks --reuid), users root and
# nobody, the modules, and init.sh as /init.
build_base() {
	local kdir=$1 key img st a
	key=$(base_key "$kdir")
	img=$CACHE/initramfs/$(basename "$kdir")-$key.cpio.gz
	if [ -f "$img" ]; then
		touch "$img"
		echo "$img"
		return
	fi
	st=$(mktemp -d "$CACHE/initramfs/st.XXXXXX")
	mkdir -p "$st"/{bin,sbin,usr/bin,usr/sbin,etc/rg,lib/modules/rg,proc,sys,dev,run,tmp,root,var,rg/bin}
	ln -s ../run "$st/var/run"
	install -m 755 "$BUSYBOX" "$st/bin/busybox"
	for a in $("$BUSYBOX" --list-full); do
		case "$a" in bin/busybox | */setpriv) continue ;; esac
		[ -e "$st/$a" ] || ln -s /bin/busybox "$st/$a"
	done
	copy_elf "$SETPRIV" "$st"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$st/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$st/etc/group"
	printf 'hosts: files\npasswd: files\ngroup: files\n' >"$st/etc/nsswitch.conf"
	printf '127.0.0.1 localhost\n::1 localhost\n' >"$st/etc/hosts"
	cp "$kdir"/modules/*.ko "$st/lib/modules/rg/"
	cp "$kdir/modules.order" "$st/etc/rg/modules"
	install -m 755 "$HERE/init.sh" "$st/init"
	mknod -m 600 "$st/dev/console" c 5 1
	mknod -m 666 "$st/dev/null" c 1 3
	(cd "$st" && find . -mindepth 1 -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) | gzip -9 >"$img.tmp"
	truncate -s %4 "$img.tmp"
	mv "$img.tmp" "$img"
	rm -rf "$st"
	echo "$img"
}

# cpio_of DIR writes DIR as an uncompressed newc archive (a multiple of
# 512 bytes, so archives after it stay aligned).
cpio_of() {
	(cd "$1" && find . -mindepth 1 -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet)
}

# ---------------------------------------------------------------- soak hook

# l4soak_hook: the kernel-splicing integrity soak, short form, in every
# VM. It runs once
#   1. test/l4soak exists (the soak program: it spawns the gateway,
#      bin/rustygate, with an l4 listener on -datapath kernel), and
#   2. the loader offers kernel splicing: its exported API (go doc
#      ./loader) names it, matching SPLICE_API.
# RG_L4SOAK=auto (default) does that; force runs it whatever the loader
# offers (to try the plumbing, e.g. with RG_L4SOAK_DATAPATH=splice); off
# never runs it. When it does not run, the reason is the summary's kernel
# splicing verdict. Sets SOAK_NOTE and, when it runs, adds l4soak (and the
# gateway binary it spawns) to the VM's programs.
SPLICE_API='[Ss]plic|[Ss]ock[Hh]ash|[Ss]ock[Mm]ap'
# The short form, shrunk for software emulation: make soak-l4's CI form
# (20 x 64 MiB + 1 GiB at 8 at once, 4 MiB/s minimum) misses its deadlines
# under TCG (measured: 18 of 21 transfers "hung" at ~1 MiB/s each with
# -datapath splice on 6.12); this one passed in 67 s on 6.1.
L4SOAK_ARGS=${RG_L4SOAK_ARGS:--transfers64 3 -transfers1g 0 -concurrency 3 -short 300 -resets 30 -min-rate 0.25 -timeout-base 60s -stall 60s}
SOAK_NOTE=
SOAK_RUN=0
l4soak_hook() {
	case "${RG_L4SOAK:-auto}" in
	off)
		SOAK_NOTE="not run (RG_L4SOAK=off)"
		return
		;;
	force) ;;
	*)
		if [ ! -d "$ROOT/test/l4soak" ]; then
			SOAK_NOTE="not run: test/l4soak does not exist yet"
			return
		fi
		if ! (cd "$ROOT" && "$GO" doc -short ./loader 2>/dev/null | grep -Eq "$SPLICE_API"); then
			SOAK_NOTE="not run: the loader offers no kernel splicing yet"
			return
		fi
		;;
	esac
	SOAK_RUN=1
}

# ---------------------------------------------------------------- VM

# boot_vm LABEL KDIR INITRD LOG boots the kernel with the initramfs and
# writes its console to LOG (carriage returns and the firmware's escape
# sequences removed), showing the marker lines as they come.
boot_vm() {
	local label=$1 kdir=$2 initrd=$3 logf=$4
	log "kernel $label: booting (qemu-system-x86_64 -accel $VM_ACCEL, ${VM_CPUS} vCPUs, ${VM_MEM} MiB, timeout ${VM_TIMEOUT}s)"
	# oops=panic and panic=-1 with -no-reboot: a kernel bug ends the VM at
	# once instead of at the timeout. mitigations=off: emulated CPUs need
	# no protection from each other, and the mitigations cost time.
	local cmdline="console=ttyS0,115200 panic=-1 oops=panic quiet loglevel=3 mitigations=off RUSTYGATE_KERNEL=$label"
	set +o pipefail
	{
		local rc=0
		timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 \
			-nographic -nodefaults -no-user-config -no-reboot \
			-machine q35 -accel "$VM_ACCEL" -cpu "$VM_CPU" -smp "$VM_CPUS" -m "$VM_MEM" \
			-serial mon:stdio -net none \
			-kernel "$kdir/vmlinuz" -initrd "$initrd" -append "$cmdline" </dev/null || rc=$?
		# On a line of its own: a killed guest may stop mid-line.
		printf '\nRG-HOST-EXIT %s\n' "$rc"
	} 2>&1 | sed -u -e 's/\r//g' -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' -e 's/\x1bc//g' | tee "$logf" |
		grep --line-buffered -E '^(RG-(BOOT|RESULT|DONE|HOST-EXIT)|RG-MODULE .* FAIL|--- FAIL|panic:|Kernel panic)' |
		sed -u 's/^/    /' >&2
	set -o pipefail
}

# run_kernel LABEL PACKAGE TESTS: one line of the summary.
SUMMARY=()
TABLE=()
FAILED=0
run_kernel() {
	local label=$1 package=$2 subset=$3 start deb kdir base release dir logf initrd
	start=$(now)
	dir=$OUT/$label
	rm -rf "$dir"
	mkdir -p "$dir"
	logf=$dir/console.log

	log "kernel $label: $package"
	deb=$(locked fetch_deb "$package")
	kdir=$(locked extract_kernel "$deb")
	base=$(locked build_base "$kdir")
	release=$(cat "$kdir/release")
	log "kernel $label: $release ($(basename "$deb")), modules: $(tr '\n' ' ' <"$kdir/modules.order")"

	# The tests to run here: all, or the subset kernels.list names.
	local names=() t name
	for t in "${TESTS[@]}"; do
		name=${t%%=*}
		if [ -z "$subset" ] || [[ ",$subset," == *",$name,"* ]]; then
			names+=("$name")
		fi
	done
	local lst
	lst=$(mktemp -d "$OUT/list.XXXXXX")
	mkdir -p "$lst/rg"
	for name in "${names[@]}"; do
		echo "$name test $name.test"
	done >"$lst/rg/tests.list"
	if [[ ",${RG_IDLEMEM:-off}," == *",$label,"* ]]; then
		names+=(idlemem)
		echo "idlemem cmd idlemem ${RG_IDLEMEM_ARGS:--conns 0,10000,50000 -timeout 25m}" >>"$lst/rg/tests.list"
	fi
	if [ "$SOAK_RUN" = 1 ]; then
		names+=(l4soak)
		echo "l4soak cmd l4soak -spawn -bin /rg/bin/rustygate -datapath ${RG_L4SOAK_DATAPATH:-kernel} $L4SOAK_ARGS" >>"$lst/rg/tests.list"
	fi
	initrd=$OUT/initrd-$label.img
	{
		cat "$base" "$OUT/tests.cpio"
		cpio_of "$lst"
	} >"$initrd"
	rm -rf "$lst"

	# A kernel that crashes before init starts (seen once with 6.12 under
	# multi-threaded TCG: an int3 Oops in sched_clock_cpu while the kernel
	# patched its own code) is an emulator flake, not a test result: boot
	# once more, keeping the first log.
	local attempt notes=""
	for attempt in 1 2; do
		boot_vm "$label" "$kdir" "$initrd" "$logf"
		if grep -q 'RG-BOOT ' "$logf" || [ "$attempt" = 2 ]; then
			break
		fi
		mv "$logf" "$dir/console.boot-crash.log"
		notes+=", rebooted after a crash before init (console.boot-crash.log)"
		log "kernel $label: crashed before init, booting again"
	done
	rm -f "$initrd"

	# The verdict, from the markers.
	local boot verdict=PASS counts="" exit line r p f s failed ft
	boot=$(sed -n 's/^.*RG-BOOT .*uptime=\([0-9.]*\).*/\1/p' "$logf" | head -1)
	exit=$(sed -n 's/^RG-HOST-EXIT //p' "$logf" | tail -1)
	for name in "${names[@]}"; do
		line=$(grep "^RG-RESULT $name " "$logf" | tail -1 || true)
		if [ -z "$line" ]; then
			verdict=FAIL
			if grep -q "^RG-BEGIN $name\$" "$logf"; then
				counts+="$name died "
			else
				counts+="$name not-run "
			fi
			continue
		fi
		r=$(echo "$line" | cut -d' ' -f3)
		p=$(echo "$line" | sed -n 's/.* pass=\([0-9]*\).*/\1/p')
		f=$(echo "$line" | sed -n 's/.* fail=\([0-9]*\).*/\1/p')
		s=$(echo "$line" | sed -n 's/.* skip=\([0-9]*\).*/\1/p')
		[ "$r" = PASS ] || verdict=FAIL
		counts+="$name $p/$((p + f))"
		[ "${s:-0}" = 0 ] || counts+=" ($s skipped)"
		# The top-level tests of this binary that failed.
		failed=$(awk -v n="$name" '$0 == "RG-BEGIN " n { on = 1; next } /^RG-RESULT / { on = 0 } on && /^--- FAIL: / { print $3 }' "$logf" | tr '\n' ' ' | sed 's/ $//')
		if [ "${f:-0}" != 0 ]; then
			counts+=" [failed: $failed]"
		fi
		[ "$r" = PASS ] || [ "${f:-0}" != 0 ] || counts+=" (rc $(echo "$line" | sed -n 's/.* rc=\([0-9]*\).*/\1/p'))"
		if [ "$r" != PASS ]; then
			# The reason is in the console log, which CI does not keep: print
			# the end of the failing binary's output with the summary.
			log "$name failed on $release; the end of its output:"
			awk -v n="$name" '$0 == "RG-BEGIN " n { on = 1; next } /^RG-RESULT / { on = 0 } on' "$logf" | tail -n 25 | sed 's/^/    | /' >&2
			# And each failed test's own lines, which are rarely at the end.
			# They go at the very end of the output (CI shows its end).
			for ft in $failed; do
				echo "$release $name $ft:" >>"$OUT/failures.txt"
				awk -v n="$name" -v t="$ft" '
					$0 == "RG-BEGIN " n { on = 1; next }
					/^RG-RESULT / { on = 0 }
					!on { next }
					/^=== (RUN|CONT|PAUSE|NAME) / { split($3, a, "/"); cur = a[1] }
					/^--- (PASS|FAIL|SKIP): / && $3 !~ /\// { split($3, a, "/"); cur = a[1] }
					cur == t' "$logf" | head -n 60 | sed 's/^/    | /' >>"$OUT/failures.txt"
			done
		fi
		counts+=" "
	done
	if ! grep -q '^RG-DONE' "$logf"; then
		verdict=FAIL
		if [ "$exit" = 124 ] || [ "$exit" = 137 ]; then
			notes+=", TIMEOUT after ${VM_TIMEOUT}s"
		else
			notes+=", VM ended early (qemu exit ${exit:-?})"
		fi
	fi
	if grep -q '^RG-MODULE .* FAIL' "$logf"; then
		verdict=FAIL
		notes+=", module failed: $(sed -n 's/^RG-MODULE \([^ ]*\) FAIL.*/\1/p' "$logf" | tr '\n' ' ' | sed 's/ $//')"
	fi
	# The soak passes on splice(2) too when kernel splicing does not load:
	# say which datapath relayed its connections.
	local soakpaths
	soakpaths=$(sed -n 's/^gateway log: .*datapath: \([^)]*\)).*/\1/p' "$logf" | tail -1)
	if grep -q '^RG-RESULT l4soak ' "$logf" && [[ "$soakpaths" != *kernel* ]]; then
		notes+=", l4soak relayed without kernel splicing (${soakpaths:-datapath not logged})"
	fi
	[ "$verdict" = PASS ] || FAILED=1
	line=$(printf '%-22s %-4s  %s (boot %ss, total %ss%s)' "$release" "$verdict" "$counts" "${boot:-?}" "$(elapsed "$start")" "$notes")
	SUMMARY+=("$line")
	log "$line"

	# The docs table row (header in main).
	local limiter splicing steering soak
	feat() { sed -n "s/^RG-FEATURE $1 \([a-z]*\) .*/\1/p" "$logf" | tail -1; }
	mode() { sed -n "s/^RG-MODE $1 \(.*\)/\1/p" "$logf" | tail -1 | sed 's/\\"/"/g'; }
	# tally NAME PREFIX: "P pass, F fail, S skip" of binary NAME's top-level tests named PREFIX*.
	tally() {
		awk -v n="$1" -v pre="$2" '
			$0 == "RG-BEGIN " n { on = 1; next }
			/^RG-RESULT / { on = 0 }
			on && /^--- (PASS|FAIL|SKIP): / && index($3, pre) == 1 { c[$2]++ }
			END {
				out = ""
				if (c["PASS:"]) out = out c["PASS:"] " pass"
				if (c["FAIL:"]) out = out (out ? ", " : "") c["FAIL:"] " fail"
				if (c["SKIP:"]) out = out (out ? ", " : "") c["SKIP:"] " skip"
				print (out ? out : "none run")
			}' "$logf"
	}
	limiter="veth: $(mode veth | sed -n 's/.*detail="attached to [^ ]* (\(.*\))".*/\1/p'), lo: $(mode lo | sed -n 's/.*detail="attached to [^ ]* (\(.*\))".*/\1/p')"
	limiter+=", XDP hook taken: $(mode veth_xdp_taken_auto | sed -e 's/^mode=\([a-z]*\) reason=\([a-z_]*\) detail="attached to [^ ]* (\(.*\))"$/\1 (\3)/' -e 's/^mode=\([a-z]*\) reason=\([a-z_]*\) .*/\1 (\2)/')"
	limiter+="; loader TestLimiter: $(tally loader TestLimiter)"
	steering="probe: $(feat sk_lookup); loader TestSteering*: $(tally loader TestSteering)"
	splicing=$(mode splice | sed -e 's/^available self_test=pass$/yes (self-test passed)/' \
		-e 's/^error="kernel splicing unavailable (\([a-z_]*\)): .*: \([^:]*\): \([^:]*\)"$/no: \1 (\2: \3)/')
	splicing+="; loader TestSplice*: $(tally loader TestSplice), l4 TestKernel*: $(tally l4 TestKernel)"
	if grep -q '^RG-RESULT l4soak ' "$logf"; then
		soak=$(sed -n 's/^RG-RESULT l4soak \([A-Z]*\).*/\1/p' "$logf")
		if [[ "$soakpaths" == *kernel* ]]; then
			soak+=" (connections by datapath: $soakpaths)"
		else
			soak+=", but nothing spliced in the kernel: the gateway used splice(2) (connections by datapath: ${soakpaths:-none logged})"
		fi
	else
		soak=${SOAK_NOTE:-not run}
	fi
	TABLE+=("| $release | $verdict | $limiter | $(feat tcx) | $(feat clsact_cls_bpf) | $steering | $splicing | $soak |")
}

# ---------------------------------------------------------------- main

main() {
	local t0 name pkg
	t0=$(now)
	l4soak_hook

	log "building the test binaries (CGO_ENABLED=0 go test -c)"
	rm -rf "$OUT/tests" "$OUT"/initrd-*.img "$OUT"/list.*
	mkdir -p "$OUT/tests/rg/bin"
	for t in "${TESTS[@]}"; do
		name=${t%%=*}
		pkg=${t#*=}
		(cd "$ROOT" && CGO_ENABLED=0 "$GO" test -c -trimpath -ldflags='-s -w' -o "$OUT/tests/rg/bin/$name.test" "$pkg")
		[ -f "$OUT/tests/rg/bin/$name.test" ] || die "$pkg has no tests"
	done
	if [ "$SOAK_RUN" = 1 ]; then
		(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags='-s -w' -o "$OUT/tests/rg/bin/rustygate" ./cmd/rustygate)
		(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags='-s -w' -o "$OUT/tests/rg/bin/l4soak" ./test/l4soak)
	fi
	if [ "${RG_IDLEMEM:-off}" != off ]; then
		(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags='-s -w' -o "$OUT/tests/rg/bin/idlemem" ./test/idlemem)
	fi
	cpio_of "$OUT/tests" >"$OUT/tests.cpio"
	log "test binaries built in $(elapsed "$t0")s ($(du -sh "$OUT/tests.cpio" | cut -f1) uncompressed)"

	local label package subset ran=0
	rm -f "$OUT/failures.txt"
	while read -r label package subset; do
		case "$label" in '' | '#'*) continue ;; esac
		if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$label,"* ]]; then
			continue
		fi
		run_kernel "$label" "$package" "${subset:-}"
		ran=$((ran + 1))
	done <"$LIST"
	[ "$ran" -gt 0 ] || die "no kernel of $LIST matches KERNELS=$ONLY"
	rm -rf "$OUT/tests" "$OUT/tests.cpio"

	# Cached artifacts unused for 30 days go (other runs may use other lists).
	(locked find "$CACHE/debs" "$CACHE/kernels" "$CACHE/initramfs" -mindepth 1 -maxdepth 1 -mtime +30 -exec rm -rf {} +) || true

	{
		printf 'kernel matrix, %s, %s kernels in %ss\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$ran" "$(elapsed "$t0")"
		printf '%s\n' "${SUMMARY[@]}"
	} >"$OUT/summary.txt"
	{
		echo "| kernel | result | limiter (XDP free: veth, lo; XDP hook taken) | TCX | clsact + cls_bpf | sk_lookup steering | kernel splicing (loader) | kernel splicing soak (l4soak) |"
		echo "|---|---|---|---|---|---|---|---|"
		printf '%s\n' "${TABLE[@]}"
	} >"$OUT/summary.md"
	echo
	cat "$OUT/summary.txt"
	echo "logs: ${OUT#"$ROOT"/}/LABEL/console.log, table: ${OUT#"$ROOT"/}/summary.md"
	if [ -s "$OUT/failures.txt" ]; then
		echo "failed tests' own output:"
		cat "$OUT/failures.txt"
	fi
	return "$FAILED"
}

main "$@"
