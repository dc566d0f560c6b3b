#!/usr/bin/env bash
# meson's custom target: build the plugin in release mode with cargo and copy
# it to where meson expects it. Usage: cargo-build.sh MANIFEST TARGET_DIR OUTPUT
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --manifest-path "$1" --target-dir "$2"
cp "$2/release/libgstrtpsynth.so" "$3"
