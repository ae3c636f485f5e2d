#!/usr/bin/env bash
# gpu-shape-check.sh: the CUDA path at real model shapes against the CPU reference, on a
# GPU machine. The committed fixtures are tiny (head_dim 8 and 16), so kernels that only
# engage at head_dim 64/128 (the fa2 and tc prefill attention) are checked there only at
# op level. This writes a 2-layer checkpoint of Llama-3-8B's shapes (head_dim 128, 32/8
# heads; tools/make-bench-model.py --layers 2) and runs
#   llama-diff backends --a cpu:f64 --b cuda:P -k attention=V --tokens (N ids)
# for each attention variant V and precision P given: every stage of the GPU run against
# the float64 reference at P's budgets (exit 0: all agree). Needs a built tree (BUILD,
# default /tmp/llamaref-build, as tools/gpu-check.sh leaves it).
#   tools/gpu-shape-check.sh [--variants fa2,tc] [--precisions bf16] [--tokens N] [--model DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
VARIANTS=fa2,tc PRECS=bf16 N=700 MODEL=/tmp/llama3-8b-2layers
while [ $# -gt 0 ]; do
    case $1 in
    --variants) VARIANTS=$2; shift ;;
    --precisions) PRECS=$2; shift ;;
    --tokens) N=$2; shift ;;
    --model) MODEL=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
B=${BUILD:-/tmp/llamaref-build}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
# NVLink multicast stays off (the lent multi-GPU machines require it; the library leaves
# NCCL's environment to its caller).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
[ -x "$B/llama-diff" ] || { echo "no llama-diff in $B (run tools/gpu-check.sh first)" >&2; exit 2; }
python3 tools/make-bench-model.py "$MODEL" --layers 2 || exit 1
TOK=$(python3 -c "print(' '.join(str((i * 7919 + 17) % 128256) for i in range($N)))")
rc_all=0
for p in ${PRECS//,/ }; do
    for v in ${VARIANTS//,/ }; do
        j="$OUT/shape-$v-$p.json"
        "$B/llama-diff" backends -q --a cpu:f64 --b cuda:$p -k attention=$v --threads "$(nproc)" -m "$MODEL" \
            --tokens "$TOK" --json >"$j" 2>"$OUT/shape-$v-$p.err"
        rc=$?
        [ $rc -eq 0 ] || rc_all=1
        echo "attention=$v $p, $N tokens, 2 layers of Llama-3-8B: exit $rc $(python3 -c "
import json,sys
d=json.load(open(sys.argv[1])); s=d['stages']
w=max(s,key=lambda x:x['budget_used'])
a=[x for x in s if x['name'].endswith('o_proj.input')]
print(d['result'], 'worst %.0f%% of budget at %s;' % (100*w['budget_used'], w['name']),
      'attention output rel_l2', ', '.join('%.2e' % x['rel_l2'] for x in a),
      '; logits %.2e' % [x for x in s if x['name']=='lm_head'][0]['rel_l2'])" "$j" 2>/dev/null) $(head -c 300 "$OUT/shape-$v-$p.err")"
    done
done
exit $rc_all
