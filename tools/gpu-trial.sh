#!/usr/bin/env bash
# gpu-trial.sh: a kernel's build-time knobs tried on a GPU machine, each checked before it
# is timed. For each CONFIG (preprocessor definitions for the CUDA objects, e.g.
# "-DMM_STAGES=8 -DMM_MIN_SLICE=32"; "" for the tree's own values) it rebuilds the CUDA
# objects and llama-diff with them, runs the family's op sweep of the variant (every case
# must pass: guard bytes, poisoned outputs, the float64 and same-precision criteria), and
# only then times each --shape (`llama-diff ops --shape S --perf`: 3 warm-ups, the median
# of 20 launches). A table of microseconds, config by shape, ends it; a config whose build
# or sweep fails is marked so and not timed, and the exit status is then 1 (as for a failed
# timing or gpu_bench step). Needs a configured CUDA build (BUILD, default
# /tmp/llamaref-build, as tools/gpu-check.sh --build-only leaves it); run from the tree.
#   tools/gpu-trial.sh --op FAMILY --variant NAME [--dtype D] [--shape SPEC]... [--peer VARIANT]...
#                      [--step ARGS [--logits] [--trace]] [--build DIR] [--out DIR] [--] CONFIG...
# --shape SPEC   a case of the family (llama-diff ops --shape: e.g. T=32,N=4096,K=4096);
#                repeatable; none: the sweep alone
# --peer NAME    also time another variant of the family on the same shapes, once, with the
#                tree's own values (e.g. cublas), in the same run
# --step ARGS    also time the model per configuration: bench/gpu_bench ARGS (e.g. "--model
#                /tmp/llama3-8b-random --only 24 --graphs"), its rows' milliseconds, and
#                each row's profiled pass by op (gpu_bench --json, unless ARGS has one)
# --logits       with --step: keep each config's logits of its first row (gpu_bench
#                --dump-logits; a row of one sequence, e.g. --only 0) and say, config by
#                config, whether their bits are the first config's (for a knob meant to
#                change no bit: the bits through the whole model, not only the op's sweep)
# --trace        with --step: run each config's gpu_bench once more under the kernel tracer
#                (tools/ktrace.sh; a build configured with CUPTI): trace-N.jsonl.gz, its
#                kernels' own times inside the graph (trace-N.md, tools/ktrace-summary.py)
#                and, from the second config on, against the first's (trace-N-vs-1.md); the
#                rows' times come from the untraced run (the tracer costs the host time)
# --dtype D      f32, f16 or bf16 (default bf16)
# Logs go to OUT (default ./gpu-out/trial); the build is left with the tree's own values.
set -uo pipefail
usage() { sed -n '/^#   tools\/gpu-trial.sh/,/^# Logs go/p' "$0" | sed 's/^# \{0,1\}//' >&"${1:-1}"; }
OP= VARIANT= DT=bf16 BUILD=${BUILD:-/tmp/llamaref-build} OUTD=${OUT:-$PWD/gpu-out}/trial
SHAPES=() PEERS=() CONFIGS=() STEP= LOGITS= TRACE=
TOOLS=$(cd "$(dirname "$0")" && pwd) # ktrace.sh and ktrace-summary.py beside this script
# The value of option $1 ($2, where there is one), or exit 2 saying it needs $3.
value() { [ -n "${2:-}" ] || { echo "gpu-trial: $1 needs $3" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --op) value "$1" "${2:-}" "a family"; OP=$2; shift ;;
    --variant) value "$1" "${2:-}" "a variant's name"; VARIANT=$2; shift ;;
    --dtype) value "$1" "${2:-}" "f32, f16 or bf16"; DT=$2; shift ;;
    --shape) value "$1" "${2:-}" "a SPEC"; SHAPES+=("$2"); shift ;;
    --peer) value "$1" "${2:-}" "a variant's name"; PEERS+=("$2"); shift ;;
    --step) value "$1" "${2:-}" "gpu_bench's arguments"; STEP=$2; shift ;;
    --logits) LOGITS=1 ;;
    --trace) TRACE=1 ;;
    --build) value "$1" "${2:-}" "a folder"; BUILD=$2; shift ;;
    --out) value "$1" "${2:-}" "a folder"; OUTD=$2; shift ;;
    --) shift; CONFIGS+=("$@"); break ;;
    -D*) CONFIGS+=("$1") ;;
    -*) echo "gpu-trial: unknown option $1 (--help: usage)" >&2; exit 2 ;;
    *) CONFIGS+=("$1") ;;
    esac
    shift
done
[ -n "$OP" ] && [ -n "$VARIANT" ] || { echo "gpu-trial: --op and --variant are required (--help: usage)" >&2; exit 2; }
[ -z "$LOGITS" ] || [ -n "$STEP" ] || { echo "gpu-trial: --logits needs --step" >&2; exit 2; }
[ -z "$TRACE" ] || [ -n "$STEP" ] || { echo "gpu-trial: --trace needs --step" >&2; exit 2; }
[ ${#CONFIGS[@]} -gt 0 ] || { echo "gpu-trial: no CONFIG (\"\" is the tree's own values)" >&2; exit 2; }
case $DT in f32 | f16 | bf16) ;; *) echo "gpu-trial: --dtype $DT: not f32, f16 or bf16" >&2; exit 2 ;; esac
for c in "${CONFIGS[@]}"; do
    for w in $c; do
        case $w in -D[A-Za-z_]*) ;; *) echo "gpu-trial: CONFIG \"$c\": \"$w\" is not a -DNAME[=VALUE]" >&2; exit 2 ;; esac
    done
