#!/bin/sh
# test_schema.sh: every llama-diff --json document (check, compare, backends, info, dump;
# agreeing and diverging) validates against docs/llama-diff.schema.json, and documents
# with a wrong type, a bad enum value or a missing key are rejected (the schema is not
# vacuous). Needs python3's jsonschema (Debian: python3-jsonschema); skips (77) without.
set -u
LD=${LLAMA_DIFF:-./llama-diff}
FX=${LR_FIXTURES:?}
TMP=${LR_TMPDIR:?}/schema-sh
SRC=$(cd "$(dirname "$0")/.." && pwd)
SCHEMA=$SRC/docs/llama-diff.schema.json
if ! python3 -c "import jsonschema; jsonschema.Draft7Validator" >/dev/null 2>&1; then
    echo "test_schema: python3 module jsonschema not available; skipped"
    echo "  (Debian/Ubuntu: apt-get install python3-jsonschema; pip: pip install jsonschema)"
    exit 77
fi
rm -rf "$TMP" && mkdir -p "$TMP"
pass=0 fail=0
n=0

validate() { # validate FILE DESCRIPTION: FILE holds one document valid under the schema
    if python3 - "$SCHEMA" "$1" >"$TMP/verr" 2>&1 <<'PY'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
# Draft 2020-12 where the module has it (jsonschema >= 4); the schema keeps to keywords
# that draft-07 validators (jsonschema 3.x, e.g. Ubuntu 22.04) evaluate the same way.
V = getattr(jsonschema, "Draft202012Validator", jsonschema.Draft7Validator)
V.check_schema(schema)
v = V(schema)
doc = json.load(open(sys.argv[2]))
errs = sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path))
for e in errs[:5]:
    print("  at /" + "/".join(map(str, e.absolute_path)) + ": " + e.message[:300])
sys.exit(1 if errs else 0)
PY
    then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $2 does not validate:"; cat "$TMP/verr"; fi
}

run_json() { # run_json STATUS DESCRIPTION -- llama-diff arguments...: exit STATUS, stdout valid
    want=$1 what=$2
    shift 3
    n=$((n + 1))
    "$LD" "$@" >"$TMP/doc$n.json" 2>"$TMP/err"
    got=$?
    if [ "$got" = "$want" ]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: $what: exit $got, expected $want"; sed 's/^/  | /' "$TMP/err" | head -5
    fi
    validate "$TMP/doc$n.json" "$what"
}

M=$FX/models/gqa-f32
F=$FX/golden/gqa-f32-batch.safetensors

run_json 0 "default (check)" -- --json
run_json 0 "check f32 tp 2" -- check -m "$M" -f "$F" -p f32 --tp 2 --json
run_json 0 "check --isolate" -- check -m "$M" -f "$F" --isolate --json
run_json 0 "check --decode 2" -- check -m "$M" -f "$F" -p f32 --decode 2 --json
run_json 0 "check mqa-hd-f16" -- check -m "$FX/models/mqa-hd-f16" -f "$FX/golden/mqa-hd-f16.safetensors" --json
run_json 0 "dump --fixture f32" -- dump -m "$M" -f "$F" -p f32 -o "$TMP/f32.safetensors" --json
run_json 0 "dump --tokens" -- dump -m "$M" -t "5 6 7" -o "$TMP/tok.safetensors" --json
run_json 1 "diverging check (f64 run against an f32 dump)" -- check -m "$M" -f "$TMP/f32.safetensors" --json
DIVERGE=$TMP/doc$n.json
run_json 0 "compare, agreeing" -- compare "$TMP/f32.safetensors" "$F" --json
run_json 1 "compare, diverging (f64 budgets on an f32 dump)" -- compare "$TMP/f32.safetensors" "$F" -p f64 --json
run_json 0 "compare --model (budgets scaled)" -- compare "$TMP/f32.safetensors" "$F" --model "$M" --json
# A few stages under llama.cpp's names, one it skips and one in no map: a diverging
# (incomplete) document with every coverage list filled.
python3 - "$TMP/f32.safetensors" "$TMP/llamacpp.safetensors" <<'PY'
import json, struct, sys
d = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n]); body = d[8 + n:]
ren = {"model.embed_tokens": "inp_embd", "model.norm": "result_norm", "lm_head": "result_output", "model.layers.0": "l_out-0",
       "model.layers.1": "ffn_inp-1", "model.layers.2": "l_0ut-2", "input_ids": "input_ids", "positions": "positions", "seq_lens": "seq_lens"}
