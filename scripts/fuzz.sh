#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed number of executions, one after
# the other (one fuzzer process at a time), each from the seed corpus that
# fuzz/examples/seeds.rs writes into fuzz/seeds/<target>/ plus whatever the
# earlier runs left in fuzz/corpus/<target>/ (where new inputs go).
# Prints per target: executions, time, rate, corpus size, crashes; exits 1
# if any target crashed (the crashing input is in fuzz/artifacts/<target>/).
#
#   FUZZ_RUNS       executions per target (default 10000000)
#   FUZZ_MAX_TIME   seconds per target before libFuzzer stops anyway (3600)
#   FUZZ_TARGETS    targets to run (default: all of `cargo fuzz list`)
#   FUZZ_SANITIZER  none (default) or address: the fuzzed cores have no
#                   unsafe code, so AddressSanitizer finds nothing the bounds
#                   and overflow checks do not, at a quarter of the speed
#   FUZZ_TOOLCHAIN  rustup toolchain with -Z flags (default nightly)
#
# Needs the nightly toolchain and cargo-fuzz: `make fuzz` installs both.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${FUZZ_RUNS:-10000000}
MAX_TIME=${FUZZ_MAX_TIME:-3600}
SANITIZER=${FUZZ_SANITIZER:-none}
TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
cargo=(cargo "+$TOOLCHAIN")

if ! command -v c++ >/dev/null; then
  echo "fuzz: libfuzzer-sys builds libFuzzer with a C++ compiler: apt-get install g++" >&2
  exit 1
fi

# Deterministic: the committed seeds only change when the generator does.
"${cargo[@]}" run --quiet --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/seeds

# Release build with debug assertions and overflow checks (cargo fuzz's
# default), so an overflow is a crash, as it is in `cargo test`.
"${cargo[@]}" fuzz build --sanitizer "$SANITIZER"

read -r -a targets <<<"${FUZZ_TARGETS:-$("${cargo[@]}" fuzz list | tr '\n' ' ')}"
# Executions $1 per $2 seconds.
rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0 && n + 0 == n) printf "%.0f", n / s; else print "?" }'; }

mkdir -p fuzz/artifacts
summary=()
crashed=0
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  artifacts=fuzz/artifacts/$t
  log=fuzz/artifacts/$t.log
  mkdir -p "$corpus" "$artifacts"
  stamp=$(mktemp)
  echo "fuzz: $t, $RUNS executions (log: $log)"
  times=$(mktemp)
  rc=0
  # -timeout: an input running 10 s is a hang, saved like a crash. The
  # shell's `time` gives the CPU the fuzzer used besides the wall clock: on
  # a shared machine the rate per CPU second is the steadier figure.
  TIMEFORMAT='%R %U %S'
  { time "${cargo[@]}" fuzz run --sanitizer "$SANITIZER" "$t" "$corpus" "fuzz/seeds/$t" -- \
    -runs="$RUNS" -max_total_time="$MAX_TIME" -timeout=10 -print_final_stats=1 \
    >"$log" 2>&1; } 2>"$times" || rc=$?
  read -r wall user sys <"$times"
  rm -f "$times"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  execs=${execs:-?}
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')
  files=$(find "$corpus" -type f | wc -l)
  kb=$(find "$corpus" -type f -printf '%s\n' | awk '{ n += $1 } END { printf "%.0f", n / 1024 }')
  found=$(find "$artifacts" -type f -newer "$stamp" | sort)
  rm -f "$stamp"
  if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
    crashed=1
    verdict="CRASH (exit $rc): ${found:-see $log}"
    tail -n 40 "$log" >&2
  elif [ "$execs" != "$RUNS" ]; then
    verdict="no crash, stopped at the ${MAX_TIME} s limit"
  else
    verdict="no crash"
  fi
  summary+=("$(printf '%-10s %11s %8.1f %8s %10s %10s %7s %7s  %s' "$t" "$execs" "$wall" "$cpu" "$(rate "$execs" "$wall")" "$(rate "$execs" "$cpu")" "$files" "$kb" "$verdict")")
done

echo
echo "fuzz: $(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, sanitizer $SANITIZER"
printf '%-10s %11s %8s %8s %10s %10s %7s %7s  %s\n' target executions "wall s" "CPU s" exec/s "exec/CPU-s" "corpus" "KB" result
printf '%s\n' "${summary[@]}"
exit "$crashed"
