#!/usr/bin/env python3
"""torch-lowp-error.py: the error of PyTorch's own run of the committed fixture models in
bf16, fp16 and fp32 (TF32 off) on a CUDA GPU, against the same float64 golden fixtures
that llamaref is checked against. The CUDA path's budgets in the tolerance table
(ref/compare.c) are 1.5x these figures, per stage kind.

Runs transformers' LlamaForCausalLM as users do (default attention implementation),
each sequence of a fixture separately with its position_ids, hooks the spec's stages, and
prints per fixture and dtype the worst relative L2 error per stage kind, plus a JSON
summary (--json FILE).

Usage: python3 tools/torch-lowp-error.py [--fixtures DIR] [--device cuda] [--json OUT]
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

CASES = [("gqa-f32", "gqa-f32-batch"), ("mha-bias-bf16", "mha-bias-bf16"),
         ("mqa-hd-f16", "mqa-hd-f16"), ("long-gqa-f32", "long-gqa-f32-300")]
SUB = {"input_layernorm": "norm", "post_attention_layernorm": "norm",
       "self_attn.q_proj": "projection", "self_attn.k_proj": "projection",
       "self_attn.v_proj": "projection", "self_attn.o_proj": "projection",
       "mlp.gate_proj": "projection", "mlp.up_proj": "projection", "mlp.down_proj": "projection",
       "self_attn.o_proj.input": "attention", "mlp.act_fn": "activation",
       "mlp.down_proj.input": "activation", "self_attn": "block", "mlp": "block"}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def kind_of(stage):
    """The stage kind, as lr_stage_kind_of() in ref/compare.c names it."""
    if stage == "model.embed_tokens":
        return "embedding"
    if stage == "model.norm":
        return "norm"
    if stage == "lm_head":
        return "logits"
    parts = stage.split(".", 3)
    return "layer" if len(parts) == 3 else SUB[parts[3]]


def run(model_dir, fixture, dtype, device):
    gold = load_file(fixture)
    ids, pos = gold["input_ids"], gold["positions"]
    lens = gold["seq_lens"].tolist() if "seq_lens" in gold else [len(ids)]
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=DTYPES[dtype]).to(device).eval()
    mods = dict(model.named_modules())
    stages = [k for k in gold if k not in ("input_ids", "positions", "seq_lens")]
    got, hooks = {k: [] for k in stages}, []
    for name in stages:
        if name.endswith(".input"):
            hooks.append(mods[name[:-6]].register_forward_pre_hook(
                lambda _m, inp, n=name: got[n].append(inp[0].detach())))
        else:
            hooks.append(mods[name].register_forward_hook(
                lambda _m, _i, out, n=name: got[n].append((out[0] if isinstance(out, tuple) else out).detach())))
    with torch.no_grad():
        at = 0
        for n in lens:
            model(input_ids=ids[at:at + n][None].to(device), position_ids=pos[at:at + n][None].to(device),
                  use_cache=False)
            at += n
    for h in hooks:
        h.remove()
    errs = {}
    for name in stages:
        a = torch.cat([t[0].reshape(t.shape[1], -1) for t in got[name]], 0).double().cpu()
        b = gold[name].double()
        errs[name] = ((a - b).norm() / b.norm()).item()
    return errs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "fixtures"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", help="write every stage's error here")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    out = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
           "results": {}}
    kinds = ["embedding", "norm", "projection", "attention", "activation", "block", "layer", "logits"]
    print(f"torch {torch.__version__} on {out['device']}")
    print("| dtype | fixture | " + " | ".join(kinds) + " |")
    print("|---|---|" + "---|" * len(kinds))
    worst = {}
    for dtype in DTYPES:
        for model, fixture in CASES:
            errs = run(os.path.join(args.fixtures, "models", model),
                       os.path.join(args.fixtures, "golden", fixture + ".safetensors"), dtype, args.device)
            out["results"][f"{dtype}/{fixture}"] = errs
            per = {}
            for s, e in errs.items():
                per[kind_of(s)] = max(per.get(kind_of(s), 0.0), e)
                key = (dtype, kind_of(s))
                worst[key] = max(worst.get(key, 0.0), e)
            print(f"| {dtype} | {fixture} | " + " | ".join(f"{per[k]:.2e}" if k in per else "-" for k in kinds) + " |")
    print("\nworst over fixtures, and 1.5x that (the CUDA path's budget):")
    for dtype in DTYPES:
        print(f"  {dtype}: " + ", ".join(f"{k} {worst[(dtype, k)]:.2e} -> {1.5 * worst[(dtype, k)]:.2e}"
                                        for k in kinds if (dtype, k) in worst))
    out["worst"] = {f"{d}/{k}": v for (d, k), v in worst.items()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
