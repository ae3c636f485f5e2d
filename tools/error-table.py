#!/usr/bin/env python3
"""error-table.py: runs `llama-diff check --json` on every committed fixture at every
CPU precision and tp size, and prints the worst relative L2 error per stage kind as a
Markdown table (the measured column of docs/tolerances.md). With --from-jsonl it
tabulates the runs tools/gpu-check.sh recorded on a GPU machine (diff-all.jsonl). With
--model-ratios it prints instead, per precision and stage kind, measured / predicted
(the error model of docs/error-model.md): median (min-max) over every stage of every run
(the table of docs/error-model.md)."""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
# KINDS: the stage kinds, in the order of the tolerance table's columns.
from llamaref_stages import KINDS  # noqa: E402  (tools/llamaref_stages.py)

CASES = [
    ("gqa-f32", "gqa-f32-batch"),
    ("mha-bias-bf16", "mha-bias-bf16"),
    ("mqa-hd-f16", "mqa-hd-f16"),
    ("long-gqa-f32", "long-gqa-f32-300"),
]


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


def model_ratios(reports):
    """reports: (backend, precision, report) -> the docs/error-model.md table."""
    import statistics
    groups = {}
    for backend, prec, d in reports:
        for s in d["stages"]:
            if s.get("predicted") is None:
                continue
            key = (backend, prec, s["kind"])
            if s["predicted"] == 0:  # exact by the model: exact in fact, or infinitely off
                groups.setdefault(key, []).append(None if s["rel_l2"] == 0 else float("inf"))
                continue
            groups.setdefault(key, []).append(s["rel_l2"] / s["predicted"])
    print("| backend | precision | " + " | ".join(KINDS) + " | all stages |")
    print("|---|---|" + "---|" * len(KINDS) + "---|")
    seen = sorted({(b, p) for b, p, _ in groups}, key=lambda x: (x[0], ["f64", "f32", "fp32", "fp16", "bf16"].index(x[1])))
    for b, p in seen:
        cells, every = [], []
        for k in KINDS:
            v = groups.get((b, p, k), [])
            exact = v and all(x is None for x in v)
            v = [x for x in v if x is not None]
            if not v:
                cells.append("exact" if exact else "-")
                continue
            every += v
            cells.append(f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})")
        tail = f"{statistics.median(every):.2f} ({min(every):.2f}-{max(every):.2f}), {len(every)} stages" if every else "-"
        print(f"| {b} | {p} | " + " | ".join(cells) + f" | {tail} |")
    return 0


def read_jsonl(path):
    text, dec, at, out = open(path).read(), json.JSONDecoder(), 0, []
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return out
        r, at = dec.raw_decode(text, at)
        out.append(r)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--llama-diff", default="./llama-diff")
    ap.add_argument("--fixtures", default="fixtures")
    ap.add_argument("--tp", default="1,2,4")
    ap.add_argument("--from-jsonl", help="tabulate llama-diff reports recorded by tools/gpu-check.sh")
    ap.add_argument("--model-ratios", action="store_true",
                    help="measured / predicted by the error model, per precision and stage kind")
    args = ap.parse_args()
    if args.model_ratios:
        reports = []
        if args.from_jsonl:
            reports += [("cuda", r["precision"], r["report"]) for r in read_jsonl(args.from_jsonl) if r["report"]]
        else:
            for prec in ("f64", "f32"):
                for model, fixture in CASES:
                    for tp in args.tp.split(","):
                        cmd = [args.llama_diff, "check", "--model", os.path.join(args.fixtures, "models", model),
                               "--fixture", os.path.join(args.fixtures, "golden", fixture + ".safetensors"),
                               "--precision", prec, "--tp", tp, "--json", "--quiet"]
                        p = subprocess.run(cmd, capture_output=True, text=True)
                        if p.returncode != 2:
                            reports.append(("cpu", prec, json.loads(p.stdout)))
        return model_ratios(reports)
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
