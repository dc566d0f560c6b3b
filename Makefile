# The README's commands. Each first runs the setup script, which installs any
# missing Debian package (as root) and is a no-op when all are present.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
# A registry of our own so a stale system registry never hides a rebuilt plugin.
export GST_REGISTRY := $(CURDIR)/target/gst-registry.bin
# Debian's interpreter: it has python3-gi and python3-gst-1.0.
PYTHON := /usr/bin/python3

.PHONY: setup build release test demo bench bench-relay inspect-check fuzz

setup:
	@bash scripts/setup.sh

build: setup
	cargo build

release: setup
	cargo build --release

test: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	# As root on Linux 6.6 or later (tcx links; CI, the setup script's
	# machines) the relay offload's tests must load it rather than skip:
	# its BPF program is theirs to check.
	if [ "$$(id -u)" -eq 0 ] && printf '6.6\n%s\n' "$$(uname -r)" | sort -VC; then \
	  export RTPSYNTH_REQUIRE_OFFLOAD=1; fi; cargo test --workspace
	# cargo test builds the library for the tests, not the plugin's .so.
	cargo build
	bash scripts/check-inspect.sh target/debug
	GST_PLUGIN_PATH=$(CURDIR)/target/debug PYTHONPATH=$(CURDIR)/python $(PYTHON) -m pytest -q tests/python

inspect-check: build
	bash scripts/check-inspect.sh target/debug

demo: release
	cargo run --release --example callload

bench: release
	bash scripts/bench.sh

# The relay benchmark alone (also the last part of `make bench`); see
# benches/relay/README.md for its environment variables.
bench-relay: release
	$(PYTHON) benches/relay/bench_relay.py

# Every cargo-fuzz target for FUZZ_RUNS executions (default 10 million; 15 to
# 20 minutes on 2 cores). Not part of `make test`. Needs rustup: installs
# the nightly toolchain and cargo-fuzz when they are missing.
fuzz:
	rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
	bash scripts/fuzz.sh
