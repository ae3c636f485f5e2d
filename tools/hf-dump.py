#!/usr/bin/env python3
"""hf-dump: dump a Hugging Face (or vLLM-style) Llama forward pass as ``llama-golden/1``.

Hooks every stage of the shared spec (``shared/spec/golden-fixtures.md``) with forward
hooks (and forward pre-hooks for the ``NAME.input`` stages) and writes one safetensors
file that ``llama-diff compare mine.safetensors reference.safetensors`` can read.

Command line (see docs/hf-dump.md)::

    python3 tools/hf-dump.py --model DIR --out OUT.safetensors \\
        (--tokens "1 2 3" | --fixture F.safetensors) \\
        [--dtype float32|bfloat16|float16|float64] [--device cpu|cuda] \\
        [--attn-impl sdpa|eager] [--force]

Library use, on a model you already have::

    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("hf_dump", "tools/hf-dump.py")
    hf_dump = importlib.util.module_from_spec(spec); spec.loader.exec_module(hf_dump)

    rec = hf_dump.attach(model)                 # HF names; or name_map=hf_dump.VLLM_NAME_MAP
    with torch.no_grad():
        model(input_ids=ids[None], position_ids=pos[None], use_cache=False)
    rec.save("mine.safetensors", ids, pos, compute_dtype="bfloat16")
    rec.remove()

Every forward call appends its tokens; ``save`` concatenates the calls along the token
axis, so run the sequences of a batch one after another, in order.
"""

import argparse
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
# The stages of the spec (tools/llamaref_stages.py); stage_names(n_layers): every stage, in
# forward order.
from llamaref_stages import LAYER_STAGES, MODEL_STAGES, stage_names  # noqa: E402

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
FORMAT = "llama-golden/1"
EXIT_OK, EXIT_BAD = 0, 2

COMPUTE_DTYPES = ("float32", "bfloat16", "float16", "float64")


def required_stage(name):
    return name in MODEL_STAGES or \
        re.fullmatch(r"model\.layers\.\d+", name) is not None


# The default map: Hugging Face module paths are the stage names themselves.
HF_NAME_MAP = {"model.embed_tokens": "model.embed_tokens",
               "model.layers.{i}": "model.layers.{i}",
               "model.norm": "model.norm",
               "lm_head": "lm_head"}
HF_NAME_MAP.update({f"model.layers.{{i}}.{s}": f"model.layers.{{i}}.{s}" for s in LAYER_STAGES})

# vLLM's LlamaForCausalLM module tree (tp 1). Its linear layers return (output, bias)
# pairs (the first element is taken), decoder layers and norms called with a residual
# return (hidden, residual) pairs, qkv_proj and gate_up_proj are packed, SiluAndMul
# (`mlp.act_fn`) yields down_proj's input, and the logits come out of
# `logits_processor` padded to a multiple of 64 (unpadded on save).
VLLM_NAME_MAP = {
    "model.embed_tokens": "model.embed_tokens",
    "model.layers.{i}.input_layernorm": {"stage": "model.layers.{i}.input_layernorm", "pair": "first"},
    "model.layers.{i}.self_attn.qkv_proj": {
        "split": "qkv", "into": ["model.layers.{i}.self_attn.q_proj",
                                 "model.layers.{i}.self_attn.k_proj",
                                 "model.layers.{i}.self_attn.v_proj"]},
    "model.layers.{i}.self_attn.o_proj.input": "model.layers.{i}.self_attn.o_proj.input",
    "model.layers.{i}.self_attn.o_proj": "model.layers.{i}.self_attn.o_proj",
    "model.layers.{i}.self_attn": "model.layers.{i}.self_attn",
    "model.layers.{i}.post_attention_layernorm": {"stage": "model.layers.{i}.post_attention_layernorm",
                                                  "pair": "first"},
    "model.layers.{i}.mlp.gate_up_proj": {
        "split": "halves", "into": ["model.layers.{i}.mlp.gate_proj", "model.layers.{i}.mlp.up_proj"]},
    "model.layers.{i}.mlp.down_proj.input": "model.layers.{i}.mlp.down_proj.input",
    "model.layers.{i}.mlp.down_proj": "model.layers.{i}.mlp.down_proj",
    "model.layers.{i}.mlp": "model.layers.{i}.mlp",
    "model.layers.{i}": {"stage": "model.layers.{i}", "pair": "sum"},
    "model.norm": {"stage": "model.norm", "pair": "first"},
    "logits_processor": "lm_head",
}


