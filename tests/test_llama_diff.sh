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
expect_err "$TMP/nope: No such file or directory"
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
expect 0 "compare a BF16 dump with --model (bf16 budgets scaled)" -- "$LD" compare "$TMP/bf16.safetensors" "$F" --model "$M" --json
json_ok 'd["result"] == "agree" and d["precision"] == "bf16" and d["budgets_scaled"] and all(s["predicted"] > 0 for s in d["stages"] if s["kind"] not in ("embedding",))'
expect 1 "compare a BF16 dump at the f64 budgets" -- "$LD" compare "$TMP/bf16.safetensors" "$F" --precision f64
# Real-model budgets: without --model compare says its budgets are unscaled; with it they
# scale as check's do and the error model's prediction shows.
expect 0 "compare without --model" -- "$LD" compare "$TMP/f32.safetensors" "$F"
grep -q "budgets .*unscaled: no --model" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: unscaled budgets not said"; }
expect 0 "compare without --model (json)" -- "$LD" compare "$TMP/f32.safetensors" "$F" --json
json_ok 'd["budgets_scaled"] is False and d["model"] is None and all(s["predicted"] is None for s in d["stages"])'
expect 0 "compare --model" -- "$LD" compare "$TMP/f32.safetensors" "$F" --model "$M" --json
json_ok 'd["budgets_scaled"] is True and d["model"] == "'"$M"'" and all(s["predicted"] is not None for s in d["stages"] if s["kind"] != "embedding")'
expect 0 "compare --model --report" -- "$LD" compare "$TMP/f32.safetensors" "$F" --model "$M" --report "$TMP/scaled.html"
grep -q "Budgets</th><td>scaled by the error model" "$TMP/scaled.html" && grep -q "error model (expected for the precision)" "$TMP/scaled.html" &&
    pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: the report does not show scaled budgets and the prediction"; }
expect 0 "compare --report without --model" -- "$LD" compare "$TMP/f32.safetensors" "$F" --report "$TMP/unscaled.html"
grep -q "Budgets</th><td>unscaled: no --model" "$TMP/unscaled.html" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: the report does not say unscaled"; }
expect 2 "compare --model of another model" -- "$LD" compare "$TMP/f32.safetensors" "$F" --model "$FX/models/mha-bias-bf16"
expect_err "gqa-f32-batch.safetensors" "config implies"
# SmolLM2 at f32: the reference's own dump fails 12 of 61 stages at the unscaled budgets
# and passes at its model's.
SMOL=${LLAMAREF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llamaref}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SF=$FX/golden/smollm2-135m.safetensors
if [ -f "$SMOL" ]; then
    expect 0 "dump SmolLM2 at f32" -- "$LD" dump -m "$SMOL" -f "$SF" -p f32 -o "$TMP/smol.safetensors" -q
    expect 1 "SmolLM2's f32 dump at unscaled budgets" -- "$LD" compare "$TMP/smol.safetensors" "$SF" --json
    json_ok 'd["failed"] > 0 and d["budgets_scaled"] is False and d["coverage"]["compared"] == 61'
    expect 0 "SmolLM2's f32 dump with --model" -- "$LD" compare "$TMP/smol.safetensors" "$SF" --model "$SMOL" --json
    json_ok 'd["result"] == "agree" and d["failed"] == 0 and d["coverage"]["compared"] == 61 and d["budgets_scaled"]'
    expect 0 "SmolLM2's f32 dump with --model (text)" -- "$LD" compare "$TMP/smol.safetensors" "$SF" --model "$SMOL"
    grep -q "61 stages: 61 agree, 0 diverge" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: SmolLM2 summary"; }
else
    echo "SKIP: SmolLM2 budgets: $SMOL is not cached (tests/test_fetch_smollm2.sh fetches it); not counted"
fi

