#!/bin/sh
# test_planted.sh: planted bugs in every committed fixture model. One weight (or bias) of
# one layer is scaled in a copy of the model; llama-diff must name that layer's stage
# as the first divergence and the drill-down must name the same operation, with and
# without --isolate; with --isolate nothing outside that layer may diverge; the
# unperturbed models raise no alarm, at every CPU precision (f64, f32 and the emulated
# bf16 and fp16). Perturbations of two sizes; then
# small ones at f32 (ten budgets and one) in layer 0's o_proj and the final norm, right
# after the exact embedding, where rounding must not look like the jump.
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

# plant_f32 SRC_DIR TENSOR SCALE DST_DIR: a copy of a model with one tensor rewritten as
# F32, scaled, so that a scale of 1 + 1e-6 survives in a BF16 or F16 checkpoint.
plant_f32() {
    rm -rf "$4" && cp -r "$1" "$4"
    python3 - "$4/model.safetensors" "$2" "$3" <<'PY'
import json, struct, sys
path, name, scale = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = open(path, "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header, body = json.loads(data[8:8 + n]), data[8 + n:]
meta = header.pop("__metadata__", None)
out, layout = bytearray(), {}
for k, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    a, b = info["data_offsets"]
    blob = body[a:b]
    if k == name:
        fmt = {"F32": "f", "F16": "e"}.get(info["dtype"])
        if fmt:
            v = struct.unpack("<%d%s" % (len(blob) // struct.calcsize(fmt), fmt), blob)
        else:  # BF16: the top half of a float32
            v = [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in struct.unpack("<%dH" % (len(blob) // 2), blob)]
        blob = struct.pack("<%df" % len(v), *[x * scale for x in v])
        info = dict(info, dtype="F32")
    layout[k] = dict(info, data_offsets=[len(out), len(out) + len(blob)])
    out += blob
if meta is not None:
    layout["__metadata__"] = meta
h = json.dumps(layout).encode()
h += b" " * (-len(h) % 8)
open(path, "wb").write(struct.pack("<Q", len(h)) + h + out)
PY
}

for c in gqa-f32:gqa-f32-batch mha-bias-bf16:mha-bias-bf16 mqa-hd-f16:mqa-hd-f16 long-gqa-f32:long-gqa-f32-300; do
    model=${c%%:*} fixture=$FX/golden/${c##*:}.safetensors
    for p in f64 f32 bf16 fp16; do
        for iso in "" --isolate; do
            "$LD" check -m "$FX/models/$model" -f "$fixture" -p $p $iso --json >"$TMP/out" 2>&1 && ok || no "$model $p $iso: false alarm"
        done
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
    # Small errors at f32 right after the exact embedding (layer 0's o_proj) and at the
    # end (the final norm, a stage in no layer: the drill-down searches from the start).
    # 1 + 1e-5 is ten f32 budgets: the planted stage is the first divergence and the
    # cause. 1 + 1e-6 is one budget, where rounding tips the planted stage either way:
    # the drill-down names it whenever it fails, and never layer 0's input norm (which a
    # floor of a thousandth of the budget after the exact embedding used to blame).
    for stage in model.layers.0.self_attn.o_proj model.norm; do
        for scale in 1.00001 1.000001; do
            plant_f32 "$FX/models/$model" "$stage.weight" "$scale" "$TMP/m"
            for iso in "" --isolate; do
                "$LD" check -m "$TMP/m" -f "$fixture" -p f32 $iso --json >"$TMP/out" 2>"$TMP/err"
                rc=$?
                what="$model: $stage.weight x$scale at f32 $iso"
                if [ "$scale" = 1.00001 ]; then
                    [ $rc -eq 1 ] && ok || no "$what: exit $rc, expected 1 ($(cat "$TMP/err"))"
                    json_holds "$TMP/out" "d['first_divergence'] == '$stage' and d['drill_down']['stage'] == '$stage'" && ok ||
                        no "$what: first divergence $(python3 -c "import json; d=json.load(open('$TMP/out')); print(d['first_divergence'], d['drill_down'])")"
                else
                    json_holds "$TMP/out" "(d['drill_down'] is None or d['drill_down']['stage'] != 'model.layers.0.input_layernorm') and all(d['drill_down']['stage'] == '$stage' for s in d['stages'] if s['name'] == '$stage' and not s['pass'])" && ok ||
                        no "$what: first divergence $(python3 -c "import json; d=json.load(open('$TMP/out')); print(d['first_divergence'], d['drill_down'])")"
                fi
            done
        done
    done
done
finish
