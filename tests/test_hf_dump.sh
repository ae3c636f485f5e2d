#!/bin/sh
# test_hf_dump.sh: tools/hf-dump.py, the outside dumper, against the goldens through
# llama-diff compare: a float64 Hugging Face run (not float64 inside: ~1e-7, fails f64
# budgets, passes f32 ones), a bfloat16 run at its own budgets, a vLLM-style module tree
# (packed qkv/gate_up, (hidden, residual) pairs, padded logits) through the name map,
# bad input (exit 2), and refusal to overwrite. Skips (77) without torch/transformers.
set -u
LD=${LLAMA_DIFF:-./llama-diff}
FX=${LR_FIXTURES:?}
TMP=${LR_TMPDIR:?}/hf-dump-sh
SRC=$(cd "$(dirname "$0")/.." && pwd)
HD="$SRC/tools/hf-dump.py"
if ! python3 -c "import torch, transformers, safetensors" >/dev/null 2>&1; then
    echo "test_hf_dump: torch/transformers/safetensors not importable by python3; skipped"
    exit 77
fi
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error


M=$FX/models/gqa-f32
F=$FX/golden/gqa-f32-batch.safetensors

# float64 Hugging Face: RMSNorm, RoPE and softmax stay float32 inside -> ~1e-7.
expect 0 "hf-dump float64" -- python3 "$HD" --model "$M" --fixture "$F" --dtype float64 --out "$TMP/f64.safetensors"
expect 1 "hf float64 vs golden at f64 budgets diverges" -- "$LD" compare "$TMP/f64.safetensors" "$F" --precision f64
expect 0 "hf float64 vs golden at f32 budgets agrees" -- "$LD" compare "$TMP/f64.safetensors" "$F" --precision f32 --json
ok "48 stages, metadata, F64 dtype" -- python3 - "$TMP/f64.safetensors" "$TMP/out" <<'PY'
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

# bfloat16 run: compute_dtype bfloat16 selects the bf16 budgets; F32 on disk.
expect 0 "hf-dump bfloat16" -- python3 "$HD" --model "$M" --fixture "$F" --dtype bfloat16 --attn-impl eager --out "$TMP/bf16.safetensors"
expect 0 "hf bfloat16 vs golden at its own (bf16) budgets agrees" -- "$LD" compare "$TMP/bf16.safetensors" "$F" --json
ok "bf16 budgets were used" -- python3 -c "import json,sys; d=json.load(open('$TMP/out')); sys.exit(0 if d['precision'] == 'bf16' else 1)"

# --tokens, another model (tied, biases, linear RoPE): a dump compares against llama-diff's own dump.
expect 0 "hf-dump --tokens float32" -- python3 "$HD" --model "$FX/models/mha-bias-bf16" --tokens "3 1 4 1 5 9 2 6" --out "$TMP/t.safetensors"
expect 0 "llama-diff dump --tokens" -- "$LD" dump -m "$FX/models/mha-bias-bf16" -t "3 1 4 1 5 9 2 6" -o "$TMP/ld.safetensors"
expect 0 "hf float32 --tokens vs llama-diff f64 dump at f32 budgets" -- "$LD" compare "$TMP/t.safetensors" "$TMP/ld.safetensors"

# Overwrite refusal, --force, bad input.
cp "$TMP/t.safetensors" "$TMP/t.orig"
expect 2 "existing output refused" -- python3 "$HD" --model "$M" --tokens "1 2" --out "$TMP/t.safetensors"
ok "refused file untouched" -- cmp -s "$TMP/t.safetensors" "$TMP/t.orig"
ok "refusal names the file" -- grep -q "t.safetensors: exists" "$TMP/err"
expect 0 "--force replaces" -- python3 "$HD" --model "$M" --tokens "1 2" --out "$TMP/t.safetensors" --force
ok "replaced" -- sh -c "! cmp -s '$TMP/t.safetensors' '$TMP/t.orig'"
ok "no temporary files left" -- sh -c "! ls -A '$TMP' | grep -q '^\.hf-dump-'"
expect 2 "missing model dir" -- python3 "$HD" --model "$TMP/nope" --tokens "1" --out "$TMP/x.safetensors"
expect 2 "bad tokens" -- python3 "$HD" --model "$M" --tokens "1 two 3" --out "$TMP/x.safetensors"
expect 2 "token out of vocabulary" -- python3 "$HD" --model "$M" --tokens "1 200" --out "$TMP/x.safetensors"
ok "out-of-vocabulary message" -- grep -q "token 200 is outside the vocabulary" "$TMP/err"
expect 2 "missing fixture" -- python3 "$HD" --model "$M" --fixture "$TMP/nope.safetensors" --out "$TMP/x.safetensors"
ok "nothing written on bad input" -- test ! -e "$TMP/x.safetensors"

# vLLM-style module tree (a float64 mock with gqa-f32's weights): qkv_proj and
# gate_up_proj packed, linear layers returning (out, bias), layers and norms returning
# (hidden, residual), SiluAndMul, logits padded to 256. Pure float64 -> f64 budgets hold.
expect 0 "vLLM-style mock through VLLM_NAME_MAP" -- python3 - "$HD" "$M" "$F" "$TMP/vllm.safetensors" <<'PY'
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

class Attn(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.qkv_proj = Linear(torch.cat([W[p + n + ".weight"] for n in ("q_proj", "k_proj", "v_proj")]))
        self.o_proj = Linear(W[p + "o_proj.weight"])
    def forward(self, pos, x):
        qkv, _ = self.qkv_proj(x)
        q, k, v = qkv.split([NH * HD, KV * HD, KV * HD], -1)
        T = x.shape[0]
        q, k, v = rope(q.view(T, NH, HD), pos), rope(k.view(T, KV, HD), pos), v.view(T, KV, HD)
        k, v = k.repeat_interleave(NH // KV, 1), v.repeat_interleave(NH // KV, 1)
        s = torch.einsum("thd,shd->hts", q, k) / HD ** 0.5
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        ctx = torch.einsum("hts,shd->thd", s.softmax(-1), v).reshape(T, NH * HD)
        return self.o_proj(ctx)[0]

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
with safe_open(fx, "pt") as f:
    ids, pos, lens = (f.get_tensor(k) for k in ("input_ids", "positions", "seq_lens"))
s = 0
with torch.no_grad():
    for n in lens.tolist():
        m(ids[s:s + n], pos[s:s + n]); s += n
rec.save(out, ids, pos, lens, compute_dtype="float64", model_name="gqa-f32")
with safe_open(out, "pt") as f:
    names = set(f.keys())
    assert list(f.get_tensor("lm_head").shape) == [24, 200], f.get_tensor("lm_head").shape
    assert "model.layers.2.self_attn.k_proj" in names and "model.layers.0.mlp.up_proj" in names
    assert "model.layers.0.mlp.act_fn" not in names   # SiluAndMul has no silu(gate) alone
print(len(names) - 3, "stages")
PY
expect 0 "vLLM-style dump agrees with the golden at f64 budgets" -- "$LD" compare "$TMP/vllm.safetensors" "$F" --json
ok "45 stages compared (no act_fn in vLLM)" -- python3 -c "import json,sys; d=json.load(open('$TMP/out')); sys.exit(0 if len(d['stages']) == 45 and d['precision'] == 'f64' else 1)"

# A name map that misses a required stage is refused with a clear message.
ok "attach without the map on a vLLM-style tree is refused" -- python3 - "$HD" <<'PY'
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

finish