# Name maps. Engine-named dumps built from the f32 dump: vLLM's module names with packed
# qkv_proj and gate_up_proj outputs, at tp 1 and per rank at tp 2 and 4 (vLLM's sharding:
# each rank its q heads, its kv head(s), its intermediate block); llama.cpp's eval-callback
# names with q and k in GGUF's row order. Mapped back, each compares bit-exact with the
# dump it was built from.
python3 - "$TMP/f32.safetensors" "$TMP" <<'PY'
import json, struct, sys
src, tmp = sys.argv[1], sys.argv[2]
d = open(src, "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n]); body = d[8 + n:]
meta = h["__metadata__"]; T = h["input_ids"]["shape"][0]
L, nh, nkv, hd, I = 3, 8, 2, 8, 128
def get(k):
    a, b = h[k]["data_offsets"]; return body[a:b], h[k]["shape"][1]
def cols(k, a, b):  # columns [a, b) of every row (F32)
    blob, w = get(k); return [blob[(t * w + a) * 4:(t * w + b) * 4] for t in range(T)]
def cat(*parts):  # rows side by side
    return b"".join(b"".join(p[t] for p in parts) for t in range(T))
def write(path, tensors, extra={}):
    nh_, parts, off = {"__metadata__": dict(meta, **extra)}, [], 0
    for k in ("input_ids", "positions", "seq_lens"):
        tensors = dict(tensors); tensors[k] = (get(k)[0] if False else body[h[k]["data_offsets"][0]:h[k]["data_offsets"][1]], h[k]["shape"], "I64")
    for k, (blob, shape, dt) in tensors.items():
        nh_[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(blob)]}; off += len(blob); parts.append(blob)
    hb = json.dumps(nh_).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + b"".join(parts))
