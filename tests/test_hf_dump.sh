#!/bin/sh
# test_hf_dump.sh: tools/hf-dump.py, the outside dumper, against the goldens through
# llama-diff compare: a float64 Hugging Face run (not float64 inside: ~1e-7, fails f64
# budgets, passes f32 ones), a bfloat16 run at its own budgets, a vLLM-style module tree
# (packed qkv/gate_up, (hidden, residual) pairs, padded logits) through the name maps
# (vLLM's own names, raw, and the spec's, split), the package's attach and compare on a
# Hugging Face model, bad input (exit 2), and refusal to overwrite. Runs $LR_PYTHON
# (Makefile.am); skips (77) when it lacks torch/transformers.
set -u
LD=${LLAMA_DIFF:-./llama-diff}
FX=${LR_FIXTURES:?}
TMP=${LR_TMPDIR:?}/hf-dump-sh
SRC=$(cd "$(dirname "$0")/.." && pwd)
HD="$SRC/tools/hf-dump.py"
PY=${LR_PYTHON:-python3}
if ! "$PY" -c "import torch, transformers, safetensors" >/dev/null 2>&1; then
    echo "test_hf_dump: torch/transformers/safetensors not importable by $PY; skipped" \
        "(tools/install-deps.sh leaves torch out: pip install torch transformers into its venv)"
    exit 77
fi
PYTHONDONTWRITEBYTECODE=1 LLAMA_DIFF=$LD
export PYTHONDONTWRITEBYTECODE LLAMA_DIFF
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error


M=$FX/models/gqa-f32
F=$FX/golden/gqa-f32-batch.safetensors

# float64 Hugging Face: RMSNorm, RoPE and softmax stay float32 inside -> ~1e-7.
expect 0 "hf-dump float64" -- "$PY" "$HD" --model "$M" --fixture "$F" --dtype float64 --out "$TMP/f64.safetensors"
expect 1 "hf float64 vs golden at f64 budgets diverges" -- "$LD" compare "$TMP/f64.safetensors" "$F" --precision f64
expect 0 "hf float64 vs golden at f32 budgets agrees" -- "$LD" compare "$TMP/f64.safetensors" "$F" --precision f32 --json
ok "48 stages, metadata, F64 dtype" -- "$PY" - "$TMP/f64.safetensors" "$TMP/out" <<'PY'
import json, sys
from safetensors import safe_open
d = json.load(open(sys.argv[2]))
with safe_open(sys.argv[1], "pt") as f:
    md = f.metadata()
    ok = (len(d["stages"]) == 48 and md["format"] == "llama-golden/1" and md["model"] == "gqa-f32"
          and md["compute_dtype"] == "float64" and "(tools/hf-dump.py)" in md["generator"]
          and str(f.get_tensor("lm_head").dtype) == "torch.float64"
          and list(f.get_tensor("lm_head").shape) == [24, 200]
          and f.get_tensor("seq_lens").tolist() == [7, 12, 5]
          and max(s["rel_l2"] for s in d["stages"]) < 1e-6)
sys.exit(0 if ok else 1)
PY

# bfloat16 run: compute_dtype bfloat16 selects the bf16 budgets; BF16 on disk, as computed;
# eager attention on the CPU declares its rounding (metadata rounding: transformers-eager).
expect 0 "hf-dump bfloat16" -- "$PY" "$HD" --model "$M" --fixture "$F" --dtype bfloat16 --attn-impl eager --out "$TMP/bf16.safetensors"
expect 0 "hf bfloat16 vs golden at its own (bf16) budgets agrees" -- "$LD" compare "$TMP/bf16.safetensors" "$F" --json
ok "bf16 budgets were used" -- "$PY" -c "import json,sys; d=json.load(open('$TMP/out')); sys.exit(0 if d['precision'] == 'bf16' else 1)"
ok "every stage stored BF16, the model's own dtype" -- "$PY" - "$TMP/bf16.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
md = h.pop("__metadata__")
st = {k: v for k, v in h.items() if k not in ("input_ids", "positions", "seq_lens")}
sys.exit(0 if len(st) == 48 and {v["dtype"] for v in st.values()} == {"BF16"} and md["compute_dtype"] == "bfloat16"
         and md["rounding"] == "transformers-eager" else 1)
