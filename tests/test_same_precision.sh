#!/bin/sh
# test_same_precision.sh: the same-precision verdict of llama-diff (docs/detection.md)
# where check's prefill runs do not reach it: check --decode (every step's ops isolated,
# and the factor criterion on the decoded run), check --isolate op --decode, and backends
# with side b at bf16/fp16 (side a's stages as the reference). Correct runs agree; an
# injected fault under bf16's noise is caught by the same-precision verdict alone and named,
# and the JSON result says what the exit status says. compare --model of an outside
# engine's bf16 dump: every op recomputed from the dump's own inputs.
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
    json_ok "d['coverage']['compared'] == d['coverage']['reference'] == len(d['stages']) == 48 and d['coverage']['missing'] == []"

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

# An outside engine's bf16 dump (here the emulated reference's own, through dump) with a
# bug of 1% on every 7th element of layer 1's o_proj (issue 16): inside bf16's noise, so
# the budgets against the golden pass it, with or without --model; with --model, compare
# recomputes every op of the emulated reference from the dump's own input to it and holds
# the dump's output to it in ulps, and names the op.
expect 0 "dump bf16" -- "$LD" dump -m "$M" -f "$F" -p bf16 -o "$TMP/bf16.safetensors" -q
python3 - "$TMP/bf16.safetensors" "$TMP/bf16-bug.safetensors" model.layers.1.self_attn.o_proj 1.01 <<'PY'
import json, struct, sys
src, dst, stage, fac = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
d = open(src, "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n]); body = bytearray(d[8 + n:])
v = h[stage]; a, b = v["data_offsets"]
assert v["dtype"] == "F32", v["dtype"]
for i in range(a, b, 4 * 7):  # every 7th element x fac, rounded to bf16 as the engine stores it
    w = struct.unpack("<I", struct.pack("<f", struct.unpack("<f", body[i:i + 4])[0] * fac))[0]
    w = ((w + 0x7fff + ((w >> 16) & 1)) >> 16) << 16
    body[i:i + 4] = struct.pack("<I", w)
open(dst, "wb").write(d[:8 + n] + bytes(body))
PY
expect 0 "compare the correct bf16 dump with --model" -- "$LD" compare --model "$M" "$TMP/bf16.safetensors" "$F" --json
json_ok "d['result'] == 'agree' and d['same_precision']['compared'] == 48 and d['same_precision']['failed'] == 0 and d['same_precision']['factor']['failed'] == 0"
expect 0 "compare the buggy bf16 dump without --model (the golden's budgets cannot see it)" -- "$LD" compare \
    "$TMP/bf16-bug.safetensors" "$F" --json
json_ok "d['result'] == 'agree' and 'same_precision' not in d"
expect 1 "compare the buggy bf16 dump with --model" -- "$LD" compare --model "$M" "$TMP/bf16-bug.safetensors" "$F" --json
json_ok "d['result'] == 'diverge' and d['failed'] == 0 and d['first_divergence'] == 'model.layers.1.self_attn.o_proj' and d['same_precision']['first_divergence'] == 'model.layers.1.self_attn.o_proj' and d['same_precision']['failed'] == 1"
expect 1 "compare the buggy bf16 dump with --model (text)" -- "$LD" compare --model "$M" "$TMP/bf16-bug.safetensors" "$F"
grep -q "each op fed the dump's own input to it: 47 of 48 stages .*first divergence at model.layers.1.self_attn.o_proj" \
    "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: the text names no same-precision divergence of the dump"; }
# Rounding profiles (ref/core/rounding.h): --rounding NAME, or the dump's `rounding`
# metadata, names where its engine rounds; the verdict then runs the emulated reference so
# and holds every op to the tight budget (no rounding more). llama-diff's own bf16 dump
# rounds as the map ("cuda"): exact under it, and the 1% bug still named. Under a profile
# that rounds elsewhere (transformers: the norm, the stream, RoPE, attention, SiLU), the
# same dump diverges, from its first norm on. An unknown name is refused, listing the names.
expect 0 "compare --model --rounding cuda: the map's own dump, held tight" -- "$LD" compare --model "$M" \
    "$TMP/bf16.safetensors" "$F" --rounding cuda --json
json_ok "d['result'] == 'agree' and d['same_precision']['failed'] == 0 and d['same_precision']['rounding'] == {'profile': 'cuda', 'declared_by': '--rounding', 'one_more_rounding': False, 'attention_like': 'fdt'} and all(s['max_ulps'] == 0 for s in d['same_precision']['stages'])"
expect 1 "compare --model --rounding cuda: the 1% bug" -- "$LD" compare --model "$M" "$TMP/bf16-bug.safetensors" "$F" \
    --rounding cuda --json
