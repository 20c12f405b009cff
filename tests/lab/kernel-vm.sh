#!/usr/bin/env bash
# kernel-vm.sh — runs one command inside Debian's stock kernel under QEMU, for the kernel
# features a host without loadable modules lacks: IPVS, kernel WireGuard, the Open vSwitch
# datapath. The kernel, busybox and the tools are fetched with `apt-get download` and
# unpacked with `dpkg -x` into a cache folder; nothing but qemu is installed on the host.
#
# Usage:
#   kernel-vm.sh build                        build vmlinux + initramfs into $CAUSEWAY_VM_CACHE/out
#   kernel-vm.sh run [OPTS] -- CMD [ARG...]   boot, run CMD inside, exit with its status
#   kernel-vm.sh run [OPTS] -c 'SHELL CODE'   the same, for a shell snippet (busybox sh)
#   kernel-vm.sh shell [OPTS]                 an interactive shell on the serial console
#   kernel-vm.sh clean                        remove the cache
# Options:
#   -s DIR   share host DIR read-write over 9p, mounted at the same path in the guest
#            (repeatable); the guest starts in $PWD when it lies inside a share
#   -e N=V   set a variable in the guest (repeatable; RUST_* and CARGO_* are copied)
#   -t SECS  wall-clock limit of the guest run (default 600); exit 124 when it is hit
#   -q       print only the guest command's output (the whole console goes to the log)
# Environment:
#   CAUSEWAY_VM_CACHE  cache folder (default /tmp/causeway-kernel-vm)
#   CAUSEWAY_VM_ACCEL  auto | kvm | tcg (auto: kvm when /dev/kvm is usable and the CPU
#                      shows vmx/svm; a nested host without them runs the guest far too
#                      slowly under KVM, so it gets tcg)
#   CAUSEWAY_VM_MEM    guest memory in MiB (default 768)
#
# Exit status: the guest's /init prints `CAUSEWAY_VM_EXIT=<rc>` on the console after the
# command and powers off; the last such line is the status. No line (the guest crashed):
# 125. Timeout: 124. The console of the last run is $CAUSEWAY_VM_CACHE/last-run.log.
set -euo pipefail

CACHE=${CAUSEWAY_VM_CACHE:-/tmp/causeway-kernel-vm}
ACCEL=${CAUSEWAY_VM_ACCEL:-auto}
MEM=${CAUSEWAY_VM_MEM:-768}
TIMEOUT=600
TRIPLET=x86_64-linux-gnu
# Under TCG a plain qemu64 with the SSE4 extensions emulates faster than `-cpu max`.
TCG_CPU=qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt

# Modules loaded at boot, dependencies first (the closure is computed from modules.dep).
MODULES="virtio_pci 9pnet_virtio 9p nf_conntrack nf_nat nf_tables nft_nat nft_ct
  ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh ip_vs_lc ip_vs_wlc ip_vs_mh
  wireguard veth dummy tun bridge vxlan geneve openvswitch vport_vxlan vport_geneve"
# Userland packages; their lib* dependencies are added (not python or perl).
TOOL_PKGS="busybox busybox-static iproute2 ipvsadm wireguard-tools nftables libc6 libgcc-s1
  openvswitch-switch openvswitch-common"
# Binaries taken from those packages (SRC[:DEST]); busybox provides everything else.
TOOLS="bin/ip sbin/tc sbin/bridge bin/ss usr/sbin/genl sbin/ipvsadm usr/bin/wg usr/sbin/nft
  usr/lib/openvswitch-switch/ovs-vswitchd:usr/sbin/ovs-vswitchd usr/sbin/ovsdb-server
  usr/bin/ovsdb-tool usr/bin/ovs-vsctl usr/bin/ovs-appctl usr/bin/ovs-ofctl usr/bin/ovs-dpctl"

