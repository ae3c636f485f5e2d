#!/usr/bin/env bash
# gpu-bench.sh: the whole GPU performance record in one call on a GPU machine (within the
# lent machine's 10 minutes): builds llamaref with CUDA (the recipe of tools/gpu-check.sh,
# Check and jansson from .devdeps/), writes the Llama-3-8B-shaped random bf16 checkpoint
# (tools/make-bench-model.py), runs bench/gpu_ops_bench (every kernel variant), then
# bench/gpu_bench (ceilings and the four workloads) and tools/bench-peer.py
# (transformers, same checkpoint and inputs) one after the other on the same card.
# Logs and JSON go to $OUT (default ./gpu-out); the tables are printed last.
#   tools/gpu-bench.sh [--check] [--compile] [--profile] [--model DIR] [--skip-peer] [--baseline DIR]
#                      [--tp LIST] [--reps N] [--steps N] [--graphs] [--kernels SPEC]
#     --check      also run the GPU suites (tools/gpu-check.sh --quick) first
#     --compile    also time the peer with a StaticCache and torch.compile (in what is left
#                  of 570 s from the start)
#     --profile    also profile decode at batch 1 (8 steps) with nsys (or ncu), kernel table
#     --baseline   also bench another source tree (e.g. main) on the same card, first
#     --tp LIST    tp sizes for gpu_bench, e.g. 1,2 (over NCCL where the host has the GPUs;
#                  speed-up against the first; default 1)
#     --reps N, --steps N   gpu_bench's prefill repeats and decode steps (default 10, 32)
#     --graphs     gpu_bench also runs the decode rows with CUDA graphs (lr_options.cuda_graphs),
#                  reported as rows of their own ("decode batch 1, graphs", ...)
#     --kernels SPEC   gpu_bench runs these kernel variants, e.g. attention=fd,linear=auto
#                  (lr_options.kernels; the per-op bench times every variant anyway)
set -uo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
CHECK=0 COMPILE=0 PROFILE=0 PEER=1 MODEL=/tmp/llama3-8b-random BASE="" TP=1 REPS=10 STEPS=32 GRAPHS= KERNELS=()
START=$(date +%s)
while [ $# -gt 0 ]; do
    case $1 in
    --check) CHECK=1 ;;
    --compile) COMPILE=1 ;;
    --profile) PROFILE=1 ;;
    --skip-peer) PEER=0 ;;
    --model) MODEL=$2; shift ;;
    --baseline) BASE=$(cd "$2" && pwd); shift ;;
    --tp) TP=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --steps) STEPS=$2; shift ;;
    --graphs) GRAPHS=--graphs ;;
    --kernels) KERNELS=(--kernels "$2"); shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-bench.log") 2>&1
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
echo "== machine"
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader || true

echo "== checkpoint (background)"
python3 tools/make-bench-model.py "$MODEL" >"$OUT/make-model.log" 2>&1 &
MKPID=$!

