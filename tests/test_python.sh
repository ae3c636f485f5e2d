#!/bin/sh
# test_python.sh: the llamaref Python package (tools/python/llamaref), its torch-free parts:
# the llama-golden/1 writer (a llama-diff dump of the CPU reference, re-written through
# it, compares bit-exact at f64 and f32; BF16 and F16 as llama-diff reads them), the reader's and
# writer's refusals, the name maps resolved on vLLM's and Hugging Face's module paths,
# llamaref.compare (returns the verdict; raises with a stage table on a perturbed dump and
# on one missing stages), the `rounding` metadata and compare's rounding=, pip install, and tools/hf-dump.py's argument handling without
# torch. The interpreter is $LR_PYTHON (Makefile.am: the venv tools/install-deps.sh
# makes); skips (77) when it lacks numpy or safetensors. tests/test_hf_dump.sh runs the hooks.
set -u
LD=${LLAMA_DIFF:-./llama-diff}
FX=${LR_FIXTURES:?}
TMP=${LR_TMPDIR:?}/python-sh
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=$(command -v "${LR_PYTHON:-python3}") || PY=${LR_PYTHON:-python3}   # absolute: some checks change PATH
if ! "$PY" -c "import numpy, safetensors" >/dev/null 2>&1; then
    echo "test_python: $PY cannot import numpy and safetensors; skipped" \
        "(tools/install-deps.sh installs them; LR_PYTHON picks the interpreter)"
    exit 77
fi
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"
# The package from the source tree, compiled nowhere (the tree is read-only in distcheck).
PYTHONPATH="$SRC/tools/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH PYTHONDONTWRITEBYTECODE LLAMA_DIFF="$LD"

M=$FX/models/gqa-f32
F=$FX/golden/gqa-f32-batch.safetensors

ok "the package's stage table is tools/llamaref_stages.py" -- "$PY" -c "
import sys, filecmp, llamaref
sys.exit(0 if filecmp.cmp(llamaref.stages.__file__, '$SRC/tools/llamaref_stages.py', shallow=False)
         and len(llamaref.stages.stage_names(3)) == 48 else 1)"

# ---- the writer: round trips through llama-diff compare --------------------------------
for p in f64 f32; do
    expect 0 "llama-diff dump ($p)" -- "$LD" dump -m "$M" --fixture "$F" -p $p -o "$TMP/ref-$p.safetensors"
    expect 0 "re-written through llamaref.write_dump ($p)" -- "$PY" - "$TMP/ref-$p.safetensors" "$TMP/re-$p.safetensors" <<'PY'
import sys, llamaref
d = llamaref.read_dump(sys.argv[1])
st = d.stages
assert list(st) == llamaref.order_stages(st), "stages not in forward order"
md = {k: v for k, v in d.metadata.items() if k not in ("format", "model", "compute_dtype", "generator")}
llamaref.write_dump(sys.argv[2], st, d.input_ids, d.positions, d.seq_lens, model=d.metadata["model"],
                    compute_dtype=d.metadata["compute_dtype"], generator="test_python.sh", metadata=md)
PY
    expect 0 "re-written $p dump compares with the original" -- "$LD" compare "$TMP/re-$p.safetensors" "$TMP/ref-$p.safetensors" --json
    json_ok "d['result'] == 'agree' and d['coverage']['compared'] == d['coverage']['golden'] == 48 and not d['coverage']['missing'] and all(s['rel_l2'] == 0 and s['max_abs'] == 0 for s in d['stages']) and len(d['stages']) == 48"
    ok "re-written $p dump: every tensor, dtype, shape and the metadata equal, as the safetensors library reads both" -- "$PY" - "$TMP/ref-$p.safetensors" "$TMP/re-$p.safetensors" <<'PY'