class DumpError(Exception):
    """Bad input: reported as one line, exit status 2."""


def _torch():
    import torch
    return torch


def _versions():
    import torch
    try:
        import transformers
        tv = transformers.__version__
    except ImportError:
        tv = "none"
    return f"transformers {tv} / torch {torch.__version__.split('+')[0]}"


def _cfg_get(cfg, *names, default=None):
    for n in names:
        v = cfg.get(n) if isinstance(cfg, dict) else getattr(cfg, n, None)
        if v is not None:
            return v
    return default


def _rule(value):
    """Normalise a name-map value to a dict rule."""
    if isinstance(value, str):
        return {"stage": value, "pair": "first"}
    if not isinstance(value, dict) or not ("stage" in value or "split" in value):
        raise DumpError(f"name map: {value!r} is neither a stage name nor a rule with 'stage' or 'split'")
    r = dict(value)
    if "split" in r:
        if r["split"] not in ("qkv", "halves") or not isinstance(r.get("into"), (list, tuple)) or \
                len(r["into"]) != (3 if r["split"] == "qkv" else 2):
            raise DumpError(f"name map: split rule {value!r} needs split 'qkv' (3 names in 'into') "
                            "or 'halves' (2 names)")
    r.setdefault("pair", "first")
    if r["pair"] not in ("first", "sum"):
        raise DumpError(f"name map: pair must be 'first' or 'sum', not {r['pair']!r}")
    return r


def _pattern_regex(pattern):
    return re.compile(re.escape(pattern).replace(re.escape("{i}"), r"(?P<i>\d+)"))


