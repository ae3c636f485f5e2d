"""namemaps: which module of an engine's model is which dumped tensor.

A name map is a dict from module path patterns to dump names or rules; `{i}` in a pattern
matches a layer index and is put into the names. A pattern ending in `.input` means the
module's first input (a forward pre-hook) rather than its output. Values:

- ``"NAME"``: the module's output (a tuple's first element: vLLM's linear layers return
  ``(output, bias)``, its RMSNorm with a residual ``(normed, residual)``);
- ``{"stage": NAME, "pair": "first"|"sum"}``: ``"sum"`` records ``out[0] + out[1]``, a
  vLLM decoder layer's ``(hidden, residual)``, whose sum is the residual stream after it;
- ``{"split": "qkv", "into": [Q, K, V]}``: a packed qkv output cut by the config's sizes
  (heads·head_dim, kv_heads·head_dim twice); ``{"split": "halves", "into": [GATE, UP]}``.

Three maps come with the package: :data:`HF_NAME_MAP` (Hugging Face module paths are the
spec's stage names), :data:`VLLM_NAME_MAP` (vLLM's module paths, recorded raw: packed
outputs stay packed and ``llama-diff compare --names vllm`` splits them) and
:data:`VLLM_SPLIT_NAME_MAP` (vLLM's tree written under the spec's names, split here).
Nothing here needs torch.
"""

import re

from . import stages as _stages
from .golden import DumpError


class NameMap(dict):
    """A name map that knows which names it writes: "hf" (the spec's stage names) or an
    engine's own ("vllm"), which becomes the dump's `names` metadata."""

    def __init__(self, rules, names="hf", required=None):
        super().__init__(rules)
        self.names = names
        # Dump names (with {i}) that must be matched: a map that misses one is wrong.
        self.required = tuple(required) if required is not None else _SPEC_REQUIRED


_SPEC_REQUIRED = ("model.embed_tokens", "model.layers.{i}", "model.norm", "lm_head")

HF_NAME_MAP = NameMap(
    {n: n for n in ("model.embed_tokens", "model.layers.{i}", "model.norm", "lm_head")}
    | {f"model.layers.{{i}}.{s}": f"model.layers.{{i}}.{s}" for s in _stages.LAYER_STAGES})

# vLLM's LlamaForCausalLM (tp 1), every module output under its own path. The layer's
# (hidden, residual) sum is the residual stream after it; the norms called with a
# residual give (normed, residual), the normed part is recorded; `self_attn.attn` is the
# attention context (the spec's o_proj.input), `mlp.act_fn` the SiluAndMul output (the
# spec's mlp.down_proj.input, not its act_fn); the logits come out of logits_processor
# (cut to the config's vocab_size when padded).
VLLM_NAME_MAP = NameMap({
    "model.embed_tokens": "model.embed_tokens",
    "model.layers.{i}.input_layernorm": "model.layers.{i}.input_layernorm",
    "model.layers.{i}.self_attn.qkv_proj": "model.layers.{i}.self_attn.qkv_proj",
    "model.layers.{i}.self_attn.attn": "model.layers.{i}.self_attn.attn",
    "model.layers.{i}.self_attn.o_proj": "model.layers.{i}.self_attn.o_proj",
    "model.layers.{i}.self_attn": "model.layers.{i}.self_attn",
    "model.layers.{i}.post_attention_layernorm": "model.layers.{i}.post_attention_layernorm",
    "model.layers.{i}.mlp.gate_up_proj": "model.layers.{i}.mlp.gate_up_proj",
    "model.layers.{i}.mlp.act_fn": "model.layers.{i}.mlp.act_fn",
    "model.layers.{i}.mlp.down_proj": "model.layers.{i}.mlp.down_proj",
    "model.layers.{i}.mlp": "model.layers.{i}.mlp",
    "model.layers.{i}": {"stage": "model.layers.{i}", "pair": "sum"},
    "model.norm": "model.norm",
    "logits_processor": "logits_processor",
}, names="vllm", required=("model.embed_tokens", "model.layers.{i}", "model.norm", "logits_processor"))

