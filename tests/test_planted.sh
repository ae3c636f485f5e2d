#!/bin/sh
# test_planted.sh: planted bugs in every committed fixture model. One weight (or bias) of
# one layer is scaled in a copy of the model; llama-diff must name that layer's stage
# as the first divergence and the drill-down must name the same operation, with and
# without --isolate; with --isolate nothing outside that layer may diverge; the
# unperturbed models raise no alarm. Perturbations of two sizes.
set -u
LD=${LLAMA_DIFF:-./llama-diff}
FX=${LR_FIXTURES:?}
TMP=${LR_TMPDIR:?}/planted-sh
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"
# Counters of their own shape here: ok counts a pass, no a failure with its reason.
ok() { pass=$((pass + 1)); }
no() { fail=$((fail + 1)); echo "FAIL: $*"; }

# json_holds FILE EXPR: the python expression holds for the JSON document d in FILE.
json_holds() {
    python3 -c "import json,sys; d=json.load(open('$1')); sys.exit(0 if ($2) else 1)"
}

for c in gqa-f32:gqa-f32-batch mha-bias-bf16:mha-bias-bf16 mqa-hd-f16:mqa-hd-f16 long-gqa-f32:long-gqa-f32-300; do
    model=${c%%:*} fixture=$FX/golden/${c##*:}.safetensors
    for iso in "" --isolate; do
        "$LD" check -m "$FX/models/$model" -f "$fixture" $iso --json >"$TMP/out" 2>&1 && ok || no "$model $iso: false alarm"
    done
    targets="model.layers.0.self_attn.v_proj.weight:model.layers.0.self_attn.v_proj
model.layers.1.input_layernorm.weight:model.layers.1.input_layernorm
model.layers.1.mlp.down_proj.weight:model.layers.1.mlp.down_proj
model.layers.0.self_attn.o_proj.weight:model.layers.0.self_attn.o_proj"
    [ "$model" = mha-bias-bf16 ] && targets="$targets
model.layers.1.self_attn.q_proj.bias:model.layers.1.self_attn.q_proj
model.layers.0.mlp.down_proj.bias:model.layers.0.mlp.down_proj"
    for t in $targets; do
        tensor=${t%%:*} stage=${t##*:}
        layer=$(echo "$stage" | cut -d. -f1-3)
        for scale in 1.05 2.0; do
            plant "$FX/models/$model" "$tensor" "$scale" "$TMP/m"
            for iso in "" --isolate; do
                "$LD" check -m "$TMP/m" -f "$fixture" $iso --json >"$TMP/out" 2>"$TMP/err"
                rc=$?
                what="$model: $tensor x$scale $iso"
                [ $rc -eq 1 ] && ok || no "$what: exit $rc, expected 1 ($(cat "$TMP/err"))"
                json_holds "$TMP/out" "d['first_divergence'] == '$stage' and d['drill_down']['stage'] == '$stage'" && ok ||
                    no "$what: first divergence $(python3 -c "import json; d=json.load(open('$TMP/out')); print(d['first_divergence'], d['drill_down'])")"
                if [ -n "$iso" ]; then
                    json_holds "$TMP/out" "all(s['name'] == '$layer' or s['name'].startswith('$layer.') for s in d['stages'] if not s['pass'])" && ok ||
                        no "$what: a stage outside $layer diverges"
                fi
            done
        done
    done
done
finish