PY
# With the model, the same-precision verdict: every op recomputed from the dump's own input
# by the emulated reference rounding as transformers' eager attention does, and held to the
# tight budget (no rounding more allowed).
expect 0 "hf bfloat16 (eager) with --model: the same-precision verdict agrees" -- "$LD" compare --model "$M" \
    "$TMP/bf16.safetensors" "$F" --json
json_ok "d['result'] == 'agree' and d['same_precision']['compared'] == 48 and d['same_precision']['failed'] == 0 and d['same_precision']['rounding'] == {'profile': 'transformers-eager', 'declared_by': 'metadata', 'one_more_rounding': False, 'attention_like': 'fdt'} and d['same_precision']['factor']['failed'] == 0"

# --tokens, another model (tied, biases, linear RoPE): a dump compares against llama-diff's own dump.
expect 0 "hf-dump --tokens float32" -- "$PY" "$HD" --model "$FX/models/mha-bias-bf16" --tokens "3 1 4 1 5 9 2 6" --out "$TMP/t.safetensors"
expect 0 "llama-diff dump --tokens" -- "$LD" dump -m "$FX/models/mha-bias-bf16" -t "3 1 4 1 5 9 2 6" -o "$TMP/ld.safetensors"
expect 0 "hf float32 --tokens vs llama-diff f64 dump at f32 budgets" -- "$LD" compare "$TMP/t.safetensors" "$TMP/ld.safetensors"

# Overwrite refusal, --force, bad input.
cp "$TMP/t.safetensors" "$TMP/t.orig"
expect 2 "existing output refused" -- "$PY" "$HD" --model "$M" --tokens "1 2" --out "$TMP/t.safetensors"
ok "refused file untouched" -- cmp -s "$TMP/t.safetensors" "$TMP/t.orig"
ok "refusal names the file" -- grep -q "t.safetensors: exists" "$TMP/err"
expect 0 "--force replaces" -- "$PY" "$HD" --model "$M" --tokens "1 2" --out "$TMP/t.safetensors" --force
ok "replaced" -- sh -c "! cmp -s '$TMP/t.safetensors' '$TMP/t.orig'"
ok "no temporary files left" -- sh -c "! ls -A '$TMP' | grep -q '^\.hf-dump-'"
expect 2 "missing model dir" -- "$PY" "$HD" --model "$TMP/nope" --tokens "1" --out "$TMP/x.safetensors"
expect 2 "bad tokens" -- "$PY" "$HD" --model "$M" --tokens "1 two 3" --out "$TMP/x.safetensors"
expect 2 "token out of vocabulary" -- "$PY" "$HD" --model "$M" --tokens "1 200" --out "$TMP/x.safetensors"
ok "out-of-vocabulary message" -- grep -q "token 200 is outside the vocabulary" "$TMP/err"
expect 2 "missing fixture" -- "$PY" "$HD" --model "$M" --fixture "$TMP/nope.safetensors" --out "$TMP/x.safetensors"
ok "nothing written on bad input" -- test ! -e "$TMP/x.safetensors"

# vLLM-style module tree (a float64 mock with gqa-f32's weights): qkv_proj and
# gate_up_proj packed, linear layers returning (out, bias), layers and norms returning
# (hidden, residual), SiluAndMul, logits padded to 256. Pure float64 -> f64 budgets hold.
expect 0 "vLLM-style mock through VLLM_NAME_MAP (hf-dump's, split) and llamaref.VLLM_NAME_MAP (raw)" -- "$PY" - "$HD" "$M" "$F" "$TMP/vllm.safetensors" "$TMP/vllm-raw.safetensors" <<'PY'
import importlib.util, json, sys, torch
from safetensors import safe_open
from safetensors.torch import load_file
spec = importlib.util.spec_from_file_location("hf_dump", sys.argv[1])
hd = importlib.util.module_from_spec(spec); spec.loader.exec_module(hd)
mdir, fx, out = sys.argv[2], sys.argv[3], sys.argv[4]
cfg = json.load(open(mdir + "/config.json"))
W = {k: v.to(torch.float64) for k, v in load_file(mdir + "/model.safetensors").items()}
H, NH, KV, HD = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
nn = torch.nn

class Linear(nn.Module):            # vLLM linear: returns (output, output_bias)
    def __init__(self, w): super().__init__(); self.w = w
    def forward(self, x): return x @ self.w.T, None

