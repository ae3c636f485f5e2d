#!/usr/bin/env python3
"""Golden-fixture generator for llamaref (format ``llama-golden/1``).

For every case this script

1. builds a tiny Llama checkpoint with random (seeded, non-default) weights via
   ``LlamaForCausalLM(...).save_pretrained()``, keeps only ``config.json`` and
   ``model.safetensors``, and rewrites ``config.json`` in the config style the case
   wants (transformers 5.x ``rope_parameters`` or 4.x ``rope_theta`` + ``rope_scaling``);
2. loads that checkpoint back with transformers (so the weights are exactly the
   saved F32/F16/BF16 values), upcasts it to float64 and replaces the three places
   where Hugging Face is not float64 (RMSNorm, rotary cos/sin, attention softmax)
   with float64 code, then captures every stage with forward hooks;
3. recomputes every stage with an independent numpy float64 implementation that
   reads ``config.json`` and the raw safetensors bytes itself, and refuses to write
   anything if any stage differs by a relative L2 error above 1e-12;
4. writes ``golden/<case>.safetensors`` (see shared spec ``golden-fixtures.md``).

Usage: python3 tools/gen-fixtures.py [--out DIR] [--case NAME ...] [--list]
"""

import argparse
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from llamaref_stages import LAYER_STAGES, stage_names  # noqa: E402,F401  (tools/llamaref_stages.py)

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

try:
    import torch
    import transformers
    from safetensors import safe_open
    from safetensors.torch import save as st_save
    from transformers import AttentionInterface, LlamaConfig, LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRMSNorm
except ImportError as exc:  # pragma: no cover - environment problem
    sys.exit(f"gen-fixtures: missing dependency ({exc}); "
             "pip install -r tools/requirements-fixtures.txt")

FORMAT = "llama-golden/1"
REL_TOL = 1e-12          # numpy reference vs patched HF, per stage, relative L2
MIN_LAYER_DELTA = 0.05   # every decoder layer must move the residual stream this much
ATTN_IMPL = "llamaref_float64"

# --------------------------------------------------------------------------------------
# Model and case definitions
# --------------------------------------------------------------------------------------