class Recorder:
    """Captured stages of one or more forward calls; created by :func:`attach`."""

    def __init__(self, model, name_map=None, config=None):
        torch = _torch()
        self.model = model
        self.config = config if config is not None else getattr(model, "config", None)
        if self.config is None:
            raise DumpError("attach: the model has no .config; pass config= (a dict or object with "
                            "num_attention_heads, num_key_value_heads, head_dim or hidden_size, "
                            "num_hidden_layers, vocab_size)")
        c = self.config
        self.n_layers = int(_cfg_get(c, "num_hidden_layers"))
        self.vocab = int(_cfg_get(c, "vocab_size"))
        heads = int(_cfg_get(c, "num_attention_heads"))
        kv = int(_cfg_get(c, "num_key_value_heads", default=heads))
        hd = _cfg_get(c, "head_dim")
        hd = int(hd) if hd else int(_cfg_get(c, "hidden_size")) // heads
        self.qkv_sizes = [heads * hd, kv * hd, kv * hd]
        self.parts = {}   # stage -> list of [rows, F] tensors, one per forward call
        self.hooks = []
        self.hooked = set()
        mods = dict(model.named_modules())
        rules = [(p, _pattern_regex(p[:-len(".input")] if p.endswith(".input") else p),
                  p.endswith(".input"), _rule(v))
                 for p, v in (HF_NAME_MAP if name_map is None else name_map).items()]
        for mod_name, mod in mods.items():
            for pattern, rx, is_input, rule in rules:
                m = rx.fullmatch(mod_name)
                if not m:
                    continue
                idx = m.groupdict().get("i")
                sub = (lambda s, idx=idx: s.replace("{i}", idx) if idx is not None else s)
                if "split" in rule:
                    targets = [sub(s) for s in rule["into"]]
                else:
                    targets = [sub(rule["stage"])]
                if any(t in self.hooked for t in targets):
                    raise DumpError(f"name map: stage {targets} matched twice (module {mod_name})")
                self.hooked.update(targets)
                fn = self._make(targets, rule)
                if is_input:
                    self.hooks.append(mod.register_forward_pre_hook(
                        lambda _m, args, kwargs, fn=fn: fn(args[0] if args else next(
                            (v for v in kwargs.values() if torch.is_tensor(v)), None)),
                        with_kwargs=True))
                else:
                    self.hooks.append(mod.register_forward_hook(lambda _m, _i, out, fn=fn: fn(out)))
        missing = [s for s in stage_names(self.n_layers) if required_stage(s) and s not in self.hooked]
        if missing:
            raise DumpError(f"attach: no module for required stage(s) {', '.join(missing[:4])}"
                            f"{' ...' if len(missing) > 4 else ''}; pass a name_map")

    def _make(self, targets, rule):
        torch = _torch()

        def fn(out):
            if out is None:
                return
            if isinstance(out, (tuple, list)):
                if rule["pair"] == "sum" and len(out) >= 2 and torch.is_tensor(out[1]):
                    t = out[0] + out[1]
                else:
                    t = out[0]
            else:
                t = out
            t = t.detach()
            t = t.reshape(-1, t.shape[-1])        # [1, T, F] (HF) or [T, F] (vLLM) -> [T, F]
            if "split" in rule:
                sizes = self.qkv_sizes if rule["split"] == "qkv" else [t.shape[-1] // 2] * 2
                if sum(sizes) != t.shape[-1]:
                    raise DumpError(f"{targets[0]}: packed output has {t.shape[-1]} features, "
                                    f"config implies {sum(sizes)} ({'+'.join(map(str, sizes))})")
                pieces = torch.split(t, sizes, dim=-1)
            else:
                pieces = [t]
            for name, p in zip(targets, pieces):
                self.parts.setdefault(name, []).append(p.to("cpu", copy=True))
        return fn

    def reset(self):
        """Forget what was captured (the hooks stay)."""
        self.parts = {}

    def remove(self):
        """Remove the hooks."""
        for h in self.hooks:
            h.remove()
        self.hooks = []

    def stages(self, out_dtype=None):
        """Captured stages as {name: [T, F] tensor}, in forward order."""
        torch = _torch()
        out_dtype = out_dtype or torch.float32
        order = stage_names(self.n_layers)
        names = [n for n in order if n in self.parts] + sorted(n for n in self.parts if n not in order)
        calls = {len(self.parts[n]) for n in names}
        if len(calls) > 1:
            raise DumpError("stages were captured a different number of times "
                            f"({', '.join(f'{n}: {len(self.parts[n])}' for n in names[:3])} ...); "
                            "call reset() before each dumped run")
        res = {}
        for n in names:
            t = torch.cat([p.to(out_dtype) for p in self.parts[n]], 0)
            if n == "lm_head" and t.shape[1] > self.vocab:
                t = t[:, :self.vocab]     # padded vocabulary (vLLM) -> unpadded
            res[n] = t.contiguous()
        return res

    def save(self, path, input_ids, positions, seq_lens=None, compute_dtype="float32",
             model_name=None, generator=None, force=False):
        """Write the captured stages as llama-golden/1 (F64 for float64 runs, else F32).

        input_ids, positions: all tokens of all forward calls, concatenated ([T]);
        seq_lens: lengths of the sequences (None: one sequence). Never replaces an
        existing file unless force; writes a temporary file in the same directory first.
        """
        torch = _torch()
        if compute_dtype not in COMPUTE_DTYPES:
            raise DumpError(f"compute_dtype {compute_dtype!r} is not one of {', '.join(COMPUTE_DTYPES)}")
        ids = torch.as_tensor(input_ids, dtype=torch.int64).reshape(-1).cpu()
        pos = torch.as_tensor(positions, dtype=torch.int64).reshape(-1).cpu()
        if ids.numel() != pos.numel():
            raise DumpError(f"input_ids has {ids.numel()} tokens but positions {pos.numel()}")
        st = self.stages(torch.float64 if compute_dtype == "float64" else torch.float32)
        if not st:
            raise DumpError("nothing was captured: run the model after attach()")
        for n, t in st.items():
            if t.shape[0] != ids.numel():
                raise DumpError(f"stage {n} has {t.shape[0]} token rows but input_ids {ids.numel()}")
        tensors = {"input_ids": ids, "positions": pos}
        if seq_lens is not None:
            sl = torch.as_tensor(seq_lens, dtype=torch.int64).reshape(-1).cpu()
            if int(sl.sum()) != ids.numel():
                raise DumpError(f"seq_lens sum to {int(sl.sum())}, not {ids.numel()} tokens")
            tensors["seq_lens"] = sl
        tensors.update(st)
        if model_name is None:
            model_name = os.path.basename(os.path.normpath(
                str(_cfg_get(self.config, "_name_or_path", "name_or_path", default="model")))) or "model"
        meta = {"format": FORMAT, "model": model_name, "compute_dtype": compute_dtype,
                "generator": generator or f"{_versions()} (tools/hf-dump.py)"}
        write_safetensors(path, tensors, meta, force)
        return path


def attach(model, name_map=None, config=None):
    """Hook `model` (any torch module tree) and return a :class:`Recorder`.

    name_map: {module path pattern: stage name or rule}; None means Hugging Face names.
    `{i}` in a pattern matches a layer index and is substituted in the stage names.
    A pattern ending in `.input` captures the module's first input (pre-hook). Rules:
    ``{"stage": NAME, "pair": "first"|"sum"}`` (a tuple output: its first element, or the
    sum of the first two, for (hidden, residual) layers), ``{"split": "qkv", "into":
    [q, k, v]}`` (sizes heads*head_dim, kv_heads*head_dim twice, from the config),
    ``{"split": "halves", "into": [gate, up]}``. See docs/hf-dump.md and VLLM_NAME_MAP.
    config: for models without .config (dict or object with the HF field names).
    """
    return Recorder(model, name_map, config)


def write_safetensors(path, tensors, meta, force=False):
    from safetensors.torch import save_file
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise DumpError(f"{path}: directory {d} does not exist")
    if os.path.exists(path) and not force:
        raise DumpError(f"{path}: exists; pass --force (force=True) to replace it")
    fd, tmp = tempfile.mkstemp(prefix=".hf-dump-", suffix=".tmp", dir=d)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=meta)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)        # fails if the file appeared meanwhile
            except FileExistsError:
                raise DumpError(f"{path}: exists; pass --force (force=True) to replace it")
            except OSError:
                if os.path.exists(path):
                    raise DumpError(f"{path}: exists; pass --force (force=True) to replace it")
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

