#!/bin/sh
# test_llama_diff.sh: llama-diff as a user meets it: exit codes, one-line errors naming
# the file and field, JSON that parses, dump -> check round trip, no overwritten files.
set -u
LD=${LLAMA_DIFF:-./llama-diff}
FX=${LR_FIXTURES:?}
TMP=${LR_TMPDIR:?}/llama-diff-sh
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"


M=$FX/models/gqa-f32
F=$FX/golden/gqa-f32-batch.safetensors

# (The bundled default: an empty cache keeps the default job off the cached SmolLM2.)
expect 0 "default check" -- env LR_FIXTURES="$FX" LLAMAREF_CACHE="$TMP/no-cache" "$LD"
grep -q "48 stages: 48 agree, 0 diverge" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: default summary"; }
expect 0 "check --json" -- "$LD" check -m "$M" -f "$F" --json
json_ok 'd["result"] == "agree" and d["failed"] == 0 and len(d["stages"]) == 48 and d["first_divergence"] is None'
json_ok 'd["logits"]["tokens"] == 24 and d["logits"]["top1_agreement"] == 1.0 and d["logits"]["topk_overlap"] == 1.0 and abs(d["logits"]["kl_mean"]) < 1e-12'
expect 0 "check f32 tp 4" -- "$LD" check -m "$M" -f "$F" -p f32 --tp 4 --json
json_ok 'all(s["pass"] and s["tolerance"] == 1e-06 for s in d["stages"])'
expect 0 "info --json tp 2" -- "$LD" info -m "$M" --tp 2 --json
json_ok 'len(d["ranks"]) == 2 and d["ranks"][1]["tensors"][0]["slices"][0]["src_rows"] == [128, 200]'
expect 0 "info text" -- "$LD" info -m "$FX/models/mha-bias-bf16" --tp 4
grep -q "lm_head.weight.*tied to model.embed_tokens.weight" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: info shows tying"; }
expect 0 "--help" -- "$LD" --help
expect 0 "--version" -- "$LD" --version

# A diverging run: an f64 budget applied to... a dump computed in f32, checked as golden
# by an f64 run, differs by ~1e-7, which the f64 budget (1e-10) must flag.
expect 0 "dump f32" -- "$LD" dump -m "$M" -f "$F" -p f32 -o "$TMP/f32.safetensors"
expect 1 "f64 run against an f32 dump diverges" -- "$LD" check -m "$M" -f "$TMP/f32.safetensors"
grep -q "first divergence" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: first divergence not marked"; }
grep -q "FAIL (rel_l2, token, elements)" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: failing criteria not listed"; }
grep -q "^  model.layers.0.input_layernorm: rel_l2 .* worst token .* elements over" "$TMP/out" && pass=$((pass + 1)) ||
    { fail=$((fail + 1)); echo "FAIL: the first divergence's criteria not spelt out"; }
expect 1 "diverge --json" -- "$LD" check -m "$M" -f "$TMP/f32.safetensors" --json
json_ok 'd["result"] == "diverge" and d["first_divergence"] == "model.layers.0.input_layernorm"'
json_ok 'all(set(s["fails"]) == {"rel_l2", "token", "elements"} for s in d["stages"] if s["kind"] != "embedding")'

# Every stage is held to the whole tensor, its worst token and its elements: an agreeing
# run shows all three inside their budgets, the table shows the two new shares.
expect 0 "check f32 text" -- "$LD" check -m "$M" -f "$F" -p f32
grep -qE "used +token +element +x model +result" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: token and element columns"; }
expect 0 "check f32 --json" -- "$LD" check -m "$M" -f "$F" -p f32 --json
json_ok 'all(s["fails"] == [] and s["elements"]["over"] == 0 and 0 <= s["elements"]["worst"] <= 1 and 0 <= s["token"]["budget_used"] <= 1 and s["token"]["rel_l2"] >= s["rel_l2"] for s in d["stages"])'
json_ok 'all(s["token"]["tolerance"] > s["tolerance"] and s["elements"]["atol"] > 0 and s["elements"]["rtol"] > 0 for s in d["stages"])'

# Round trip: an f64 dump checked by an f64 run agrees exactly.
expect 0 "dump --tokens" -- "$LD" dump -m "$M" -t "5 17 3 199 0" -o "$TMP/tok.safetensors"
expect 0 "check own dump" -- "$LD" check -m "$M" -f "$TMP/tok.safetensors" --json
json_ok 'max(s["rel_l2"] for s in d["stages"]) == 0.0'