# "style": which config.json layout to leave on disk.
#   "5.x": what transformers 5 writes (rope_parameters = {rope_type, rope_theta, ...}).
#   "4.x": rope_theta at top level plus rope_scaling (given verbatim), no rope_parameters.
MODELS = {
    "gqa-f32": dict(
        dtype="float32", style="5.x",
        config=dict(vocab_size=200, hidden_size=64, intermediate_size=128,
                    num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2,
                    head_dim=8, max_position_embeddings=256, rms_norm_eps=1e-5,
                    tie_word_embeddings=False,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    ),
    "mha-bias-bf16": dict(
        dtype="bfloat16", style="4.x",
        rope_theta=10000.0,
        rope_scaling={"type": "linear", "factor": 2.0},
        config=dict(vocab_size=130, hidden_size=32, intermediate_size=96,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                    max_position_embeddings=256, rms_norm_eps=1e-6,
                    attention_bias=True, mlp_bias=True, tie_word_embeddings=True,
                    rope_parameters={"rope_type": "linear", "rope_theta": 10000.0,
                                     "factor": 2.0}),
    ),
    "mqa-hd-f16": dict(
        dtype="float16", style="4.x",
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        config=dict(vocab_size=96, hidden_size=48, intermediate_size=128,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                    head_dim=16, max_position_embeddings=512, rms_norm_eps=1e-5,
                    tie_word_embeddings=False,
                    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0,
                                     "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 64}),
    ),
    "long-gqa-f32": dict(
        dtype="float32", style="5.x",
        config=dict(vocab_size=100, hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    head_dim=8, max_position_embeddings=512, rms_norm_eps=1e-6,
                    tie_word_embeddings=True,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    ),
}

# seqs: list of (length, first position). Several sequences -> seq_lens is written.
CASES = {
    "gqa-f32-batch": dict(
        model="gqa-f32", seqs=[(7, 0), (12, 0), (5, 0)],
        description="GQA 8q/2kv heads, 3 layers, vocab 200, default RoPE, untied, F32 "
                    "weights, 5.x config; batch of 3 sequences (7, 12, 5 tokens), "
                    "positions 0..len-1 each. Bundled default."),
    "mha-bias-bf16": dict(
        model="mha-bias-bf16", seqs=[(16, 0)],
        description="MHA 4 heads, attention_bias + mlp_bias, tied embeddings, linear "
                    "RoPE scaling x2 (4.x config, rope_scaling.type), BF16 weights; "
                    "one sequence of 16 tokens."),
    "mqa-hd-f16": dict(
        model="mqa-hd-f16", seqs=[(9, 0), (6, 40)],
        description="MQA 4q/1kv heads, head_dim 16 != hidden 48 / 4, llama3 RoPE "
                    "scaling (4.x config, rope_scaling.rope_type), F16 weights, untied; "
                    "two sequences: 9 tokens at 0..8 and 6 tokens at positions 40..45."),
    "long-gqa-f32-300": dict(
        model="long-gqa-f32", seqs=[(300, 0)],
        # The per-token MLP internals are covered by the other cases; leaving them out
        # here keeps fixtures/ under ~5 MB (they are still computed and cross-checked).
        omit=["mlp.gate_proj", "mlp.up_proj", "mlp.act_fn", "mlp.down_proj.input"],
        description="GQA 4q/2kv heads, default RoPE theta 10000, tied, F32, 5.x config; "
                    "one sequence of 300 tokens (positions 0..299). MLP-internal stages "
                    "(gate_proj, up_proj, act_fn, down_proj.input) are omitted for size."),
}

def seed_of(name):
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


# --------------------------------------------------------------------------------------
# Checkpoint creation
# --------------------------------------------------------------------------------------

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def init_weights(model, seed):
    """Overwrite every parameter with seeded values scaled so that each layer matters."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            shape = tuple(p.shape)
            if name.endswith("embed_tokens.weight"):
                v = rng.standard_normal(shape)
            elif name.endswith("norm.weight"):
                v = rng.uniform(0.5, 1.5, shape)
            elif name.endswith(".bias"):
                v = rng.normal(0.0, 0.1, shape)
            elif name.endswith(".weight") and len(shape) == 2:
                v = rng.normal(0.0, 1.0 / math.sqrt(shape[1]), shape)
            else:
                raise RuntimeError(f"no init rule for parameter {name} {shape}")
            p.copy_(torch.from_numpy(v))


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def make_checkpoint(model_name, dest):
    spec = MODELS[model_name]
    cfg = LlamaConfig(hidden_act="silu", bos_token_id=1, eos_token_id=2,
                      **spec["config"])
    torch.manual_seed(seed_of(model_name))
    model = LlamaForCausalLM(cfg).to(torch.float32)
    init_weights(model, seed_of(model_name))
    model = model.to(TORCH_DTYPES[spec["dtype"]])
    model.save_pretrained(dest, safe_serialization=True)

    keep = {"config.json", "model.safetensors"}
    for entry in os.listdir(dest):
        if entry not in keep:
            p = os.path.join(dest, entry)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    for f in keep:
        if not os.path.exists(os.path.join(dest, f)):
            raise RuntimeError(f"save_pretrained did not write {f} for {model_name}")

    path = os.path.join(dest, "config.json")
    with open(path) as f:
        conf = json.load(f)
    if spec["style"] == "4.x":
        conf.pop("rope_parameters", None)
        conf["rope_theta"] = spec["rope_theta"]
        conf["rope_scaling"] = dict(spec["rope_scaling"])
        if "dtype" in conf:                       # 4.x name of the same key
            conf["torch_dtype"] = conf.pop("dtype")
    else:
        if "rope_parameters" not in conf:
            raise RuntimeError("transformers did not write rope_parameters (not 5.x?)")
    for key in ("model_type", "hidden_act", "rms_norm_eps", "max_position_embeddings"):
        if key not in conf:
            raise RuntimeError(f"config.json of {model_name} lacks {key}")
    write_json(path, conf)


# --------------------------------------------------------------------------------------
# Float64 replacements for the Hugging Face model
# --------------------------------------------------------------------------------------

CALLS = {"rmsnorm": 0, "rotary": 0, "attention": 0}


def torch_inv_freq(conf_json):
    """RoPE inverse frequencies in float64 from the raw config.json dict."""
    if "rope_parameters" in conf_json and conf_json["rope_parameters"]:
        rp = dict(conf_json["rope_parameters"])
        theta = rp.get("rope_theta", conf_json.get("rope_theta", 10000.0))
    else:
        rp = dict(conf_json.get("rope_scaling") or {})
        theta = conf_json.get("rope_theta", 10000.0)
    rtype = rp.get("rope_type", rp.get("type", "default"))
    head_dim = conf_json.get("head_dim") or (conf_json["hidden_size"]
                                             // conf_json["num_attention_heads"])
    exps = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
    inv = 1.0 / (float(theta) ** exps)
    if rtype == "default":
        pass
    elif rtype == "linear":
        inv = inv / float(rp["factor"])
    elif rtype == "llama3":
        factor = float(rp["factor"])
        lo, hi = float(rp["low_freq_factor"]), float(rp["high_freq_factor"])
        old_ctx = float(rp["original_max_position_embeddings"])
        lo_wl, hi_wl = old_ctx / lo, old_ctx / hi
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > lo_wl, inv / factor, inv)
        smooth = (old_ctx / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= hi_wl) & (wavelen <= lo_wl)
        inv = torch.where(medium, smoothed, scaled)
    else:
        raise RuntimeError(f"unsupported rope type {rtype}")
    return inv, rtype, float(theta)


def rmsnorm_f64_forward(self, x):
    assert x.dtype == torch.float64 and self.weight.dtype == torch.float64
    CALLS["rmsnorm"] += 1
    var = (x * x).mean(-1, keepdim=True)
    return self.weight * (x * torch.rsqrt(var + self.variance_epsilon))


def attention_f64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Causal softmax attention entirely in float64 (batch, heads, T, head_dim inputs)."""
    assert query.dtype == key.dtype == value.dtype == torch.float64
    assert attention_mask is None, "custom attention expected no HF mask"
    assert dropout == 0.0
    head_dim = query.shape[-1]
    assert abs(scaling - 1.0 / math.sqrt(head_dim)) < 1e-15, scaling
    CALLS["attention"] += 1
    n_heads, n_kv = query.shape[1], key.shape[1]
    rep = n_heads // n_kv
    k = key.repeat_interleave(rep, dim=1)
    v = value.repeat_interleave(rep, dim=1)
    scores = torch.matmul(query, k.transpose(-1, -2)) * (1.0 / math.sqrt(head_dim))
    tq, tk = scores.shape[-2], scores.shape[-1]
    causal = torch.ones(tq, tk, dtype=torch.bool).tril(diagonal=tk - tq)
    scores = scores.masked_fill(~causal, float("-inf"))
    scores = scores - scores.amax(-1, keepdim=True)
    w = torch.exp(scores)
    w = w / w.sum(-1, keepdim=True)
    out = torch.matmul(w, v).transpose(1, 2).contiguous()
    return out, w


AttentionInterface.register(ATTN_IMPL, attention_f64)


def patch_model_f64(model, conf_json):
    inv_freq, _, _ = torch_inv_freq(conf_json)
    for m in model.modules():
        if isinstance(m, LlamaRMSNorm):
            m.forward = rmsnorm_f64_forward.__get__(m, type(m))

    def rotary_forward(x, position_ids):
        CALLS["rotary"] += 1
        ang = position_ids.to(torch.float64)[..., None] * inv_freq
        emb = torch.cat((ang, ang), dim=-1)
        return emb.cos(), emb.sin()       # attention_scaling = 1.0

    model.model.rotary_emb.forward = rotary_forward
    return inv_freq


def load_hf(model_dir, dtype, attn_impl):
    model = LlamaForCausalLM.from_pretrained(model_dir, attn_implementation=attn_impl,
                                             dtype=TORCH_DTYPES[dtype])
    model.eval()
    for n, p in model.named_parameters():
        if p.dtype != TORCH_DTYPES[dtype]:
            raise RuntimeError(f"{n} loaded as {p.dtype}, saved as {dtype}")
    return model


def run_hf(model, seqs, capture=True):
    """Run each sequence separately (batch 1); return stage dict with [T, F] float64."""
    stages = {}
    hooks = []
    if capture:
        def out_hook(name):
            def fn(_m, _inp, out):
                t = out[0] if isinstance(out, tuple) else out
                stages.setdefault(name, []).append(t.detach())
            return fn

        def in_hook(name):
            def fn(_m, inp):
                stages.setdefault(name, []).append(inp[0].detach())
            return fn

        mods = dict(model.named_modules())
        n_layers = model.config.num_hidden_layers
        for name in stage_names(n_layers):
            if name.endswith(".input"):
                hooks.append(mods[name[:-len(".input")]].register_forward_pre_hook(in_hook(name)))
            else:
                hooks.append(mods[name].register_forward_hook(out_hook(name)))
    logits = []
    try:
        with torch.no_grad():
            for ids, pos in seqs:
                out = model(input_ids=torch.tensor(ids, dtype=torch.long)[None],
                            position_ids=torch.tensor(pos, dtype=torch.long)[None],
                            use_cache=False)
                logits.append(out.logits[0].detach())
    finally:
        for h in hooks:
            h.remove()
    result = {}
    for name, parts in stages.items():
        assert len(parts) == len(seqs), name
        for t in parts:
            if t.dtype != torch.float64:
                raise RuntimeError(f"stage {name} is {t.dtype}, not float64")
            assert t.shape[0] == 1
        result[name] = torch.cat([t[0].reshape(t.shape[1], -1) for t in parts], 0).contiguous()
    return result, torch.cat(logits, 0)


# --------------------------------------------------------------------------------------
# Independent numpy float64 reference
# --------------------------------------------------------------------------------------

def np_read_safetensors(path):
    """Parse a safetensors file by hand into float64 numpy arrays."""
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[base + a:base + b]
        dt = info["dtype"]
        if dt == "F32":
            arr = np.frombuffer(buf, dtype="<f4").astype(np.float64)
        elif dt == "F16":
            arr = np.frombuffer(buf, dtype="<f2").astype(np.float64)
        elif dt == "BF16":
            u = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32).astype(np.float64)
        else:
            raise RuntimeError(f"unexpected dtype {dt} for {name}")
        out[name] = arr.reshape(info["shape"])
    return out


class NumpyLlama:
    """The forward pass in numpy, from config.json and the raw safetensors bytes.

    ``config``/``weights`` instead of ``model_dir`` give it a config dict (config.json
    keys) and float64 arrays with HF names read by other means (the GGUF case, in
    tools/gen-smollm2-fixture.py). ``dtype=np.float32`` runs the same code in float32
    (weights rounded to float32, RoPE angles in float64 then rounded), to estimate what a
    float32 implementation's error against the float64 golden will be.
    """

    def __init__(self, model_dir=None, *, config=None, weights=None, dtype=np.float64):
        if model_dir is not None:
            with open(os.path.join(model_dir, "config.json")) as f:
                config = json.load(f)
            weights = np_read_safetensors(os.path.join(model_dir, "model.safetensors"))
        c = config
        assert c["model_type"] == "llama" and c["hidden_act"] == "silu"
        self.c = c
        self.w = {k: v.astype(dtype, copy=False) for k, v in weights.items()}
        self.hidden = c["hidden_size"]
        self.n_heads = c["num_attention_heads"]
        self.n_kv = c.get("num_key_value_heads") or self.n_heads
        self.head_dim = c.get("head_dim") or self.hidden // self.n_heads
        self.n_layers = c["num_hidden_layers"]
        self.eps = float(c["rms_norm_eps"])
        self.tied = bool(c.get("tie_word_embeddings", False))
        self.attn_bias = bool(c.get("attention_bias", False))
        self.mlp_bias = bool(c.get("mlp_bias", False))
        if self.tied:
            assert "lm_head.weight" not in self.w, "tied checkpoint stores lm_head.weight"
            self.lm_head = self.w["model.embed_tokens.weight"]
        else:
            self.lm_head = self.w["lm_head.weight"]
        self._rope_setup()

    def _rope_setup(self):
        c = self.c
        if c.get("rope_parameters"):
            rp = c["rope_parameters"]
            theta = rp.get("rope_theta", c.get("rope_theta"))
        else:
            rp = c.get("rope_scaling") or {}
            theta = c.get("rope_theta", 10000.0)
        kind = rp.get("rope_type") or rp.get("type") or "default"
        d = self.head_dim
        inv = np.array([float(theta) ** (-(2.0 * i) / d) for i in range(d // 2)])
        self.pos_scale = 1.0
        if kind == "linear":
            self.pos_scale = 1.0 / float(rp["factor"])        # scale positions instead
        elif kind == "llama3":
            f = float(rp["factor"])
            lf, hf = float(rp["low_freq_factor"]), float(rp["high_freq_factor"])
            orig = float(rp["original_max_position_embeddings"])
            new = []
            for x in inv:
                wl = 2.0 * np.pi / x
                if wl < orig / hf:
                    new.append(x)
                elif wl > orig / lf:
                    new.append(x / f)
                else:
                    s = (orig / wl - lf) / (hf - lf)
                    new.append((1.0 - s) * x / f + s * x)
            inv = np.array(new)
        elif kind != "default":
            raise RuntimeError(f"numpy reference: unsupported rope {kind}")
        self.inv_freq = inv
        self.rope_kind = kind

    def rms(self, x, w):
        return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps))

    def lin(self, x, prefix, bias):
        y = x @ self.w[prefix + ".weight"].T
        if bias:
            y = y + self.w[prefix + ".bias"]
        return y

    def rope(self, x, pos):  # x [T, heads, D]
        ang = np.outer(pos * self.pos_scale, self.inv_freq)   # [T, D/2]
        c = np.cos(ang)[:, None, :].astype(x.dtype)
        s = np.sin(ang)[:, None, :].astype(x.dtype)
        h = self.head_dim // 2
        x1, x2 = x[..., :h], x[..., h:]
        return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)

    def forward(self, ids, pos):
        S = {}
        T = len(ids)
        pos = np.asarray(pos, dtype=np.float64)
        x = self.w["model.embed_tokens.weight"][np.asarray(ids)]
        S["model.embed_tokens"] = x
        for i in range(self.n_layers):
            P = f"model.layers.{i}"
            h = self.rms(x, self.w[P + ".input_layernorm.weight"])
            S[P + ".input_layernorm"] = h
            q = self.lin(h, P + ".self_attn.q_proj", self.attn_bias)
            k = self.lin(h, P + ".self_attn.k_proj", self.attn_bias)
            v = self.lin(h, P + ".self_attn.v_proj", self.attn_bias)
            S[P + ".self_attn.q_proj"], S[P + ".self_attn.k_proj"] = q, k
            S[P + ".self_attn.v_proj"] = v
            qh = self.rope(q.reshape(T, self.n_heads, self.head_dim), pos)
            kh = self.rope(k.reshape(T, self.n_kv, self.head_dim), pos)
            vh = v.reshape(T, self.n_kv, self.head_dim)
            group = self.n_heads // self.n_kv
            ctx = np.zeros((T, self.n_heads, self.head_dim), dtype=x.dtype)
            future = np.triu(np.ones((T, T), dtype=bool), k=1)
            for hd in range(self.n_heads):
                g = hd // group
                sc = (qh[:, hd, :] @ kh[:, g, :].T) / math.sqrt(self.head_dim)
                sc[future] = -np.inf
                sc = np.exp(sc - sc.max(axis=1, keepdims=True))
                p = sc / sc.sum(axis=1, keepdims=True)
                ctx[:, hd, :] = p @ vh[:, g, :]
            ctx = ctx.reshape(T, self.n_heads * self.head_dim)
            S[P + ".self_attn.o_proj.input"] = ctx
            a = self.lin(ctx, P + ".self_attn.o_proj", self.attn_bias)
            S[P + ".self_attn.o_proj"] = a
            S[P + ".self_attn"] = a
            x = x + a
            h = self.rms(x, self.w[P + ".post_attention_layernorm.weight"])
            S[P + ".post_attention_layernorm"] = h
            gt = self.lin(h, P + ".mlp.gate_proj", self.mlp_bias)
            up = self.lin(h, P + ".mlp.up_proj", self.mlp_bias)
            act = gt / (1.0 + np.exp(-gt))
            S[P + ".mlp.gate_proj"], S[P + ".mlp.up_proj"] = gt, up
            S[P + ".mlp.act_fn"] = act
            S[P + ".mlp.down_proj.input"] = act * up
            m = self.lin(act * up, P + ".mlp.down_proj", self.mlp_bias)
            S[P + ".mlp.down_proj"] = m
            S[P + ".mlp"] = m
            x = x + m
            S[P] = x
        xn = self.rms(x, self.w["model.norm.weight"])
        S["model.norm"] = xn
        S["lm_head"] = xn @ self.lm_head.T
        return S


def rel_l2(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    nb = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / nb) if nb > 0 else float(np.linalg.norm(a - b))


# --------------------------------------------------------------------------------------
# One case
# --------------------------------------------------------------------------------------

def write_safetensors(path, tensors, meta):
    """safetensors.torch serialization with the __metadata__ keys in a fixed order.

    The library stores metadata in a hash map, so its key order (and thus the file
    bytes) varies from run to run; re-emit the same header with ordered metadata so
    regenerating a fixture is byte-for-byte idempotent.
    """
    blob = st_save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta)
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen])
    header["__metadata__"] = {k: meta[k] for k in meta}
    ordered = {"__metadata__": header.pop("__metadata__"), **header}
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    if len(text) != hlen:
        raise RuntimeError("safetensors header length changed while reordering metadata")
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob[8 + hlen:])
    with safe_open(str(tmp), "pt") as f:          # round-trip check
        assert f.metadata() == meta and sorted(f.keys()) == sorted(tensors)
        for k in tensors:
            assert torch.equal(f.get_tensor(k), tensors[k]), k
    os.replace(tmp, path)