say() { printf 'kernel-vm: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }
shq() { local s=$1; printf "'%s'" "${s//\'/\'\\\'\'}"; }

# ------------------------------------------------------------------ fetching ---
apt_cache() {   # apt-cache, refreshing the package lists once if they are missing
    local out
    if ! out=$(apt-cache "$@" 2>/dev/null) || [[ -z $out ]]; then
        if [[ $(id -u) == 0 ]]; then apt-get update -qq >/dev/null 2>&1 || true; fi
        out=$(apt-cache "$@" 2>/dev/null) || true
    fi
    printf '%s\n' "$out"
}

kernel_pkg() {
    apt_cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'
}

lib_closure() {   # lib* packages reachable from "$@" through Depends/Pre-Depends
    local frontier=("$@") seen=" " next d
    while ((${#frontier[@]})); do
        next=()
        for d in $(apt_cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
                   --no-replaces --no-enhances "${frontier[@]}" |
                   awk '/^ *\|?(Pre)?Depends: [^<]/{print $2}' | sort -u); do
            [[ $d == lib* && $seen != *" $d "* ]] || continue
            seen+="$d "; next+=("$d"); echo "$d"
        done
        frontier=("${next[@]}")
    done
}

fetch() {
    local list=$CACHE/debs/packages.list pkgs=() missing=() p k
    mkdir -p "$CACHE/debs"
    if [[ -s $list ]]; then
        mapfile -t pkgs <"$list"
    else
        k=$(kernel_pkg); [[ -n $k ]] || die "cannot resolve linux-image-amd64 (apt lists missing?)"
        # shellcheck disable=SC2086
        mapfile -t pkgs < <(echo "$k"; printf '%s\n' $TOOL_PKGS; lib_closure $TOOL_PKGS)
        printf '%s\n' "${pkgs[@]}" >"$list"
    fi
    for p in "${pkgs[@]}"; do
        compgen -G "$CACHE/debs/${p}_*.deb" >/dev/null || missing+=("$p")
    done
    if ((${#missing[@]})); then
        say "downloading ${#missing[@]} packages"
        (cd "$CACHE/debs" && apt-get -qq download "${missing[@]}" 2>&1 |
            { grep -v 'unsandboxed' >&2 || true; }) || die "apt-get download ${missing[*]} failed"
    fi
    KERNEL_PKG=${pkgs[0]}
}

deb() { ls "$CACHE/debs/$1"_*.deb | tail -1; }

# ------------------------------------------------------------------ building ---
install_with_libs() {   # install_with_libs SRC DEST: a binary and the libraries it links
    local src=$1 dst=$2 ldso=$PKG/lib/$TRIPLET/ld-linux-x86-64.so.2 libs lib
    install -D -m 0755 "$src" "$ROOT/$dst"
    libs=$("$ldso" --library-path "$PKG/lib/$TRIPLET:$PKG/usr/lib/$TRIPLET" --list "$src" 2>&1) ||
        die "cannot list the libraries of $src"
    if grep -q 'not found' <<<"$libs"; then die "$src: $(grep 'not found' <<<"$libs" | tr '\n' ' ')"; fi
    awk '/=> \//{print $3} /^\t\//{print $1}' <<<"$libs" | while read -r lib; do
        [[ $(basename "$lib") == ld-linux-x86-64.so.2 ]] && continue
        [[ -e $ROOT/lib/$TRIPLET/$(basename "$lib") ]] ||
            install -D -m 0755 "$(readlink -f "$lib")" "$ROOT/lib/$TRIPLET/$(basename "$lib")"
    done
}

build_key() { echo "script=$(sha256sum <"${BASH_SOURCE[0]}" | cut -c1-16) kernel=$KERNEL_PKG"; }

build() {
    exec 9>"$CACHE/.build.lock"; flock 9   # runs started together share one build
    fetch
    if [[ ${1:-} == if-needed && -f $CACHE/out/initrd.img && $(cat "$CACHE/out/key" 2>/dev/null) == "$(build_key)" ]]; then
        flock -u 9; return
    fi
    command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
    command -v depmod >/dev/null || die "depmod missing (apt-get install kmod)"
    local work=$CACHE/work kroot K m rel name off t0=$SECONDS
    rm -rf "$work"; mkdir -p "$work"
    PKG=$work/pkg ROOT=$work/root kroot=$work/kernel
    dpkg -x "$(deb "$KERNEL_PKG")" "$kroot"
    for m in "$CACHE"/debs/*.deb; do
        [[ $m == */"${KERNEL_PKG}"_* || $m == */busybox-static_* ]] || dpkg -x "$m" "$PKG"
    done
    dpkg -x "$(deb busybox-static)" "$work/static"
    K=$(ls "$kroot/lib/modules")
    depmod -b "$kroot" "$K"   # the package ships no modules.dep: its postinst makes it

    mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,lib/$TRIPLET,lib64,etc/vm,proc,sys,dev,run,tmp,root,var/log}
    ln -s ../run "$ROOT/var/run"
    ln -s ../lib "$ROOT/usr/lib"
    # Modules in load order, each once, with its dependencies before it.
    # shellcheck disable=SC2086
    for m in $MODULES; do
        modprobe -d "$kroot" -S "$K" --show-depends "$m" || die "kernel $K has no module $m"
    done | awk '$1=="insmod" && !seen[$2]++ {print $2}' | while read -r m; do
        rel=${m#"$kroot/lib/modules/$K/"}
        install -D -m 0644 "$m" "$ROOT/lib/modules/$K/$rel"
        name=$(basename "$rel" .ko)
        # dummy would otherwise make a dummy0 at load time
        [[ $name == dummy ]] && echo "$rel numdummies=0" || echo "$rel"
    done >"$ROOT/etc/vm/modules"
    cp "$kroot/lib/modules/$K"/modules.{builtin,builtin.modinfo,order} "$ROOT/lib/modules/$K/"
    depmod -b "$ROOT" "$K"   # for modprobe inside (autoloading of what was copied)
    # QEMU boots an uncompressed ELF kernel through its PVH entry point, which skips the
    # real-mode setup and the decompressor: seconds less per boot under TCG.
    cp "$kroot/boot/vmlinuz-$K" "$work/vmlinuz"
    off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$work/vmlinuz" | head -1 | cut -d: -f1 || true)
    # (xz reads a process substitution: in a pipeline, tail's SIGPIPE after the first stream
    # would fail the whole pipeline under pipefail.)
    if [[ -n $off ]] && xz -dc --single-stream < <(tail -c +$((off + 1)) "$work/vmlinuz") >"$work/vmlinux" 2>/dev/null &&
        [[ $(head -c4 "$work/vmlinux" | od -An -c | tr -d ' ') == 177ELF ]]; then :; else
        rm -f "$work/vmlinux"
    fi
    rm -rf "$kroot"

    # Userland: the static busybox runs /init (its applets need no exec); the dynamic one
    # runs the guest command, whose shell honours $PATH so the real tools win.
    install -D -m 0755 "$PKG/lib/$TRIPLET/ld-linux-x86-64.so.2" "$ROOT/lib/$TRIPLET/ld-linux-x86-64.so.2"
    ln -s ../lib/$TRIPLET/ld-linux-x86-64.so.2 "$ROOT/lib64/ld-linux-x86-64.so.2"
    install -m 0755 "$work/static/bin/busybox" "$ROOT/bin/busybox-static"
    install_with_libs "$PKG/bin/busybox" bin/busybox
    for m in libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2 libnss_files.so.2; do
        [[ -e $PKG/lib/$TRIPLET/$m ]] && install -m 0755 "$(readlink -f "$PKG/lib/$TRIPLET/$m")" "$ROOT/lib/$TRIPLET/$m"
    done
    for m in $TOOLS; do
        [[ -e $PKG/${m%%:*} ]] || die "${m%%:*} is in none of the downloaded packages"
        install_with_libs "$PKG/${m%%:*}" "${m#*:}"
    done
    install -D -m 0644 "$PKG/usr/share/openvswitch/vswitch.ovsschema" "$ROOT/usr/share/openvswitch/vswitch.ovsschema"
    "$PKG/lib/$TRIPLET/ld-linux-x86-64.so.2" --library-path "$PKG/lib/$TRIPLET" "$PKG/bin/busybox" --list-full |
        while read -r m; do
            name=$(basename "$m")
            for d in bin sbin usr/bin usr/sbin; do [[ -e $ROOT/$d/$name ]] && continue 2; done
            mkdir -p "$ROOT/$(dirname "$m")"; ln -s /bin/busybox "$ROOT/$m"
        done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$ROOT/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOT/etc/group"
    printf 'hosts: files\npasswd: files\ngroup: files\n' >"$ROOT/etc/nsswitch.conf"
    printf '127.0.0.1 localhost\n::1 localhost\n' >"$ROOT/etc/hosts"
    : >"$ROOT/etc/resolv.conf"
    printf '/lib/%s\n' "$TRIPLET" >"$ROOT/etc/ld.so.conf"
    ldconfig -r "$ROOT" 2>/dev/null || /sbin/ldconfig -r "$ROOT"
    init_script >"$ROOT/init"; chmod 0755 "$ROOT/init"

    (cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | "$ROOT/bin/busybox-static" cpio -o -H newc -R 0:0 2>/dev/null) >"$work/initrd.img"
    install -m 0755 "$ROOT/bin/busybox-static" "$work/busybox-static"
    rm -rf "$CACHE/out"; mkdir -p "$CACHE/out"
    mv "$work"/{vmlinuz,initrd.img,busybox-static} "$CACHE/out/"
    [[ -f $work/vmlinux ]] && mv "$work/vmlinux" "$CACHE/out/"
    build_key >"$CACHE/out/key"
    rm -rf "$work"
    say "built kernel $K and a $(($(stat -c %s "$CACHE/out/initrd.img") >> 20)) MiB initramfs in $((SECONDS - t0)) s"
    flock -u 9
}

init_script() {
cat <<'EOF'
#!/bin/busybox-static sh
# PID 1 of the guest: mounts, modules, shares, then the command, then power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=vt100
export WG_COLOR_MODE=never
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
for d in /run /tmp /dev/shm; do mount -t tmpfs tmpfs $d; done
mkdir -p /run/netns /var/log
echo /sbin/modprobe >/proc/sys/kernel/modprobe
K=$(uname -r)
while read -r m args; do
  insmod "/lib/modules/$K/$m" $args 2>/dev/null || case $m in
    */crc32c-intel.ko) ;;   # needs SSE4.2 under TCG; crc32c_generic serves instead
    *) echo "kernel-vm: insmod $m failed" ;;
  esac
done </etc/vm/modules
ip link set lo up
hostname causeway-vm
if [ -f /etc/vm/shares ]; then
  while read -r tag path; do
    mkdir -p "$path"
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=mmap "$tag" "$path" ||
      echo "kernel-vm: cannot mount $tag on $path"
  done </etc/vm/shares
fi
[ -f /etc/vm/env ] && . /etc/vm/env
echo "CAUSEWAY_VM_READY"
cd "$(cat /etc/vm/cwd)" 2>/dev/null || cd /
if [ -f /etc/vm/cmd ]; then
  /bin/busybox sh /etc/vm/cmd </dev/null
  rc=$?
else
  setsid cttyhack /bin/busybox sh -l
  rc=$?
fi
echo "CAUSEWAY_VM_EXIT=$rc"
sync
poweroff -f
EOF
}

# ------------------------------------------------------------------- running ---
accel() {
    case $ACCEL in
        kvm | tcg) echo "$ACCEL" ;;
        auto) if [[ -r /dev/kvm && -w /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo; then echo kvm; else echo tcg; fi ;;
        *) die "CAUSEWAY_VM_ACCEL=$ACCEL: want auto, kvm or tcg" ;;
    esac
}

parse_opts() {
    SHARES=() ENVS=() QUIET=0 CODE=""
    while (($#)); do
        case $1 in
            -s) SHARES+=("$2"); shift 2 ;;
            -e) ENVS+=("$2"); shift 2 ;;
            -t) TIMEOUT=$2; shift 2 ;;
            -q) QUIET=1; shift ;;
            -c) CODE=$2; shift 2 ;;
            --) shift; break ;;
            *) die "unknown option $1" ;;
        esac
    done
    ARGV=("$@")
}

