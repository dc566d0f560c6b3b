#!/usr/bin/env bash
# Runs every benchmark; each prints our figure beside the stock element or
# reference it competes with, measured in the same run (medians of BENCH_RUNS).
set -euo pipefail
cd "$(dirname "$0")/.."
export GST_REGISTRY="${GST_REGISTRY:-$PWD/target/gst-registry.bin}"
echo "# make bench on $(nproc) cores, $(date -u +%Y-%m-%d), BENCH_RUNS=${BENCH_RUNS:-5}"
# bench_calls runs the call-load example in its own processes.
cargo build --release --quiet --example callload
for b in $(sed -n 's/^name = "\(bench_[a-z0-9_]*\)"/\1/p' Cargo.toml); do
  cargo bench --quiet --bench "$b"
done
# From Python with stock PyGObject: polling every channel's statistics.
GST_PLUGIN_PATH="$PWD/target/release" /usr/bin/python3 benches/python/bench_stats_poll.py
