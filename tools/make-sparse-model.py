#!/usr/bin/env python3
"""make-sparse-model.py: writes a Llama-shaped Hugging Face checkpoint (config.json and one
model.safetensors of bf16) as a sparse file: the norms are 1, every other weight is a
hole that reads as 0, so that the disk holds kilobytes whatever the shape. For measuring
memory, not numbers: the CPU reference's weight cache (tests/test_cpu_memory.sh,
docs/performance.md), the loaders. Python's standard library only. Default shape:
Llama-3-8B's (hidden 4096, 32 layers, 32 heads, 8 KV heads, intermediate 14336,
vocabulary 128256). --random SEED writes every weight but the norms instead, drawn from
SEED (bf16 of magnitude 2^-7 to 2^-3, either sign; a dense file, so for small shapes):
a model with numbers in it for bit-for-bit checks on shapes the fixtures lack (a
vocabulary of thousands: tests/test_cpu_memory.sh).
Usage: make-sparse-model.py DIR [--layers N] [--hidden H] [--heads N] [--kv-heads N]
                            [--intermediate I] [--vocab V] [--tied] [--random SEED]"""
import argparse
import json
import os
import random
import struct
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=14336)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--tied", action="store_true")
    ap.add_argument("--random", type=int, default=None, metavar="SEED")
    a = ap.parse_args()
    H, I, V, NH, NKV, L = a.hidden, a.intermediate, a.vocab, a.heads, a.kv_heads, a.layers
    hd = H // NH
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
        "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": NH,
        "num_key_value_heads": NKV, "head_dim": hd, "vocab_size": V, "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu",
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": a.tied,
        "torch_dtype": "bfloat16",
    }
    shapes = [("model.embed_tokens.weight", (V, H))]
    for l in range(L):
        p = f"model.layers.{l}."
        shapes += [(p + "input_layernorm.weight", (H,)), (p + "post_attention_layernorm.weight", (H,)),
                   (p + "self_attn.q_proj.weight", (NH * hd, H)), (p + "self_attn.k_proj.weight", (NKV * hd, H)),
                   (p + "self_attn.v_proj.weight", (NKV * hd, H)), (p + "self_attn.o_proj.weight", (H, NH * hd)),
                   (p + "mlp.gate_proj.weight", (I, H)), (p + "mlp.up_proj.weight", (I, H)),
                   (p + "mlp.down_proj.weight", (H, I))]
    shapes.append(("model.norm.weight", (H,)))
    if not a.tied:
        shapes.append(("lm_head.weight", (V, H)))
    header, off, norms, dense = {"__metadata__": {"format": "pt"}}, 0, [], []
    for name, shape in shapes:
        n = 1
        for d in shape:
            n *= d
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + 2 * n]}
        if name.endswith("norm.weight"):
            norms.append((off, n))
        elif a.random is not None:
            dense.append((off, n))
        off += 2 * n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        base = 8 + len(text)
        for o, n in norms:
            f.seek(base + o)
            f.write(b"\x80\x3f" * n)  # bf16 1.0
        rng = random.Random(a.random)
        # a random byte -> a bf16's high byte: its sign, and exponent 0x78..0x7b with the
        # low byte's top bit (2^-7 <= |w| < 2^-3)
        high = bytes((b & 0x80) | (0x3C + (b & 1)) for b in range(256))
        step = 1 << 24  # elements per write (randbytes takes at most 2^28 bytes at once)
        for o, n in dense:
            f.seek(base + o)
            for i in range(0, n, step):
                m = min(step, n - i)
                w = bytearray(2 * m)
                w[0::2] = rng.randbytes(m)
                w[1::2] = rng.randbytes(m).translate(high)
                f.write(w)
        f.truncate(base + off)
    with open(os.path.join(a.dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    kind = "sparse" if a.random is None else f"random, seed {a.random}"
    print(f"{a.dir}: {off / 2**30:.2f} GiB of bf16 weights ({kind})")


if __name__ == "__main__":
    sys.exit(main())
