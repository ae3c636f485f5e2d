#!/usr/bin/env python3
"""torch-lowp-error.py: the error of PyTorch's own run of the committed fixture models in
bf16, fp16 and fp32 (TF32 off) on a CUDA GPU, against the same float64 golden fixtures
that llamaref is checked against. The CUDA path's budgets in the tolerance table
(ref/compare.c) are 1.5x these figures, per stage kind.

Runs transformers' LlamaForCausalLM as users do (default attention implementation),
each sequence of a fixture separately with its position_ids, hooks the spec's stages, and
prints per fixture and dtype the worst relative L2 error per stage kind, plus a JSON
summary (--json FILE).

The real model, SmolLM2-135M-Instruct (fixtures/golden/smollm2-135m.safetensors), is
included when its GGUF is in the llamaref cache (tools/fetch-smollm2.sh) or given with
--gguf. It is loaded the way the golden was made: transformers' GGUF loader
(from_pretrained(dir, gguf_file=...)), which needs the `gguf` and `accelerate` packages;
on a machine without them (e.g. no registry: carry their wheels and put them on
PYTHONPATH), the script falls back to the numpy GGUF reader of
tools/gen-smollm2-fixture.py, whose dequantized weights the generator checks to be
bit-identical to transformers' before writing the golden. The loader used is printed and
recorded. It is left out of the "worst over fixtures" budget lines (the committed budgets
come from the random fixtures); its row stands beside them.

Usage: python3 tools/torch-lowp-error.py [--fixtures DIR] [--device cuda|cpu]
           [--dtypes bf16,fp16,fp32] [--cases random,smollm2] [--gguf FILE] [--json OUT]
"""
import argparse
import importlib.util
import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
# kind_of(stage): the stage kind, as lr_stage_kind_of() in ref/check/compare.c names it.
from llamaref_stages import KINDS, kind_of  # noqa: E402  (tools/llamaref_stages.py)

CASES = [("gqa-f32", "gqa-f32-batch"), ("mha-bias-bf16", "mha-bias-bf16"),
         ("mqa-hd-f16", "mqa-hd-f16"), ("long-gqa-f32", "long-gqa-f32-300")]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


SMOL_FIXTURE = "smollm2-135m"
HERE = os.path.dirname(os.path.abspath(__file__))


def smol_gen():
    """tools/gen-smollm2-fixture.py as a module (its numpy GGUF reader and paths)."""
    spec = importlib.util.spec_from_file_location("gen_smollm2", os.path.join(HERE, "gen-smollm2-fixture.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_gguf_model(gguf_path, dtype):
    """SmolLM2 from its GGUF: transformers' loader when gguf and accelerate import, else
    the numpy reader (bit-identical weights, checked by gen-smollm2-fixture.py)."""
    try:
        import accelerate  # noqa: F401
        import gguf  # noqa: F401
    except ImportError as exc:
        missing = str(exc)
    else:
        model = LlamaForCausalLM.from_pretrained(os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path),
                                                 dtype=DTYPES[dtype])
        # Newer transformers can keep GGUF weights packed (GgufLinear, float32 kernels):
        # that is not a plain bf16/fp16 run, so only a fully dequantized model is used.
        packed = [n for n, m in model.named_modules()
                  if n.endswith("_proj") and (type(m) is not torch.nn.Linear or m.weight.dtype != DTYPES[dtype])]
        if not packed:
            return model, "transformers gguf_file (gguf %s)" % version_of("gguf")
        missing = f"transformers kept {packed[0]} packed ({type(model.get_submodule(packed[0])).__name__})"
        del model
    g = smol_gen()
    config, weights, _, _ = g.numpy_model_from_gguf(gguf_path)
    cfg = LlamaConfig(vocab_size=weights["model.embed_tokens.weight"].shape[0], max_position_embeddings=8192,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2,
                      **{k: v for k, v in config.items() if k != "model_type"})
    model = LlamaForCausalLM(cfg)
    state = {k: torch.from_numpy(v.astype("float32")) for k, v in weights.items()}
    miss, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in miss if k != "lm_head.weight"]:
        raise RuntimeError(f"numpy GGUF reader: missing {miss}, unexpected {unexpected}")
    model.tie_weights()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    # Parameters only, as from_pretrained(dtype=...) leaves them: model.to(dtype) would
    # also round the rotary inv_freq buffer, which from_pretrained keeps in float32.
    for p in model.parameters():
        p.data = p.data.to(DTYPES[dtype])
    return model, "numpy GGUF reader (transformers' loader not used: %s)" % missing