done
[ -f "$BUILD/Makefile" ] || { echo "gpu-trial: $BUILD: no configured build (tools/gpu-check.sh --build-only makes one)" >&2; exit 2; }
grep -q '^NVCC = .' "$BUILD/Makefile" || { echo "gpu-trial: $BUILD was configured without CUDA" >&2; exit 2; }
[ -z "$TRACE" ] || grep -q '^CUPTI_LIBS = .' "$BUILD/Makefile" ||
    { echo "gpu-trial: --trace: $BUILD was configured without CUPTI (no kernel tracer)" >&2; exit 2; }
mkdir -p "$OUTD" || exit 2
OUTD=$(cd "$OUTD" && pwd)
# Check and jansson where tools/gpu-check.sh unpacked them (the GPU machine has neither).
DD=/tmp/llamaref-dd
if [ -d "$DD/usr/lib/x86_64-linux-gnu" ]; then
    export CPATH="$DD/usr/include${CPATH:+:$CPATH}"
    export LIBRARY_PATH="$DD/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}"
    export LD_LIBRARY_PATH="$DD/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
BASE_CPPFLAGS=$(sed -n 's/^CPPFLAGS = //p' "$BUILD/Makefile")

# The CUDA objects again with the definitions $1 ("" for none) after the configured
# CPPFLAGS, and llama-diff.
rebuild() {
    rm -f "$BUILD"/gpu/*.o
    make -C "$BUILD" -j"$(nproc)" CPPFLAGS="$BASE_CPPFLAGS $1" llama-diff ${STEP:+bench-gpu}
}
# The model's rows (prefill and decode) under configuration $1 (number $2): table lines into steps.md.
time_step() {
    local json=()
    [[ " $STEP " == *" --json "* ]] || json=(--json "$OUTD/step-$2.json")
    [ -z "$LOGITS" ] || json+=(--dump-logits "$OUTD/logits-$2.bin")
    rm -f "$OUTD/step-$2.json" "$OUTD/logits-$2.bin"
    # shellcheck disable=SC2086 # ARGS are words for gpu_bench
    "$BUILD/bench/gpu_bench" $STEP "${json[@]}" >"$OUTD/step-$2.txt" 2>&1
    local rc=$?
    echo "   gpu_bench exit $rc"
    [ $rc -eq 0 ] || FAILED=1
    if [ -n "$TRACE" ]; then # once more under the tracer, for the kernels alone
        local tr=$OUTD/trace-$2.jsonl
        rm -f "$tr" "$tr.gz"
        # shellcheck disable=SC2086
        bash "$TOOLS/ktrace.sh" --lib "$BUILD/bench/libllamaref_ktrace.so" -o "$tr" -- \
            "$BUILD/bench/gpu_bench" $STEP >"$OUTD/trace-$2.txt" 2>&1 || { echo "   traced gpu_bench failed"; FAILED=1; }
        if [ -s "$tr" ]; then
            python3 "$TOOLS/ktrace-summary.py" "$tr" >"$OUTD/trace-$2.md" 2>&1 || FAILED=1
            [ "$2" = 1 ] || python3 "$TOOLS/ktrace-summary.py" --against "$OUTD/trace-1.jsonl.gz" "$tr" \
                >"$OUTD/trace-$2-vs-1.md" 2>&1 || FAILED=1
            gzip -f "$tr"
            sed -n '1p' "$OUTD/trace-$2.md"
        fi
    fi
    grep -E '^  (prefill|decode) ' "$OUTD/step-$2.txt" | awk -v c="$1" '{ms = ""; for (i = 1; i < NF; i++) if ($(i + 1) == "ms") { ms = $i; break }
        sub(/^ +/, ""); split($0, a, "  "); printf "| %s | %s | %s ms |\n", c, a[1], ms}' | tee -a "$OUTD/steps.md"
}
# One timing: the median microseconds of variant $1 at shape $2, or FAIL / ERR.
time_case() {
    local line
    line=$("$BUILD/llama-diff" ops --op "$OP" --variant "$1" --dtype "$DT" --shape "$2" --perf 2>&1 |
        grep -E '^(PASS|FAIL|ERROR)' | head -1)
    echo "$1 $2: $line" >>"$OUTD/perf.txt"
    case $line in
    PASS*) awk '{for (i = 1; i < NF; i++) if ($(i + 1) == "us") { print $i; exit }}' <<<"$line" ;;
    FAIL*) echo FAIL ;;
    *) echo ERR ;;
    esac
}

: >"$OUTD/perf.txt"
[ -z "$STEP" ] || printf '| config | row | time |\n| --- | --- | --- |\n' >"$OUTD/steps.md"
ROWS=()
row() { # name, then one cell per shape
    local r
    r=$(printf '| %s |' "$1")
    shift
    for v in "$@"; do r+=$(printf ' %s |' "$v"); done
    ROWS+=("$r")
}
n=0 BUILT=unknown FAILED=0 # BUILT: the definitions the build holds now; FAILED: a config's build or sweep failed
for c in "${CONFIGS[@]}"; do
    n=$((n + 1))
    name=${c:-tree}
    label=${c:-(none: the tree as it is)}
    echo "== config $n: $label"
    cells=()
    BUILT=unknown
    rebuild "$c" >"$OUTD/build-$n.log" 2>&1 && BUILT=$c
    if [ "$BUILT" != "$c" ]; then
        echo "   build failed: $OUTD/build-$n.log"; tail -5 "$OUTD/build-$n.log"
        FAILED=1
        for s in "${SHAPES[@]}"; do cells+=("build failed"); done
        row "$name" "${cells[@]}"; continue
    fi
    "$BUILD/llama-diff" ops --op "$OP" --variant "$VARIANT" --dtype "$DT" >"$OUTD/sweep-$n.txt" 2>&1
    rc=$?
    tail -1 "$OUTD/sweep-$n.txt" | sed 's/^/   /'
    if [ $rc -ne 0 ]; then
        echo "   the sweep did not pass (exit $rc): $OUTD/sweep-$n.txt; not timed"
        FAILED=1
        for s in "${SHAPES[@]}"; do cells+=("sweep failed"); done
        row "$name" "${cells[@]}"; continue
    fi
    for s in "${SHAPES[@]}"; do cells+=("$(time_case "$VARIANT" "$s")"); done
    row "$name" "${cells[@]}"
    [ -n "$STEP" ] && time_step "$name" "$n"
done
if [ "$BUILT" != "" ]; then
    echo "== the tree as it is, rebuilt"
    rebuild "" >"$OUTD/build-tree.log" 2>&1 || { echo "   build failed: $OUTD/build-tree.log"; exit 1; }
fi
for p in "${PEERS[@]}"; do
    cells=()
    for s in "${SHAPES[@]}"; do cells+=("$(time_case "$p" "$s")"); done
    row "$p (peer)" "${cells[@]}"
done
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
if [ ${#SHAPES[@]} -gt 0 ]; then
    echo "== $OP/$VARIANT, $DT: microseconds a launch (median of 20)${card:+, $card}"
    hdr="| config |" sep="| --- |"
    for s in "${SHAPES[@]}"; do hdr+=" $s |" sep+=" --- |"; done
    { echo "$hdr"; echo "$sep"; printf '%s\n' "${ROWS[@]}"; } | tee "$OUTD/table.md"
    grep -qE "FAIL|ERR" "$OUTD/table.md" && FAILED=1
fi
[ -z "$STEP" ] || { echo "== the model (bench/gpu_bench $STEP)${card:+, $card}"; cat "$OUTD/steps.md"; }
# Each row's profiled pass by op (ms), config by config, where the steps wrote their JSON.
if [ -n "$STEP" ] && ls "$OUTD"/step-*.json >/dev/null 2>&1; then
    echo "== the rows' profiled passes by op (ms; gpu_bench's profile, one pass)"
    python3 - "$OUTD" "${CONFIGS[@]}" <<'PY' | tee "$OUTD/profile.md"
import json, os, sys
out, configs = sys.argv[1], sys.argv[2:]
ops, table = [], []
for n, c in enumerate(configs, 1):
    path = os.path.join(out, "step-%d.json" % n)
    if not os.path.exists(path):
        continue
    for r in json.load(open(path))["rows"]:
        prof = r.get("profile_ns") or {}
        ops += [k for k in prof if k not in ops]
        table.append((c or "tree", r["name"], prof))
print("| config | row | " + " | ".join(ops) + " |")
print("| --- | --- | " + " | ".join("---" for _ in ops) + " |")
for c, name, prof in table:
    print("| %s | %s | " % (c, name) + " | ".join("%.3f" % (prof[k] / 1e6) if k in prof else "-" for k in ops) + " |")
PY
fi
# Each config's logits against the first config's, bit for bit.
if [ -n "$LOGITS" ]; then
    echo "== the first row's logits, bit for bit against config 1 (${CONFIGS[0]:-tree})"
    for n in $(seq 2 ${#CONFIGS[@]}); do
        c=${CONFIGS[$((n - 1))]}
        if [ ! -s "$OUTD/logits-1.bin" ] || [ ! -s "$OUTD/logits-$n.bin" ]; then
            verdict="not compared: a config wrote no logits"
        elif cmp -s "$OUTD/logits-1.bin" "$OUTD/logits-$n.bin"; then
            verdict="the same bits ($(($(stat -c %s "$OUTD/logits-$n.bin") / 4)) logits)"
        else
            verdict="DIFFERENT: $(cmp "$OUTD/logits-1.bin" "$OUTD/logits-$n.bin" 2>&1 | head -1)"
        fi
        echo "| ${c:-tree} | $verdict |"
    done | tee "$OUTD/logits.md"
fi
exit $FAILED