# Nothing overwritten.
cp "$TMP/tok.safetensors" "$TMP/keep"
expect 2 "dump refuses to overwrite" -- "$LD" dump -m "$M" -t "1 2" -o "$TMP/tok.safetensors"
expect_err "tok.safetensors" "already exists"
cmp -s "$TMP/keep" "$TMP/tok.safetensors" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: file changed"; }
expect 0 "dump --force replaces" -- "$LD" dump -m "$M" -t "1 2" -o "$TMP/tok.safetensors" --force
ls "$TMP" | grep -q '\.tmp\.' && { fail=$((fail + 1)); echo "FAIL: temp file left"; } || pass=$((pass + 1))

# Usage and bad input: exit 2, one line naming the thing.
expect 2 "unknown command" -- "$LD" frobnicate
expect_err "frobnicate"
expect 2 "unknown option" -- "$LD" check --bogus
expect_err "--bogus"
expect 2 "bad precision" -- "$LD" check -m "$M" -f "$F" -p f8
expect_err "--precision" "f8"
expect 2 "f64 is not a cuda precision" -- "$LD" check -m "$M" -f "$F" -b cuda -p f64
expect_err "--precision" "f64" "--backend cpu"
expect 0 "cpu emulates bf16" -- "$LD" check -m "$M" -f "$F" -p bf16 --json
json_ok 'd["result"] == "agree" and d["precision"] == "bf16" and len(d["stages"]) == 48'
expect 2 "unknown backend" -- "$LD" check -m "$M" -f "$F" -b tpu
expect_err "--backend" "tpu"
expect 2 "--kernel needs cuda" -- "$LD" check -m "$M" -f "$F" -k rmsnorm=warp
expect_err "--kernel"
expect 2 "bad tp value" -- "$LD" check -m "$M" -f "$F" --tp zero
expect_err "--tp"
expect 2 "indivisible tp" -- "$LD" check -m "$FX/models/mha-bias-bf16" -f "$FX/golden/mha-bias-bf16.safetensors" --tp 8
expect_err "num_attention_heads" "tp 8"
expect 2 "missing model dir" -- "$LD" check -m "$TMP/nope" -f "$F"
expect_err "$TMP/nope/config.json"
expect 2 "fixture of another model" -- "$LD" check -m "$FX/models/mha-bias-bf16" -f "$F"
expect_err "gqa-f32-batch.safetensors" "lm_head" "config implies 130"
printf 'garbage' >"$TMP/garbage.safetensors"
expect 2 "garbage fixture" -- "$LD" check -m "$M" -f "$TMP/garbage.safetensors"
expect_err "garbage.safetensors" "header length"
expect 2 "bad tokens" -- "$LD" dump -m "$M" -t "1 x" -o "$TMP/x.safetensors"
expect_err "--tokens"
expect 2 "token outside vocabulary" -- "$LD" dump -m "$M" -t "1 200" -o "$TMP/x.safetensors"
expect_err "input_ids[1]"
mkdir -p "$TMP/badcfg" && cp "$M/model.safetensors" "$TMP/badcfg/" &&
    sed 's/"silu"/"gelu"/' "$M/config.json" >"$TMP/badcfg/config.json"
expect 2 "unsupported activation" -- "$LD" info -m "$TMP/badcfg"
expect_err "config.json" "hidden_act" "gelu"

expect 2 "structural fault on a stage whose op cannot have it" -- "$LD" check -m "$M" -f "$F" \
    --inject model.layers.1.self_attn.q_proj=theta:1e-3
expect_err "model.layers.1.self_attn.q_proj" "theta" "self_attn.o_proj.input"
expect 2 "mask shift of 2" -- "$LD" check -m "$M" -f "$F" --inject model.layers.1.self_attn.o_proj.input=mask:2
expect_err "--inject" "mask" "-1"
expect 1 "a stale KV entry, caught in decode" -- "$LD" check -m "$M" -f "$F" --decode 2 --json \
    --inject model.layers.1.self_attn.o_proj.input=stale_kv:1
json_ok 'd["first_divergence"] == "model.layers.1.self_attn.o_proj.input"'