import sys, numpy as np
from safetensors import safe_open
a, b = (safe_open(p, "numpy") for p in sys.argv[1:3])
assert set(a.keys()) == set(b.keys()), set(a.keys()) ^ set(b.keys())
for k in a.keys():
    x, y = a.get_tensor(k), b.get_tensor(k)
    assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), k
ma, mb = a.metadata(), b.metadata()
assert mb["generator"] == "test_python.sh" and {k: v for k, v in ma.items() if k != "generator"} == \
    {k: v for k, v in mb.items() if k != "generator"}, (ma, mb)
PY
done
expect 0 "re-written f32 dump against the golden: same verdict as llama-diff's own" -- "$LD" compare "$TMP/re-f32.safetensors" "$F" --json
cp "$TMP/out" "$TMP/re-f32.json"
expect 0 "llama-diff's own f32 dump against the golden" -- "$LD" compare "$TMP/ref-f32.safetensors" "$F" --json
ok "same rel_l2 at every stage" -- "$PY" -c "
import json, sys
a, b = json.load(open('$TMP/re-f32.json')), json.load(open('$TMP/out'))
sys.exit(0 if [(s['name'], s['rel_l2']) for s in a['stages']] == [(s['name'], s['rel_l2']) for s in b['stages']] else 1)"

# BF16: rounding ties to even, NaN kept; a BF16 file reads in llama-diff as the package widens it.
ok "BF16.from_float rounds to nearest even" -- "$PY" -c "
import numpy as np, sys
from llamaref import BF16
v = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, -2.0, 0.0, -0.0, np.inf, 3.4e38, np.nan], dtype=np.float32)
b = BF16.from_float(v).bits.tolist()
want = [0x3F80, 0x3F80, 0x3F82, 0xC000, 0x0000, 0x8000, 0x7F80, 0x7F80, None]
sys.exit(0 if b[:8] == want[:8] and (b[8] & 0x7FC0) == 0x7FC0 and np.isnan(BF16(np.array(b, dtype=np.uint16)).to_float32()[8]) else 1)"
expect 0 "BF16, F16 and their float32 widenings written" -- "$PY" - "$TMP/ref-f64.safetensors" "$TMP" <<'PY'
import sys, llamaref
d = llamaref.read_dump(sys.argv[1])
bf = {n: llamaref.BF16.from_float(t) for n, t in d.stages.items()}
kw = dict(model="gqa-f32", generator="test_python.sh")
llamaref.write_dump(sys.argv[2] + "/bf16.safetensors", bf, d.input_ids, d.positions, d.seq_lens,
                    compute_dtype="bfloat16", **kw)
llamaref.write_dump(sys.argv[2] + "/bf16w.safetensors", {n: b.to_float32() for n, b in bf.items()},
                    d.input_ids, d.positions, d.seq_lens, **kw)
r = llamaref.read_dump(sys.argv[2] + "/bf16.safetensors")
assert all(r.dtype(n) == "BF16" and (r.tensors[n].bits == bf[n].bits).all() for n in bf)
f16 = {n: t.astype("float16") for n, t in d.stages.items()}
llamaref.write_dump(sys.argv[2] + "/f16.safetensors", f16, d.input_ids, d.positions, d.seq_lens,
                    compute_dtype="float16", **kw)
llamaref.write_dump(sys.argv[2] + "/f16w.safetensors", {n: t.astype("float32") for n, t in f16.items()},
                    d.input_ids, d.positions, d.seq_lens, **kw)
PY
expect 0 "F16 dump equals its float32 widening in llama-diff" -- "$LD" compare "$TMP/f16.safetensors" "$TMP/f16w.safetensors" --precision f64 --json
json_ok "d['result'] == 'agree' and len(d['stages']) == 48 and all(s['rel_l2'] == 0 for s in d['stages'])"
expect 0 "BF16 dump equals its float32 widening in llama-diff" -- "$LD" compare "$TMP/bf16.safetensors" "$TMP/bf16w.safetensors" --precision f64 --json
json_ok "d['result'] == 'agree' and len(d['stages']) == 48 and all(s['rel_l2'] == 0 for s in d['stages'])"
expect 0 "the f64 reference rounded to BF16 agrees with the golden at its own (bf16) budgets" -- "$LD" compare "$TMP/bf16.safetensors" "$F" --json
json_ok "d['precision'] == 'bf16' and d['coverage']['compared'] == 48 and 0 < d['stages'][0]['rel_l2'] < 2**-8"

