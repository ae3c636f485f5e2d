#!/usr/bin/env python3
"""make-bench-model.py: writes a Llama-3-8B-shaped Hugging Face checkpoint of random bf16
weights (hidden 4096, 32 layers, 32 heads, 8 KV heads, intermediate 14336, vocabulary
128256, RoPE theta 500000, as Meta-Llama-3-8B's config.json) for the GPU bench
(bench/gpu_bench.c, tools/bench-peer.py): sharded
safetensors with an index, drawn on the GPU (normal, std 0.02; norms 1) so that 16 GB
take seconds (on the CPU where there is none). Reuses DIR when its config.json is there.
--norm-spread S draws the norm weights uniformly in 1 +- S instead (a checkpoint whose
norms can show a norm-weight bug; tools/gpu-shape-check.sh).
Usage: make-bench-model.py DIR [--layers N] [--seed S] [--norm-spread S]"""
import argparse
import json
import os
import sys
import time

import torch
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--norm-spread", type=float, default=0.0)
    a = ap.parse_args()
    if os.path.exists(os.path.join(a.dir, "config.json")):
        print(f"{a.dir}: reusing")
        return
    os.makedirs(a.dir, exist_ok=True)
    H, I, V, NH, NKV, L = 4096, 14336, 128256, 32, 8, a.layers
    hd = H // NH
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
        "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": NH,
        "num_key_value_heads": NKV, "head_dim": hd, "vocab_size": V, "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu",
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "bos_token_id": 128000, "eos_token_id": 128001,
    }
    # On the GPU where there is one; on the CPU otherwise (slower, and other values for
    # the same seed: no row of the bench depends on them).
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=dev).manual_seed(a.seed)

    def rnd(*shape):
        return (torch.randn(*shape, generator=g, device=dev, dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()

    def ones(n):
        if a.norm_spread == 0:
            return torch.ones(n, dtype=torch.bfloat16)
        u = torch.rand(n, generator=g, device=dev, dtype=torch.float32) * 2 - 1
        return (1 + a.norm_spread * u).to(torch.bfloat16).cpu()

    shards, cur, t0 = [], {}, time.time()
    cur["model.embed_tokens.weight"] = rnd(V, H)
    for l in range(L):
        p = f"model.layers.{l}."
        cur[p + "input_layernorm.weight"] = ones(H)
        cur[p + "post_attention_layernorm.weight"] = ones(H)
        cur[p + "self_attn.q_proj.weight"] = rnd(NH * hd, H)
        cur[p + "self_attn.k_proj.weight"] = rnd(NKV * hd, H)
        cur[p + "self_attn.v_proj.weight"] = rnd(NKV * hd, H)
        cur[p + "self_attn.o_proj.weight"] = rnd(H, NH * hd)
        cur[p + "mlp.gate_proj.weight"] = rnd(I, H)
        cur[p + "mlp.up_proj.weight"] = rnd(I, H)
        cur[p + "mlp.down_proj.weight"] = rnd(H, I)
        if (l + 1) % 8 == 0:
            shards.append(cur)
            cur = {}
    cur["model.norm.weight"] = ones(H)
    cur["lm_head.weight"] = rnd(V, H)
    shards.append(cur)
    n = len(shards)
    wmap, total = {}, 0
    for i, sh in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        save_file(sh, os.path.join(a.dir, name), metadata={"format": "pt"})
        for k, v in sh.items():
            wmap[k] = name
            total += v.numel() * 2
    with open(os.path.join(a.dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=1)
    with open(os.path.join(a.dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    print(f"{a.dir}: {total / 2**30:.2f} GiB in {n} shards, {time.time() - t0:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
