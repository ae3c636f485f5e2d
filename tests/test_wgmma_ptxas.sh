#!/bin/sh
# test_wgmma_ptxas.sh: ptxas keeps the warpgroup MMAs of attention fa3, fa3p, fa3w, fa3wp,
# fa3wt and fa3wts (gpu/attention_fa3.cu) asynchronous, with the tree's values and with the
# knobs at their other values (FA3WP_PINGPONG=1 FA3WTS_LPT=1, which a trial may set). Where
# it cannot prove a wgmma's registers safe (one issued or waited on in a branch, registers
# it reads or writes touched between its issue and its wait) it serialises the kernel's
# wgmmas or injects fences of its own, and says so only in its -v notes (C7510-C7520:
# "wgmma.mma_async instructions are serialized", "warpgroup.arrive is injected"); the kernel
# still passes every check, only slower. Session 22 met both while writing fa3p, session 28
# the first while writing fa3wp (a condition on a barrier's arrival inside its loop of
# wgmmas). This compiles the file for sm_90a as the makefile does, and again with the knobs,
# and fails on any such note. Needs nvcc (skips, 77, without CUDA or for another CUDA_ARCH).
set -u
if [ -z "${LR_NVCC:-}" ] || [ ! -x "$LR_NVCC" ]; then
    echo "test_wgmma_ptxas: no nvcc (a build without CUDA); skipping"
    exit 77
fi
if [ "${LR_CUDA_ARCH:-sm_90}" != sm_90 ]; then
    echo "test_wgmma_ptxas: CUDA_ARCH ${LR_CUDA_ARCH}: fa3's kernels are not built; skipping"
    exit 77
fi
src=$(cd "$(dirname "$0")/.." && pwd)
TMP=${LR_TMPDIR:?}/wgmma-ptxas
rm -rf "$TMP" && mkdir -p "$TMP"
# The file as the makefile builds it, then with the knobs whose kernels differ (a build-time
# knob a trial turns on must keep its wgmmas asynchronous too).
KNOBS="-DFA3WP_PINGPONG=1 -DFA3WTS_LPT=1"
n=0
for defs in "" "$KNOBS"; do
    n=$((n + 1)) out="$TMP/ptxas-$n.txt"
    "$LR_NVCC" -arch=sm_90a -O3 -std=c++17 --expt-relaxed-constexpr -DLR_FA3_WGMMA $defs -I"$src/ref" -I"$src/ref/core" \
        -I"$src/ref/check" -I"$src/ref/cpu" -I"$src/gpu" -I"${LR_BUILDDIR:-.}" -Xptxas -v \
        -c "$src/gpu/attention_fa3.cu" -o "$TMP/fa3.o" >"$out" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "FAIL: nvcc exit $rc compiling gpu/attention_fa3.cu for sm_90a ${defs:-without knobs}:"
        tail -20 "$out"
        exit 1
    fi
    kernels=$(grep -c "Compiling entry function '_Z[0-9]*attention_fa3\(p\|w\|wp\|wt\|wts\)\?_kernel" "$out")
    if [ "$kernels" -ne 24 ]; then
        echo "FAIL: ptxas compiled $kernels of fa3's, fa3p's, fa3w's, fa3wp's, fa3wt's and fa3wts' 24 kernels (2 dtypes x 2" \
            "head sizes each)"
        exit 1
    fi
    if grep -E 'C75[0-9][0-9]|wgmma.mma_async instructions are serialized|warpgroup.arrive is injected' \
        "$out"; then
        echo "FAIL: ptxas serialises or fences the wgmmas of fa3's kernels ${defs:-without knobs} (notes above)"
        exit 1
    fi
done
echo "test_wgmma_ptxas: $kernels kernels, with the tree's values and with $KNOBS, no wgmma serialised or fenced by ptxas; registers (the tree's):" \
    $(grep -o "Used [0-9]* registers" "$TMP/ptxas-1.txt" | cut -d' ' -f2)