# The writer's and reader's refusals, each naming the stage or the file.
ok "write_dump and read_dump refuse bad input" -- "$PY" - "$TMP/ref-f32.safetensors" "$TMP" <<'PY'
import os, sys, numpy as np, llamaref
d = llamaref.read_dump(sys.argv[1]); tmp = sys.argv[2]
st, ids, pos = d.stages, d.input_ids, d.positions
kw = dict(model="m", generator="g", compute_dtype="float32")
def refused(what, want, **over):
    args = dict(stages=st, input_ids=ids, positions=pos); args.update(over)
    try:
        llamaref.write_dump(tmp + "/bad.safetensors", args.pop("stages"), args.pop("input_ids"),
                            args.pop("positions"), **args, **kw)
    except llamaref.DumpError as e:
        assert want in str(e), (what, str(e))
        assert not os.path.exists(tmp + "/bad.safetensors"), what
        return
    raise AssertionError(what + ": accepted")
typo = dict(st); typo["model.layers.1.self_atn.o_proj"] = typo.pop("model.layers.1.self_attn.o_proj")
refused("misspelt stage", "model.layers.1.self_atn.o_proj is not a stage", stages=typo)
short = dict(st); short["model.norm"] = st["model.norm"][:5]
refused("too few rows", "stage model.norm: shape [5, 64], [24, F]", stages=short)
wide = dict(st); wide["model.layers.0.mlp"] = np.zeros((24, 65), np.float32)
refused("width mismatch", "stage model.layers.0.mlp: 65 features", stages=wide)
ints = dict(st); ints["lm_head"] = np.zeros((24, 200), np.int64)
refused("integer stage", "stage lm_head: dtype I64", stages=ints)
refused("positions short", "input_ids has 24 tokens but positions 3", positions=pos[:3])
refused("seq_lens", "do not split 24 tokens", seq_lens=[7, 7])
# A big-endian array is written little-endian, values unchanged.
be = dict(st); be["model.norm"] = st["model.norm"].astype(">f4")
llamaref.write_dump(tmp + "/be.safetensors", be, ids, pos, **kw)
back = llamaref.read_dump(tmp + "/be.safetensors").tensors["model.norm"]
assert back.dtype == np.dtype("<f4") and (back == st["model.norm"]).all()
# [1, T, F] is accepted and written [T, F].
three = dict(st); three["model.norm"] = st["model.norm"][None]
llamaref.write_dump(tmp + "/three.safetensors", three, ids, pos, **kw)
assert llamaref.read_dump(tmp + "/three.safetensors").tensors["model.norm"].shape == (24, 64)
try:
    llamaref.write_dump(tmp + "/three.safetensors", st, ids, pos, **kw)
    raise AssertionError("existing file replaced")
except llamaref.DumpError as e:
    assert "three.safetensors: exists" in str(e)
assert not [f for f in os.listdir(tmp) if f.startswith(".llamaref-")], "temporary file left"
open(tmp + "/trunc.safetensors", "wb").write(open(sys.argv[1], "rb").read()[:1000])
for path, want in ((tmp + "/trunc.safetensors", "runs past the end"), (tmp + "/none", "no such file"),
                   (tmp + "/three.safetensors", None)):
    try:
        llamaref.read_dump(path)
        assert want is None, path
    except llamaref.DumpError as e:
        assert want and want in str(e) and path in str(e), (path, str(e))
