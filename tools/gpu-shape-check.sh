#!/usr/bin/env bash
# gpu-shape-check.sh: the CUDA path at real model shapes against the CPU reference, on a
# GPU machine. The committed fixtures are tiny (head_dim 8 and 16), so kernels that only
# engage at head_dim 64/128 (the fa2 and tc prefill attention) are checked there only at
# op level. This writes a 2-layer checkpoint of Llama-3-8B's shapes (head_dim 128, 32/8
# heads, norm weights drawn in 1 +- 0.2 so that a norm-weight bug can show;
# tools/make-bench-model.py --layers 2 --norm-spread 0.2) and runs
#   llama-diff backends --a cpu:f64 --b cuda:P -k attention=V --tokens (N ids)
# for each attention variant V and precision P given: every stage of the GPU run against
# the float64 reference at P's budgets, and at bf16/fp16 the same-precision verdict
# (docs/detection.md: the CUDA run and the emulated CPU reference, ops isolated, within
# ulps; its error within 2x the emulated reference's). Correct code must agree (exit 0).
# Then faults at the issue's sizes, injected in the CUDA run (an element fault of 1e-2 on
# each row's last feature of a norm, the shape of an RMSNorm that leaves one weight out; a
# scale fault of 1e-3 at a projection): each must be caught (exit 1) and named. Needs a
# built tree (BUILD, default /tmp/llamaref-build, as tools/gpu-check.sh leaves it).
#   tools/gpu-shape-check.sh [--variants fa2,tc] [--precisions bf16] [--tokens N] [--model DIR] [--no-faults] [--cpu-memory SIZE]
#                            [--layers L] [--decode K] [--dump-only | --reference FILE] [--kernels SPEC]
# --kernels SPEC: more kernel choices for every CUDA run, after attention=V (e.g.
# linear=auto: llama-diff's -k takes a comma-separated list).
# --layers 32 is the whole depth of Llama-3-8B (issue 18; the CPU reference streams its
# weights under its memory budget). --decode K also dumps the float64 reference's stages
# for the tokens (llama-diff dump: the CPU reference as the CUDA path's yardstick, never
# a fixture) and runs `check --decode K` of the CUDA path against it: the prefill of all
# but K tokens, then K single-token steps through the KV cache, each compared.
# A whole-depth run does not fit one 10-minute call of the device tool, so it splits in two:
# --dump-only writes the float64 reference's dump ($OUT/shape-ref-f64.safetensors) and
# stops; --reference FILE skips the backends runs and the dump, and checks the CUDA path
# against FILE (with --decode K, the prefill and K steps; without, the whole prompt).
# --cpu-memory SIZE: the CPU runs' converted weights held at once (llama-diff --memory;
# default half the host's memory). Beyond it each forward converts every layer's weights
# again, which at 32 layers is most of a run's time: `check --decode K` at bf16 runs the
# emulated reference twice (the ulps and the factor verdicts), each a prefill and K steps,
# and under llama-diff's default (a tenth of the host's memory: 12.6 GiB of the 30 GiB of
# float32 weights) ran past a 570 s call (run 16).
set -uo pipefail
cd "$(dirname "$0")/.."
VARIANTS=fa2,tc PRECS=bf16 N=700 MODEL= FAULTS=1 LAYERS=2 DECODE=0 DUMP_ONLY=0 REF= KERNELS=
CPUMEM=$(awk '/^MemTotal:/ {printf "%dM", $2 / 2048}' /proc/meminfo)
while [ $# -gt 0 ]; do
    case $1 in
    --variants) VARIANTS=$2; shift ;;
    --precisions) PRECS=$2; shift ;;
    --tokens) N=$2; shift ;;
    --model) MODEL=$2; shift ;;
    --no-faults) FAULTS=0 ;;
    --layers) LAYERS=$2; shift ;;
    --decode) DECODE=$2; shift ;;
    --dump-only) DUMP_ONLY=1 ;;
    --cpu-memory) CPUMEM=$2; shift ;;
    --reference) REF=$2; shift ;;
    --kernels) KERNELS=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