# The same tree written under the spec's names (tools/hf-dump.py's VLLM_NAME_MAP): packed
# outputs split here by the config's sizes, so any llama-diff compares it without --names.
# vLLM has no module for silu(gate) alone, so mlp.act_fn is absent from such dumps.
VLLM_SPLIT_NAME_MAP = NameMap({
    "model.embed_tokens": "model.embed_tokens",
    "model.layers.{i}.input_layernorm": "model.layers.{i}.input_layernorm",
    "model.layers.{i}.self_attn.qkv_proj": {
        "split": "qkv", "into": ["model.layers.{i}.self_attn.q_proj",
                                 "model.layers.{i}.self_attn.k_proj",
                                 "model.layers.{i}.self_attn.v_proj"]},
    "model.layers.{i}.self_attn.o_proj.input": "model.layers.{i}.self_attn.o_proj.input",
    "model.layers.{i}.self_attn.o_proj": "model.layers.{i}.self_attn.o_proj",
    "model.layers.{i}.self_attn": "model.layers.{i}.self_attn",
    "model.layers.{i}.post_attention_layernorm": "model.layers.{i}.post_attention_layernorm",
    "model.layers.{i}.mlp.gate_up_proj": {
        "split": "halves", "into": ["model.layers.{i}.mlp.gate_proj", "model.layers.{i}.mlp.up_proj"]},
    "model.layers.{i}.mlp.down_proj.input": "model.layers.{i}.mlp.down_proj.input",
    "model.layers.{i}.mlp.down_proj": "model.layers.{i}.mlp.down_proj",
    "model.layers.{i}.mlp": "model.layers.{i}.mlp",
    "model.layers.{i}": {"stage": "model.layers.{i}", "pair": "sum"},
    "model.norm": "model.norm",
    "logits_processor": "lm_head",
})

MAPS = {"hf": HF_NAME_MAP, "vllm": VLLM_NAME_MAP, "vllm-split": VLLM_SPLIT_NAME_MAP}


def rule(value):
    """A name-map value as a dict rule ({"stage"|"split", "into", "pair"})."""
    if isinstance(value, str):
        return {"stage": value, "pair": "first"}
    if not isinstance(value, dict) or not ("stage" in value or "split" in value):
        raise DumpError(f"name map: {value!r} is neither a name nor a rule with 'stage' or 'split'")
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


def _regex(pattern):
    return re.compile(re.escape(pattern).replace(re.escape("{i}"), r"(?P<i>0|[1-9][0-9]*)"))


class Hook:
    """One module to hook: its path, whether its input (pre-hook) or output, the dump
    names it fills and the rule."""

    def __init__(self, module, is_input, targets, rule):
        self.module, self.is_input, self.targets, self.rule = module, is_input, targets, rule

    def __repr__(self):
        return f"Hook({self.module!r}{' input' if self.is_input else ''} -> {self.targets})"


def resolve(name_map, module_names, n_layers):
    """The hooks a name map asks for on a model with these module paths (in the order
    given): a list of :class:`Hook`. DumpError when a dump name is matched twice, or when
    a required name (every layer's, for `{i}`) is matched by no module."""
    if name_map is None:
        name_map = HF_NAME_MAP
    if not isinstance(name_map, dict):
        raise DumpError(f"name map: a dict expected, not {type(name_map).__name__}")
    rules = []
    for pattern, value in name_map.items():
        is_input = pattern.endswith(".input")
        rules.append((_regex(pattern[:-len(".input")] if is_input else pattern), is_input, rule(value)))
    hooks, seen = [], {}
    for mod in module_names:
        for rx, is_input, r in rules:
            m = rx.fullmatch(mod)
            if not m:
                continue
            idx = m.groupdict().get("i")
            sub = (lambda s, idx=idx: s.replace("{i}", idx) if idx is not None else s)
            targets = [sub(s) for s in (r["into"] if "split" in r else [r["stage"]])]
            for t in targets:
                if t in seen:
                    raise DumpError(f"name map: {t} matched twice (modules {seen[t]} and {mod})")
                seen[t] = mod
            hooks.append(Hook(mod, is_input, targets, r))
    required = getattr(name_map, "required", _SPEC_REQUIRED)
    missing = []
    for name in required:
        for n in ([name.replace("{i}", str(i)) for i in range(n_layers)] if "{i}" in name else [name]):
            if n not in seen:
                missing.append(n)
    if missing:
        raise DumpError(f"attach: no module for required stage(s) {', '.join(missing[:4])}"
                        f"{' ...' if len(missing) > 4 else ''}; pass a name_map")
    return hooks


def names_of(name_map):
    """The name flavour a map writes: its .names, "hf" for a plain dict."""
    return getattr(name_map, "names", "hf") if name_map is not None else "hf"
