#!/usr/bin/env python3
"""error-table.py: runs `llama-diff check --json` on every committed fixture at every
CPU precision and tp size, and prints the worst relative L2 error per stage kind as a
Markdown table (the measured column of docs/tolerances.md). With --from-jsonl it
tabulates the runs tools/gpu-check.sh recorded on a GPU machine (diff-all.jsonl)."""
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


def row(prec, fixture, tp, d):
    worst = {}
    for s in d["stages"]:
        worst[s["kind"]] = max(worst.get(s["kind"], 0.0), s["rel_l2"])
    share = max(s["budget_used"] for s in d["stages"])
    cells = [f"{worst[k]:.1e}" if k in worst else "-" for k in KINDS]
    return f"| {prec} | {fixture} | {tp} | " + " | ".join(cells) + f" | {100 * share:.0f}% | {d['result']} |"


def tabulate_jsonl(path):
    print("| precision | fixture | tp | " + " | ".join(KINDS) + " | worst share of budget | result |")
    print("|---|---|---|" + "---|" * len(KINDS) + "---|---|")
    bad = False
    text, dec, at = open(path).read(), json.JSONDecoder(), 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            break
        r, at = dec.raw_decode(text, at)  # one record per run; records may span lines
        if True:
            if r["report"] is None:
                bad = True
                print(f"| {r['precision']} | {r['fixture']} | {r['tp']} | exit {r['exit']} |")
                continue
            bad |= r["report"]["result"] != "agree"
            print(row(r["precision"], r["fixture"], r["tp"], r["report"]))
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--llama-diff", default="./llama-diff")
    ap.add_argument("--fixtures", default="fixtures")
    ap.add_argument("--tp", default="1,2,4")
    ap.add_argument("--from-jsonl", help="tabulate llama-diff reports recorded by tools/gpu-check.sh")
    args = ap.parse_args()
    if args.from_jsonl:
        return tabulate_jsonl(args.from_jsonl)
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