MODEL=${MODEL:-/tmp/llama3-8b-${LAYERS}layers-norms}
B=${BUILD:-/tmp/llamaref-build}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
# NVLink multicast stays off (the lent multi-GPU machines require it; the library leaves
# NCCL's environment to its caller).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
[ -x "$B/llama-diff" ] || { echo "no llama-diff in $B (run tools/gpu-check.sh first)" >&2; exit 2; }
python3 tools/make-bench-model.py "$MODEL" --layers "$LAYERS" --norm-spread 0.2 || exit 1
TOK=$(python3 -c "print(' '.join(str((i * 7919 + 17) % 128256) for i in range($N)))")
rc_all=0
# One line of a backends report: against the f64 reference, and the same-precision verdict.
summary() {
    python3 -c "
import json,sys
d=json.load(open(sys.argv[1])); s=d['stages']
w=max(s,key=lambda x:x['budget_used'])
a=[x for x in s if x['name'].endswith('o_proj.input')]
out=[d['result'], 'first divergence %s;' % d['first_divergence'], 'worst %.0f%% of budget at %s;' % (100*w['budget_used'], w['name']),
     'attention output rel_l2 ' + ', '.join('%.2e' % x['rel_l2'] for x in a),
     '; logits %.2e' % [x for x in s if x['name']=='lm_head'][0]['rel_l2']]
sp=d.get('same_precision')
if sp:
    worst=max(sp['stages'], key=lambda x: x['max_ulps'])
    out.append('; same precision: %d of %d stages within ulps (first divergence %s, worst element %.1f ulp at %s), factor %d of %d (worst %.2fx at %s)' % (
        sp['compared']-sp['failed'], sp['compared'], sp['first_divergence'], worst['max_ulps'], worst['name'],
        sp['factor']['compared']-sp['factor']['failed'], sp['factor']['compared'], sp['factor']['worst_ratio'], sp['factor']['worst_stage']))
print(' '.join(out))" "$1" 2>/dev/null
}
for p in ${PRECS//,/ }; do
    for v in ${VARIANTS//,/ }; do
        [ $DUMP_ONLY -eq 0 ] && [ -z "$REF" ] || continue
        j="$OUT/shape-$v-$p.json"
        "$B/llama-diff" backends -q --a cpu:f64 --b cuda:$p -k attention=$v${KERNELS:+,$KERNELS} --threads "$(nproc)" --memory "$CPUMEM" \
            -m "$MODEL" --tokens "$TOK" --json >"$j" 2>"$OUT/shape-$v-$p.err"
        rc=$?
        [ $rc -eq 0 ] || rc_all=1
        echo "attention=$v $p, $N tokens, $LAYERS layers of Llama-3-8B: exit $rc $(summary "$j") $(head -c 300 "$OUT/shape-$v-$p.err")"
    done
done
if [ "$DECODE" -gt 0 ] || [ $DUMP_ONLY -eq 1 ] || [ -n "$REF" ]; then
    ref=${REF:-$OUT/shape-ref-f64.safetensors}
    if [ -z "$REF" ]; then
        rm -f "$ref"
        s=$(date +%s)
        "$B/llama-diff" dump -q -b cpu -p f64 --threads "$(nproc)" --memory "$CPUMEM" -m "$MODEL" --tokens "$TOK" -o "$ref" \
            2>"$OUT/shape-ref-f64.err" || { echo "dump of the float64 reference failed: $(head -c 300 "$OUT/shape-ref-f64.err")"; exit 1; }
        echo "the float64 reference of $N tokens, $LAYERS layers: $ref in $(($(date +%s) - s)) s"
        [ $DUMP_ONLY -eq 1 ] && exit 0
    fi
    [ -f "$ref" ] || { echo "--reference: $ref: not a file" >&2; exit 2; }
    dec=(); [ "$DECODE" -gt 0 ] && dec=(--decode "$DECODE")
    for p in ${PRECS//,/ }; do
        for v in ${VARIANTS//,/ }; do
            j="$OUT/shape-decode-$v-$p.json"
            "$B/llama-diff" check -q -b cuda -p $p -k attention=$v${KERNELS:+,$KERNELS} "${dec[@]}" --threads "$(nproc)" --memory "$CPUMEM" \
                -m "$MODEL" -f "$ref" --json \
                >"$j" 2>"$OUT/shape-decode-$v-$p.err"
            rc=$?
            [ $rc -eq 0 ] || rc_all=1
            echo "attention=$v $p, prefill $((N - DECODE)) + $DECODE decode steps, $LAYERS layers, against the float64 reference: exit $rc $(python3 -c "
import json,sys
d=json.load(open(sys.argv[1])); s=d['stages']
w=max(s,key=lambda x:x['budget_used'])
print(d['result'], 'first divergence %s;' % d['first_divergence'], '%d stages, worst %.0f%% of budget at %s' % (len(s), 100*w['budget_used'], w['name']))" "$j" 2>/dev/null) $(head -c 300 "$OUT/shape-decode-$v-$p.err")"
        done
    done
fi
if [ $FAULTS -eq 1 ] && [ -z "$REF" ]; then
    for p in ${PRECS//,/ }; do
        for f in model.layers.0.post_attention_layernorm=element:1e-2 model.layers.1.self_attn.o_proj=scale:1e-3; do
            stage=${f%%=*}
            j="$OUT/shape-fault-$stage-$p.json"
            "$B/llama-diff" backends -q --a cpu:f64 --b cuda:$p --threads "$(nproc)" --memory "$CPUMEM" -m "$MODEL" --tokens "$TOK" \
                --inject "$f" --json >"$j" 2>"$OUT/shape-fault-$stage-$p.err"
            rc=$?
            named=$(python3 -c "
import json,sys
d=json.load(open(sys.argv[1])); sp=d.get('same_precision') or {}
print(sys.argv[2] in (d.get('first_divergence'), sp.get('first_divergence'), (sp.get('factor') or {}).get('first_divergence')))" "$j" "$stage" 2>/dev/null)
            verdict=caught
            [ $rc -eq 1 ] && [ "$named" = True ] || { verdict=MISSED; rc_all=1; }
            echo "fault $f at $p: exit $rc, $verdict $(summary "$j")"
        done
    done
fi
exit $rc_all
