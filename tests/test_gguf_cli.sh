#!/bin/sh
# test_gguf_cli.sh: GGUF files through llama-diff. The F32 GGUF of gqa-f32 passes
# `check --precision f64` against the gqa-f32 golden fixture, and fails when the q/k
# unpermute is switched off (LLAMAREF_GGUF_NO_UNPERMUTE=1, a test hook); `convert`
# writes a checkpoint that computes exactly what the original does, refuses to
# overwrite, never touches its input and leaves no temporary files; bad input is one
# line and exit 2; the default job picks the cached SmolLM2 GGUF only when its fixture
# is there too (a stand-in GGUF and fixture play SmolLM2 here). The K-quant model
# (Q2_K..Q8_K mixed as Q4_K_M mixes them) runs through info, dump, check and convert; its
# conversion holds the gguf package's values and computes exactly what the GGUF does; a
# truncated K-quant tensor, rows that are no whole super-block, or a type whose blocks do
# not fit the bytes are one line naming the file and tensor, exit 2.
set -u
LD=${LLAMA_DIFF:-./llama-diff}
FX=${LR_FIXTURES:?}
TMP=${LR_TMPDIR:?}/gguf-cli-sh
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"

has() { # has FILE TEXT DESCRIPTION
    if grep -qF -- "$2" "$1"; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: $3: \"$2\" not in $1"; sed 's/^/  | /' "$1" | head -10
    fi
}
json_ok() { # stdout parses as JSON and the python expression holds for it (d)
    if python3 -c "import json,sys; d=json.load(open('$TMP/out')); sys.exit(0 if ($1) else 1)"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); echo "FAIL: JSON check: $1"; head -c 600 "$TMP/out"
    fi
}

M=$FX/models/gqa-f32
F=$FX/golden/gqa-f32-batch.safetensors
G=$FX/gguf/gqa-f32.gguf
GM=$FX/gguf/gqa-mixed.gguf
KQ=$FX/gguf/kquant-mixed.gguf

# The undo, proved end to end: f64 agrees with the golden fixture; without it, no.
expect 0 "check the F32 GGUF, f64" -- "$LD" check --model "$G" --fixture "$F" --precision f64
has "$TMP/out" "48 stages: 48 agree, 0 diverge" "GGUF check summary"
expect 1 "check with the unpermute off" -- env LLAMAREF_GGUF_NO_UNPERMUTE=1 "$LD" check --model "$G" --fixture "$F" --precision f64 --json
json_ok 'd["result"] == "diverge" and d["first_divergence"] == "model.layers.0.self_attn.q_proj"'
expect 0 "check the F32 GGUF, f32 tp 2" -- "$LD" check -m "$G" -f "$F" -p f32 --tp 2 --json
json_ok 'd["result"] == "agree"'
# Quantized weights are not the golden model's: the mixed file diverges (but runs).
expect 1 "check the quantized GGUF" -- "$LD" check -m "$GM" -f "$F" --json
json_ok 'd["result"] == "diverge" and d["logits"]["top1_agreement"] > 0.5'
expect 0 "info on a GGUF" -- "$LD" info -m "$GM" --json
json_ok 'd["config"]["num_key_value_heads"] == 2 and d["config"]["vocab_size"] == 200 and not d["config"]["tie_word_embeddings"]'

# convert: the checkpoint it writes computes exactly what the GGUF does.
expect 0 "convert" -- "$LD" convert --gguf "$G" --out "$TMP/conv"
has "$TMP/out" "30 tensors" "convert summary"
# (Exactly: the GGUF's rms_norm_eps is the float32 nearest 1e-5, so its run differs from
# the original checkpoint's in the last bits, within the f64 budget as checked above.)
expect 0 "dump the GGUF" -- "$LD" dump -m "$G" -f "$F" -o "$TMP/gguf.safetensors"
expect 0 "converted checkpoint checked against the GGUF's dump" -- "$LD" check -m "$TMP/conv" -f "$TMP/gguf.safetensors" --json
json_ok 'max(s["rel_l2"] for s in d["stages"]) == 0.0 and len(d["stages"]) == 48'
expect 0 "convert the mixed file --json" -- "$LD" convert --gguf "$GM" --out "$TMP/mixed" --json
json_ok 'd["command"] == "convert" and d["tensors"] == 30 and d["parameters"] == 130496 and d["files"] == ["config.json", "model.safetensors"]'
expect 0 "mixed GGUF and its conversion agree exactly" -- "$LD" dump -m "$GM" -f "$F" -o "$TMP/mixed-gguf.safetensors"
expect 0 "check converted mixed" -- "$LD" check -m "$TMP/mixed" -f "$TMP/mixed-gguf.safetensors" --json
json_ok 'max(s["rel_l2"] for s in d["stages"]) == 0.0'
ls "$TMP/conv" "$TMP/mixed" | grep -q '\.tmp\.' && { fail=$((fail + 1)); echo "FAIL: temp file left"; } || pass=$((pass + 1))