nh, parts, off = {"__metadata__": h["__metadata__"]}, [], 0
for k, v in h.items():
    if k not in ren: continue
    a, b = v["data_offsets"]; blob = body[a:b]
    nh[ren[k]] = dict(v, data_offsets=[off, off + len(blob)]); off += len(blob); parts.append(blob)
hb = json.dumps(nh).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + b"".join(parts))
PY
run_json 1 "compare --names llama.cpp, incomplete" -- compare --names llama.cpp --model "$M" "$TMP/llamacpp.safetensors" "$TMP/f32.safetensors" --json
python3 -c "import json,sys; c=json.load(open('$TMP/doc$n.json'))['coverage']; sys.exit(0 if c['skipped'] and c['not_in_names'] and c['unmatched'] and c['missing'] else 1)" &&
    pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: the llama.cpp document does not fill every coverage list"; }
run_json 0 "backends cpu:f64 vs cpu:f32" -- backends -m "$M" -f "$F" --a cpu:f64 --b cpu:f32 --json
run_json 0 "backends --tokens" -- backends -m "$M" -t "1 2 3 4" --a cpu:f64 --b cpu:f32 --json
for model in gqa-f32 mha-bias-bf16 mqa-hd-f16 long-gqa-f32; do
    run_json 0 "info $model" -- info -m "$FX/models/$model" --json
    run_json 0 "info $model tp 2" -- info -m "$FX/models/$model" --tp 2 --json
done
INFO=$TMP/doc$n.json
run_json 0 "convert a GGUF" -- convert --gguf "$FX/gguf/gqa-mixed.gguf" --out "$TMP/converted" --json
CONVERT=$TMP/doc$n.json
# The kernel variants: ops --list (cuda false without CUDA).
run_json 0 "ops --list" -- ops --list --json
# bf16/fp16: the same-precision section (agreeing, and diverging under a fault).
run_json 0 "check bf16 (same precision)" -- check -m "$M" -f "$F" -p bf16 --json
run_json 1 "check bf16 with a fault" -- check -m "$M" -f "$F" -p fp16 --isolate op --json \
    --inject model.layers.1.mlp.down_proj=element:1e-2
run_json 1 "check bf16 --decode, a fault only the same-precision verdict sees" -- check -m "$M" -f "$F" -p bf16 \
    --decode 2 --json --inject model.layers.1.mlp.down_proj=scale:1e-3
run_json 1 "backends cpu:f64 vs cpu:bf16 with a fault" -- backends -m "$M" -f "$F" --a cpu:f64 --b cpu:bf16 --json \
    --inject model.layers.1.mlp.down_proj=scale:1e-3

# The diverging documents say so.
if python3 -c "import json,sys; d=json.load(open('$DIVERGE')); sys.exit(0 if d['result'] == 'diverge' and d['failed'] > 0 and isinstance(d['first_divergence'], str) else 1)"; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: diverging check document"; fi

# Broken documents must be rejected: a wrong type, a bad enum, a missing key, a report
# that contradicts itself, a mistyped info and dump.
python3 - "$SCHEMA" "$TMP/doc1.json" "$DIVERGE" "$INFO" "$TMP/doc6.json" "$CONVERT" >"$TMP/neg" 2>&1 <<'PY'
import copy, json, sys, jsonschema
v = getattr(jsonschema, "Draft202012Validator", jsonschema.Draft7Validator)(json.load(open(sys.argv[1])))
check, diverge, info, dump, convert = (json.load(open(p)) for p in sys.argv[2:7])
def mut(doc, f):
    d = copy.deepcopy(doc); f(d); return d