llamaref.write_safetensors(tmp + "/plain.safetensors", {"x": np.zeros(2)}, {"format": "other"})
try:
    llamaref.read_dump(tmp + "/plain.safetensors"); raise AssertionError("not llama-golden/1 accepted")
except llamaref.DumpError as e:
    assert "__metadata__.format is 'other'" in str(e), str(e)
PY

# ---- name maps (no torch: module paths as vLLM and Hugging Face name them) ---------------
ok "name maps resolve vLLM's and Hugging Face's module trees" -- "$PY" - <<'PY'
import llamaref
from llamaref import namemaps
def vllm_modules(n):
    m = ["", "model", "model.embed_tokens", "model.layers"]
    for i in range(n):
        p = f"model.layers.{i}"
        m += [p, p + ".self_attn", p + ".self_attn.qkv_proj", p + ".self_attn.o_proj",
              p + ".self_attn.rotary_emb", p + ".self_attn.attn", p + ".mlp", p + ".mlp.gate_up_proj",
              p + ".mlp.down_proj", p + ".mlp.act_fn", p + ".input_layernorm", p + ".post_attention_layernorm"]
    return m + ["model.norm", "lm_head", "logits_processor"]
def hf_modules(n):
    m = ["", "model", "model.embed_tokens", "model.layers"]
    for i in range(n):
        p = f"model.layers.{i}"
        m += [p, p + ".self_attn"] + [p + ".self_attn." + s for s in ("q_proj", "k_proj", "v_proj", "o_proj")] + \
             [p + ".mlp"] + [p + ".mlp." + s for s in ("gate_proj", "up_proj", "down_proj", "act_fn")] + \
             [p + ".input_layernorm", p + ".post_attention_layernorm"]
    return m + ["model.norm", "model.rotary_emb", "lm_head"]
raw = namemaps.resolve(llamaref.VLLM_NAME_MAP, vllm_modules(12), 12)
names = [t for h in raw for t in h.targets]
assert len(names) == 2 + 12 * 11 + 1, len(names)
assert "model.layers.11.self_attn.qkv_proj" in names and "model.layers.3.mlp.gate_up_proj" in names
assert "model.layers.10.self_attn.attn" in names and "logits_processor" in names and "lm_head" not in names
assert [h.rule["pair"] for h in raw if h.module == "model.layers.10"] == ["sum"]
assert not any(h.is_input for h in raw) and llamaref.VLLM_NAME_MAP.names == "vllm"
split = namemaps.resolve(llamaref.VLLM_SPLIT_NAME_MAP, vllm_modules(2), 2)
st = sorted(t for h in split for t in h.targets)
assert st == sorted(s for s in llamaref.stages.stage_names(2) if not s.endswith("mlp.act_fn")), st
assert {h.module for h in split if h.is_input} == {"model.layers.0.self_attn.o_proj", "model.layers.1.self_attn.o_proj",
                                                   "model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"}
hf = namemaps.resolve(None, hf_modules(2), 2)
assert sorted(t for h in hf for t in h.targets) == sorted(llamaref.stages.stage_names(2))
# Refusals: HF names on a vLLM tree, a layer the tree lacks, a name matched twice, a bad rule.
for nm, mods, n, want in ((None, [m for m in vllm_modules(2) if m != "lm_head"], 2, "required stage(s) lm_head"),
                          (None, hf_modules(2), 3, "required stage(s) model.layers.2"),
                          ({"model.embed_tokens": "lm_head", "lm_head": "lm_head"}, hf_modules(1), 1, "lm_head matched twice"),
                          ({"lm_head": {"split": "qkv", "into": ["a"]}}, hf_modules(1), 1, "split rule"),
                          ({"lm_head": {"stage": "lm_head", "pair": "second"}}, hf_modules(1), 1, "pair must be")):
    try:
        namemaps.resolve(nm, mods, n); raise AssertionError(want + ": accepted")
    except llamaref.DumpError as e:
        assert want in str(e), (want, str(e))
PY

