#!/bin/sh
# test_detection.sh: the detection suite (make check-detection; .ci/run runs it): no
# false positive on any fixture, precision, tp or isolation, and every injected fault
# (on an op's output, or structural: a wrong theta or eps, an off-by-one mask, a stale KV
# entry, two heads swapped) and planted structural bug caught and named
# (tools/detection.py --check; docs/detection.md).
# DETECTION_BACKEND (default cpu) and DETECTION_PRECISIONS pick what runs, DETECTION_ASSERT
# the precisions whose misses fail the test (default: every CPU precision, f64, f32 and
# the emulated bf16 and fp16; others are reported).
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 is not installed"; exit 77; }
top=$(cd "$(dirname "$0")/.." && pwd)
set -- --check --backend "${DETECTION_BACKEND:-cpu}" --assert "${DETECTION_ASSERT:-f64 f32 bf16 fp16}"
[ -n "${DETECTION_PRECISIONS:-}" ] && set -- "$@" --precisions "$DETECTION_PRECISIONS"
exec python3 "$top/tools/detection.py" "$@" --llama-diff "${LLAMA_DIFF:-$top/llama-diff}" \
    --fixtures "${LR_FIXTURES:-$top/fixtures}" --tmp "${LR_TMPDIR:-/tmp}"
