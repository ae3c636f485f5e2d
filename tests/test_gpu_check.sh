#!/bin/sh
# test_gpu_check.sh: tools/gpu-check.sh's refusals, which need no GPU and come before it
# writes anything (make check): --help (exit 0, the usage and the steps --skip takes); a
# missing option value, an unknown option, an unknown --skip step, a --smollm2 file that
# is not there: each exit 2 with one line naming what is wrong, and no output folder made.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
CHECK=$SRC/tools/gpu-check.sh
TMP=${LR_TMPDIR:?}/gpu-check-sh
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"
command -v bash >/dev/null 2>&1 || { echo "test_gpu_check: no bash; skipped"; exit 77; }
export OUT="$TMP/out-dir"

expect 0 "--help" -- bash "$CHECK" --help
ok "--help prints the usage line" -- grep -q "tools/gpu-check.sh \[--sanitize\]" "$TMP/out"
ok "--help lists the steps --skip takes" -- grep -q "test_gpu_ops,test_gpu_linear,test_gpu_forward,nccl,ops-sweep,make-check,diff,decode,plugin" "$TMP/out"
expect 2 "--skip without a value" -- bash "$CHECK" --skip
expect_err "--skip needs a value"
expect 2 "--skip with an unknown step" -- bash "$CHECK" --reuse --skip diff,frob
expect_err "--skip: unknown step 'frob'" "steps: test_gpu_ops,"
expect 2 "--smollm2 without a value" -- bash "$CHECK" --smollm2
expect_err "--smollm2 needs a value"
expect 2 "--smollm2 naming no file" -- bash "$CHECK" --smollm2 "$TMP/none.gguf"
expect_err "--smollm2: $TMP/none.gguf: not a file"
expect 2 "an unknown option" -- bash "$CHECK" --frobnicate
expect_err "unknown option --frobnicate"
ok "no output folder written by a refused check" -- test ! -e "$OUT"
finish