# ---- llamaref.compare ----------------------------------------------------------------
expect 0 "compare: agree, a perturbed dump and a partial one raise with the stage table" -- "$PY" - "$TMP/ref-f64.safetensors" "$F" "$M" "$TMP" <<'PY'
import os, sys, numpy as np, llamaref
ref, golden, model, tmp = sys.argv[1:5]
r = llamaref.compare(ref, golden)
assert r["result"] == "agree" and r["coverage"]["compared"] == 48 and len(r["stages"]) == 48
r = llamaref.compare(ref, golden, model=model, precision="f64", stages="model.layers.1.*")
assert r["coverage"]["stages"] == "model.layers.1.*" and r["coverage"]["compared"] == 14, r["coverage"]
d = llamaref.read_dump(ref)
kw = dict(model="gqa-f32", compute_dtype="float64", generator="test_python.sh")
st = dict(d.stages)
bad = st["model.layers.1.self_attn.o_proj"].copy()
bad[:, ::7] *= 1.01                       # 1% on every 7th feature of one stage
st["model.layers.1.self_attn.o_proj"] = bad
llamaref.write_dump(tmp + "/perturbed.safetensors", st, d.input_ids, d.positions, d.seq_lens, **kw)
try:
    llamaref.compare(tmp + "/perturbed.safetensors", golden)
    raise SystemExit("perturbed dump passed")
except llamaref.Divergence as e:
    assert isinstance(e, AssertionError) and not isinstance(e, llamaref.CoverageError)
    msg = str(e)
    assert "first divergence: model.layers.1.self_attn.o_proj" in msg, msg
    assert "model.layers.1.self_attn.o_proj " in msg.splitlines()[3] and "FAIL" in msg, msg
    assert e.result["failed"] > 0 and e.result["first_divergence"] == "model.layers.1.self_attn.o_proj"
    assert len(e.table.splitlines()) == 49 and "model.embed_tokens" in e.table
partial = {k: v for k, v in d.stages.items() if "layers.1.self_attn" not in k}
llamaref.write_dump(tmp + "/partial.safetensors", partial, d.input_ids, d.positions, d.seq_lens, **kw)
try:
    llamaref.compare(tmp + "/partial.safetensors", golden)
    raise SystemExit("partial dump passed")
except llamaref.CoverageError as e:
    assert isinstance(e, AssertionError) and e.result["coverage"]["compared"] == 42
    assert "42 of 48 golden stages compared" in str(e), str(e)
    assert "missing from the dump (6): model.layers.1.self_attn.q_proj" in str(e), str(e)
# llama-diff's own refusals (exit 2) and a missing executable are LlamaDiffError, not a verdict.
for call, want in ((lambda: llamaref.compare(tmp + "/nope.safetensors", golden), "exited 2"),
                   (lambda: llamaref.compare(ref, golden, llama_diff=tmp + "/no-llama-diff"), "not an executable")):
    try:
        call(); raise SystemExit(want + ": no error")
    except llamaref.LlamaDiffError as e:
        assert want in str(e), str(e)
PY
# Where llama-diff comes from: the argument, $LLAMA_DIFF, PATH; what it is asked.
mkdir -p "$TMP/bin"
cat >"$TMP/bin/llama-diff" <<EOF
#!/bin/sh
# Records how it was called, then hands the call to the real llama-diff.
printf '%s\n' "\$@" >"$TMP/argv"
exec "$LD" "\$@"
EOF
chmod +x "$TMP/bin/llama-diff"
expect 0 "compare finds llama-diff on PATH, passes --model/--precision/--stages and the dump's names" -- env -u LLAMA_DIFF PATH="$TMP/bin:$PATH" "$PY" - "$TMP" "$F" "$M" <<'PY'
import sys, llamaref
tmp, golden, model = sys.argv[1:4]
assert llamaref.find_llama_diff() == tmp + "/bin/llama-diff"
llamaref.compare(tmp + "/ref-f64.safetensors", golden, model=model, precision="f64", stages="lm_head")
argv = open(tmp + "/argv").read().split("\n")[:-1]
assert argv == ["compare", tmp + "/ref-f64.safetensors", golden, "--json", "--model", model,
                "--precision", "f64", "--stages", "lm_head"], argv