json_ok "d['same_precision']['first_divergence'] == 'model.layers.1.self_attn.o_proj' and d['same_precision']['failed'] == 1"
python3 - "$TMP/bf16.safetensors" "$TMP" <<'PY'
import json, struct, sys  # the same dump, declaring transformers' rounding (and a bogus one)
d = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n]); body = d[8 + n:]
for name in ("transformers", "bogus"):
    h["__metadata__"]["rounding"] = name
    hb = json.dumps(h).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
    open(f"{sys.argv[2]}/bf16-{name}.safetensors", "wb").write(struct.pack("<Q", len(hb)) + hb + body)
PY
expect 1 "compare --model a map dump declaring rounding: transformers" -- "$LD" compare --model "$M" \
    "$TMP/bf16-transformers.safetensors" "$F" --json
json_ok "d['same_precision']['rounding'] == {'profile': 'transformers', 'declared_by': 'metadata', 'one_more_rounding': False, 'attention_like': 'fdt'} and d['same_precision']['first_divergence'] == 'model.layers.0.input_layernorm'"
expect 1 "the same in text: the profile named" -- "$LD" compare --model "$M" "$TMP/bf16-transformers.safetensors" "$F"
grep -qF "same precision, against cpu:bf16 (emulated, rounding profile transformers, from the dump's metadata)" \
    "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: the text names no rounding profile"; }
expect 0 "--rounding overrides the metadata" -- "$LD" compare --model "$M" "$TMP/bf16-transformers.safetensors" "$F" \
    --rounding cuda --json
json_ok "d['result'] == 'agree' and d['same_precision']['rounding']['declared_by'] == '--rounding'"
expect 2 "an unknown --rounding" -- "$LD" compare --model "$M" "$TMP/bf16.safetensors" "$F" --rounding nope
expect_err 'llama-diff: --rounding: "nope" is no rounding profile (cuda, transformers, transformers-eager)'
expect 2 "an unknown rounding in the metadata" -- "$LD" compare --model "$M" "$TMP/bf16-bogus.safetensors" "$F"
expect_err 'bf16-bogus.safetensors: metadata rounding "bogus" is no rounding profile (cuda, transformers, transformers-eager); --rounding NAME overrides it'
expect 2 "--rounding without --model" -- "$LD" compare "$TMP/bf16.safetensors" "$F" --rounding transformers
expect_err "--rounding: compare uses it only with --model"
expect 2 "--rounding on another command" -- "$LD" check -m "$M" -f "$F" -p bf16 --rounding transformers
expect_err "--rounding: check does not use it (an option of compare)"

# The LM head is an op like the others: the verdict feeds it the run's own model.norm, not
# the final norm the emulated side recomputes from model.layers.2. A 1% fault at model.norm
# (in a dump, and in a checked run) fails model.norm alone; lm_head, computed correctly
# from the faulty norm, passes.
expect 0 "dump bf16 with model.norm=scale:1e-2" -- "$LD" dump -m "$M" -f "$F" -p bf16 --inject model.norm=scale:1e-2 \
    -o "$TMP/bf16-norm.safetensors" -q
expect 1 "compare --model the dump with a faulty final norm" -- "$LD" compare --model "$M" "$TMP/bf16-norm.safetensors" "$F" --json
json_ok "d['same_precision']['failed'] == 1 and d['same_precision']['first_divergence'] == 'model.norm' and [s['pass'] for s in d['same_precision']['stages'] if s['name'] == 'lm_head'] == [True]"
expect 1 "check bf16 with model.norm=scale:1e-2" -- "$LD" check -m "$M" -f "$F" -p bf16 --inject model.norm=scale:1e-2 --json -q
json_ok "d['same_precision']['failed'] == 1 and d['same_precision']['first_divergence'] == 'model.norm' and [s['pass'] for s in d['same_precision']['stages'] if s['name'] == 'lm_head'] == [True]"