# Decode through the KV cache: prefill, then 4 single-token steps, each compared.
expect 0 "check --decode 4" -- "$LD" check -m "$M" -f "$F" --decode 4 -p f32 --tp 2 --json
json_ok 'd["result"] == "agree" and len(d["decode"]) == 5 and d["decode"][0]["kind"] == "prefill" and all(s["worst_budget_used"] < 1 for s in d["decode"])'
expect 0 "--decode with --isolate (every step isolated)" -- "$LD" check -m "$M" -f "$F" --decode 2 --isolate -p f32 --json
json_ok 'd["result"] == "agree" and d["isolate"] and len(d["decode"]) == 3'
expect 2 "--decode 0" -- "$LD" check -m "$M" -f "$F" --decode 0
expect_err "--decode"

# compare and backends.
expect 0 "compare a dump with itself" -- "$LD" compare "$TMP/f32.safetensors" "$TMP/f32.safetensors" --json
json_ok 'd["result"] == "agree" and d["precision"] == "f32" and len(d["stages"]) == 48'
expect 0 "compare f32 dump to golden at its own budget" -- "$LD" compare "$TMP/f32.safetensors" "$F"
expect 1 "compare at the f64 budget" -- "$LD" compare "$TMP/f32.safetensors" "$F" --precision f64
expect 2 "compare dumps of different inputs" -- "$LD" compare "$TMP/tok.safetensors" "$F"
expect_err "different inputs"
expect 2 "compare needs two files" -- "$LD" compare "$F"
# Coverage is part of the verdict: a dump that lacks golden stages, or names one wrongly,
# fails, and says which; --stages narrows the set, and says so.
python3 - "$TMP/f32.safetensors" "$TMP" <<'PY'
import json, struct, sys
src, tmp = sys.argv[1], sys.argv[2]
d = open(src, "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n]); body = d[8 + n:]
def write(path, keep, rename={}):
    nh, parts, off = {}, [], 0
    for k, v in h.items():
        if k == "__metadata__": nh[k] = v; continue
        if not keep(k): continue
        a, b = v["data_offsets"]; blob = body[a:b]
        nh[rename.get(k, k)] = dict(v, data_offsets=[off, off + len(blob)]); off += len(blob); parts.append(blob)
    hb = json.dumps(nh).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + b"".join(parts))
write(tmp + "/only-logits.safetensors", lambda k: k in ("lm_head", "input_ids", "positions", "seq_lens"))
write(tmp + "/typo.safetensors", lambda k: True, {"model.layers.1.self_attn.q_proj": "model.layers.1.self_atn.q_proj"})
PY
expect 1 "compare a dump of the logits alone" -- "$LD" compare "$TMP/only-logits.safetensors" "$F" --precision f32
grep -q "coverage: 1 of 48 golden stages compared" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: coverage line"; }
expect 1 "compare a dump of the logits alone (json)" -- "$LD" compare "$TMP/only-logits.safetensors" "$F" --precision f32 --json
json_ok 'd["result"] == "diverge" and d["coverage"]["compared"] == 1 and d["coverage"]["golden"] == 48 and len(d["coverage"]["missing"]) == 47 and d["first_divergence"] == "model.embed_tokens"'
expect 1 "compare a dump with a misspelt stage" -- "$LD" compare "$TMP/typo.safetensors" "$F" --precision f32
grep -q "did you mean model.layers.1.self_attn.q_proj" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: nearest name"; }
expect 0 "compare narrowed by --stages" -- "$LD" compare "$TMP/only-logits.safetensors" "$F" --precision f32 --stages lm_head
grep -q "narrowed by --stages lm_head" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: narrowed"; }
expect 2 "--stages is for compare" -- "$LD" check -m "$M" -f "$F" --stages lm_head
expect_err "--stages"
# An engine's own dump: BF16 stages of shape [1, T, F], no compute_dtype: compared, at
# the bf16 budgets its dtype sets (and failing the f64 ones: it was compared).
python3 - "$TMP/f32.safetensors" "$TMP/bf16.safetensors" <<'PY'
import json, struct, sys
d = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n]); body = d[8 + n:]
nh, parts, off = {}, [], 0
for k, v in h.items():
    if k == "__metadata__":
        nh[k] = {a: b for a, b in v.items() if a != "compute_dtype"}; continue
    a, b = v["data_offsets"]; blob = body[a:b]; nv = dict(v)
    if k not in ("input_ids", "positions", "seq_lens"):
        out = bytearray()
        for i in range(0, len(blob), 4):
            u = struct.unpack("<I", blob[i:i + 4])[0]
            out += struct.pack("<H", ((u + 0x7fff + ((u >> 16) & 1)) >> 16) & 0xffff)
        blob, nv["dtype"], nv["shape"] = bytes(out), "BF16", [1] + v["shape"]
    nv["data_offsets"] = [off, off + len(blob)]; off += len(blob); parts.append(blob); nh[k] = nv