boot() {   # boot run|shell
    local mode=$1 kernel rundir ov s i=0 cwd=/ v rc qrc log
    kernel=$CACHE/out/vmlinux; [[ -f $kernel ]] || kernel=$CACHE/out/vmlinuz
    rundir=$(mktemp -d "${TMPDIR:-/tmp}/causeway-vm.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$rundir'" EXIT
    ov=$rundir/ov/etc/vm; mkdir -p "$ov"
    # Each run reads its own console log: runs may go on side by side.
    log=$rundir/console.log
    local q=(-nodefaults -no-user-config -display none -no-reboot -m "$MEM" -smp 2
             -kernel "$kernel" -initrd "$rundir/initrd.img"
             -append "console=ttyS0 quiet loglevel=3 panic=-1 oops=panic random.trust_cpu=on cryptomgr.notests=1 mitigations=off tsc=reliable no_timer_check")
    if [[ $(accel) == kvm ]]; then q+=(-accel kvm -cpu host); else q+=(-accel tcg,thread=multi -cpu "$TCG_CPU"); fi
    for s in "${SHARES[@]}"; do
        s=$(cd "$s" && pwd -P) || die "cannot share $s"
        q+=(-virtfs "local,path=$s,mount_tag=share$i,security_model=none,multidevs=remap")
        echo "share$i $s" >>"$ov/shares"
        [[ $(pwd -P)/ == "$s"/* ]] && cwd=$(pwd -P)
        i=$((i + 1))
    done
    echo "$cwd" >"$ov/cwd"
    {
        for v in $(compgen -e | grep -E '^(RUST_|CARGO_)' || true); do echo "export $v=$(shq "${!v}")"; done
        for s in "${ENVS[@]}"; do echo "export ${s%%=*}=$(shq "${s#*=}")"; done
    } >"$ov/env"
    if [[ $mode == run ]]; then
        if [[ -n $CODE ]]; then printf '%s\n' "$CODE"; elif ((${#ARGV[@]})); then
            printf 'exec'; for s in "${ARGV[@]}"; do printf ' %s' "$(shq "$s")"; done; echo
        else echo true; fi >"$ov/cmd"
    fi
    # The per-run files go in a small archive placed BEFORE the cached one: the kernel
    # unpacks concatenated archives in order.
    (cd "$rundir/ov" && find . -mindepth 1 | "$CACHE/out/busybox-static" cpio -o -H newc -R 0:0 2>/dev/null) >"$rundir/ov.cpio"
    cat "$rundir/ov.cpio" "$CACHE/out/initrd.img" >"$rundir/initrd.img"
    if [[ $mode == shell ]]; then
        qemu-system-x86_64 "${q[@]}" -serial mon:stdio
        return
    fi
    set +e
    timeout -k 5 "$TIMEOUT" qemu-system-x86_64 "${q[@]}" -serial stdio </dev/null 2>&1 |
        sed -u 's/\r$//' | tee "$log" |
        if ((QUIET)); then
            awk '/^CAUSEWAY_VM_EXIT=/{p=0} p || /^kernel-vm: /{print; fflush()} /^CAUSEWAY_VM_READY/{p=1}'
        else cat; fi
    qrc=${PIPESTATUS[0]}
    set -e
    cp "$log" "$CACHE/last-run.log.$$" && mv -f "$CACHE/last-run.log.$$" "$CACHE/last-run.log"
    if [[ $qrc == 124 || $qrc == 137 ]]; then say "the guest ran out of its ${TIMEOUT} s"; return 124; fi
    rc=$(grep -a '^CAUSEWAY_VM_EXIT=' "$log" | tail -1 | cut -d= -f2)
    if [[ -z $rc ]]; then
        say "the guest printed no exit status (crashed? qemu exited $qrc); its last lines:"
        tail -n 25 "$log" >&2 || true
        return 125
    fi
    return "$rc"
}

mkdir -p "$CACHE"
cmd=${1:-}; shift || true
case $cmd in
    build) build ;;
    run | shell) build if-needed; parse_opts "$@"; rc=0; boot "$cmd" || rc=$?; exit "$rc" ;;
    clean) rm -rf "$CACHE" ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
