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
# bench_mux runs as two parts, each with a time limit: its row of 4,000
# udpsrc (4,000 streaming threads on the machine's cores) stalled the whole
# machine for as long as it was left in 2 of 12 runs (load average over
# 3,000: the threads spinning in the bus's message queue; the bench's bus
# now drops its messages, see bench_mux's keep_bus_quiet), and should
# another stall come, it must not cost the benchmarks after it.
bounded() {
  local limit=$1 what=$2
  shift 2
  local rc=0
  timeout --kill-after=30 "$limit" "$@" || rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "# NOT FINISHED: $what stopped after its limit of $limit s; the rows it had not printed are missing"
  elif [ "$rc" -ne 0 ]; then
    exit "$rc"
  fi
}
# The cores on their own first (rtpsynth-core, no GStreamer), then each
# element against the stock elements it competes with.
for manifest in rtpsynth-core/Cargo.toml Cargo.toml; do
  for b in $(sed -n 's/^name = "\(bench_[a-z0-9_]*\)"/\1/p' "$manifest"); do
    if [ "$b" = bench_mux ]; then
      cargo bench --quiet --manifest-path "$manifest" --bench "$b" --no-run
      BENCH_MUX_PEERS=0 bounded "${BENCH_MUX_RECEIVE_LIMIT:-4500}" "bench_mux's receive rows" \
        cargo bench --quiet --manifest-path "$manifest" --bench "$b"
      BENCH_MUX_N=0 bounded "${BENCH_MUX_PEERS_LIMIT:-2400}" "bench_mux's channel-to-channel rows" \
        cargo bench --quiet --manifest-path "$manifest" --bench "$b"
    else
      cargo bench --quiet --manifest-path "$manifest" --bench "$b"
    fi
  done
done
# From Python with stock PyGObject: polling every channel's statistics.
GST_PLUGIN_PATH="$PWD/target/release" PYTHONPATH="$PWD/python" /usr/bin/python3 benches/python/bench_stats_poll.py
# Relaying N calls: rtpmuxserver against rtpengine, same load (benches/relay/README.md).
/usr/bin/python3 benches/relay/bench_relay.py