DD=/tmp/llamaref-dd
rm -rf "$DD" && mkdir -p "$DD"
for f in .devdeps/*.deb; do dpkg -x "$f" "$DD"; done
for pc in "$DD"/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc; do sed -i "s|^prefix=.*|prefix=$DD/usr|" "$pc"; done
export PKG_CONFIG_PATH="$DD/usr/lib/x86_64-linux-gnu/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export CPATH="$DD/usr/include${CPATH:+:$CPATH}"
export LIBRARY_PATH="$DD/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$DD/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

build() { # build SRC DIR
    rm -rf "$2" && mkdir -p "$2" && cp -r "$1"/. "$2" && rm -rf "$2/.devdeps" "$2/gpu-out"
    (cd "$2" && autoreconf -fi && ./configure --with-cuda --enable-werror && make -j16 && make -j16 bench-gpu)
}
echo "== build"
B=/tmp/llamaref-bench
if [ $CHECK -eq 0 ]; then
    build "$SRC" "$B" >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; echo "BUILD FAILED"; exit 1; }
fi
if [ -n "$BASE" ]; then
    # The model-level bench is the same program on both sides (public API only); the
    # per-op bench stays the baseline's own, since kernel entry points change.
    cp "$SRC/bench/gpu_bench.c" "$SRC/bench/ceilings.h" "$SRC/bench/gpu.am" "$BASE/bench/" 2>/dev/null ||
        { mkdir -p "$BASE/bench" && cp "$SRC"/bench/* "$BASE/bench/"; }
    grep -q 'bench/gpu.am' "$BASE/Makefile.am" || echo 'include $(srcdir)/bench/gpu.am' >>"$BASE/Makefile.am"
    build "$BASE" /tmp/llamaref-base >"$OUT/build-base.log" 2>&1 || { tail -30 "$OUT/build-base.log"; echo "BASELINE BUILD FAILED"; }
fi

if [ $CHECK -eq 1 ]; then
    echo "== GPU suites (tools/gpu-check.sh --quick; its logs in logs.tgz, check/)"
    s=$(date +%s)
    OUT="$OUT/check" timeout 300 bash tools/gpu-check.sh --quick >/dev/null 2>&1
    echo "gpu-check: exit $? in $(($(date +%s) - s)) s"
    grep -E "^(exit|make check exit|--)|FAIL|BUILD" "$OUT/check/gpu-check.log" | head -20
    grep -E "^[0-9]+%" "$OUT"/check/test_gpu_*.log
    grep -c "exit 0" "$OUT/check/gpu-check.log" | sed 's/^/llama-diff runs with exit 0: /'
    # Its build (/tmp/llamaref-build, this tree) serves the bench too.
    B=/tmp/llamaref-build
    (cd "$B" && make -j16 bench-gpu) >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; echo "BUILD FAILED"; exit 1; }
fi

echo "== per-op bench"
"$B/bench/gpu_ops_bench" --json "$OUT/gpu-ops.json" >"$OUT/gpu-ops.txt" 2>&1 || echo "gpu_ops_bench failed"

wait $MKPID; cat "$OUT/make-model.log"
if [ -n "$BASE" ] && [ -x /tmp/llamaref-base/bench/gpu_bench ]; then
    echo "== baseline bench ($BASE)"
    /tmp/llamaref-base/bench/gpu_bench --model "$MODEL" --reps 5 --steps 16 --json "$OUT/gpu-bench-base.json" \
        >"$OUT/gpu-bench-base.txt" 2>&1 || echo "baseline gpu_bench failed"
    tail -8 "$OUT/gpu-bench-base.txt"
fi
echo "== gpu_bench"
"$B/bench/gpu_bench" --model "$MODEL" --tp "$TP" --reps "$REPS" --steps "$STEPS" --json "$OUT/gpu-bench.json" \
    --dump-logits /tmp/ours-logits.f32 $GRAPHS "${KERNELS[@]}" \
    >"$OUT/gpu-bench.txt" 2>&1 || echo "gpu_bench failed"
# ---- memory (issue 18): the host's peak RSS loading and checking the bench model ----------
# gpu_bench prints its load's host peak against the budget (docs/performance.md, Memory);
# here the same for a whole llama-diff run on the GPU (two models loaded in turn, every
# stage observed and compared), from its JSON report's memory object.
echo "== memory: llama-diff backends --a cuda:bf16 --b cuda:fp16 on the bench model, 32 tokens"
"$B/llama-diff" backends --a cuda:bf16 --b cuda:fp16 -m "$MODEL" --tokens "$(seq -s ' ' 1 32)" --json -q \
    >"$OUT/memory-backends.json" 2>"$OUT/memory-backends.err"
echo "exit $? $(head -c 300 "$OUT/memory-backends.err")"
python3 - "$OUT/memory-backends.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
G = 2.0 ** 30
for k in "ab":
    m = d["memory"][k]
    print("memory row (%s): host peak RSS %.2f GiB after loading, %.2f GiB for the command; device weights %.2f GiB, "
          "GPUs in use after load %.2f GiB; load staging %.0f MiB"
          % (k, m["host_peak_rss_after_load"] / G, m["host_peak_rss"] / G, m["device_weights"] / G,
             m["device_used_after_load"] / G, m["load_staging"] / 2.0 ** 20))
PY
# ---- end memory -------------------------------------------------------------------------------
if [ $PEER -eq 1 ]; then
    echo "== peer (transformers)"
    timeout 300 python3 tools/bench-peer.py --model "$MODEL" --json "$OUT/peer.json" \
        --compare-logits /tmp/ours-logits.f32 2>&1 | grep -v -e Warning -e 'Loading weights' | tee "$OUT/peer.txt" | tail -25
fi
if [ $PROFILE -eq 1 ]; then
    echo "== profile: decode batch 1, 8 steps ($(command -v nsys || command -v ncu || echo 'no profiler'))"
    if command -v nsys >/dev/null; then
        timeout 150 nsys profile -o /tmp/decode1 --force-overwrite true -t cuda "$B/bench/gpu_bench" --model "$MODEL" \
            --only 2 --steps 8 >/dev/null 2>&1
        nsys stats -r cuda_gpu_kern_sum,cuda_api_sum -f csv -o "$OUT/profile-decode1" /tmp/decode1.nsys-rep >/dev/null 2>&1
        ls "$OUT"/profile-decode1* 2>/dev/null
        head -25 "$OUT"/profile-decode1*kern_sum*.csv 2>/dev/null | cut -c1-220
    elif command -v ncu >/dev/null; then
        # Past the context's prefill and the warm-up steps: about two layers of a step.
        timeout 200 ncu --section SpeedOfLight --launch-skip 2000 --launch-count 24 "$B/bench/gpu_bench" \
            --model "$MODEL" --only 2 --steps 8 >"$OUT/profile-decode1-ncu.txt" 2>&1
        grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Memory Throughput" "$OUT/profile-decode1-ncu.txt" | head -80
    fi
fi
if [ $PEER -eq 1 ]; then
    if [ $COMPILE -eq 1 ]; then
        left=$((START + 570 - $(date +%s)))
        echo "== peer, StaticCache + torch.compile (decode; $left s left)"
        [ $left -gt 60 ] && timeout $left python3 tools/bench-peer.py --model "$MODEL" --only none --compile \
            --json "$OUT/peer-compile.json" 2>&1 | grep -v -e Warning -e 'Loading weights' | tee "$OUT/peer-compile.txt" | tail -25
    fi
fi
# At most 8 files come back from the lent machine: the small logs travel as one archive.
(cd "$OUT" && tar czf logs.tgz --ignore-failed-read build.log build-base.log make-model.log peer.txt peer-compile.txt \
    gpu-bench-base.txt check profile-decode1* memory-backends.json memory-backends.err 2>/dev/null
    rm -rf build.log build-base.log make-model.log peer.txt peer-compile.txt check profile-decode1* \
        memory-backends.json memory-backends.err)
echo "== results"
cat "$OUT/gpu-ops.txt"
cat "$OUT/gpu-bench.txt"
date -u