def read_inputs(args, vocab):
    torch = _torch()
    if args.tokens is not None:
        try:
            ids = [int(x) for x in args.tokens.replace(",", " ").split()]
        except ValueError:
            raise DumpError(f"--tokens: \"{args.tokens}\" is not a list of integers")
        if not ids:
            raise DumpError("--tokens: no tokens given")
        seqs = [list(range(len(ids)))]
        ids_t = torch.tensor(ids, dtype=torch.int64)
        pos_t = torch.tensor(seqs[0], dtype=torch.int64)
        seq_lens = None
        src = "--tokens"
    else:
        from safetensors import safe_open
        if not os.path.isfile(args.fixture):
            raise DumpError(f"{args.fixture}: no such file")
        try:
            with safe_open(args.fixture, "pt") as f:
                keys = set(f.keys())
                for k in ("input_ids", "positions"):
                    if k not in keys:
                        raise DumpError(f"{args.fixture}: tensor \"{k}\" missing")
                ids_t = f.get_tensor("input_ids").to(torch.int64).reshape(-1)
                pos_t = f.get_tensor("positions").to(torch.int64).reshape(-1)
                seq_lens = f.get_tensor("seq_lens").to(torch.int64).reshape(-1) if "seq_lens" in keys else None
        except DumpError:
            raise
        except Exception as exc:
            raise DumpError(f"{args.fixture}: not a readable safetensors file ({exc})")
        if ids_t.numel() != pos_t.numel() or ids_t.numel() == 0:
            raise DumpError(f"{args.fixture}: input_ids has {ids_t.numel()} tokens, positions {pos_t.numel()}")
        if seq_lens is not None and (int(seq_lens.sum()) != ids_t.numel() or bool((seq_lens <= 0).any())):
            raise DumpError(f"{args.fixture}: tensor \"seq_lens\" does not split {ids_t.numel()} tokens")
        src = args.fixture
    bad = [int(x) for x in ids_t if not 0 <= int(x) < vocab]
    if bad:
        raise DumpError(f"{src}: token {bad[0]} is outside the vocabulary (0..{vocab - 1})")
    if bool((pos_t < 0).any()):
        raise DumpError(f"{src}: negative position")
    lens = [int(x) for x in seq_lens] if seq_lens is not None else [ids_t.numel()]
    return ids_t, pos_t, seq_lens, lens


