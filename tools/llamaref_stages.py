"""llamaref_stages: the stages of a llama-golden/1 fixture, once, for the Python tools.

A copy of the C library's table (ref/llamaref.h: LR_LAYER_STAGE_MAP and
LR_MODEL_STAGE_MAP); tests/test_stages.sh fails when the two disagree (names, order,
kinds, widths). The scripts under tools/ import it from their own directory::

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import llamaref_stages as stages

The Python package (tools/python/llamaref) holds this file as llamaref/stages.py, a link
to it, so it stays the one Python copy. Needs nothing but the standard library.
"""

import re

# Stage kinds, in the order of lr_stage_kind (the tolerance table's columns), as
# lr_stage_kind_name() spells them.
KINDS = ("embedding", "norm", "projection", "attention", "activation", "block", "layer", "logits")

# Width units (features per token), in the order of lr_stage_width_unit:
# hidden_size, num_attention_heads * head_dim, num_key_value_heads * head_dim,
# intermediate_size, vocab_size.
WIDTHS = ("hidden", "q", "kv", "intermediate", "vocab")

# (suffix, kind, width) of the stages of decoder layer i, named "model.layers.{i}."
# suffix, in forward order. The last, suffix "", is the layer's own output,
# "model.layers.{i}" (the residual stream after it); only it is required in a fixture.
LAYER_STAGE_TABLE = (
    ("input_layernorm", "norm", "hidden"),
    ("self_attn.q_proj", "projection", "q"),
    ("self_attn.k_proj", "projection", "kv"),
    ("self_attn.v_proj", "projection", "kv"),
    ("self_attn.o_proj.input", "attention", "q"),
    ("self_attn.o_proj", "projection", "hidden"),
    ("self_attn", "block", "hidden"),
    ("post_attention_layernorm", "norm", "hidden"),
    ("mlp.gate_proj", "projection", "intermediate"),
    ("mlp.up_proj", "projection", "intermediate"),
    ("mlp.act_fn", "activation", "intermediate"),
    ("mlp.down_proj.input", "activation", "intermediate"),
    ("mlp.down_proj", "projection", "hidden"),
    ("mlp", "block", "hidden"),
    ("", "layer", "hidden"),
)

# (name, kind, width) of the model's stages around the layers, all required. The forward
# order is model.embed_tokens, every layer's stages, model.norm, lm_head.
MODEL_STAGE_TABLE = (
    ("model.embed_tokens", "embedding", "hidden"),
    ("model.norm", "norm", "hidden"),
    ("lm_head", "logits", "vocab"),
)

# The layer sub-stages (every layer stage but the layer's own output), in forward order:
# "input_layernorm", "self_attn.q_proj", ..., "mlp".
LAYER_STAGES = tuple(s for s, _, _ in LAYER_STAGE_TABLE if s)
# The model-level stage names: before the layers, and after them.
MODEL_STAGES = tuple(n for n, _, _ in MODEL_STAGE_TABLE)
STAGES_BEFORE_LAYERS = ("model.embed_tokens",)
STAGES_AFTER_LAYERS = ("model.norm", "lm_head")

_LAYER = {s: (i, k, w) for i, (s, k, w) in enumerate(LAYER_STAGE_TABLE)}
_MODEL = {n: (k, w) for n, k, w in MODEL_STAGE_TABLE}
_LAYER_NAME = re.compile(r"model\.layers\.(0|[1-9][0-9]*)(?:\.(.+))?")
_AFTER_ORDER = {n: i for i, n in enumerate(STAGES_AFTER_LAYERS)}


def layer_stage_name(layer, suffix):
    """"model.layers.{layer}.{suffix}", or "model.layers.{layer}" for suffix ""."""
    return f"model.layers.{layer}.{suffix}" if suffix else f"model.layers.{layer}"


def stage_names(num_layers):
    """Every stage of a model with num_layers decoder layers, in forward order."""
    names = list(STAGES_BEFORE_LAYERS)
    for i in range(num_layers):
        names += [layer_stage_name(i, s) for s, _, _ in LAYER_STAGE_TABLE]
    return names + list(STAGES_AFTER_LAYERS)


def _lookup(stage):
    """(kind, width, layer, index within the layer) of a stage name; layer and index are
    None for the model-level stages; None when the name is no stage."""
    if stage in _MODEL:
        return _MODEL[stage] + (None, None)
    m = _LAYER_NAME.fullmatch(stage)
    if not m or (m.group(2) or "") not in _LAYER:
        return None
    i, k, w = _LAYER[m.group(2) or ""]
    return k, w, int(m.group(1)), i


def is_stage(stage):
    """Whether the name is a stage of some model (any layer index)."""
    return _lookup(stage) is not None


def kind_of(stage):
    """The stage's kind ("projection", ...), as lr_stage_kind_of() in ref/check/compare.c
    gives it; ValueError when the name is no stage."""
    x = _lookup(stage)
    if x is None:
        raise ValueError(f"not a stage: {stage!r}")
    return x[0]


def width_of(stage):
    """The stage's width unit ("hidden", "q", "kv", "intermediate", "vocab");
    ValueError when the name is no stage."""
    x = _lookup(stage)
    if x is None:
        raise ValueError(f"not a stage: {stage!r}")
    return x[1]


def stage_order(stage):
    """A sort key giving the forward order, as lr_stage_order(): (0, 0) for the
    embedding, (1, layer, index) for a layer's stages, (2, k) for the stages after the
    layers; None when the name is no stage."""
    x = _lookup(stage)
    if x is None:
        return None
    if x[2] is not None:
        return (1, x[2], x[3])
    if stage in _AFTER_ORDER:
        return (2, _AFTER_ORDER[stage])
    return (0, STAGES_BEFORE_LAYERS.index(stage))
