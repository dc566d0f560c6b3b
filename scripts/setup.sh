#!/usr/bin/env bash
# Installs the Debian 12 packages the build, the tests and the benchmarks need.
# Idempotent: when everything is present it only runs one dpkg-query and exits.
# As root it installs what is missing with apt-get; otherwise it prints the command.
set -euo pipefail

PACKAGES=(
  pkg-config
  libgstreamer1.0-dev
  libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
  python3-gi
  python3-gst-1.0
  python3-pytest
  python3-numpy
  meson
  ninja-build
  tshark
  # Real peers and captures for tests/captures.rs: SIPp's RTP captures
  # (/usr/share/sip-tester/*.pcap) and ffmpeg.
  sip-tester
  ffmpeg
  # The reference relay of the relay benchmark (benches/relay), which starts
  # its own instances in the foreground; never run as a service.
  rtpengine-daemon
  # The relay benchmark's kernel relay (benches/relay/relaytc.c): its tc
  # program is built with clang and loaded with libbpf.
  clang
  libbpf-dev
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing system packages: ${missing[*]}" >&2
  echo "setup: install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer once, non-interactively.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections

# rtpengine-daemon's postinst starts it as a service. invoke-rc.d and
# deb-systemd-invoke first ask policy-rc.d; when there is none (containers
# usually have one that refuses everything), one is written for the install
# that refuses this daemon alone (exit 101) and allows the rest.
installs_rtpengine=false
[[ " ${missing[*]} " == *" rtpengine-daemon "* ]] && installs_rtpengine=true
policy=/usr/sbin/policy-rc.d
if $installs_rtpengine && [ ! -e "$policy" ]; then
  trap 'rm -f "$policy"' EXIT
  printf '#!/bin/sh\n[ "$1" = rtpengine-daemon ] && exit 101\nexit 0\n' >"$policy"
  chmod 755 "$policy"
fi

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

if $installs_rtpengine; then
  # Nor at boot; and stopped, should a policy have let it start.
  update-rc.d rtpengine-daemon disable >/dev/null 2>&1 || true
  if [ -d /run/systemd/system ]; then
    systemctl disable --now rtpengine-daemon.service >/dev/null 2>&1 || true
  else
    deb-systemd-helper disable rtpengine-daemon.service >/dev/null 2>&1 || true
    /etc/init.d/rtpengine-daemon stop >/dev/null 2>&1 || true
  fi
fi