# A model whose attention is ill-conditioned (q_proj and k_proj x 6: scores 36 times
# larger): correct bf16 code shows far more error than the error model predicts (0.4 at
# layer 2), so the table's budget would fail it. The budget is never under twice the
# emulated reference's own measured error (budget_source "emulated"), so the emulated
# reference itself uses 1/2 of it, the stages the model does predict keep the table's,
# and a fault under bf16's noise is still caught by the same-precision verdict.
rm -rf "$TMP/bigq" && cp -r "$M" "$TMP/bigq"
python3 - "$TMP/bigq/model.safetensors" <<'PY'
import json, struct, sys
path = sys.argv[1]
data = open(path, "rb").read(); n = struct.unpack("<Q", data[:8])[0]
header, body = json.loads(data[8:8 + n]), bytearray(data[8 + n:])
for k, info in header.items():
    if k.endswith(("q_proj.weight", "k_proj.weight")):
        a, b = info["data_offsets"]
        v = struct.unpack("<%df" % ((b - a) // 4), body[a:b])
        body[a:b] = struct.pack("<%df" % len(v), *[x * 6 for x in v])
open(path, "wb").write(data[:8 + n] + bytes(body))
PY
TOK=$(python3 -c "print(' '.join(str((i * 37 + 5) % 200) for i in range(200)))")
expect 0 "backends cpu:f64 vs cpu:bf16, ill-conditioned attention" -- "$LD" backends -m "$TMP/bigq" --tokens "$TOK" \
    --a cpu:f64 --b cpu:bf16 --json -q
json_ok "d['result'] == 'agree' and any(s['budget_source'] == 'emulated' and s['rel_l2'] > 0.1 for s in d['stages']) and all(abs(s['budget_used'] - 1 / 2) < 1e-6 for s in d['stages'] if s['budget_source'] == 'emulated') and d['stages'][1]['budget_source'] == 'table'"
expect 1 "the same with a fault under bf16's noise" -- "$LD" backends -m "$TMP/bigq" --tokens "$TOK" \
    --a cpu:f64 --b cpu:bf16 --json -q --inject model.layers.1.mlp.down_proj=scale:1e-3
json_ok "d['result'] == 'diverge' and d['failed'] == 0 and d['same_precision']['first_divergence'] == 'model.layers.1.mlp.down_proj'"

# A dump that does not say it computed in bf16 (no compute_dtype: it may be a float32
# computation stored in BF16) is not held to a bf16 computation, and the output says so.
python3 - "$TMP/bf16-bug.safetensors" "$TMP/bf16-bug-nodtype.safetensors" <<'PY'
import json, struct, sys  # stages stored in BF16 (their values are), no compute_dtype
d = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n]); body = d[8 + n:]
h["__metadata__"].pop("compute_dtype")
out, parts, off = {}, [], 0
for k, v in h.items():
    if k == "__metadata__":
        out[k] = v; continue
    a, b = v["data_offsets"]; blob = body[a:b]; nv = dict(v)
    if v["dtype"] == "F32" and k not in ("input_ids", "positions", "seq_lens"):
        blob = b"".join(blob[i + 2:i + 4] for i in range(0, len(blob), 4)); nv["dtype"] = "BF16"
    nv["data_offsets"] = [off, off + len(blob)]; off += len(blob); parts.append(blob); out[k] = nv
hb = json.dumps(out).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + b"".join(parts))
PY
expect 0 "compare --model a BF16 dump without compute_dtype" -- "$LD" compare --model "$M" \
    "$TMP/bf16-bug-nodtype.safetensors" "$F"
grep -q "same precision: not run: .* does not say it computed in bf16" "$TMP/out" && pass=$((pass + 1)) ||
    { fail=$((fail + 1)); echo "FAIL: compare does not say why it ran no same-precision verdict"; }
expect 1 "compare --model a dump without compute_dtype, --precision bf16" -- "$LD" compare --model "$M" \
    "$TMP/bf16-bug-nodtype.safetensors" "$F" --precision bf16 --json
json_ok "d['same_precision']['first_divergence'] == 'model.layers.1.self_attn.o_proj'"

# Another correct order of products on the side under test (LR_CPU_F64_PRODUCTS=1: each
# linear layer's dot products in float64, rounded once): its stages differ from BLAS's
# order (else this tests nothing), and the same-precision verdict, fed every op's own
# input, must still agree, free, isolated and decoded.
for p in bf16 fp16; do
    expect 0 "dump $p, BLAS's order" -- "$LD" dump -m "$M" -f "$F" -p $p -o "$TMP/blas-$p.safetensors" --force
    expect 0 "dump $p, float64 products" -- env LR_CPU_F64_PRODUCTS=1 "$LD" dump -m "$M" -f "$F" -p $p \
        -o "$TMP/f64-$p.safetensors" --force
    expect 1 "the two orders' dumps differ ($p)" -- "$LD" compare "$TMP/blas-$p.safetensors" "$TMP/f64-$p.safetensors" \
        --precision f64 --json
    for mode in "" "--isolate op" "--decode 3"; do
        expect 0 "check $p $mode, float64 products" -- env LR_CPU_F64_PRODUCTS=1 "$LD" check -m "$M" -f "$F" -p $p $mode \
            --json -q
        json_ok "d['result'] == 'agree' and d['same_precision']['compared'] == len(d['stages']) and d['same_precision']['failed'] == 0"
    done
done

finish