bad = {
    "rel_l2 as a string": mut(check, lambda d: d["stages"][0].__setitem__("rel_l2", "0.0")),
    "pass as a number": mut(check, lambda d: d["stages"][1].__setitem__("pass", 1)),
    "tp as a string": mut(check, lambda d: d.__setitem__("tp", "1")),
    "stages as an object": mut(check, lambda d: d.__setitem__("stages", {})),
    "result 'maybe'": mut(check, lambda d: d.__setitem__("result", "maybe")),
    "unknown stage kind": mut(check, lambda d: d["stages"][0].__setitem__("kind", "mystery")),
    "unknown command": mut(check, lambda d: d.__setitem__("command", "frobnicate")),
    "missing stages": mut(check, lambda d: d.pop("stages")),
    "check without backend": mut(check, lambda d: d.pop("backend")),
    "agree with failures": mut(check, lambda d: d.__setitem__("failed", 2)),
    "diverge without first_divergence": mut(diverge, lambda d: d.__setitem__("first_divergence", None)),
    "diverge with nothing failed": mut(diverge, lambda d: [d.__setitem__("failed", 0), d.pop("same_precision", None)]),
    "max_abs_at of 3": mut(check, lambda d: d["stages"][0].__setitem__("max_abs_at", [0, 0, 0])),
    "negative nan count": mut(check, lambda d: d["stages"][0].__setitem__("nan", -1)),
    "logits.top1_agreement 1.5": mut(check, lambda d: d["logits"].__setitem__("top1_agreement", 1.5)),
    "a stage without its elements": mut(check, lambda d: d["stages"][0].pop("elements")),
    "token.at as a string": mut(check, lambda d: d["stages"][1]["token"].__setitem__("at", "3")),
    "elements.over negative": mut(check, lambda d: d["stages"][1]["elements"].__setitem__("over", -1)),
    "elements.worst_at of 1": mut(check, lambda d: d["stages"][1]["elements"].__setitem__("worst_at", [3])),
    "a passing stage that fails a criterion": mut(check, lambda d: d["stages"][1].__setitem__("fails", ["token"])),
    "a failing stage that fails nothing": mut(diverge, lambda d: [s.__setitem__("fails", []) for s in d["stages"] if not s["pass"]]),
    "an unknown criterion": mut(diverge, lambda d: [s.__setitem__("fails", ["vibes"]) for s in d["stages"] if not s["pass"]]),
    "drill_down.by 'luck'": mut(diverge, lambda d: d["drill_down"].__setitem__("by", "luck")),
    "drill_down without by": mut(diverge, lambda d: d["drill_down"].pop("by")),
    "info rank 1.5": mut(info, lambda d: d["ranks"][0].__setitem__("rank", 1.5)),
    "info rope_type 'yarn'": mut(info, lambda d: d["config"].__setitem__("rope_type", "yarn")),
    "info without ranks": mut(info, lambda d: d.pop("ranks")),
    "dump stages as a list": mut(dump, lambda d: d.__setitem__("stages", [])),
    "dump tokens as a string": mut(dump, lambda d: d.__setitem__("tokens", "24")),
    "convert without config": mut(convert, lambda d: d.pop("config")),
    "convert config.head_dim as a string": mut(convert, lambda d: d["config"].__setitem__("head_dim", "8")),
    "convert tensors 0": mut(convert, lambda d: d.__setitem__("tensors", 0)),
    "not an object": [check],
}
ok = 0
for what, doc in bad.items():
    if v.is_valid(doc):
        print(f"FAIL: schema accepts a document with {what}")
    else:
        ok += 1
print(f"{ok} {len(bad) - ok}")
PY
tail -n 1 "$TMP/neg" | { read -r good badn; echo "$good $badn" >"$TMP/negcount"; }
read -r good badn <"$TMP/negcount" 2>/dev/null || { good=0; badn=1; }
grep '^FAIL' "$TMP/neg"
case "$good$badn" in *[!0-9]*|"") good=0 badn=1; cat "$TMP/neg";; esac
pass=$((pass + good)) fail=$((fail + badn))

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
