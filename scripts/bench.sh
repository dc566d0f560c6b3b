#!/usr/bin/env bash
# Runs every benchmark; each prints our figure beside the stock element or
# reference it competes with, measured in the same run (medians of BENCH_RUNS).
set -euo pipefail
cd "$(dirname "$0")/.."
export GST_REGISTRY="${GST_REGISTRY:-$PWD/target/gst-registry.bin}"
echo "# make bench on $(nproc) cores, $(date -u +%Y-%m-%d), BENCH_RUNS=${BENCH_RUNS:-5}"
# bench_mux's receive rows: the median of three runs each (the machines
# are noisy; one run proves little).
export BENCH_MUX_RUNS="${BENCH_MUX_RUNS:-3}"
# bench_calls runs the call-load example in its own processes.
cargo build --release --quiet --example callload
# The cores on their own first (rtpsynth-core, no GStreamer), then each
# element against the stock elements it competes with.
for manifest in rtpsynth-core/Cargo.toml Cargo.toml; do
  for b in $(sed -n 's/^name = "\(bench_[a-z0-9_]*\)"/\1/p' "$manifest"); do
    cargo bench --quiet --manifest-path "$manifest" --bench "$b"
  done
done
# From Python with stock PyGObject: polling every channel's statistics.
GST_PLUGIN_PATH="$PWD/target/release" PYTHONPATH="$PWD/python" /usr/bin/python3 benches/python/bench_stats_poll.py
# Relaying N calls: rtpmuxserver against rtpengine, same load (benches/relay/README.md).
/usr/bin/python3 benches/relay/bench_relay.py