# The K-quant model. No golden of unquantized weights exists for it (its blocks are
# random), so its own runs judge it: a dump of the GGUF (float64), its conversion checked
# against that dump (exactly equal: the same dequantized weights), the GGUF at f32 and tp 2
# against it, and the q/k unpermute shown needed for K-quant rows too.
expect 0 "info on the K-quant GGUF" -- "$LD" info -m "$KQ" --json
json_ok 'd["config"]["hidden_size"] == 256 and d["config"]["head_dim"] == 32 and d["config"]["num_key_value_heads"] == 2 and d["config"]["vocab_size"] == 64'
expect 0 "dump the K-quant GGUF" -- "$LD" dump -m "$KQ" -t "1 5 9 63 0 17 33 2" -o "$TMP/kq.safetensors"
expect 0 "convert the K-quant GGUF" -- "$LD" convert --gguf "$KQ" --out "$TMP/kq" --json
json_ok 'd["tensors"] == 12 and d["parameters"] == 328448 and d["config"]["intermediate_size"] == 256'
# Every converted tensor is the gguf package's dequantization (expected.json's hashes).
ok "converted K-quant tensors hash as the gguf package's values" -- python3 - "$TMP/kq/model.safetensors" "$FX/gguf/expected.json" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
want = json.load(open(sys.argv[2]))["files"]["kquant-mixed.gguf"]
assert sorted(h) == sorted(want), (sorted(h), sorted(want))
bad = 0
for name, e in want.items():
    lo, hi = h[name]["data_offsets"]
    x = 0xCBF29CE484222325
    for c in b[8 + n + lo:8 + n + hi]:
        x = ((x ^ c) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    if "%016x" % x != e["fnv1a64"] or h[name]["shape"] != e["shape"] or h[name]["dtype"] != "F32":
        print("FAIL: %s (%s): hash %016x, expected %s" % (name, e["type"], x, e["fnv1a64"]))
        bad += 1
sys.exit(1 if bad else 0)
PY
expect 0 "converted K-quant model checked against the GGUF's dump" -- "$LD" check -m "$TMP/kq" -f "$TMP/kq.safetensors" --json
json_ok 'd["result"] == "agree" and max(s["rel_l2"] for s in d["stages"]) == 0.0 and len(d["stages"]) == 18'
expect 0 "the K-quant GGUF at f32, tp 2" -- "$LD" check -m "$KQ" -f "$TMP/kq.safetensors" -p f32 --tp 2 --json
json_ok 'd["result"] == "agree" and d["logits"]["top1_agreement"] == 1.0'
expect 1 "the K-quant GGUF with the unpermute off" -- env LLAMAREF_GGUF_NO_UNPERMUTE=1 "$LD" check -m "$KQ" -f "$TMP/kq.safetensors" --json
json_ok 'd["result"] == "diverge" and d["first_divergence"] == "model.layers.0.self_attn.q_proj"'

# Bad K-quant input. patch FILE OUT TENSOR FIELD VALUE: a copy with one field of a tensor
# info rewritten (ne0 and ne1 as u64, type as u32; a 2-D tensor).
patch() {
    python3 - "$@" <<'PY'
import struct, sys
src, out, name, field, value = sys.argv[1:6]
b = bytearray(open(src, "rb").read())
at = b.index(struct.pack("<Q", len(name)) + name.encode()) + 8 + len(name)
assert struct.unpack_from("<I", b, at)[0] == 2
pos, fmt = {"ne0": (at + 4, "<Q"), "ne1": (at + 12, "<Q"), "type": (at + 20, "<I")}[field]
struct.pack_into(fmt, b, pos, int(value))
open(out, "wb").write(b)
PY
}
KQSIZE=$(wc -c <"$KQ")
head -c $((KQSIZE - 1000)) "$KQ" >"$TMP/kq-short.gguf"
expect 2 "a truncated K-quant tensor" -- "$LD" check -m "$TMP/kq-short.gguf" -f "$TMP/kq.safetensors"
expect_err "kq-short.gguf" "tensor \"output.weight\"" "run past its end"
expect 2 "convert a truncated K-quant tensor" -- "$LD" convert --gguf "$TMP/kq-short.gguf" --out "$TMP/x"
expect_err "kq-short.gguf" "tensor \"output.weight\"" "LR_E_OFFSET"
patch "$KQ" "$TMP/kq-rows.gguf" blk.0.attn_q.weight ne0 128
patch "$TMP/kq-rows.gguf" "$TMP/kq-rows.gguf" blk.0.attn_q.weight ne1 256
expect 2 "K-quant rows of 128" -- "$LD" info -m "$TMP/kq-rows.gguf"
expect_err "kq-rows.gguf" "tensor \"blk.0.attn_q.weight\"" "ne[0] 128 is not a multiple of the Q4_K block size 256"
patch "$KQ" "$TMP/kq-type.gguf" blk.0.attn_q.weight type 13
expect 2 "Q4_K bytes declared Q5_K" -- "$LD" convert --gguf "$TMP/kq-type.gguf" --out "$TMP/x"
expect_err "kq-type.gguf" "tensor \"blk.0.attn_k.weight\" overlaps tensor \"blk.0.attn_q.weight\""

# Nothing overwritten without --force, and never the input.
cp "$TMP/conv/model.safetensors" "$TMP/keep"
expect 2 "convert refuses to overwrite" -- "$LD" convert --gguf "$GM" --out "$TMP/conv"
expect_err "conv/model.safetensors" "already exists"
cmp -s "$TMP/keep" "$TMP/conv/model.safetensors" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: file changed"; }
expect 0 "convert --force replaces" -- "$LD" convert --gguf "$GM" --out "$TMP/conv" --force
cmp -s "$TMP/keep" "$TMP/conv/model.safetensors" && { fail=$((fail + 1)); echo "FAIL: not replaced"; } || pass=$((pass + 1))
mkdir -p "$TMP/inplace" && cp "$G" "$TMP/in.gguf" && ln -s "$TMP/in.gguf" "$TMP/inplace/model.safetensors"
expect 2 "convert never overwrites its input" -- "$LD" convert --gguf "$TMP/in.gguf" --out "$TMP/inplace" --force
expect_err "is the input"
cmp -s "$G" "$TMP/in.gguf" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: input changed"; }

# Bad input: exit 2, one line naming the file.
printf 'GGUF\003\000\000\000' >"$TMP/short.gguf"
expect 2 "truncated GGUF" -- "$LD" check -m "$TMP/short.gguf" -f "$F"
expect_err "short.gguf" "tensor_count"
expect 2 "convert a truncated GGUF" -- "$LD" convert --gguf "$TMP/short.gguf" --out "$TMP/x"
expect_err "short.gguf" "LR_E_TRUNCATED"
echo "hello" >"$TMP/text.gguf"
expect 2 "a file that is not GGUF" -- "$LD" info -m "$TMP/text.gguf"
expect_err "text.gguf" "not a GGUF file"
expect 2 "convert without --out" -- "$LD" convert --gguf "$G"
expect_err "--out DIR"
expect 2 "convert a directory" -- "$LD" convert --gguf "$M" --out "$TMP/x"
expect_err "gqa-f32" "not a directory"
expect 2 "convert a missing file" -- "$LD" convert --gguf "$TMP/nope.gguf" --out "$TMP/x"
expect_err "nope.gguf"
expect 2 "convert with --model" -- "$LD" convert -m "$M" --out "$TMP/x"
expect_err "--model"
expect 2 "--gguf outside convert" -- "$LD" check --gguf "$G" -f "$F"
expect_err "--gguf"
[ -e "$TMP/x" ] && { fail=$((fail + 1)); echo "FAIL: output made on error"; } || pass=$((pass + 1))

# The default job: SmolLM2 only when both the cached GGUF and its fixture exist.
ROOT=$TMP/fixtures-root
mkdir -p "$ROOT/golden" "$ROOT/models" "$TMP/cache/smollm2" "$TMP/empty-cache"
ln -s "$M" "$ROOT/models/gqa-f32"
ln -s "$F" "$ROOT/golden/gqa-f32-batch.safetensors"
expect 0 "default job, empty cache" -- env LR_FIXTURES="$ROOT" LLAMAREF_CACHE="$TMP/empty-cache" "$LD"
has "$TMP/out" "48 stages: 48 agree, 0 diverge" "fallback summary"
has "$TMP/out" "models/gqa-f32 on" "fallback model"
[ -s "$TMP/err" ] && { fail=$((fail + 1)); echo "FAIL: fallback says something on stderr"; cat "$TMP/err"; } || pass=$((pass + 1))
cp "$G" "$TMP/cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
expect 0 "default job, cached GGUF but no fixture" -- env LR_FIXTURES="$ROOT" LLAMAREF_CACHE="$TMP/cache" "$LD"
has "$TMP/out" "models/gqa-f32 on" "fallback without the fixture"
ln -s "$F" "$ROOT/golden/smollm2-135m.safetensors"
expect 0 "default job, cached GGUF and fixture" -- env LR_FIXTURES="$ROOT" LLAMAREF_CACHE="$TMP/cache" "$LD"
has "$TMP/err" "default job: SmolLM2-135M-Instruct" "says which model"
has "$TMP/out" "SmolLM2-135M-Instruct.Q4_1.gguf on" "uses the GGUF"
has "$TMP/out" "smollm2-135m.safetensors" "uses its fixture"
expect 0 "default job via XDG_CACHE_HOME" -- env -u LLAMAREF_CACHE LR_FIXTURES="$ROOT" XDG_CACHE_HOME="$TMP/xdg" sh -c 'mkdir -p "$XDG_CACHE_HOME/llamaref" && ln -sf "$0" "$XDG_CACHE_HOME/llamaref/smollm2" && exec "$1" --json' "$TMP/cache/smollm2" "$LD"
has "$TMP/err" "xdg/llamaref/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "XDG cache"
json_ok 'd["result"] == "agree" and d["model"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")'
expect 0 "an explicit --model still wins" -- env LR_FIXTURES="$ROOT" LLAMAREF_CACHE="$TMP/cache" "$LD" -m "$M" -f "$F"
has "$TMP/out" "models/gqa-f32 on" "explicit model"

finish
