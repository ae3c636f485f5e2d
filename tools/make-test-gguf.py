#!/usr/bin/env python3
"""make-test-gguf.py: writes the GGUF test files under fixtures/gguf/ from the bundled
fixtures/models/gqa-f32 checkpoint, with the PyPI gguf package (GGUFWriter,
gguf.quants), and the values the C loader must reproduce.

    python3 tools/make-test-gguf.py            # from the source tree root

    python3 tools/make-test-gguf.py --blocks FILE   # only the K-quant blocks file, to FILE

Files written:
  gqa-f32.gguf    every tensor F32: must load bit for bit equal to model.safetensors
  gqa-mixed.gguf  the same weights in Q4_0, Q4_1, Q8_0, F16, BF16 and F32 (a mix that puts
                  every type on q and k, whose rows are permuted)
  kquant-mixed.gguf  a one-layer model of width 256 (K-quants need rows of 256) mixing
                  the K-quants as llama.cpp's Q4_K_M does (Q4_K for most, Q6_K for
                  attn_v, ffn_down and output) with the others on the rest, and o_proj,
                  whose 128-wide rows no K-quant fits, in Q8_0 (llama.cpp's fallback)
  expected.json   per file and Hugging Face tensor: shape, an FNV-1a 64 hash of the
                  float32 little-endian bytes of gguf.quants.dequantize's output after
                  this script's own undo of the permutation, and the first values
  tests/data/kquant-blocks.bin  crafted blocks of every K-quant and their float32
                  values by gguf.quants.dequantize (format: see write_kquant_blocks)

The gguf package has no K-quant quantizer, so the K-quant tensors are random blocks with
float16 d and dmin scaled to keep the weights near +-0.2; nor a Q8_K dequantizer (llama.cpp
keeps Q8_K for its dot products and never writes it to a file), so Q8_K's values here are
ggml's definition, float32 d * q, in numpy.

The q/k permutation is written here from the description of llama.cpp's converter
(reshape to (heads, 2, rows / heads / 2, cols), swap axes 1 and 2), independently of
the C code in ref/core/gguf.c; its inverse is checked to restore the original exactly.
It also writes the seed corpus of the GGUF fuzz target, tests/fuzz/corpus/gguf/seed-*.gguf:
a one-layer model (F32; mixed types; tied with biases and linear RoPE scaling), each a
few KB. The output is deterministic (quantization is round-to-nearest; the seeds'
weights come from a fixed numpy seed)."""
import importlib.metadata
import json
import os
import struct
import sys

import numpy as np

import gguf

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MODEL = os.path.join(ROOT, "fixtures", "models", "gqa-f32")
OUT = os.path.join(ROOT, "fixtures", "gguf")
Q = gguf.GGMLQuantizationType


# The K-quants: (type, offset of float16 d, offset of float16 dmin or None). Q8_K's d
# is a float32 at 0.
KQUANTS = [(Q.Q2_K, 80, 82), (Q.Q3_K, 108, None), (Q.Q4_K, 0, 2), (Q.Q5_K, 0, 2), (Q.Q6_K, 208, None),
           (Q.Q8_K, 0, None)]
# Largest |scale * q| (and |min|) a block can reach per unit of d (dmin), to scale weights.
KQ_RANGE = {Q.Q2_K: (15 * 3, 15), Q.Q3_K: (32 * 4, 0), Q.Q4_K: (63 * 15, 63), Q.Q5_K: (63 * 31, 63),
            Q.Q6_K: (128 * 32, 0), Q.Q8_K: (128, 0)}


