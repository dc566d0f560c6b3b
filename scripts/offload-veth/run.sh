#!/usr/bin/env bash
# A manual check of rtpmuxserver's relay-offload on real (veth) interfaces
# with the element (the core's tests do the like without it): two network
# namespaces, each an endpoint behind its own veth pair, the relay in the
# root namespace with IP forwarding as it is (off on Debian), so only the
# relay can carry packets between them. Each endpoint sends 100 RTP packets;
# the relay prints its channels' counters: relayed-offloaded shows how many
# the kernel forwarded (MACs and interface learnt from each side's frames).
# Needs root; run after `cargo build --release`. Removes what it made.
set -euo pipefail
cd "$(dirname "$0")"
export GST_PLUGIN_PATH=${GST_PLUGIN_PATH:-$PWD/../../target/release}
export GST_REGISTRY=${GST_REGISTRY:-$PWD/../../target/gst-registry.bin}
cleanup() {
  ip netns del ea 2>/dev/null || true
  ip netns del eb 2>/dev/null || true
  ip link del ra0 2>/dev/null || true
  ip link del rb0 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add ea
ip netns add eb
ip link add ra0 type veth peer name ea0 netns ea
ip link add rb0 type veth peer name eb0 netns eb
ip addr add 10.10.1.1/24 dev ra0 && ip link set ra0 up
ip addr add 10.10.2.1/24 dev rb0 && ip link set rb0 up
for side in a b; do
  n=$([ $side = a ] && echo 1 || echo 2)
  ip netns exec e$side ip addr add 10.10.$n.2/24 dev e${side}0
  ip netns exec e$side ip link set e${side}0 up
  ip netns exec e$side ip route add default via 10.10.$n.1
done
echo "net.ipv4.ip_forward=$(sysctl -n net.ipv4.ip_forward)"
/usr/bin/python3 relay.py 4 &
relay=$!
sleep 1
ip netns exec eb /usr/bin/python3 endpoint.py 10.10.2.2 6000 10.10.2.1 40002 0xb 100 &
sleep 0.05
ip netns exec ea /usr/bin/python3 endpoint.py 10.10.1.2 5000 10.10.1.1 40000 0xa 100
wait
