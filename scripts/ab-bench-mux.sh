#!/bin/bash
# Interleaved A/B of two builds of bench_mux, one shared-port row at a time,
# with the shared floor timed in every round: on a noisy machine only
# figures measured side by side compare.
#
#   scripts/ab-bench-mux.sh OLD_BENCH_BINARY NEW_BENCH_BINARY
#
# The binaries are `cargo bench --no-run --bench bench_mux` outputs
# (target/release/deps/bench_mux-<hash>) of the two commits; build the old
# one in a worktree with its own CARGO_TARGET_DIR. Environment: ROW (the
# BENCH_MUX_ONLY row compared, default shared-all), NS (stream counts,
# default "1000 2000"), TICK (default 5), ROUNDS (default 4). Each output
# line is: round, build (old, new, or floor), then the bench's row.
set -eu
old=$1
new=$2
row=${ROW:-shared-all}
for round in $(seq "${ROUNDS:-4}"); do
  for n in ${NS:-1000 2000}; do
    for which in old new floor; do
      case $which in
        old) bin=$old only=$row ;;
        new) bin=$new only=$row ;;
        floor) bin=$new only=shared-floor ;;
      esac
      line=$(BENCH_MUX_ONLY=$only BENCH_MUX_N=$n BENCH_MUX_SHARED_TICKS=${TICK:-5} \
        BENCH_MUX_PEERS=0 "$bin" --bench 2>/dev/null | grep -E "^ +$n " || true)
      echo "$round $which $line"
    done
  done
done