def dequantize(raw, qt):
    """gguf.quants.dequantize; for Q8_K, which the package lacks, ggml's x = d * q."""
    if qt == Q.Q8_K:
        try:
            return gguf.quants.dequantize(raw, qt)
        except NotImplementedError:
            pass
        blocks = np.ascontiguousarray(raw).reshape(-1, 292)
        d = blocks[:, :4].copy().view("<f4").astype(np.float32)
        q = blocks[:, 4:260].view(np.int8).astype(np.float32)
        shape = raw.shape[:-1] + (raw.shape[-1] // 292 * 256,)
        return (d * q).reshape(shape)
    return gguf.quants.dequantize(raw, qt)


def kquant_layout(qt):
    return next(k for k in KQUANTS if k[0] == qt)


def random_kquant(rng, qt, rows, cols, amp):
    """rows x cols weights of type qt: random blocks, d and dmin drawn so |x| <= about amp."""
    _, size = gguf.GGML_QUANT_SIZES[qt]
    nb = rows * cols // 256
    raw = rng.randint(0, 256, size=(nb, size)).astype(np.uint8)
    _, od, om = kquant_layout(qt)
    rd, rm = KQ_RANGE[qt]
    d = (amp / rd * rng.uniform(0.5, 1.0, size=nb) * rng.choice([-1, 1], size=nb))
    if qt == Q.Q8_K:
        raw[:, 0:4] = d.astype("<f4").view(np.uint8).reshape(nb, 4)
    else:
        raw[:, od:od + 2] = d.astype("<f2").view(np.uint8).reshape(nb, 2)
    if om is not None:
        m = amp / rm * rng.uniform(0.0, 0.5, size=nb)
        raw[:, om:om + 2] = m.astype("<f2").view(np.uint8).reshape(nb, 2)
    return raw.reshape(rows, cols // 256 * size)


def write_kquant_blocks(path, nblocks=8):
    """Crafted blocks of every K-quant and gguf.quants.dequantize's float32 values:
    "LRKQ", u32 version 1, u32 entries; per entry u32 ggml type, u32 blocks, u32 bytes per
    block, the blocks, then blocks * 256 float32 values; all little-endian. The quant bytes
    are random (block 0 all 0x00, block 1 all 0xff); d and dmin walk the float16 edge cases
    (zero, -0, the smallest and largest subnormal, the largest finite, a full mantissa),
    then random finite ones; Q8_K's float32 d the same way, kept below 2^100 so d * q stays
    finite."""
    rng = np.random.RandomState(20261202)
    f16_edges = [0x3C00, 0xBC00, 0x0000, 0x8000, 0x0001, 0x03FF, 0x7BFF, 0xFBFF, 0x3555, 0xB555]
    f32_edges = [0x3F800000, 0xBF800000, 0x00000000, 0x80000000, 0x00000001, 0x007FFFFF, 0x71FFFFFF,
                 0xF1FFFFFF, 0x3EAAAAAB, 0xBDCCCCCD]

    def f16_bits(i):
        if i < len(f16_edges):
            return f16_edges[i]
        b = int(rng.randint(0, 65536))
        return b & ~0x4000 if (b >> 10) & 0x1F == 0x1F else b

    def f32_bits(i):
        if i < len(f32_edges):
            return f32_edges[i]
        sign, exp, man = int(rng.randint(0, 2)), int(rng.randint(0, 127 + 100)), int(rng.randint(0, 1 << 23))
        return sign << 31 | exp << 23 | man

    out = bytearray(b"LRKQ" + struct.pack("<II", 1, len(KQUANTS)))
    for qt, od, om in KQUANTS:
        _, size = gguf.GGML_QUANT_SIZES[qt]
        raw = rng.randint(0, 256, size=(nblocks, size)).astype(np.uint8)
        raw[0, :], raw[1, :] = 0x00, 0xFF
        for i in range(nblocks):
            # Each block's scales from its own pick of the edges, d and dmin apart.
            if qt == Q.Q8_K:
                raw[i, 0:4] = np.frombuffer(struct.pack("<I", f32_bits((i * 3) % (nblocks + 2))), np.uint8)
                continue
            raw[i, od:od + 2] = np.frombuffer(struct.pack("<H", f16_bits((i * 3) % (nblocks + 2))), np.uint8)
            if om is not None:
                raw[i, om:om + 2] = np.frombuffer(struct.pack("<H", f16_bits((i * 7 + 1) % (nblocks + 2))), np.uint8)
        vals = dequantize(raw.reshape(1, -1), qt).astype(np.float32).reshape(-1)
        assert vals.size == nblocks * 256 and np.all(np.isfinite(vals)), qt.name
        out += struct.pack("<III", int(qt), nblocks, size) + raw.tobytes() + vals.astype("<f4").tobytes()
    with open(path, "wb") as f:
        f.write(out)


def read_safetensors(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    header.pop("__metadata__", None)
    data = b[8 + n:]
    out = {}
    for name, e in header.items():
        assert e["dtype"] == "F32", (name, e["dtype"])
        lo, hi = e["data_offsets"]
        out[name] = np.frombuffer(data[lo:hi], dtype="<f4").reshape(e["shape"]).copy()
    return out


def permute(w, n_head):
    """llama.cpp's converter: each head's two rotary halves interleaved row by row."""
    shape = w.shape
    return w.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def unpermute(w, n_head):
    shape = w.shape
    return w.reshape(n_head, shape[0] // n_head // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def fnv1a64(b):
    h = 0xCBF29CE484222325
    for x in b:
        h ^= x
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def gguf_names(layers):
    """(gguf name, HF name) in the order the files hold them."""
    names = [("token_embd.weight", "model.embed_tokens.weight")]
    for l in range(layers):
        p, h = "blk.%d." % l, "model.layers.%d." % l
        names += [
            (p + "attn_norm.weight", h + "input_layernorm.weight"),
            (p + "attn_q.weight", h + "self_attn.q_proj.weight"),
            (p + "attn_k.weight", h + "self_attn.k_proj.weight"),
            (p + "attn_v.weight", h + "self_attn.v_proj.weight"),
            (p + "attn_output.weight", h + "self_attn.o_proj.weight"),
            (p + "ffn_norm.weight", h + "post_attention_layernorm.weight"),
            (p + "ffn_gate.weight", h + "mlp.gate_proj.weight"),
            (p + "ffn_up.weight", h + "mlp.up_proj.weight"),
            (p + "ffn_down.weight", h + "mlp.down_proj.weight"),
        ]
    names += [("output_norm.weight", "model.norm.weight"), ("output.weight", "lm_head.weight")]
    return names


def mixed_type(gname):
    """The type of each tensor in gqa-mixed.gguf."""
    special = {
        "token_embd.weight": Q.Q8_0,
        "output.weight": Q.Q4_1,
        "blk.0.attn_norm.weight": Q.BF16,
        "blk.0.ffn_norm.weight": Q.F16,
    }
    if gname in special:
        return special[gname]
    if gname.endswith("norm.weight"):
        return Q.F32
    order = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
    layer = int(gname.split(".")[1])
    j = order.index(gname.split(".")[2])
    return [Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.F16, Q.BF16][(layer * 7 + j) % 5]


def write(path, cfg, weights, type_of):
    L, heads, kv = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    theta = cfg.get("rope_theta") or cfg["rope_parameters"]["rope_theta"]
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("gqa-f32 (llamaref test fixture)")
    w.add_block_count(L)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(theta)
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(1 if all(type_of(g) == Q.F32 for g, _ in gguf_names(L)) else 7)
    expected = {}
    for gname, hname in gguf_names(L):
        x = weights[hname]
        if ".attn_q." in gname:
            x = permute(x, heads)
        elif ".attn_k." in gname:
            x = permute(x, kv)
        qt = type_of(gname)
        if qt == Q.F32:
            w.add_tensor(gname, np.ascontiguousarray(x, dtype=np.float32))
            raw = x.astype(np.float32).view(np.uint8)
        else:
            raw = gguf.quants.quantize(x.astype(np.float32), qt)
            w.add_tensor(gname, raw, raw_shape=raw.shape, raw_dtype=qt)
        # What a loader must give: gguf's dequantization, the rows put back.
        d = gguf.quants.dequantize(raw, qt).reshape(weights[hname].shape).astype(np.float32)
        if ".attn_q." in gname:
            d = unpermute(d, heads)
        elif ".attn_k." in gname:
            d = unpermute(d, kv)
        if qt == Q.F32:
            assert np.array_equal(d.view(np.uint32), weights[hname].view(np.uint32)), gname
        expected[hname] = expected_entry(gname, qt, d)
    return finish(w, expected)


def expected_entry(gname, qt, d):
    """What the C loader must reproduce of one tensor: its dequantized float32 values'
    shape, FNV-1a 64 hash and first values."""
    b = np.ascontiguousarray(d, dtype="<f4").tobytes()
    return {"gguf": gname, "type": qt.name, "shape": list(d.shape), "fnv1a64": fnv1a64(b),
            "first": [float(v) for v in d.reshape(-1)[:4]]}


def finish(w, expected):
    """Writes a GGUFWriter's file out; returns its expectations."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expected


def kquant_type(gname):
    """The type of each tensor in kquant-mixed.gguf: Q4_K_M's choices (Q4_K for most,
    Q6_K for attn_v, ffn_down and output), the other K-quants on the rest, o_proj in Q8_0
    (its rows of 128 fit no K-quant; llama.cpp falls back likewise), norms F32."""
    return {
        "token_embd.weight": Q.Q3_K,
        "blk.0.attn_q.weight": Q.Q4_K,
        "blk.0.attn_k.weight": Q.Q5_K,
        "blk.0.attn_v.weight": Q.Q6_K,
        "blk.0.attn_output.weight": Q.Q8_0,
        "blk.0.ffn_gate.weight": Q.Q4_K,
        "blk.0.ffn_up.weight": Q.Q2_K,
        "blk.0.ffn_down.weight": Q.Q6_K,
        "output.weight": Q.Q8_K,
    }.get(gname, Q.F32)


def write_kquant_model(path):
    """One layer, vocab 64, hidden 256, intermediate 256, 4 heads of 32, 2 KV heads."""
    rng = np.random.RandomState(4242)
    V, H, I, heads, kv, hd = 64, 256, 256, 4, 2, 32
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("kquant-mixed (llamaref test fixture)")
    w.add_block_count(1)
    w.add_context_length(256)
    w.add_embedding_length(H)
    w.add_feed_forward_length(I)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(hd)
    w.add_vocab_size(V)
    w.add_file_type(15)  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    shapes = {"model.embed_tokens.weight": (V, H), "model.layers.0.self_attn.q_proj.weight": (heads * hd, H),
              "model.layers.0.self_attn.k_proj.weight": (kv * hd, H),
              "model.layers.0.self_attn.v_proj.weight": (kv * hd, H),
              "model.layers.0.self_attn.o_proj.weight": (H, heads * hd),
              "model.layers.0.mlp.gate_proj.weight": (I, H), "model.layers.0.mlp.up_proj.weight": (I, H),
              "model.layers.0.mlp.down_proj.weight": (H, I), "lm_head.weight": (V, H)}
    expected = {}
    for gname, hname in gguf_names(1):
        qt = kquant_type(gname)
        shape = shapes.get(hname, (H,))
        if qt == Q.F32:
            x = (1.0 + rng.uniform(-0.1, 0.1, size=shape)).astype(np.float32)
            w.add_tensor(gname, x)
            d = x
        else:
            if qt == Q.Q8_0:
                raw = gguf.quants.quantize(rng.uniform(-0.2, 0.2, size=shape).astype(np.float32), qt)
            else:
                raw = random_kquant(rng, qt, shape[0], shape[1], 0.2)
            w.add_tensor(gname, raw, raw_shape=raw.shape, raw_dtype=qt)
            # Stored as is: the bytes are the permuted layout; a loader must undo it.
            d = dequantize(raw, qt).reshape(shape).astype(np.float32)
            if ".attn_q." in gname:
                d = unpermute(d, heads)
            elif ".attn_k." in gname:
                d = unpermute(d, kv)
        expected[hname] = expected_entry(gname, qt, d)
    return finish(w, expected)


def write_seed(path, kind):
    """A one-layer model for the fuzzer: vocab 8, hidden 32, 2 heads, 1 KV head of 16."""
    rng = np.random.RandomState(1234)
    V, H, I, heads, kv, hd = 8, 32, 32, 2, 1, 16
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(H)
    w.add_feed_forward_length(I)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(hd)
    w.add_vocab_size(V)
    if kind == "tied":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(2.0)
        w.add_key_length(hd)
        w.add_value_length(hd)
    shapes = [("token_embd.weight", (V, H)), ("blk.0.attn_norm.weight", (H,)), ("blk.0.attn_q.weight", (heads * hd, H)),
              ("blk.0.attn_k.weight", (kv * hd, H)), ("blk.0.attn_v.weight", (kv * hd, H)),
              ("blk.0.attn_output.weight", (H, heads * hd)), ("blk.0.ffn_norm.weight", (H,)),
              ("blk.0.ffn_gate.weight", (I, H)), ("blk.0.ffn_up.weight", (I, H)), ("blk.0.ffn_down.weight", (H, I)),
              ("output_norm.weight", (H,))]
    if kind == "tied":
        shapes += [("blk.0.attn_q.bias", (heads * hd,)), ("blk.0.attn_k.bias", (kv * hd,)),
                   ("blk.0.attn_v.bias", (kv * hd,)), ("blk.0.attn_output.bias", (H,))]
    else:
        shapes += [("output.weight", (V, H))]
    types = [Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.F16, Q.BF16]
    for i, (name, shape) in enumerate(shapes):
        x = rng.uniform(-1, 1, size=shape).astype(np.float32)
        qt = types[i % len(types)] if kind == "mixed" and len(shape) == 2 else Q.F32
        if qt == Q.F32:
            w.add_tensor(name, x)
        else:
            raw = gguf.quants.quantize(x, qt)
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--blocks":
        write_kquant_blocks(sys.argv[2])
        return 0
    if len(sys.argv) != 1:
        sys.exit("usage: make-test-gguf.py [--blocks FILE]")
    with open(os.path.join(MODEL, "config.json")) as f:
        cfg = json.load(f)
    weights = read_safetensors(os.path.join(MODEL, "model.safetensors"))
    for name, x in weights.items():
        for n_head in (cfg["num_attention_heads"], cfg["num_key_value_heads"]):
            if x.ndim == 2 and x.shape[0] % (2 * n_head) == 0:
                assert np.array_equal(unpermute(permute(x, n_head), n_head), x), name
    os.makedirs(OUT, exist_ok=True)
    expected = {
        "gqa-f32.gguf": write(os.path.join(OUT, "gqa-f32.gguf"), cfg, weights, lambda g: Q.F32),
        "gqa-mixed.gguf": write(os.path.join(OUT, "gqa-mixed.gguf"), cfg, weights, mixed_type),
        "kquant-mixed.gguf": write_kquant_model(os.path.join(OUT, "kquant-mixed.gguf")),
    }
    doc = {
        "generator": "tools/make-test-gguf.py with gguf %s, numpy %s"
        % (importlib.metadata.version("gguf"), np.__version__),
        "hash": "FNV-1a 64 of the float32 little-endian bytes, Hugging Face layout",
        "files": expected,
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote", ", ".join(sorted(expected)), "and expected.json to", OUT)
    data = os.path.join(ROOT, "tests", "data")
    os.makedirs(data, exist_ok=True)
    write_kquant_blocks(os.path.join(data, "kquant-blocks.bin"))
    print("wrote the K-quant blocks to", data)
    seeds = os.path.join(ROOT, "tests", "fuzz", "corpus", "gguf")
    os.makedirs(seeds, exist_ok=True)
    for kind in ("f32", "mixed", "tied"):
        write_seed(os.path.join(seeds, "seed-%s.gguf" % kind), kind)
    print("wrote the fuzz seeds to", seeds)


if __name__ == "__main__":
    sys.exit(main())
