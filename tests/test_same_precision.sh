#!/bin/sh
# test_same_precision.sh: the same-precision verdict of llama-diff (docs/detection.md)
# where check's prefill runs do not reach it: check --decode (every step's ops isolated,
# and the factor criterion on the decoded run), check --isolate op --decode, and backends
# with side b at bf16/fp16 (side a's stages as the reference). Correct runs agree; an
# injected fault under bf16's noise is caught by the same-precision verdict alone and named,
# and the JSON result says what the exit status says.
set -u
LD=${LLAMA_DIFF:-./llama-diff}
FX=${LR_FIXTURES:?}
TMP=${LR_TMPDIR:?}/same-precision-sh
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"
M=$FX/models/gqa-f32
F=$FX/golden/gqa-f32-batch.safetensors

for p in bf16 fp16; do
    # Correct code: both criteria compared every stage and agree.
    expect 0 "check $p --decode 3" -- "$LD" check -m "$M" -f "$F" -p $p --decode 3 --json -q
    json_ok "d['result'] == 'agree' and d['same_precision']['compared'] == len(d['stages']) and d['same_precision']['failed'] == 0 and d['same_precision']['factor']['compared'] == len(d['stages']) and d['same_precision']['factor']['failed'] == 0"
    expect 0 "check $p --decode 3 --isolate op" -- "$LD" check -m "$M" -f "$F" -p $p --decode 3 --isolate op --json -q
    json_ok "d['result'] == 'agree' and d['isolate'] and d['same_precision']['compared'] == len(d['stages']) and d['same_precision']['failed'] == 0"
    expect 0 "backends cpu:f64 vs cpu:$p" -- "$LD" backends -m "$M" -f "$F" --a cpu:f64 --b cpu:$p --json -q
    json_ok "d['result'] == 'agree' and d['same_precision']['compared'] == len(d['stages']) and d['same_precision']['failed'] == 0 and d['same_precision']['factor']['failed'] == 0"

    # A scale fault of 1e-3 (a quarter of a bf16 ulp) in the decoded run: the float64
    # golden cannot see it, the same-precision verdict catches it and names the op.
    for stage in model.layers.1.mlp.down_proj model.layers.0.self_attn.q_proj; do
        expect 1 "check $p --decode 3 with $stage=scale:1e-3" -- "$LD" check -m "$M" -f "$F" -p $p --decode 3 \
            --inject $stage=scale:1e-3 --json -q
        json_ok "d['result'] == 'diverge' and d['failed'] == 0 and d['first_divergence'] == '$stage' and d['same_precision']['first_divergence'] == '$stage'"
        expect 1 "backends cpu:f64 vs cpu:$p with $stage=scale:1e-3" -- "$LD" backends -m "$M" -f "$F" --a cpu:f64 \
            --b cpu:$p --inject $stage=scale:1e-3 --json -q
        json_ok "d['result'] == 'diverge' and d['same_precision']['first_divergence'] == '$stage'"
    done
    # The text says it too.
    expect 1 "check $p --decode 3 (text)" -- "$LD" check -m "$M" -f "$F" -p $p --decode 3 \
        --inject model.layers.1.mlp.down_proj=scale:1e-3 -q
    grep -q "same precision, against cpu:$p (emulated), tp 1, ops isolated: .*first divergence at model.layers.1.mlp.down_proj" \
        "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: $p: the text names no same-precision divergence"; }
done

# The factor criterion alone (FlashAttention's): a fault far over the emulated reference's
# own error fails it, and it is named.
expect 1 "check fp16 --decode 2 with a 1e-2 fault" -- "$LD" check -m "$M" -f "$F" -p fp16 --decode 2 \
    --inject model.layers.1.mlp.down_proj=scale:1e-2 --json -q
json_ok "d['same_precision']['factor']['first_divergence'] == 'model.layers.1.mlp.down_proj' and d['same_precision']['factor']['worst_ratio'] > 2"

finish