class RMSNorm(nn.Module):           # vLLM RMSNorm: fused residual add when given one
    def __init__(self, w): super().__init__(); self.w = w
    def forward(self, x, residual=None):
        if residual is not None:
            x = x + residual; residual = x
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg["rms_norm_eps"]) * self.w
        return y if residual is None else (y, residual)

class SiluAndMul(nn.Module):
    def forward(self, x):
        g, u = x.chunk(2, dim=-1); return torch.nn.functional.silu(g) * u

def rope(x, pos):                   # x [T, heads, D], neox style, float64
    inv = 1.0 / (cfg["rope_parameters"]["rope_theta"] ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
    a = pos.to(torch.float64)[:, None] * inv
    cos, sin = torch.cat((a, a), -1).cos()[:, None], torch.cat((a, a), -1).sin()[:, None]
    x1, x2 = x[..., :HD // 2], x[..., HD // 2:]
    return x * cos + torch.cat((-x2, x1), -1) * sin

class Core(nn.Module):              # vLLM's Attention (self_attn.attn): q, k, v after RoPE -> context
    def forward(self, q, k, v):
        T = q.shape[0]
        k, v = k.repeat_interleave(NH // KV, 1), v.repeat_interleave(NH // KV, 1)
        s = torch.einsum("thd,shd->hts", q, k) / HD ** 0.5
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        return torch.einsum("hts,shd->thd", s.softmax(-1), v).reshape(T, NH * HD)

class Attn(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.qkv_proj = Linear(torch.cat([W[p + n + ".weight"] for n in ("q_proj", "k_proj", "v_proj")]))
        self.o_proj = Linear(W[p + "o_proj.weight"]); self.attn = Core()
    def forward(self, pos, x):
        qkv, _ = self.qkv_proj(x)
        q, k, v = qkv.split([NH * HD, KV * HD, KV * HD], -1)
        T = x.shape[0]
        q, k, v = rope(q.view(T, NH, HD), pos), rope(k.view(T, KV, HD), pos), v.view(T, KV, HD)
        return self.o_proj(self.attn(q, k, v))[0]

class MLP(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.gate_up_proj = Linear(torch.cat([W[p + "gate_proj.weight"], W[p + "up_proj.weight"]]))
        self.down_proj = Linear(W[p + "down_proj.weight"]); self.act_fn = SiluAndMul()
    def forward(self, x): return self.down_proj(self.act_fn(self.gate_up_proj(x)[0]))[0]

class Layer(nn.Module):
    def __init__(self, i):
        super().__init__(); p = f"model.layers.{i}."
        self.input_layernorm = RMSNorm(W[p + "input_layernorm.weight"])
        self.post_attention_layernorm = RMSNorm(W[p + "post_attention_layernorm.weight"])
        self.self_attn = Attn(p + "self_attn."); self.mlp = MLP(p + "mlp.")
    def forward(self, pos, h, residual):
        if residual is None:
            residual = h; h = self.input_layernorm(h)
        else:
            h, residual = self.input_layernorm(h, residual)
        h = self.self_attn(pos, h)
        h, residual = self.post_attention_layernorm(h, residual)
        return self.mlp(h), residual

class Embed(nn.Module):
    def __init__(self, w): super().__init__(); self.w = w
    def forward(self, ids): return self.w[ids]

class Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = Embed(W["model.embed_tokens.weight"])
        self.layers = nn.ModuleList(Layer(i) for i in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(W["model.norm.weight"])
    def forward(self, ids, pos):
        h, r = self.embed_tokens(ids), None
        for l in self.layers: h, r = l(pos, h, r)
        return self.norm(h, r)[0]

class LogitsProcessor(nn.Module):   # vocabulary padded to a multiple of 64 (vLLM)
    def forward(self, w, h):
        lg = h @ w.T
        return torch.cat([lg, torch.zeros(lg.shape[0], 256 - lg.shape[1], dtype=lg.dtype)], 1)

class ForCausalLM(nn.Module):
    def __init__(self):
        super().__init__(); self.model = Inner(); self.logits_processor = LogitsProcessor()
    def forward(self, ids, pos): return self.logits_processor(W["lm_head.weight"], self.model(ids, pos))

m = ForCausalLM()
rec = hd.attach(m, name_map=hd.VLLM_NAME_MAP, config=cfg)
import llamaref                     # the package hf-dump.py put on sys.path
raw = llamaref.attach(m, name_map=llamaref.VLLM_NAME_MAP, config=cfg)
with safe_open(fx, "pt") as f:
    ids, pos, lens = (f.get_tensor(k) for k in ("input_ids", "positions", "seq_lens"))
s = 0
with torch.no_grad():
    for n in lens.tolist():
        m(ids[s:s + n], pos[s:s + n]); s += n
rec.save(out, ids, pos, lens, compute_dtype="float64", model_name="gqa-f32")
raw.save(sys.argv[5], ids, pos, lens, model_name="gqa-f32")
with safe_open(out, "pt") as f:
    names = set(f.keys())
    assert list(f.get_tensor("lm_head").shape) == [24, 200], f.get_tensor("lm_head").shape
    assert "model.layers.2.self_attn.k_proj" in names and "model.layers.0.mlp.up_proj" in names
    assert "model.layers.0.mlp.act_fn" not in names   # SiluAndMul has no silu(gate) alone
    sp = {k: f.get_tensor(k) for k in f.keys()}
# The raw dump: vLLM's module paths, packed outputs whole; cut as compare --names vllm
# cuts them, each piece is bit for bit the split dump's stage.
with safe_open(sys.argv[5], "pt") as f:
    md, rw = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
assert md["names"] == "vllm" and md["compute_dtype"] == "float64", md
L = "model.layers.{}."
want = {"input_ids", "positions", "seq_lens", "model.embed_tokens", "model.norm", "logits_processor"}
for i in range(3):
    want |= {f"model.layers.{i}"} | {L.format(i) + s for s in (
        "input_layernorm", "self_attn.qkv_proj", "self_attn.attn", "self_attn.o_proj", "self_attn",
        "post_attention_layernorm", "mlp.gate_up_proj", "mlp.act_fn", "mlp.down_proj", "mlp")}
assert set(rw) == want, set(rw) ^ want
same = lambda a, b: a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
for i in range(3):
    p = L.format(i)
    q, k, v = rw[p + "self_attn.qkv_proj"].split([NH * HD, KV * HD, KV * HD], -1)
    g, u = rw[p + "mlp.gate_up_proj"].chunk(2, -1)
    for a, b in ((q, "self_attn.q_proj"), (k, "self_attn.k_proj"), (v, "self_attn.v_proj"),
                 (rw[p + "self_attn.attn"], "self_attn.o_proj.input"), (g, "mlp.gate_proj"), (u, "mlp.up_proj"),
                 (rw[p + "mlp.act_fn"], "mlp.down_proj.input"), (rw[p[:-1]], "")):
        assert same(a, sp[(p + b) if b else p[:-1]]), p + b
    for n in ("input_layernorm", "self_attn.o_proj", "self_attn", "post_attention_layernorm", "mlp.down_proj", "mlp"):
        assert same(rw[p + n], sp[p + n]), p + n
assert same(rw["logits_processor"], sp["lm_head"]) and same(rw["model.norm"], sp["model.norm"])
print(len(names) - 3, "stages;", len(rw) - 3, "raw")
PY
# vLLM has no module for silu(gate) alone: compare's coverage rule fails the run on the
# three mlp.act_fn stages the dump cannot hold, and every stage it holds agrees at f64.
expect 1 "vLLM-style dump: every stage it holds agrees at f64, mlp.act_fn missing" -- "$LD" compare "$TMP/vllm.safetensors" "$F" --json
ok "45 of 48 stages compared, all agree, the 3 act_fn missing" -- "$PY" -c "
import json, sys
d = json.load(open('$TMP/out'))
sys.exit(0 if len(d['stages']) == 45 and d['failed'] == 0 and d['precision'] == 'f64' and d['coverage']['missing'] == ['model.layers.%d.mlp.act_fn' % i for i in range(3)] else 1)"

# A name map that misses a required stage is refused with a clear message.
ok "attach without the map on a vLLM-style tree is refused" -- "$PY" - "$HD" <<'PY'
import importlib.util, sys, torch
spec = importlib.util.spec_from_file_location("hf_dump", sys.argv[1])
hd = importlib.util.module_from_spec(spec); spec.loader.exec_module(hd)
m = torch.nn.Module(); m.model = torch.nn.Module(); m.model.embed_tokens = torch.nn.Embedding(4, 2)
try:
    hd.attach(m, config=dict(num_hidden_layers=1, vocab_size=4, num_attention_heads=1, hidden_size=2))
except hd.DumpError as e:
    sys.exit(0 if "required stage" in str(e) else 1)
sys.exit(1)
PY

# A user's own module tree and name map (docs/outside-engines.md, "Your own engine"):
# float64, gqa-f32's weights, its own module names; the stages the map names agree with
# the golden, and compare fails on coverage, listing the ones it does not name.
expect 0 "a user's own tree through a user's name map" -- "$PY" - "$SRC/tools/python" "$M" "$F" "$TMP" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
import torch, llamaref
from safetensors.torch import load_file
mdir, fx, tmp = sys.argv[2:5]
cfg = json.load(open(mdir + "/config.json"))
W = {k: v.to(torch.float64) for k, v in load_file(mdir + "/model.safetensors").items()}
NH, KV, HD, EPS = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["rms_norm_eps"]
nn = torch.nn
class Lin(nn.Module):
    def __init__(self, *names): super().__init__(); self.w = torch.cat([W[n] for n in names])
    def forward(self, x): return x @ self.w.T
class Norm(nn.Module):
    def __init__(self, name): super().__init__(); self.w = W[name]
    def forward(self, x): return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.w
def rope(x, pos):
    inv = 1.0 / (cfg["rope_parameters"]["rope_theta"] ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
    a = pos.to(torch.float64)[:, None] * inv
    c, s = torch.cat((a, a), -1).cos()[:, None], torch.cat((a, a), -1).sin()[:, None]
    return x * c + torch.cat((-x[..., HD // 2:], x[..., :HD // 2]), -1) * s
class Attn(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.wqkv = Lin(p + "q_proj.weight", p + "k_proj.weight", p + "v_proj.weight"); self.out = Lin(p + "o_proj.weight")
    def forward(self, x, pos):
        T = x.shape[0]
        q, k, v = self.wqkv(x).split([NH * HD, KV * HD, KV * HD], -1)
        q, k, v = rope(q.view(T, NH, HD), pos), rope(k.view(T, KV, HD), pos), v.view(T, KV, HD)
        k, v = k.repeat_interleave(NH // KV, 1), v.repeat_interleave(NH // KV, 1)
        sc = (torch.einsum("thd,shd->hts", q, k) / HD ** 0.5).masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        return self.out(torch.einsum("hts,shd->thd", sc.softmax(-1), v).reshape(T, NH * HD))
class FFN(nn.Module):
    def __init__(self, p):
        super().__init__(); self.w13 = Lin(p + "gate_proj.weight", p + "up_proj.weight"); self.w2 = Lin(p + "down_proj.weight")
    def forward(self, x):
        g, u = self.w13(x).chunk(2, -1); return self.w2(torch.nn.functional.silu(g) * u)
class Block(nn.Module):
    def __init__(self, i):
        super().__init__(); p = f"model.layers.{i}."
        self.n1, self.n2 = Norm(p + "input_layernorm.weight"), Norm(p + "post_attention_layernorm.weight")
        self.attn, self.ffn = Attn(p + "self_attn."), FFN(p + "mlp.")
    def forward(self, h, pos):
        h = h + self.attn(self.n1(h), pos); return h + self.ffn(self.n2(h))
class Engine(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding.from_pretrained(W["model.embed_tokens.weight"])
        self.blocks = nn.ModuleList(Block(i) for i in range(cfg["num_hidden_layers"]))
        self.final_norm = Norm("model.norm.weight"); self.head = Lin("lm_head.weight")
    def forward(self, ids, pos):
        h = self.embed(ids)
        for b in self.blocks: h = b(h, pos)
        return self.head(self.final_norm(h))
my_map = {
    "embed": "model.embed_tokens",
    "blocks.{i}": "model.layers.{i}",
    "blocks.{i}.attn.wqkv": {"split": "qkv", "into": ["model.layers.{i}.self_attn.q_proj",
                                                      "model.layers.{i}.self_attn.k_proj",
                                                      "model.layers.{i}.self_attn.v_proj"]},
    "blocks.{i}.attn.out.input": "model.layers.{i}.self_attn.o_proj.input",
    "blocks.{i}.ffn.w13": {"split": "halves", "into": ["model.layers.{i}.mlp.gate_proj",
                                                       "model.layers.{i}.mlp.up_proj"]},
    "final_norm": "model.norm",
    "head": "lm_head",
}
m = Engine()
rec = llamaref.attach(m, name_map=my_map, config=cfg)
g = llamaref.read_dump(fx)
ids, pos = torch.from_numpy(g.input_ids), torch.from_numpy(g.positions)
s = 0
with torch.no_grad():
    for n in g.seq_lens.tolist():
        m(ids[s:s + n], pos[s:s + n]); s += n
rec.save(tmp + "/own.safetensors", ids, pos, g.seq_lens, model_name="gqa-f32")
d = llamaref.read_dump(tmp + "/own.safetensors")
assert d.metadata["compute_dtype"] == "float64" and len(d.stages) == 3 + 3 * 7, sorted(d.stages)
try:
    llamaref.compare(tmp + "/own.safetensors", fx)
    sys.exit("a dump missing stages passed")
except llamaref.CoverageError as e:
    cov = e.result["coverage"]
    want = sorted(f"model.layers.{i}.{x}" for i in range(3) for x in (
        "input_layernorm", "self_attn.o_proj", "self_attn", "post_attention_layernorm", "mlp.act_fn",
        "mlp.down_proj.input", "mlp.down_proj", "mlp"))
    assert sorted(cov["missing"]) == want and cov["compared"] == 24 and e.result["failed"] == 0, (cov, e.result["failed"])
PY

# The package as a pytest would use it: attach to a Hugging Face bfloat16 model, save (BF16
# stages), llamaref.compare with the model; a bug planted by a forward hook (10% on every
# 7th feature of layer 1's o_proj) raises Divergence naming that stage.
expect 0 "llamaref.attach, save and compare on a Hugging Face model; a planted bug raises" -- "$PY" - "$SRC/tools/python" "$M" "$F" "$TMP" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import torch, llamaref
from transformers import AutoModelForCausalLM
mdir, fx, tmp = sys.argv[2:5]
try:
    model = AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.bfloat16)
except TypeError:   # transformers 4.x
    model = AutoModelForCausalLM.from_pretrained(mdir, torch_dtype=torch.bfloat16)
model.eval()
g = llamaref.read_dump(fx)
ids, pos = torch.from_numpy(g.input_ids), torch.from_numpy(g.positions)
lens = g.seq_lens.tolist()
rec = llamaref.attach(model)
def run(out):
    rec.reset()
    s = 0
    with torch.no_grad():
        for n in lens:
            model(input_ids=ids[s:s + n][None], position_ids=pos[s:s + n][None], use_cache=False)
            s += n
    rec.save(out, ids, pos, lens)
run(tmp + "/api.safetensors")
d = llamaref.read_dump(tmp + "/api.safetensors")
assert d.metadata["compute_dtype"] == "bfloat16" and {d.dtype(n) for n in d.stages} == {"BF16"}
assert d.metadata["rounding"] == "transformers", d.metadata   # sdpa on the CPU
r = llamaref.compare(tmp + "/api.safetensors", fx, model=mdir)
assert r["result"] == "agree" and r["precision"] == "bf16" and r["coverage"]["compared"] == 48, r["coverage"]
sp = r["same_precision"]
assert sp["compared"] == 48 and sp["failed"] == 0 and sp["factor"]["failed"] == 0, sp["first_divergence"]
assert sp["rounding"] == {"profile": "transformers", "declared_by": "metadata", "one_more_rounding": False, "attention_like": "fdt"}, sp["rounding"]
scale = torch.ones(64, dtype=torch.bfloat16)
scale[::7] = 1.1
h = model.model.layers[1].self_attn.o_proj.register_forward_hook(lambda _m, _i, o: o * scale, prepend=True)
run(tmp + "/api-bug.safetensors")
h.remove()
try:
    llamaref.compare(tmp + "/api-bug.safetensors", fx, model=mdir)
    sys.exit("planted bug passed")
except llamaref.Divergence as e:
    assert e.result["first_divergence"] == "model.layers.1.self_attn.o_proj", e.result["first_divergence"]
    assert "first divergence: model.layers.1.self_attn.o_proj" in str(e), str(e)
    sp = e.result["same_precision"]
    assert sp["first_divergence"] == "model.layers.1.self_attn.o_proj" and sp["failed"] >= 1, sp["first_divergence"]
rec.remove()
PY

finish