d = llamaref.read_dump(tmp + "/ref-f64.safetensors")
llamaref.write_dump(tmp + "/named.safetensors", d.stages, d.input_ids, d.positions, d.seq_lens,
                    model="m", generator="g", names="vllm")
assert llamaref.read_metadata(tmp + "/named.safetensors")["names"] == "vllm"
try:
    llamaref.compare(tmp + "/named.safetensors", golden)
except llamaref.LlamaDiffError:
    pass                      # a llama-diff without --names refuses it; the argv still tells
argv = open(tmp + "/argv").read().split("\n")[:-1]
assert argv[-2:] == ["--names", "vllm"], argv
llamaref.compare(tmp + "/named.safetensors", golden, names="hf")   # the spec's names: no --names
argv = open(tmp + "/argv").read().split("\n")[:-1]
assert "--names" not in argv, argv
PY
expect 0 "compare takes \$LLAMA_DIFF before PATH" -- env LLAMA_DIFF="$TMP/bin/llama-diff" PATH=/usr/bin:/bin "$PY" -c "
import llamaref, sys; sys.exit(0 if llamaref.find_llama_diff() == '$TMP/bin/llama-diff' else 1)"
expect 0 "without llama-diff anywhere, a clear error" -- env -u LLAMA_DIFF PATH=/usr/bin:/bin "$PY" -c "
import llamaref, sys
try:
    llamaref.find_llama_diff(); sys.exit(1)
except llamaref.LlamaDiffError as e:
    sys.exit(0 if 'llama-diff not found' in str(e) else 1)"

# ---- rounding profiles: write_dump's `rounding`, compare's rounding= ----------------------
# llama-diff's own bf16 dump (the emulated reference: the rounding map, "cuda") re-written
# declaring its rounding; compare(model=) then holds it to the tight budget under that
# profile, and under transformers' (declared, or passed as rounding=) it diverges.
expect 0 "llama-diff dump (bf16)" -- "$LD" dump -m "$M" --fixture "$F" -p bf16 -o "$TMP/ref-bf16.safetensors"
expect 0 "write_dump's rounding metadata, read by llama-diff compare" -- "$PY" - "$TMP" "$F" "$M" "$LD" <<'PY'
import subprocess, sys, llamaref
tmp, golden, model, ld = sys.argv[1:5]
err = subprocess.run([ld, "compare", golden, golden, "--model", model, "--rounding", "?"], capture_output=True,
                     text=True).stderr
assert f"({', '.join(llamaref.ROUNDING_PROFILES)})" in err, ("the package's profiles are llama-diff's", err)
d = llamaref.read_dump(tmp + "/ref-bf16.safetensors")
kw = dict(model="gqa-f32", compute_dtype="bfloat16", generator="test_python.sh")
for r in ("cuda", "transformers"):
    llamaref.write_dump(f"{tmp}/{r}.safetensors", d.stages, d.input_ids, d.positions, d.seq_lens, rounding=r, **kw)
    assert llamaref.read_metadata(f"{tmp}/{r}.safetensors")["rounding"] == r
sp = llamaref.compare(tmp + "/cuda.safetensors", golden, model=model)["same_precision"]
assert sp["rounding"] == {"profile": "cuda", "declared_by": "metadata", "one_more_rounding": False, "attention_like": "fdt"}, sp["rounding"]
assert sp["failed"] == 0 and all(s["max_ulps"] == 0 for s in sp["stages"])
for path, over in ((tmp + "/transformers.safetensors", None), (tmp + "/cuda.safetensors", "transformers")):
    try:
        llamaref.compare(path, golden, model=model, rounding=over)
        raise SystemExit(f"{path} under transformers' rounding passed")
    except llamaref.Divergence as e:
        sp = e.result["same_precision"]
        assert sp["rounding"]["profile"] == "transformers" and sp["failed"] > 0, sp["rounding"]
        assert sp["rounding"]["declared_by"] == ("metadata" if over is None else "--rounding"), sp["rounding"]
