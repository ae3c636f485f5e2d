#!/bin/sh
# test_gguf_cli.sh: GGUF files through llama-diff. The F32 GGUF of gqa-f32 passes
# `check --precision f64` against the gqa-f32 golden fixture, and fails when the q/k
# unpermute is switched off (LLAMAREF_GGUF_NO_UNPERMUTE=1, a test hook); `convert`
# writes a checkpoint that computes exactly what the original does, refuses to
# overwrite, never touches its input and leaves no temporary files; bad input is one
# line and exit 2; the default job picks the cached SmolLM2 GGUF only when its fixture
# is there too (a stand-in GGUF and fixture play SmolLM2 here).
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
