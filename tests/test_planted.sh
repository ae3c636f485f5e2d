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
pass=0 fail=0
ok() { pass=$((pass + 1)); }
no() { fail=$((fail + 1)); echo "FAIL: $*"; }

# plant SRC_DIR TENSOR SCALE: a copy of the model in $TMP/m with TENSOR scaled (F32, F16, BF16).
plant() {
    rm -rf "$TMP/m" && cp -r "$1" "$TMP/m"
    python3 - "$TMP/m/model.safetensors" "$2" "$3" <<'PY'
import json, struct, sys
path, name, scale = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
info = json.loads(data[8:8 + n])[name]
a, b = info["data_offsets"]
base, size = 8 + n + a, b - a
dt = info["dtype"]
if dt == "F32":
    v = struct.unpack("<%df" % (size // 4), data[base:base + size])
    data[base:base + size] = struct.pack("<%df" % len(v), *[x * scale for x in v])
elif dt == "F16":
    v = struct.unpack("<%de" % (size // 2), data[base:base + size])
    data[base:base + size] = struct.pack("<%de" % len(v), *[x * scale for x in v])
else:  # BF16: the top half of a float32, rounded to nearest even
    u = struct.unpack("<%dH" % (size // 2), data[base:base + size])
    out = []
    for h in u:
        f = struct.unpack("<f", struct.pack("<I", h << 16))[0] * scale
        w = struct.unpack("<I", struct.pack("<f", f))[0]
        out.append(((w + 0x7FFF + ((w >> 16) & 1)) >> 16) & 0xFFFF)
    data[base:base + size] = struct.pack("<%dH" % len(out), *out)
open(path, "wb").write(data)
PY
}

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
            plant "$FX/models/$model" "$tensor" "$scale"
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
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