try:
    llamaref.write_dump(tmp + "/bad.safetensors", d.stages, d.input_ids, d.positions, rounding="vllm", **kw)
    raise SystemExit("an unknown rounding was written")
except llamaref.DumpError as e:
    assert "rounding 'vllm' is not one of cuda, transformers, transformers-eager" in str(e), str(e)
PY

# ---- pip install (no C build; offline: the venv's setuptools, no index) -----------------
mkdir -p "$TMP/src/tools"
cp -R "$SRC/tools/python" "$SRC/tools/llamaref_stages.py" "$TMP/src/tools/"
chmod -R u+w "$TMP/src"
expect 0 "pip install tools/python" -- "$PY" -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps --no-index --target "$TMP/site" "$TMP/src/tools/python"
ok "installed package imports elsewhere, with the stage table as a file" -- sh -c "cd '$TMP' && PYTHONPATH='$TMP/site' '$PY' -c \"
import os, sys, llamaref
sys.exit(0 if llamaref.__file__.startswith('$TMP/site/') and not os.path.islink(llamaref.stages.__file__) and llamaref.stages.stage_names(1)[-1] == 'lm_head' else 1)\""
ok "installed command line runs" -- sh -c "PYTHONPATH='$TMP/site' '$PY' '$TMP/site/bin/llamaref-hf-dump' --help | grep -q -- '--fixture'"

# ---- tools/hf-dump.py: the arguments are checked before torch is needed ------------------
HD="$SRC/tools/hf-dump.py"
expect 2 "hf-dump: missing model dir" -- "$PY" "$HD" --model "$TMP/nope" --tokens "1" --out "$TMP/x.safetensors"
expect_err "hf-dump: $TMP/nope: not a checkpoint directory (no config.json)"
expect 2 "hf-dump: bad tokens" -- "$PY" "$HD" --model "$M" --tokens "1 two 3" --out "$TMP/x.safetensors"
expect_err 'hf-dump: --tokens: "1 two 3" is not a list of integers'
expect 2 "hf-dump: token out of vocabulary" -- "$PY" "$HD" --model "$M" --tokens "1 200" --out "$TMP/x.safetensors"
expect_err "token 200 is outside the vocabulary (0..199)"
expect 2 "hf-dump: missing fixture" -- "$PY" "$HD" --model "$M" --fixture "$TMP/nope.safetensors" --out "$TMP/x.safetensors"
expect_err "$TMP/nope.safetensors: no such file"
expect 2 "hf-dump: fixture without positions" -- "$PY" "$HD" --model "$M" --fixture "$TMP/plain.safetensors" --out "$TMP/x.safetensors"
expect_err "tensor \"input_ids\" missing"
expect 2 "hf-dump: existing output" -- "$PY" "$HD" --model "$M" --tokens "1 2" --out "$TMP/three.safetensors"
expect_err "three.safetensors: exists; pass --force to replace it"
expect 2 "hf-dump: no --tokens or --fixture (usage)" -- "$PY" "$HD" --model "$M" --out "$TMP/x.safetensors"
ok "nothing written on bad input" -- test ! -e "$TMP/x.safetensors"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    expect 2 "hf-dump without torch: good arguments, a clear error" -- "$PY" "$HD" --model "$M" --fixture "$F" --out "$TMP/x.safetensors"
    expect_err "hf-dump: missing dependency" "pip install torch transformers"
    echo "test_python: torch not importable by $PY: the hooks are tested by tests/test_hf_dump.sh where it is"
fi

finish