def whole(k): blob, w = get(k); return (blob, [T, w], "F32")
def packed(*parts): return (cat(*parts), [T, sum(len(p[0]) // 4 for p in parts)], "F32")
def vllm(tp, r):
    qr, ir = nh // tp * hd, I // tp
    kh = [r * nkv // tp + j for j in range(max(nkv // tp, 1))] if nkv >= tp else [r * nkv // tp]
    k0, k1 = kh[0] * hd, (kh[-1] + 1) * hd
    t = {"model.embed_tokens": whole("model.embed_tokens"), "model.norm": whole("model.norm"), "logits": whole("lm_head")}
    for l in range(L):
        p = "model.layers.%d" % l
        t[p + ".input_layernorm"] = whole(p + ".input_layernorm")
        t[p + ".self_attn.qkv_proj"] = packed(cols(p + ".self_attn.q_proj", r * qr, (r + 1) * qr),
                                              cols(p + ".self_attn.k_proj", k0, k1), cols(p + ".self_attn.v_proj", k0, k1))
        t[p + ".self_attn.attn"] = packed(cols(p + ".self_attn.o_proj.input", r * qr, (r + 1) * qr))
        t[p + ".self_attn.o_proj"] = whole(p + ".self_attn.o_proj")
        t[p + ".post_attention_layernorm"] = whole(p + ".post_attention_layernorm")
        t[p + ".mlp.gate_up_proj"] = packed(cols(p + ".mlp.gate_proj", r * ir, (r + 1) * ir), cols(p + ".mlp.up_proj", r * ir, (r + 1) * ir))
        t[p + ".mlp.act_fn"] = packed(cols(p + ".mlp.down_proj.input", r * ir, (r + 1) * ir))
        t[p + ".mlp.down_proj"] = whole(p + ".mlp.down_proj")
        t[p] = whole(p)
    return t
write(tmp + "/vllm.safetensors", vllm(1, 0))
mods = vllm(1, 0)  # a dumper that hooks every module: the attention and MLP modules' own outputs too
for l in range(L):
    p = "model.layers.%d" % l
    mods[p + ".self_attn"], mods[p + ".mlp"] = whole(p + ".self_attn"), whole(p + ".mlp")
    mods[p + ".self_attn.rotary_emb"] = whole(p + ".self_attn.q_proj")
write(tmp + "/vllm-modules.safetensors", mods)
for r in range(2):
    write(tmp + "/vllm-tp2-%d.safetensors" % r, vllm(2, r), {"tp_rank": str(r), "tp_size": "2"})
for r in range(4):
    write(tmp + "/vllm-tp4-%d.safetensors" % r, vllm(4, r))
write(tmp + "/vllm-tp2-norank.safetensors", vllm(2, 1), {"tp_size": "2"})
def gguf_rows(k, width):  # HF row j * hd/2 + i of each head -> 2 i + j, as convert_hf_to_gguf permutes q and k
    blob, w = get(k); out = bytearray(len(blob))
    for t in range(T):
        for hh in range(w // hd):
            for i in range(hd // 2):
                for j in range(2):
                    s = (t * w + hh * hd + j * hd // 2 + i) * 4; o = (t * w + hh * hd + 2 * i + j) * 4
                    out[o:o + 4] = blob[s:s + 4]
    return (bytes(out), [T, w], "F32")
def llamacpp(permute=True):
    t = {"inp_embd": whole("model.embed_tokens"), "result_norm": whole("model.norm"), "result_output": whole("lm_head")}
    for l in range(L):
        p = "model.layers.%d" % l
        for e, k in (("attn_norm", ".input_layernorm"), ("Vcur", ".self_attn.v_proj"), ("kqv_out", ".self_attn.o_proj.input"),
                     ("attn_out", ".self_attn.o_proj"), ("ffn_norm", ".post_attention_layernorm"), ("ffn_gate", ".mlp.gate_proj"),
                     ("ffn_up", ".mlp.up_proj"), ("ffn_swiglu", ".mlp.down_proj.input"), ("ffn_out", ".mlp.down_proj"), ("l_out", "")):
            t["%s-%d" % (e, l)] = whole(p + k)
        for e, k in (("Qcur", ".self_attn.q_proj"), ("Kcur", ".self_attn.k_proj")):
            t["%s-%d" % (e, l)] = gguf_rows(p + k, 0) if permute else whole(p + k)
        t["ffn_inp-%d" % l] = whole(p + ".self_attn")  # a residual sum in llama.cpp; any (T, H) here
    t["Qcur-0 (reshaped)"] = t["Qcur-0"]
    t["atn_out-2"] = whole("model.layers.2.self_attn.o_proj")  # a name in no table
    return t
write(tmp + "/llamacpp.safetensors", llamacpp())
write(tmp + "/llamacpp-hf-rows.safetensors", llamacpp(False))
PY
S=$TMP/f32.safetensors
exact='all(s["rel_l2"] == 0 and s["max_abs"] == 0 for s in d["stages"])'
expect 0 "vllm names, tp 1" -- "$LD" compare --names vllm -m "$M" "$TMP/vllm.safetensors" "$S" --json
json_ok 'd["result"] == "agree" and d["coverage"]["compared"] == 45 and d["coverage"]["golden"] == 45 and d["coverage"]["names"] == "vllm" and [x["name"] for x in d["coverage"]["not_in_names"]] == ["model.layers.%d.mlp.act_fn" % l for l in range(3)] and '"$exact"
expect 0 "vllm names, every module hooked" -- "$LD" compare --names vllm -m "$M" "$TMP/vllm-modules.safetensors" "$S" --json
json_ok 'd["result"] == "agree" and d["coverage"]["compared"] == 45 and [x["name"] for x in d["coverage"]["skipped"]] == ["model.layers.%d.self_attn.rotary_emb" % l for l in range(3)] and d["coverage"]["unmatched"] == [] and '"$exact"
expect 0 "vllm names, tp 1 (text)" -- "$LD" compare --names vllm -m "$M" "$TMP/vllm.safetensors" "$S"
grep -q "golden stages vllm names cannot hold (3, not required)" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: vllm's unheld stages not listed"; }
expect 0 "vllm names, tp 2 ranks from metadata, given in reverse" -- "$LD" compare --names vllm -m "$M" "$TMP/vllm-tp2-1.safetensors" "$TMP/vllm-tp2-0.safetensors" "$S" --json
json_ok 'd["result"] == "agree" and d["coverage"]["compared"] == 45 and '"$exact"
expect 0 "vllm names, tp 4 (kv heads replicated), ranks in the order given" -- "$LD" compare --names vllm -m "$M" "$TMP"/vllm-tp4-0.safetensors "$TMP"/vllm-tp4-1.safetensors "$TMP"/vllm-tp4-2.safetensors "$TMP"/vllm-tp4-3.safetensors "$S" --json
json_ok 'd["result"] == "agree" and '"$exact"
expect 1 "vllm ranks without metadata in the wrong order diverge" -- "$LD" compare --names vllm -m "$M" "$TMP"/vllm-tp4-1.safetensors "$TMP"/vllm-tp4-0.safetensors "$TMP"/vllm-tp4-2.safetensors "$TMP"/vllm-tp4-3.safetensors "$S" --json
json_ok 'd["first_divergence"] == "model.layers.0.self_attn.q_proj"'
expect 2 "vllm names without --model" -- "$LD" compare --names vllm "$TMP/vllm.safetensors" "$S"
expect_err "--names vllm" "--model"
expect 2 "vllm rank files of tp 4 given as 2" -- "$LD" compare --names vllm -m "$M" "$TMP"/vllm-tp4-0.safetensors "$TMP"/vllm-tp4-1.safetensors "$S"
expect_err "vllm-tp4-0.safetensors" "self_attn.qkv_proj" "rank 0 of 2"
expect 2 "a rank's dump without tp_rank" -- "$LD" compare --names vllm -m "$M" "$TMP/vllm-tp2-0.safetensors" "$TMP/vllm-tp2-norank.safetensors" "$S"
expect_err "vllm-tp2-norank.safetensors" "tp_rank"
expect 2 "a rank's dump said twice" -- "$LD" compare --names vllm -m "$M" "$TMP/vllm-tp2-0.safetensors" "$TMP/vllm-tp2-0.safetensors" "$S"
expect_err "tp_rank" "twice"
expect 2 "several dumps under hf names" -- "$LD" compare "$S" "$S" "$S"
expect_err "--names vllm" "--names hf"
expect 1 "vllm-named dump compared as hf names" -- "$LD" compare "$TMP/vllm.safetensors" "$S" --json
json_ok 'd["coverage"]["compared"] < 45 and any(x["name"] == "model.layers.0.self_attn.qkv_proj" for x in d["coverage"]["unmatched"])'
# (vLLM's mlp.act_fn is HF's down_proj input: under its own name it diverges, as it should.)
json_ok 'not [s for s in d["stages"] if s["name"] == "model.layers.0.mlp.act_fn"][0]["pass"]'
expect 2 "--names of no engine" -- "$LD" compare --names sglang "$S" "$S"
expect_err "--names" "sglang"
expect 0 "llama.cpp names" -- "$LD" compare --names llama.cpp -m "$M" "$TMP/llamacpp.safetensors" "$S" --json
json_ok 'd["result"] == "agree" and d["coverage"]["compared"] == 45 and len(d["coverage"]["not_in_names"]) == 3 and '"$exact"
json_ok 'sorted(x["name"] for x in d["coverage"]["skipped"]) == ["Qcur-0 (reshaped)", "ffn_inp-0", "ffn_inp-1", "ffn_inp-2"] and [(x["name"], x["nearest_in_names"]) for x in d["coverage"]["unmatched"]] == [("atn_out-2", "attn_out-2")] and d["coverage"]["unmatched"][0]["nearest"] in ("lm_head", "model.norm")'
expect 0 "llama.cpp names (text)" -- "$LD" compare --names llama.cpp -m "$M" "$TMP/llamacpp.safetensors" "$S"
grep -q "ffn_inp-0: the residual stream after attention" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: skipped names not said"; }
grep -q "atn_out-2 (did you mean attn_out-2? nearest golden stage: " "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: an unmapped name without its nearest llama.cpp name"; }
expect 1 "llama.cpp Qcur in HF row order diverges (the GGUF order is undone)" -- "$LD" compare --names llama.cpp -m "$M" "$TMP/llamacpp-hf-rows.safetensors" "$S" --json
json_ok 'd["first_divergence"] == "model.layers.0.self_attn.q_proj"'
expect 2 "llama.cpp names without --model" -- "$LD" compare --names llama.cpp "$TMP/llamacpp.safetensors" "$S"
expect_err "--model"

# No option is accepted and ignored: each command refuses every option it does not use,
# naming the option and the command (this table is the help's, stated apart from main.c's).
R=$TMP/unused-report.html
for row in "-m $M|check dump compare backends info" "-f $F|check dump backends" "-t 1|dump backends" \
           "-o $TMP/unused-out|dump convert" "-b cpu|check dump" "-p f32|check dump compare" \
           "--tp 2|check dump backends info" "--threads 2|check dump backends" "-k attention=fa2|check dump backends" \
           "--devices 1|check dump backends" "--cuda-graphs|check dump backends" "--a cpu:f64|backends" "--b cpu:f64|backends" "--isolate|check" \
           "--decode 1|check" "--report $R|check compare backends" "--quiet|check dump backends" \
           "--gguf $M|convert" "--inject model.norm=scale:0.1|check dump backends" "--stages x|compare" \
           "--names hf|compare" "--force|dump convert check compare backends" "--json|check dump compare backends info convert ops" \
           "--plugin $TMP/unused.so|check dump backends ops"; do
    opt=${row%%|*} users=${row#*|}
    for cmd in check dump compare backends info convert ops; do
        case " $users " in *" $cmd "*) continue ;; esac
        # shellcheck disable=SC2086
        expect 2 "$cmd refuses $opt" -- "$LD" $cmd $opt
        case $cmd in
        backends) expect_err "${opt%% *}" ;; # its own message: each side's backend goes in --a and --b
        convert) case $opt in -m*|-f*|-t*) expect_err "${opt%% *}" "convert" ;; *) expect_err "${opt%% *}" "convert does not use it" ;; esac ;;
        *) expect_err "${opt%% *}" "$cmd does not use it" ;;
        esac
    done
done
# --cuda-graphs is the cuda backend's: a run with no cuda side refuses it.
expect 2 "check --cuda-graphs on cpu" -- "$LD" check --cuda-graphs -m "$M" -f "$F"
expect_err "--cuda-graphs" "--backend cuda"
expect 2 "backends --cuda-graphs with no cuda side" -- "$LD" backends --a cpu:f64 --b cpu:f32 --cuda-graphs -m "$M" -t 1
expect_err "--cuda-graphs"
# --threads sets the host's BLAS threads: a run with nothing on the CPU refuses it (check
# at bf16/fp16 keeps it: its same-precision verdict runs the emulated CPU reference).
expect 2 "check --threads on cuda at fp32" -- "$LD" check -b cuda -p fp32 --threads 2 -m "$M" -f "$F"
expect_err "--threads" "--backend cpu"
expect 2 "dump --threads on cuda" -- "$LD" dump -b cuda --threads 2 -m "$M" -t 1 -o "$TMP/unused-out"
expect_err "--threads" "--backend cpu"
expect 2 "backends --threads with no cpu side" -- "$LD" backends --a cuda:bf16 --b cuda:fp16 --threads 2 -m "$M" -t 1
expect_err "--threads" "cpu side"
for cmd in check compare backends; do
    expect 2 "$cmd --force without --report" -- "$LD" $cmd --force
    expect_err "--force" "$cmd uses it only with --report"
done
[ -e "$R" ] || [ -e "$TMP/unused-out" ] && { fail=$((fail + 1)); echo "FAIL: a refused command wrote a file"; } || pass=$((pass + 1))

# A path that does not exist is reported as such, and nothing runs for an output that
# has no folder to go in.
expect 2 "info of a missing .gguf" -- "$LD" info --model "$TMP/missing.gguf"
expect_err "missing.gguf: No such file or directory"
grep -q "config.json" "$TMP/err" && { fail=$((fail + 1)); echo "FAIL: a missing model reported as its config.json"; } || pass=$((pass + 1))
expect 2 "check of a missing model folder" -- "$LD" check -m "$TMP/nomodel" -f "$F"
expect_err "nomodel: No such file or directory"
expect 2 "compare --model missing" -- "$LD" compare -m "$TMP/nomodel" "$S" "$F"
expect_err "nomodel: No such file or directory"
expect 2 "check of a missing fixture" -- "$LD" check -m "$M" -f "$TMP/nofixture.safetensors"
expect_err "nofixture.safetensors" "No such file or directory"
expect 2 "compare a missing dump" -- "$LD" compare "$TMP/nodump.safetensors" "$F"
expect_err "nodump.safetensors" "No such file or directory"
expect 2 "compare against a missing golden" -- "$LD" compare "$S" "$TMP/nogolden.safetensors"
expect_err "nogolden.safetensors" "No such file or directory"
expect 2 "dump --out in a missing folder" -- "$LD" dump -m "$M" -t "1 2" -o "$TMP/nodir/x.safetensors"
expect_err "--out" "folder $TMP/nodir does not exist"
expect 2 "convert --out in a missing folder" -- "$LD" convert --gguf "$TMP/x.gguf" -o "$TMP/nodir/sub"
expect_err "--out" "folder $TMP/nodir does not exist"
expect 2 "--report in a missing folder" -- "$LD" compare "$S" "$F" --report "$TMP/nodir/r.html"
expect_err "--report" "folder $TMP/nodir does not exist"
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
# What the run held: the process's peak RSS (after loading, then at the end, never less),
# no device memory on the host.
json_ok 'd["memory"]["host_peak_rss"] >= d["memory"]["host_peak_rss_after_load"] > 0 and d["memory"]["device_weights"] == 0 and d["memory"]["device_used_after_load"] == 0 and d["memory"]["load_staging"] == 0'
json_ok 'd["memory"]["host_weights_budget"] > 0 and 0 < d["memory"]["host_weights_peak"] == d["memory"]["host_weights_total"] <= d["memory"]["host_weights_converted"]'
expect 0 "check prints the memory it held" -- "$LD" check -m "$M" -f "$F"
# and the CPU reference's weight cache (--memory): its weights, the most held, the budget
ok "check's header has a memory line" -- grep -qE "^  memory     host peak RSS [0-9.]+ GiB \([0-9.]+ GiB after loading\); cpu weights [0-9.]+ [KMG]iB, at most [0-9.]+ [KMG]iB held of a [0-9.]+ [KMG]iB budget, [0-9.]+ [KMG]iB converted$" "$TMP/out"
expect 0 "backends reports each side's memory" -- "$LD" backends -m "$M" -f "$F" --a cpu:f64 --b cpu:f32 --json
json_ok 'all(d["memory"][k]["host_peak_rss"] > 0 and d["memory"][k]["device_weights"] == 0 for k in "ab")'

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
