#!/bin/sh
# test_gpu_trial.sh: tools/gpu-trial.sh's refusals, which need no GPU and come before any
# rebuild (make check): --help (exit 0, the usage); a missing option value, an unknown
# option, no --op or --variant, --logits or --trace without --step, no CONFIG, a bad
# --dtype, a CONFIG word that is not -DNAME[=VALUE], a build folder without a Makefile, a
# build configured without CUDA, --trace with a build configured without CUPTI: each exit 2
# with one line naming what is wrong. Nothing is built and no folder is written outside
# the scratch one.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
TRIAL=$SRC/tools/gpu-trial.sh
TMP=${LR_TMPDIR:?}/gpu-trial-sh
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"
command -v bash >/dev/null 2>&1 || { echo "test_gpu_trial: no bash; skipped"; exit 77; }

expect 0 "--help" -- bash "$TRIAL" --help
ok "--help prints the usage line" -- grep -q "gpu-trial.sh --op FAMILY --variant NAME" "$TMP/out"

OUT=$TMP/out-dir
expect 2 "--op without a value" -- bash "$TRIAL" --op
expect_err "--op needs a family"
expect 2 "an unknown option" -- bash "$TRIAL" --op linear --variant gemv --frobnicate ""
expect_err "unknown option --frobnicate"
expect 2 "no --variant" -- bash "$TRIAL" --op linear ""
expect_err "--op and --variant are required"
expect 2 "--logits without --step" -- bash "$TRIAL" --op linear --variant gemv --logits ""
expect_err "--logits needs --step"
expect 2 "--trace without --step" -- bash "$TRIAL" --op linear --variant gemv --trace ""
expect_err "--trace needs --step"
expect 2 "no CONFIG" -- bash "$TRIAL" --op linear --variant gemv
expect_err "no CONFIG"
expect 2 "a bad --dtype" -- bash "$TRIAL" --op linear --variant gemv --dtype f64 ""
expect_err "--dtype f64" "f32, f16 or bf16"
expect 2 "a CONFIG word that is not a definition" -- bash "$TRIAL" --op linear --variant gemv "-DGEMV_STAGED=8 -O3"
expect_err "\"-O3\" is not a -DNAME[=VALUE]"
expect 2 "a build folder without a Makefile" -- bash "$TRIAL" --build "$TMP/none" --out "$OUT" --op linear --variant gemv ""
expect_err "$TMP/none: no configured build"
mkdir -p "$TMP/cpu-build"
printf 'CPPFLAGS = -I.\nNVCC = \n' >"$TMP/cpu-build/Makefile"
expect 2 "a build configured without CUDA" -- bash "$TRIAL" --build "$TMP/cpu-build" --out "$OUT" --op linear --variant gemv ""
expect_err "configured without CUDA"
printf 'CPPFLAGS = -I.\nNVCC = /usr/local/cuda/bin/nvcc\nCUPTI_LIBS = \n' >"$TMP/cpu-build/Makefile"
expect 2 "--trace with a build configured without CUPTI" -- bash "$TRIAL" --build "$TMP/cpu-build" --out "$OUT" \
    --op linear --variant gemv --step "--model m" --trace ""
expect_err "--trace: $TMP/cpu-build was configured without CUPTI"
ok "no output folder written by a refused trial" -- test ! -e "$OUT"
finish