def version_tag(v):
    return v.split("+")[0]


def gen_case(case_name, stage_dir):
    """Build, run and cross-check one case inside stage_dir (a staging copy of --out).

    Writes stage_dir/models/<model>/ and stage_dir/golden/<case>.safetensors only after
    every check passed; main() moves them into place once all requested cases passed.
    """
    case = CASES[case_name]
    model_name = case["model"]
    spec = MODELS[model_name]
    cfg = spec["config"]
    print(f"== {case_name} (model {model_name}, {spec['dtype']}, config {spec['style']})")

    models_dir = stage_dir / "models"
    golden_dir = stage_dir / "golden"
    models_dir.mkdir(parents=True, exist_ok=True)
    golden_dir.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=".build-", dir=stage_dir))
    try:
        tmp_model = tmp_root / model_name
        make_checkpoint(model_name, str(tmp_model))
        with open(tmp_model / "config.json") as f:
            conf_json = json.load(f)

        # inputs
        rng = np.random.default_rng(seed_of("tokens:" + case_name))
        seqs = []
        for length, start in case["seqs"]:
            ids = rng.integers(0, cfg["vocab_size"], size=length).tolist()
            seqs.append((ids, list(range(start, start + length))))
        assert max(p for _, ps in seqs for p in ps) < cfg["max_position_embeddings"]

        # HF, loaded back from disk, patched to float64
        model = load_hf(str(tmp_model), spec["dtype"], ATTN_IMPL)
        check_loaded_config(model, spec, conf_json)
        if cfg.get("tie_word_embeddings"):
            assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        hf_inv_freq_f32 = model.model.rotary_emb.inv_freq.detach().to(torch.float64).clone()
        model = model.to(torch.float64)
        inv_freq = patch_model_f64(model, conf_json)
        e = rel_l2(hf_inv_freq_f32.numpy(), inv_freq.numpy())
        if e > 1e-6:
            raise RuntimeError(f"HF inv_freq (float32) disagrees with float64 one: {e:.3e}")
        for k in CALLS:
            CALLS[k] = 0
        stages, logits = run_hf(model, seqs)
        L, nseq = cfg["num_hidden_layers"], len(seqs)
        expect = {"rmsnorm": nseq * (2 * L + 1), "rotary": nseq, "attention": nseq * L}
        if CALLS != expect:
            raise RuntimeError(f"float64 patches not all used: calls {CALLS}, expected {expect}")
        assert torch.equal(logits, stages["lm_head"])
        names = stage_names(L)
        assert sorted(stages) == sorted(names), set(stages) ^ set(names)

        # plain `.double()` HF, no patches: should differ slightly
        plain = load_hf(str(tmp_model), spec["dtype"], "eager").to(torch.float64)
        _, plain_logits = run_hf(plain, seqs, capture=False)
        plain_diff = rel_l2(plain_logits.numpy(), logits.numpy())
        if not (0.0 < plain_diff < 1e-3):
            raise RuntimeError(f"patched vs plain .double() lm_head differ by {plain_diff:.3e}")

        # independent numpy reference
        ref_model = NumpyLlama(str(tmp_model))
        ref_parts = [ref_model.forward(ids, pos) for ids, pos in seqs]
        worst, worst_stage = 0.0, None
        for name in names:
            ref = np.concatenate([p[name] for p in ref_parts], 0)
            got = stages[name].numpy()
            if ref.shape != got.shape:
                raise RuntimeError(f"{case_name}: stage {name} shape {got.shape} vs ref {ref.shape}")
            err = rel_l2(got, ref)
            if not err <= REL_TOL:
                print(f"FAIL {case_name}: stage {name} rel L2 {err:.3e} > {REL_TOL:g}")
                sys.exit(1)
            if err >= worst:
                worst, worst_stage = err, name

        # every layer must move the residual stream
        deltas = []
        prev = stages["model.embed_tokens"].numpy()
        for i in range(L):
            cur = stages[f"model.layers.{i}"].numpy()
            d = rel_l2(cur, prev)
            deltas.append(d)
            if d <= MIN_LAYER_DELTA:
                raise RuntimeError(f"layer {i} moves the residual stream by only {d:.3f}")
            prev = cur

        # all checks passed: stage the model dir and the fixture
        os.replace(tmp_model, models_dir / model_name)

        T = sum(len(ids) for ids, _ in seqs)
        tensors = {
            "input_ids": torch.tensor([t for ids, _ in seqs for t in ids], dtype=torch.int64),
            "positions": torch.tensor([p for _, ps in seqs for p in ps], dtype=torch.int64),
        }
        if nseq > 1:
            tensors["seq_lens"] = torch.tensor([len(ids) for ids, _ in seqs], dtype=torch.int64)
        omit = {f"model.layers.{i}.{s}" for i in range(L) for s in case.get("omit", [])}
        written = [n for n in names if n not in omit]
        for name in written:
            t = stages[name]
            assert t.shape[0] == T and t.dtype == torch.float64
            tensors[name] = t.contiguous()
        assert tensors["lm_head"].shape == (T, cfg["vocab_size"])
        meta = {
            "format": FORMAT,
            "model": model_name,
            "compute_dtype": "float64",
            "generator": (f"transformers {version_tag(transformers.__version__)} / "
                          f"torch {version_tag(torch.__version__)} (tools/gen-fixtures.py)"),
            "description": case["description"],
        }
        write_safetensors(golden_dir / f"{case_name}.safetensors", tensors, meta)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    return dict(case=case_name, model=model_name, T=T, nseq=nseq, stages=len(written),
                worst=worst, worst_stage=worst_stage, plain=plain_diff,
                min_delta=min(deltas))


