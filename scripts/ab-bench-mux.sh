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
#
# The two builds swap places every round: a run's place in a round moves
# its figure (at tick 0 the same build ran 0.70-0.94x as costly second as
# first, 5 rounds, docs/bench/2026-12-06u.txt), so use an even number.
set -eu
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
old=$1
new=$2
row=${ROW:-shared-all}
for round in $(seq "${ROUNDS:-4}"); do
  for n in ${NS:-1000 2000}; do
    order="old new"
    if [ $((round % 2)) = 0 ]; then order="new old"; fi
    for which in $order floor; do
      case $which in
        old) bin=$old only=$row ;;
        new) bin=$new only=$row ;;
        floor) bin=$new only=shared-floor ;;
      esac
      line=$(BENCH_MUX_ONLY=$only BENCH_MUX_N=$n BENCH_MUX_SHARED_TICKS=${TICK:-5} \
        BENCH_MUX_PEERS=0 "$bin" --bench 2>/dev/null | grep -E "^ +$n " || true)
      echo "$round $which $line" | tee -a "$rows"
    done
  done
done
# Per N: the median over the rounds of new/old, and of each against the
# floor of its round.
python3 - "$rows" <<'PY'
import collections, statistics, sys
rounds = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) > 7:
        rounds[(int(f[2]), f[0])][f[1]] = float(f[7])
by_n = collections.defaultdict(lambda: collections.defaultdict(list))
for (n, _), r in rounds.items():
    if {"old", "new", "floor"} <= r.keys():
        by_n[n]["new/old"].append(r["new"] / r["old"])
        by_n[n]["old/floor"].append(r["old"] / r["floor"])
        by_n[n]["new/floor"].append(r["new"] / r["floor"])
for n, ratios in sorted(by_n.items()):
    print(f"# N={n}: " + ", ".join(
        f"{k} median {statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})" for k, v in ratios.items()))
PY
