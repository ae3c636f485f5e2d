#!/usr/bin/env bash
# gpu-tp-check.sh: tensor parallelism across real GPUs (issue 9), on a machine with 2 or
# more GPUs. Builds and runs the GPU suites through tools/gpu-check.sh --quick (where the
# host has the GPUs, `llama-diff check --tp N` and tests/test_gpu_nccl go through NCCL),
# then for every committed fixture, each precision and each tp in 2, 4, 8 that the host
# has GPUs for:
#   - tp N over NCCL against the single-GPU tp mode run of the same shards (--devices 1),
#     stage by stage (llama-diff compare of the two dumps): do they agree, and how close;
#   - tp N against tp 1 (llama-diff backends --a cuda:P,tp=1 --b cuda:P --tp N): how much
#     the reduction order moves each stage (the figure in docs/tolerances.md's notes).
# Results: $OUT/tp-agree.jsonl, $OUT/tp-vs-tp1.jsonl and a summary on stdout.
#   tools/gpu-tp-check.sh [--no-suites]
set -uo pipefail
cd "$(dirname "$0")/.."
SUITES=1
[ "${1:-}" = "--no-suites" ] && SUITES=0
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ $SUITES -eq 1 ]; then
    tools/gpu-check.sh --quick >/dev/null 2>&1
    echo "gpu-check --quick: exit $?"
    grep -E '^(== |-- |exit |make check|# (PASS|FAIL|SKIP|ERROR))' "$OUT/gpu-check.log" | head -40
    grep -E "100%|Checks" "$OUT"/test_gpu_*.log | tail -5
fi
exec > >(tee "$OUT/gpu-tp-check.log") 2>&1
B=/tmp/llamaref-build
[ -x $B/llama-diff ] || { echo "no build in $B (run without --no-suites)"; exit 1; }
NDEV=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
echo "== tp across $NDEV GPUs"
nvidia-smi topo -m 2>/dev/null | head -6
cd $B
TPS=""
for n in 2 4 8; do [ $n -le "$NDEV" ] && TPS="$TPS $n"; done
[ -n "$TPS" ] || { echo "fewer than 2 GPUs: nothing to run"; exit 77; }
D=/tmp/tp-dumps
rm -rf $D && mkdir -p $D
rm -f "$OUT/tp-agree.jsonl" "$OUT/tp-vs-tp1.jsonl"
summ='import json,sys
d=json.load(open(sys.argv[1]))
s=d["stages"]
w=max(s,key=lambda x:x["rel_l2"])
print("%s %d/%d stages identical, max rel_l2 %.2e at %s, max budget used %.3f" % (d["result"], sum(1 for x in s if x["max_abs"]==0), len(s), w["rel_l2"], w["name"], max(x["budget_used"] for x in s)))'
for c in gqa-f32:gqa-f32-batch mha-bias-bf16:mha-bias-bf16 mqa-hd-f16:mqa-hd-f16 long-gqa-f32:long-gqa-f32-300; do
    m=fixtures/models/${c%%:*} f=fixtures/golden/${c##*:}.safetensors n=${c##*:}
    for p in bf16 fp16 fp32; do
        for tp in $TPS; do
            ./llama-diff dump -q -b cuda -p $p --tp $tp -m $m -f $f -o $D/$n-$p-$tp-nccl.st >/dev/null 2>$D/err1 &&
                ./llama-diff dump -q -b cuda -p $p --tp $tp --devices 1 -m $m -f $f -o $D/$n-$p-$tp-one.st >/dev/null 2>$D/err2
            rc=$?
            ./llama-diff compare $D/$n-$p-$tp-nccl.st $D/$n-$p-$tp-one.st --json >$D/cmp.json 2>$D/err3
            rc2=$?
            echo "{\"fixture\": \"$n\", \"precision\": \"$p\", \"tp\": $tp, \"dump_exit\": $rc, \"exit\": $rc2, \"report\": $([ -s $D/cmp.json ] && cat $D/cmp.json || echo null)}" >>"$OUT/tp-agree.jsonl"
            echo "$n $p tp$tp NCCL vs one GPU: exit $rc/$rc2 $(python3 -c "$summ" $D/cmp.json 2>/dev/null) $(cat $D/err1 $D/err2 $D/err3 | head -c 300)"
            ./llama-diff backends -q --a cuda:$p,tp=1 --b cuda:$p --tp $tp -m $m -f $f --json >$D/bk.json 2>$D/err4
            rc=$?
            echo "{\"fixture\": \"$n\", \"precision\": \"$p\", \"tp\": $tp, \"exit\": $rc, \"report\": $([ -s $D/bk.json ] && cat $D/bk.json || echo null)}" >>"$OUT/tp-vs-tp1.jsonl"
            echo "$n $p tp$tp vs tp1: exit $rc $(python3 -c "$summ" $D/bk.json 2>/dev/null) $(head -c 300 $D/err4)"
        done
    done
done
echo "== done"
