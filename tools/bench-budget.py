#!/usr/bin/env python3
"""bench-budget.py: what a row of bench/gpu_bench's JSON (--json FILE; .gz too) spends its
time on, and what its target leaves. For each row with a per-op profile (profile_ns) it
scales the profiled pass's op times to the timed pass (seconds / the profile's sum: the
profile's events make its pass slower), splits them into the GEMMs (qkv_proj, o_proj,
gate_up_proj, down_proj, lm_head), attention and the rest (norms, RoPE, the activation,
the embedding, setup, all-reduce), and sets them against the target time (target x
floor_s):

  leaves   = target time - the GEMMs' time: what the target leaves for everything else
  over     = the row's time - the target time (0 where it is met)

A row whose GEMMs alone fill its target ("GEMM-bound") cannot meet it by faster kernels of
the other ops: only faster GEMMs, or the other ops' work fused into them, can. A row timed
with CUDA graphs has its profile from eager steps (a graph's kernels are not timed one by
one), so its split is the eager step's, scaled to the graph's time: the overlap a graph
gains is spread over every op. This is the
arithmetic of docs/performance.md's "run 35" section, kept here so that every run's JSON
gives it.

Usage: tools/bench-budget.py [--json] FILE...
Exit status: 0; 1 where a file cannot be read or is not gpu_bench's JSON (the file and the
field are named); 2 for bad options."""
import argparse
import gzip
import json
import sys

# The GEMMs and attention as bench/gpu_bench.c counts them (its GEMM_OPS, and the
# attention share it prints beside it): keep the two in step.
GEMMS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head")
ATTENTION = ("attention",)
ROW_FIELDS = ("seconds", "floor_s", "target")


class BadInput(Exception):
    pass


def load(path):
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt") as f:
            d = json.load(f)
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror or e}")
    except (ValueError, EOFError) as e:
        raise BadInput(f"{path}: not JSON: {e}")
    if not isinstance(d, dict) or not isinstance(d.get("rows"), list):
        raise BadInput(f"{path}: no 'rows' list (not bench/gpu_bench's --json output)")
    return d


def number(path, where, obj, key):
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadInput(f"{path}: {where}: '{key}' is {json.dumps(v)}, not a number")
    return float(v)


def budget(path, i, r):
    """The row's split, or None where it has no profile (a row gpu_bench ran without one)."""
    if not isinstance(r, dict):
        raise BadInput(f"{path}: rows[{i}] is not an object")
    where = f"rows[{i}]"
    if not isinstance(r.get("name"), str):
        raise BadInput(f"{path}: {where}: 'name' is missing or not a string")
    where = f"rows[{i}] ({r['name']})"
    t, floor, target = (number(path, where, r, k) for k in ROW_FIELDS)
    if t <= 0 or floor <= 0 or target <= 0:
        raise BadInput(f"{path}: {where}: seconds, floor_s and target must be positive")
    prof = r.get("profile_ns")
    if prof is None:
        return None
    if not isinstance(prof, dict) or not prof:
        raise BadInput(f"{path}: {where}: 'profile_ns' is not an object of op times")
    ns = {k: number(path, f"{where} profile_ns", prof, k) for k in prof}
    if any(v < 0 for v in ns.values()):
        raise BadInput(f"{path}: {where}: profile_ns holds a negative time")
    total = sum(ns.values())
    if total <= 0:
        raise BadInput(f"{path}: {where}: profile_ns sums to 0")
    scale = t / (total * 1e-9)
    gemm = sum(ns.get(k, 0.0) for k in GEMMS) * 1e-9 * scale
    attn = sum(ns.get(k, 0.0) for k in ATTENTION) * 1e-9 * scale
    rest = t - gemm - attn
    target_s = target * floor
    return {
        "name": r["name"],
        "seconds": t,
        "ratio": t / floor,
        "target": target,
        "target_s": target_s,
        "met": t <= target_s,
        "over_s": max(t - target_s, 0.0),
        "profile_scale": scale,
        "gemm_s": gemm,
        "attention_s": attn,
        "rest_s": rest,
        "leaves_s": target_s - gemm,
        "gemm_bound": gemm >= target_s,
        "graphs": bool(r.get("graphs")),
    }


def verdict(b):
    if b["met"]:
        return "met"
    if b["gemm_bound"]:
        return "GEMM-bound: the GEMMs alone fill the target"
    other = b["attention_s"] + b["rest_s"]
    return (f"{1e3 * b['over_s']:.2f} ms over: attention and the rest take {1e3 * other:.2f} ms "
            f"of the {1e3 * b['leaves_s']:.2f} the target leaves them")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the splits as JSON, one object a file")
    ap.add_argument("files", nargs="+", metavar="FILE", help="bench/gpu_bench --json output (.gz too)")
    a = ap.parse_args(argv)
    out = []
    try:
        for path in a.files:
            d = load(path)
            rows = [(r, budget(path, i, r)) for i, r in enumerate(d["rows"])]
            out.append({"file": path, "card": d.get("card"), "rows": [b for _, b in rows if b],
                        "unprofiled": [r["name"] for r, b in rows if b is None]})
    except BadInput as e:
        print(f"bench-budget: {e}", file=sys.stderr)
        return 1
    if a.json:
        json.dump(out if len(out) > 1 else out[0], sys.stdout, indent=1)
        print()
        return 0
    for f in out:
        print(f"{f['file']} ({f['card'] or 'card not named'}): op times scaled from the profiled pass "
              "to the timed one")
        print()
        print("| row | time | ratio | target time | GEMMs | attention | the rest | the target leaves "
              "for all but the GEMMs | verdict |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for b in f["rows"]:
            print(f"| {b['name']} | {1e3 * b['seconds']:.3f} ms | {b['ratio']:.2f} | "
                  f"{1e3 * b['target_s']:.3f} ms ({b['target']:.2f}) | {1e3 * b['gemm_s']:.2f} ms | "
                  f"{1e3 * b['attention_s']:.2f} ms | {1e3 * b['rest_s']:.2f} ms | "
                  f"{1e3 * b['leaves_s']:.2f} ms | {verdict(b)} |")
        if any(b["graphs"] for b in f["rows"]):
            print()
            print("rows with graphs: the split is the eager steps' profile, scaled to the graph's time")
        if f["unprofiled"]:
            print()
            print("rows without a profile (gpu_bench --no-profile): " + ", ".join(f["unprofiled"]))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
