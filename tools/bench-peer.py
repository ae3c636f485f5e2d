#!/usr/bin/env python3
"""bench-peer.py: the peer of bench/gpu_bench.c: transformers' LlamaForCausalLM in bf16
with sdpa attention on the same checkpoint and the same token ids (the formulas below are
gpu_bench.c's), the same four workloads: prefill of 1 x 2048 and 8 x 512 (forward into an
empty DynamicCache, logits of the last token of each sequence), and decode at batch 1 and
32 over 1024 tokens of context (per step: one token per sequence, its logits), eager with
a DynamicCache; and, with --compile, decode with a StaticCache and torch.compile
(mode reduce-overhead, CUDA graphs), skipped with a note where that fails. Timing:
torch.cuda.synchronize around each step, median. Memory: torch.cuda.max_memory_allocated
(allocations, CUDA context excluded, as gpu_bench counts). --compare-logits FILE compares
gpu_bench's float32 last-token logits of the 1 x 2048 prefill with this model's.
Usage: bench-peer.py --model DIR [--json FILE] [--reps N] [--steps N] [--compile]
                     [--compare-logits FILE]"""
import argparse
import inspect
import json
import statistics
import sys
import time
import traceback

import torch
import transformers
from transformers import LlamaForCausalLM


def prompt_token(s, t, V):
    return (s * 1000003 + t * 7919 + 17) % V


def step_token(s, k, V):
    return (k * 104729 + s * 15485863 + 5) % V


def sync_time(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--json")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--warm", type=int, default=4)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compare-logits")
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    dev = "cuda"
    t0 = time.time()
    model = LlamaForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, attn_implementation="sdpa",
                                             device_map=dev)
    model.eval()
    load_s = time.time() - t0
    V = model.config.vocab_size
    card = torch.cuda.get_device_name(0)
    print(f"peer: transformers {transformers.__version__}, torch {torch.__version__}, {card}; load {load_s:.1f} s",
          flush=True)
    rows, notes = [], []

    def record(name, kind, B, T, times, mode):
        med = statistics.median(times)
        mem = torch.cuda.max_memory_allocated()
        rows.append({"name": name, "kind": kind, "batch": B, "tokens": T, "mode": mode, "seconds": med,
                     "repeats": len(times), "gpu_mem_bytes": mem})
        print(f"  {name:28s} {mode:16s} {med * 1e3:9.3f} ms  max allocated {mem / 2**30:.2f} GiB", flush=True)

    @torch.inference_mode()
    def prefill(B, T):
        ids = torch.tensor([[prompt_token(s, t, V) for t in range(T)] for s in range(B)], device=dev)
        torch.cuda.reset_peak_memory_stats()
        times, first = [], None
        for i in range(a.reps + 2):
            dt, out = sync_time(lambda: model(input_ids=ids, use_cache=True, logits_to_keep=1))
            if i == 0:
                first = out.logits[:, -1, :].float().cpu()
            if i >= 2:
                times.append(dt)
            del out
        record(f"prefill {B} x {T}", "prefill", B, T, times, "eager")
        return first

    @torch.inference_mode()
    def decode_eager(B, ctx):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        ids = torch.tensor([[prompt_token(s, t, V) for t in range(ctx)] for s in range(B)], device=dev)
        # The context a sequence at a time would change nothing in HF; one batched forward.
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        past = out.past_key_values
        del out
        times = []
        for k in range(a.warm + a.steps):
            tok = torch.tensor([[step_token(s, k, V)] for s in range(B)], device=dev)
            dt, out = sync_time(lambda: model(input_ids=tok, past_key_values=past, use_cache=True))
            past = out.past_key_values
            if k >= a.warm:
                times.append(dt)
            del out
        record(f"decode batch {B}, ctx {ctx}", "decode", B, ctx, times, "eager")
        del past

    @torch.inference_mode()
    def decode_static(B, ctx):
        from transformers import StaticCache
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        cap = ctx + a.warm + a.steps + 8
        sig = inspect.signature(StaticCache.__init__).parameters
        kw = {"config": model.config, "max_cache_len": cap}
        for k, v in (("max_batch_size", B), ("device", dev), ("dtype", torch.bfloat16)):
            if k in sig:
                kw[k] = v
        cache = StaticCache(**kw)
        ids = torch.tensor([[prompt_token(s, t, V) for t in range(ctx)] for s in range(B)], device=dev)
        model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1,
              cache_position=torch.arange(ctx, device=dev))
        fwd = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
        times = []
        c0 = time.time()
        for k in range(a.warm + 3 + a.steps):
            tok = torch.tensor([[step_token(s, k, V)] for s in range(B)], device=dev)
            pos = torch.tensor([ctx + k], device=dev)
            dt, out = sync_time(lambda: fwd(input_ids=tok, past_key_values=cache, use_cache=True,
                                            cache_position=pos, position_ids=pos.expand(B, 1)).logits.clone())
            if k == a.warm + 2:
                print(f"    (compile and warm-up {time.time() - c0:.1f} s)", flush=True)
            if k >= a.warm + 3:
                times.append(dt)
        record(f"decode batch {B}, ctx {ctx}", "decode", B, ctx, times, "static+compile")

    only = set(a.only.split(",")) if a.only else None
    first = None
    if not only or "prefill" in only:
        first = prefill(1, 2048)
        prefill(8, 512)
    if not only or "decode" in only:
        decode_eager(1, 1024)
        decode_eager(32, 1024)
    if a.compile:
        for B in (1, 32):
            try:
                decode_static(B, 1024)
            except Exception as e:  # noqa: BLE001 - the note says what failed
                msg = f"static cache + torch.compile, batch {B}: {type(e).__name__}: {str(e)[:300]}"
                print("  skipped: " + msg, flush=True)
                traceback.print_exc(limit=3)
                notes.append(msg)
    cmp = None
    if a.compare_logits and first is not None:
        import numpy as np
        ours = torch.from_numpy(np.fromfile(a.compare_logits, dtype=np.float32))
        ref = first[0]
        rel = float((ours - ref).norm() / ref.norm())
        cmp = {"rel_l2": rel, "argmax_ours": int(ours.argmax()), "argmax_peer": int(ref.argmax()),
               "top5_overlap": len(set(ours.topk(5).indices.tolist()) & set(ref.topk(5).indices.tolist()))}
        print(f"  last-token logits of prefill 1 x 2048, ours vs peer: rel L2 {rel:.3e}, argmax {cmp['argmax_ours']} vs "
              f"{cmp['argmax_peer']}, top-5 overlap {cmp['top5_overlap']}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"tool": "bench-peer", "card": card, "transformers": transformers.__version__,
                       "torch": torch.__version__, "load_s": load_s, "rows": rows, "notes": notes,
                       "logits_vs_gpu_bench": cmp}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