def version_of(pkg):
    from importlib.metadata import version
    try:
        return version(pkg)
    except Exception:  # noqa: BLE001
        return "?"


def run(model_dir, fixture, dtype, device, gguf=None):
    gold = load_file(fixture)
    ids, pos = gold["input_ids"], gold["positions"]
    lens = gold["seq_lens"].tolist() if "seq_lens" in gold else [len(ids)]
    if gguf:
        model, loader = load_gguf_model(gguf, dtype)
        run.loader = loader
    else:
        model = LlamaForCausalLM.from_pretrained(model_dir, dtype=DTYPES[dtype])
    model = model.to(device).eval()
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
    ap.add_argument("--dtypes", default="bf16,fp16,fp32", help="comma-separated subset of bf16,fp16,fp32")
    ap.add_argument("--cases", default="random,smollm2",
                    help="random (the committed random fixtures), smollm2 (the real model; skipped with a "
                         "note when its GGUF is absent), or both (default)")
    ap.add_argument("--gguf", help="SmolLM2 GGUF (default: the llamaref cache)")
    ap.add_argument("--json", help="write every stage's error here")
    args = ap.parse_args()
    dtypes = [d for d in args.dtypes.split(",") if d]
    for d in dtypes:
        if d not in DTYPES:
            ap.error(f"--dtypes: unknown dtype {d!r}")
    cases = [c for c in args.cases.split(",") if c]
    for c in cases:
        if c not in ("random", "smollm2"):
            ap.error(f"--cases: unknown case set {c!r}")
    todo = [(m, f, None) for m, f in CASES] if "random" in cases else []
    if "smollm2" in cases:
        gguf = args.gguf or str(smol_gen().default_gguf())
        fx = os.path.join(args.fixtures, "golden", SMOL_FIXTURE + ".safetensors")
        if os.path.isfile(gguf) and os.path.isfile(fx):
            todo.append((None, SMOL_FIXTURE, gguf))
        elif args.gguf:
            ap.error(f"--gguf {gguf}: no such file")
        else:
            print(f"note: {gguf} absent (tools/fetch-smollm2.sh fetches it); {SMOL_FIXTURE} left out")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    out = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
           "results": {}}
    kinds = list(KINDS)
    print(f"torch {torch.__version__} on {out['device']}")
    print("| dtype | fixture | " + " | ".join(kinds) + " |")
    print("|---|---|" + "---|" * len(kinds))
    worst = {}
    for dtype in dtypes:
        for model, fixture, gguf in todo:
            errs = run(model and os.path.join(args.fixtures, "models", model),
                       os.path.join(args.fixtures, "golden", fixture + ".safetensors"), dtype, args.device, gguf)
            out["results"][f"{dtype}/{fixture}"] = errs
            if gguf:
                out.setdefault("loader", {})[fixture] = run.loader
            per = {}
            for s, e in errs.items():
                per[kind_of(s)] = max(per.get(kind_of(s), 0.0), e)
                if gguf:
                    continue        # the real model is reported beside the budgets, not in them
                key = (dtype, kind_of(s))
                worst[key] = max(worst.get(key, 0.0), e)
            print(f"| {dtype} | {fixture} | " + " | ".join(f"{per[k]:.2e}" if k in per else "-" for k in kinds) + " |")
    for fixture, loader in out.get("loader", {}).items():
        print(f"{fixture} loaded by {loader}")
    print("\nworst over the random fixtures, and 1.5x that (the CUDA path's budget):")
    for dtype in dtypes:
        if not any(d == dtype for d, _ in worst):
            continue
        print(f"  {dtype}: " + ", ".join(f"{k} {worst[(dtype, k)]:.2e} -> {1.5 * worst[(dtype, k)]:.2e}"
                                        for k in kinds if (dtype, k) in worst))
    out["worst"] = {f"{d}/{k}": v for (d, k), v in worst.items()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
