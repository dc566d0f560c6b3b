#!/usr/bin/env bash
# Checks that gst-inspect-1.0 loads the plugin from a build directory and
# lists every element the project ships.
set -euo pipefail
dir=${1:-target/debug}
ELEMENTS=(rtpsynthsrc rtpjbufdec rtpmuxserver ulawenc ulawdec g711alawenc g711alawdec linearresample)

export GST_PLUGIN_PATH="$dir"
export GST_REGISTRY="${GST_REGISTRY:-$dir/gst-registry.bin}"
[ -f "$dir/libgstrtpsynth.so" ] || { echo "check-inspect: $dir/libgstrtpsynth.so not built" >&2; exit 1; }
out=$(gst-inspect-1.0 rtpsynth)
fail=0
for e in "${ELEMENTS[@]}"; do
  if grep -q "^  $e:" <<<"$out"; then
    gst-inspect-1.0 "$e" >/dev/null || { echo "check-inspect: gst-inspect-1.0 $e failed" >&2; fail=1; }
  else
    echo "check-inspect: element $e missing from the rtpsynth plugin" >&2
    fail=1
  fi
done
[ $fail -eq 0 ] && echo "check-inspect: rtpsynth loads with ${#ELEMENTS[@]} element(s): ${ELEMENTS[*]}"
exit $fail