def check_loaded_config(model, spec, conf_json):
    """HF must read the (possibly rewritten 4.x) config.json as intended."""
    c = model.config
    want = spec["config"]
    for key, val in want.items():
        if key == "rope_parameters":
            got = {k: v for k, v in dict(c.rope_parameters).items() if k != "type"}
            if got != val:
                raise RuntimeError(f"HF read rope_parameters {got}, expected {val}")
        elif getattr(c, key) != val:
            raise RuntimeError(f"HF read {key}={getattr(c, key)!r}, expected {val!r}")
    if spec["style"] == "4.x":
        assert "rope_parameters" not in conf_json and "rope_scaling" in conf_json
    hd = want.get("head_dim", want["hidden_size"] // want["num_attention_heads"])
    assert model.model.layers[0].self_attn.head_dim == hd
    assert model.model.rotary_emb.attention_scaling == 1.0


# --------------------------------------------------------------------------------------

def main():
    repo_root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(
        description="Generate llamaref golden fixtures (llama-golden/1): tiny random Llama "
                    "checkpoints under OUT/models/ and float64 goldens under OUT/golden/.")
    ap.add_argument("--out", type=Path, default=repo_root / "fixtures",
                    help="output directory (default: %(default)s)")
    ap.add_argument("--case", action="append", choices=sorted(CASES),
                    help="generate only this case (repeatable); default: all cases")
    ap.add_argument("--list", action="store_true", help="list cases and exit")
    args = ap.parse_args()

    if args.list:
        for name, case in CASES.items():
            print(f"{name:20s} model={case['model']:15s} {case['description']}")
        return 0

    torch.set_num_threads(1)
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    names = args.case or list(CASES)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".gen-fixtures-", dir=out))
    try:
        results = [gen_case(name, stage) for name in names]
        # every case passed: move into place (nothing is written if any case fails)
        for sub in ("models", "golden"):
            (out / sub).mkdir(exist_ok=True)
        for name in names:
            model_name = CASES[name]["model"]
            dest = out / "models" / model_name
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(stage / "models" / model_name, dest)
            os.replace(stage / "golden" / f"{name}.safetensors",
                       out / "golden" / f"{name}.safetensors")
    finally:
        shutil.rmtree(stage, ignore_errors=True)

    print()
    print(f"{'case':18s} {'model':14s} {'T':>4s} {'seqs':>4s} {'stages':>6s} "
          f"{'max rel err (np vs HF)':>22s}  {'worst stage':32s} {'plain .double() diff':>20s} "
          f"{'min layer delta':>15s}")
    for r in results:
        print(f"{r['case']:18s} {r['model']:14s} {r['T']:4d} {r['nseq']:4d} {r['stages']:6d} "
              f"{r['worst']:22.3e}  {r['worst_stage']:32s} {r['plain']:20.3e} "
              f"{r['min_delta']:15.3f}")
    print(f"all {len(results)} case(s) passed (tolerance {REL_TOL:g}); written under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
