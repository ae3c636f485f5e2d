#!/usr/bin/env python3
"""error-table.py: runs `llama-diff check --json` on every committed fixture at every
CPU precision and tp size, and prints the worst relative L2 error per stage kind as a
Markdown table (the measured column of docs/tolerances.md)."""
import argparse
import json
import os
import subprocess
import sys

CASES = [
    ("gqa-f32", "gqa-f32-batch"),
    ("mha-bias-bf16", "mha-bias-bf16"),
    ("mqa-hd-f16", "mqa-hd-f16"),
    ("long-gqa-f32", "long-gqa-f32-300"),
]
KINDS = ["embedding", "norm", "projection", "attention", "activation", "block", "layer", "logits"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--llama-diff", default="./llama-diff")
    ap.add_argument("--fixtures", default="fixtures")
    ap.add_argument("--tp", default="1,2,4")
    args = ap.parse_args()
    print("| precision | fixture | tp | " + " | ".join(KINDS) + " | result |")
    print("|---|---|---|" + "---|" * len(KINDS) + "---|")
    bad = False
    for prec in ("f64", "f32"):
        for model, fixture in CASES:
            for tp in args.tp.split(","):
                cmd = [args.llama_diff, "check", "--model", os.path.join(args.fixtures, "models", model),
                       "--fixture", os.path.join(args.fixtures, "golden", fixture + ".safetensors"),
                       "--precision", prec, "--tp", tp, "--json"]
                p = subprocess.run(cmd, capture_output=True, text=True)
                if p.returncode == 2:
                    print(f"| {prec} | {fixture} | {tp} | " + " | ".join("-" for _ in KINDS) +
                          f" | not shardable: {p.stderr.strip().split(': ', 1)[-1]} |")
                    continue
                d = json.loads(p.stdout)
                worst = {}
                for s in d["stages"]:
                    worst[s["kind"]] = max(worst.get(s["kind"], 0.0), s["rel_l2"])
                cells = [f"{worst[k]:.1e}" if k in worst else "-" for k in KINDS]
                bad |= d["result"] != "agree"
                print(f"| {prec} | {fixture} | {tp} | " + " | ".join(cells) + f" | {d['result']} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
