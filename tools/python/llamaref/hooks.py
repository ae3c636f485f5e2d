"""hooks: forward hooks on a PyTorch Llama-like model that record its stages.

:func:`attach` hooks the modules a name map names (:mod:`llamaref.namemaps`) and returns
a :class:`Recorder`; every forward call appends its tokens; :meth:`Recorder.save` writes
the llama-golden/1 file in the dtype the model computed in. Needs torch (imported on use,
so that the rest of the package works without it).
"""

import os

import numpy as np

from . import golden, namemaps
from .golden import DumpError


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise DumpError(f"hooks need torch ({exc}); pip install torch")
    return torch


def _cfg_get(cfg, *names, default=None):
    for n in names:
        v = cfg.get(n) if isinstance(cfg, dict) else getattr(cfg, n, None)
        if v is not None:
            return v
    return default


_TORCH_DTYPES = {"torch.float64": "float64", "torch.float32": "float32",
                 "torch.bfloat16": "bfloat16", "torch.float16": "float16"}


def to_numpy(t):
    """A CPU torch tensor as a numpy array, or BF16 (its bits), without changing a value."""
    torch = _torch()
    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        return golden.BF16(t.view(torch.int16).numpy().view(np.uint16).copy())
    return t.numpy().copy()


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
        self.name_map = namemaps.HF_NAME_MAP if name_map is None else name_map
        self.names = namemaps.names_of(self.name_map)
        self.logits_name = "logits_processor" if self.names == "vllm" else "lm_head"
        self.parts = {}   # dump name -> list of [rows, F] CPU tensors, one per forward call
        self.hooks = []
        mods = dict(model.named_modules())
        self.plan = namemaps.resolve(self.name_map, list(mods), self.n_layers)
        self.hooked = {t for h in self.plan for t in h.targets}
        for h in self.plan:
            fn = self._make(h.targets, h.rule)
            if h.is_input:
                self.hooks.append(mods[h.module].register_forward_pre_hook(
                    lambda _m, args, kwargs, fn=fn: fn(args[0] if args else next(
                        (v for v in kwargs.values() if torch.is_tensor(v)), None)),
                    with_kwargs=True))
            else:
                self.hooks.append(mods[h.module].register_forward_hook(lambda _m, _i, out, fn=fn: fn(out)))

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
            if not torch.is_tensor(t):
                return
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

    def record(self, name, tensor):
        """Adds a tensor under a dump name by hand (a stage no module returns)."""
        t = tensor.detach()
        self.parts.setdefault(name, []).append(t.reshape(-1, t.shape[-1]).to("cpu", copy=True))

    def discard(self, name):
        """Drops what was captured under a dump name (to record it by hand instead)."""
        self.parts.pop(name, None)

    def stage(self, name):
        """What was captured under a dump name so far, all calls concatenated: [rows, F]."""
        torch = _torch()
        if name not in self.parts:
            raise DumpError(f"nothing captured under {name}")
        return torch.cat(self.parts[name], 0)

    def reset(self):
        """Forget what was captured (the hooks stay)."""
        self.parts = {}

    def remove(self):
        """Remove the hooks."""
        for h in self.hooks:
            h.remove()
        self.hooks = []

    def stages(self, out_dtype=None):
        """Captured stages as {name: [T, F] tensor}, in forward order; out_dtype None keeps
        each stage's own dtype."""
        torch = _torch()
        names = golden.order_stages(self.parts) if self.names == "hf" else \
            [n for n in self._raw_order() if n in self.parts]
        calls = {len(self.parts[n]) for n in names}
        if len(calls) > 1:
            raise DumpError("stages were captured a different number of times "
                            f"({', '.join(f'{n}: {len(self.parts[n])}' for n in names[:3])} ...); "
                            "call reset() before each dumped run")
        res = {}
        for n in names:
            t = torch.cat([p if out_dtype is None else p.to(out_dtype) for p in self.parts[n]], 0)
            if n == self.logits_name and t.shape[1] > self.vocab:
                t = t[:, :self.vocab]     # padded vocabulary (vLLM) -> unpadded
            res[n] = t.contiguous()
        return res

    def _raw_order(self):
        # An engine's names in the order the hooks were planned (module order), then any
        # recorded by hand.
        seen = [t for h in self.plan for t in h.targets]
        return seen + sorted(n for n in self.parts if n not in seen)

    def compute_dtype(self):
        """The dtype the model computed in, from the captured tensors ("bfloat16", ...)."""
        dts = {str(p.dtype) for ps in self.parts.values() for p in ps}
        known = [_TORCH_DTYPES[d] for d in dts if d in _TORCH_DTYPES]
        if not known:
            raise DumpError("nothing was captured: run the model after attach()")
        # The narrowest dtype seen: the precision whose budgets the run should meet.
        for d in ("bfloat16", "float16", "float32", "float64"):
            if d in known:
                return d

    def rounding(self, compute_dtype=None):
        """Where the model rounds, as a rounding profile of llama-diff's emulated reference
        (golden.ROUNDING_PROFILES), or None where no profile models it: a Hugging Face
        transformers model on the CPU computing in bfloat16/float16 with sdpa
        ("transformers") or eager ("transformers-eager") attention; anything else (another
        engine, a GPU, another attention implementation, float32) None."""
        if (compute_dtype or self.compute_dtype()) not in ("bfloat16", "float16"):
            return None
        try:
            from transformers import PreTrainedModel
        except ImportError:
            return None
        if not isinstance(self.model, PreTrainedModel):
            return None
        try:
            device = next(self.model.parameters()).device.type
        except StopIteration:
            return None
        impl = getattr(self.model.config, "_attn_implementation", None)
        if device != "cpu":
            return None
        return {"sdpa": "transformers", "eager": "transformers-eager"}.get(impl)

    def save(self, path, input_ids, positions, seq_lens=None, compute_dtype=None,
             model_name=None, generator=None, force=False, store_dtype=None, rounding="auto"):
        """Write the captured stages as llama-golden/1, each in the dtype the model
        computed it in (store_dtype "float32" or "float64" upcasts every stage).

        input_ids, positions: all tokens of all forward calls, concatenated ([T]);
        seq_lens: lengths of the sequences (None: one sequence); compute_dtype: the
        metadata that picks compare's budgets, None: the dtype the model computed in.
        rounding: the metadata `rounding` (a rounding profile, golden.ROUNDING_PROFILES);
        "auto": :meth:`rounding`'s, for a transformers model on the CPU; None: none.
        Never replaces an existing file unless force; writes a temporary file in the
        same directory first.
        """
        torch = _torch()
        if compute_dtype is not None and compute_dtype not in golden.COMPUTE_DTYPES:
            raise DumpError(f"compute_dtype {compute_dtype!r} is not one of {', '.join(golden.COMPUTE_DTYPES)}")
        up = {None: None, "float32": torch.float32, "float64": torch.float64}
        if store_dtype not in up:
            raise DumpError(f"store_dtype {store_dtype!r}: None, \"float32\" or \"float64\"")
        ids = np.asarray(torch.as_tensor(input_ids).reshape(-1).cpu().numpy(), dtype=np.int64)
        pos = np.asarray(torch.as_tensor(positions).reshape(-1).cpu().numpy(), dtype=np.int64)
        if ids.size != pos.size:
            raise DumpError(f"input_ids has {ids.size} tokens but positions {pos.size}")
        if compute_dtype is None:
            compute_dtype = self.compute_dtype()
        if rounding == "auto":
            rounding = self.rounding(compute_dtype)
        st = self.stages(up[store_dtype])
        if not st:
            raise DumpError("nothing was captured: run the model after attach()")
        for n, t in st.items():
            if t.shape[0] != ids.size:
                raise DumpError(f"stage {n} has {t.shape[0]} token rows but input_ids {ids.size}")
        sl = None if seq_lens is None else torch.as_tensor(seq_lens).reshape(-1).cpu().numpy()
        if model_name is None:
            model_name = os.path.basename(os.path.normpath(
                str(_cfg_get(self.config, "_name_or_path", "name_or_path", default="model")))) or "model"
        return golden.write_dump(path, {n: to_numpy(t) for n, t in st.items()}, ids, pos, sl,
                                 model=model_name, compute_dtype=compute_dtype,
                                 generator=generator or f"{_versions()} (llamaref.hooks)",
                                 names=self.names, rounding=rounding, force=force)


def _versions():
    import torch
    try:
        import transformers
        tv = transformers.__version__
    except ImportError:
        tv = "none"
    return f"transformers {tv} / torch {torch.__version__.split('+')[0]}"


def attach(model, name_map=None, config=None):
    """Hook `model` (any torch module tree) and return a :class:`Recorder`.

    name_map: {module path pattern: dump name or rule} (:mod:`llamaref.namemaps`); None
    means Hugging Face names (:data:`~llamaref.namemaps.HF_NAME_MAP`); vLLM models take
    :data:`~llamaref.namemaps.VLLM_NAME_MAP`. config: for models without .config (a dict
    or object with the HF field names). DumpError when a required stage has no module.
    """
    return Recorder(model, name_map, config)