def load_model(model_dir, dtype, device, attn_impl):
    torch = _torch()
    import transformers
    from transformers import AutoModelForCausalLM
    try:
        transformers.utils.logging.disable_progress_bar()
    except AttributeError:
        pass
    tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
           "float64": torch.float32}[dtype]
    kw = dict(attn_implementation=attn_impl)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=tdt, **kw)
    except TypeError:   # transformers 4.x
        model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=tdt, **kw)
    if dtype == "float64":
        model = model.to(torch.float64)   # exact upcast of the saved F32/F16/BF16 weights
    return model.to(device).eval()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="hf-dump.py",
                                 description="Dump a Hugging Face Llama forward pass as llama-golden/1.")
    ap.add_argument("--model", required=True, help="Hugging Face checkpoint directory")
    ap.add_argument("--out", required=True, help="output .safetensors (never replaced without --force)")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--tokens", help='token ids of one sequence, e.g. "1 2 3"')
    g.add_argument("--fixture", help="take input_ids/positions/seq_lens from this llama-golden/1 file")
    ap.add_argument("--dtype", default="float32", choices=COMPUTE_DTYPES)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--attn-impl", default="sdpa", choices=("sdpa", "eager"))
    ap.add_argument("--force", action="store_true", help="replace an existing output file")
    args = ap.parse_args(argv)
    try:
        if not os.path.isfile(os.path.join(args.model, "config.json")):
            raise DumpError(f"{args.model}: not a checkpoint directory (no config.json)")
        if os.path.exists(args.out) and not args.force:
            raise DumpError(f"{args.out}: exists; pass --force to replace it")
        try:
            import torch
            import transformers  # noqa: F401
        except ImportError as exc:
            raise DumpError(f"missing dependency ({exc}); pip install torch transformers safetensors")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise DumpError("--device cuda: no CUDA device available to torch")
        import json
        with open(os.path.join(args.model, "config.json")) as f:
            vocab = int(json.load(f).get("vocab_size", 0))
        ids, pos, seq_lens, lens = read_inputs(args, vocab)
        try:
            model = load_model(args.model, args.dtype, args.device, args.attn_impl)
        except Exception as exc:
            raise DumpError(f"{args.model}: transformers could not load it ({type(exc).__name__}: {exc})")
        rec = attach(model)
        start = 0
        with torch.no_grad():
            for n in lens:   # each sequence alone, with its own positions
                model(input_ids=ids[start:start + n][None].to(args.device),
                      position_ids=pos[start:start + n][None].to(args.device), use_cache=False)
                start += n
        rec.remove()
        rec.save(args.out, ids, pos, seq_lens, compute_dtype=args.dtype,
                 model_name=os.path.basename(os.path.normpath(args.model)), force=args.force)
        print(f"wrote {len(rec.parts)} stages of {ids.numel()} tokens "
              f"({args.dtype} on {args.device}) to {args.out}")
        return EXIT_OK
    except DumpError as exc:
        print(f"hf-dump: {exc}", file=sys.stderr)
        return EXIT_BAD


if __name__ == "__main__":
    sys.exit(main())