hb = json.dumps(nh).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + b"".join(parts))
PY
expect 0 "compare a BF16 [1, T, F] dump" -- "$LD" compare "$TMP/bf16.safetensors" "$F" --json
json_ok 'd["result"] == "agree" and d["precision"] == "bf16" and d["coverage"]["compared"] == 48'
expect 1 "compare a BF16 dump at the f64 budgets" -- "$LD" compare "$TMP/bf16.safetensors" "$F" --precision f64
expect 0 "backends cpu:f64 vs cpu:f32 tp 2" -- "$LD" backends -m "$M" -f "$F" --a cpu:f64 --b cpu:f32 --tp 2 --json
json_ok 'd["result"] == "agree" and len(d["stages"]) == 48 and d["precision"] == "f32"'
expect 2 "backends bad spec" -- "$LD" backends -m "$M" -f "$F" --a cuda:f64 --b cpu:f32
expect_err "--a" "f64"
# Per-side settings: tp N against tp 1 (the reduction order moves f64 by rounding only).
expect 0 "backends tp 2 against tp 1" -- "$LD" backends -m "$M" -f "$F" --a cpu:f64,tp=1 --b cpu:f64 --tp 2 --json
json_ok 'd["result"] == "agree" and "tp 1" in d["reference"] and "tp 2" in d["test"] and max(s["rel_l2"] for s in d["stages"]) > 0'
expect 0 "backends tp= on both sides" -- "$LD" backends -m "$M" -f "$F" --a cpu:f64,tp=4 --b cpu:f64,tp=2 --json
json_ok '"tp 4" in d["reference"] and "tp 2" in d["test"]'
expect 2 "backends tp=0" -- "$LD" backends -m "$M" -f "$F" --a cpu:f64,tp=0 --b cpu:f64
expect_err "--a tp=" "0"
expect 2 "backends unknown setting" -- "$LD" backends -m "$M" -f "$F" --a cpu:f64,threads=2 --b cpu:f64
expect_err "unknown setting" "threads"
expect 2 "backends setting without a value" -- "$LD" backends -m "$M" -f "$F" --a cpu:f64 --b cpu:f64,tp
expect_err "--b" "KEY=VALUE"
expect 2 "backends devices= on the cpu" -- "$LD" backends -m "$M" -f "$F" --a cpu:f64,devices=1 --b cpu:f64
expect_err "devices=" "cuda"
expect 2 "backends --kernel with no cuda side" -- "$LD" backends -m "$M" -f "$F" --a cpu:f64 --b cpu:f32 -k attention=fa2
expect_err "--kernel" "cuda side"
expect 0 "check reports the devices (0: the host)" -- "$LD" check -m "$M" -f "$F" --json
json_ok 'd["devices"] == 0 and d["tp"] == 1'

# Planted bugs: a weight of one layer scaled in a copy of the model; the first divergence
# and the drill-down must name that layer and that operation, and nothing diverges before.
for spec in "model.layers.1.mlp.up_proj.weight:1.01:model.layers.1.mlp.up_proj" \
            "model.layers.2.self_attn.k_proj.weight:1.0001:model.layers.2.self_attn.k_proj" \
            "model.layers.0.post_attention_layernorm.weight:1.001:model.layers.0.post_attention_layernorm"; do
    IFS=: read -r tensor scale stage <<EOF2
$spec
EOF2
    plant "$M" "$tensor" "$scale" "$TMP/planted"
    expect 1 "planted x$scale in $tensor" -- "$LD" check -m "$TMP/planted" -f "$F" --json
    json_ok "d['first_divergence'] == '$stage' and d['drill_down']['stage'] == '$stage'"
    # Isolated, only the planted layer diverges: the layers after it get golden inputs.
    expect 1 "planted x$scale in $tensor, --isolate" -- "$LD" check -m "$TMP/planted" -f "$F" --isolate --json
    layer=$(echo "$stage" | cut -d. -f1-3)
    json_ok "d['isolate'] and d['first_divergence'] == '$stage' and all(s['name'].startswith('$layer.') or s['name'] == '$layer' for s in d['stages'] if not s['pass'])"
done
expect 0 "--isolate on the unperturbed model agrees" -- "$LD" check -m "$M" -f "$F" --isolate -p f32

finish
