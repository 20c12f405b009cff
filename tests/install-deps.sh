#!/usr/bin/env bash
# Installs what the test suite and the demo use on a fresh Debian machine (run as root).
# Idempotent: packages already present are left as they are.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
  iproute2 nftables conntrack dnsutils iputils-ping netcat-openbsd procps psmisc curl python3
  wireguard-tools wireguard-go iperf3
  openvswitch-switch
  ipvsadm nsd dnsperf
  qemu-system-x86 busybox-static cpio kmod
  python3-venv
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# OVS must not run as a system service here: tests start their own daemons in namespaces.
if command -v systemctl >/dev/null 2>&1; then systemctl stop openvswitch-switch >/dev/null 2>&1 || true; fi
command -v kubectl >/dev/null 2>&1 || apt-get install -y -qq kubernetes-client >/dev/null
# PyPI tools go into a virtualenv of their own (Debian refuses system-wide pip, PEP 668);
# their commands are linked into /usr/local/bin.
venv=${CAUSEWAY_TOOLS_VENV:-/opt/causeway-tools}
if [[ ! -x $venv/bin/kubernetes-validate ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate
fi
ln -sf "$venv/bin/kubernetes-validate" /usr/local/bin/kubernetes-validate
# The kernel-VM tests boot Debian's stock kernel, fetched with `apt-get download`: build the
# VM once here so a first test does not pay for it.
"$(dirname "$0")/lab/kernel-vm.sh" build
rustup component add rustfmt clippy >/dev/null 2>&1 || true
