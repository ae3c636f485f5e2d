#!/usr/bin/env python3
"""ktrace-summary.py: what each kernel of a replayed CUDA graph takes, from a trace written
by the kernel tracer (bench/ktrace.c, through tools/ktrace.sh), with the overlaps that
programmatic dependent launch gives a graph's kernels counted once.

One launch of a graph is one step (its kernels share the graph's id and the launch's
correlation id). In a step the kernels are taken in the order they started; each gets
the time from where everything before it had ended (or its own start, if later) to its
end: its "own" time. A kernel that starts early, as a PDL launch does, and waits for the one
before it, so gets only what it adds past that one's end; the time no kernel runs is "idle".
Own times and idle add up to the step's wall time (first start to last end). "dur" is a
kernel's start to its end, waiting included.

Between one launch's end and the next one's start, the kernels run outside the graph (a
decode step's LM head and sampling, where they are launched eagerly) and the time no kernel
runs (the host's share of a step: its syncs, copies and launches; the tracer's own cost on
the host falls there too) are given as "between launches"; the step's period (launch start
to launch start) is the wall time plus those.

By default the graph with the most launches is summarised (a decode step with graphs; among
graphs launched equally often, the first captured: gpu_bench --only 45 --graphs gives batch
1's); the
first --skip launches (default 2) are left out as warm-up. A trace with no graph launches
(an eager program) is summarised over all its kernels as one span.

Usage: tools/ktrace-summary.py [--graph ID] [--skip N] [--per N] [--full-names] [--json]
                               [--against BASE] TRACE
  --per N   also give each row's own time divided by N (the layers of a step: 32 for
            Llama-3-8B), where a kernel runs once a layer
  --against BASE  each kernel's own time a step in TRACE against BASE, a trace of another
            configuration summarised alike (its most launched graph; --graph applies to
            TRACE alone), and the step's wall, idle and period: which kernels a change made
            faster or slower, with the overlaps counted as in each
Exit status: 0; 1 where the trace cannot be read, a line is not JSON or lacks a field (the
file, the line and the field are named), or the graph asked for is not in it; 2 for bad
options."""
import argparse
import collections
import gzip
import json
import re
import sys

FIELDS = ("name", "start", "end", "graph", "corr")


class BadInput(Exception):
    pass


def read(path):
    opener = gzip.open if path.endswith(".gz") else open
    kernels, closing = [], None
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BadInput(f"{path}:{no}: not JSON ({e.msg})")
                if not isinstance(rec, dict):
                    raise BadInput(f"{path}:{no}: not a JSON object")
                if "ktrace" in rec:
                    continue
                if "dropped" in rec:
                    closing = rec
                    continue
                for k in FIELDS:
                    if k not in rec:
                        raise BadInput(f"{path}:{no}: field '{k}' missing")
                for k in FIELDS[1:]:
                    if not isinstance(rec[k], int):
                        raise BadInput(f"{path}:{no}: field '{k}' is not an integer")
                if rec["end"] < rec["start"]:
                    raise BadInput(f"{path}:{no}: field 'end' is before 'start'")
                kernels.append(rec)
    except OSError as e:
        raise BadInput(f"{path}: {e.strerror or e}")
    except (EOFError, gzip.BadGzipFile) as e:
        raise BadInput(f"{path}: {e}")
    if not kernels:
        raise BadInput(f"{path}: no kernels in the trace")
    return kernels, closing


def short(name):
    """The kernel's name without 'void ' and its parameter list (its template arguments kept)."""
    name = re.sub(r"^void ", "", name)
    depth = 0
    for i, c in enumerate(name):
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "(" and depth == 0:
            return name[:i]
    return name


def step_split(ks):
    """(own times in start order, idle, wall) of one step's kernels: window_split over the
    step's own span."""
    t0, t1 = min(k["start"] for k in ks), max(k["end"] for k in ks)
    own, idle = window_split(ks, t0, t1)
    return own, idle, t1 - t0


def window_split(ks, t0, t1):
    """(own times, idle) of the kernels run between t0 and t1, each clipped to the window, in
    the order they started: each its time from where those before it ended (or its own
    start) to its end, and the time none runs."""
    t, idle, own = t0, 0, []
    for k in sorted(ks, key=lambda k: (k["start"], k["end"])):
        a, b = max(k["start"], t0), min(k["end"], t1)
        if a > t:
            idle += a - t
        own.append((k, max(0, b - max(a, t))))
        t = max(t, b)
    return own, idle + max(0, t1 - t)


def add_row(rows, k, own, full):
    name = k["name"] if full else short(k["name"])
    r = rows.setdefault(name, {"name": name, "count": 0, "own_ns": 0, "dur_ns": 0})
    r["count"] += 1
    r["own_ns"] += own
    r["dur_ns"] += k["end"] - k["start"]


def finish_rows(rows, n):
    for r in rows.values():
        r["per_step"] = r["count"] / n
        r["own_us"] = r["own_ns"] / n / 1e3
        r["dur_us_each"] = r["dur_ns"] / r["count"] / 1e3
    return sorted(rows.values(), key=lambda r: -r["own_ns"])


def summarise(kernels, graph=None, skip=2, full=False):
    launches = collections.OrderedDict()
    for k in sorted(kernels, key=lambda k: k["start"]):
        if k["graph"]:
            launches.setdefault((k["graph"], k["corr"]), []).append(k)
    counts = collections.Counter(g for g, _ in launches)
    if graph is None and counts:
        graph = max(counts, key=lambda g: (counts[g], -g))  # among equals the first captured
    if graph is not None:
        if graph not in counts:
            raise BadInput(f"graph {graph} is not in the trace (graphs: {sorted(counts) or 'none'})")
        steps = [ks for (g, _), ks in launches.items() if g == graph][skip:]
        if not steps:
            raise BadInput(f"graph {graph} has {counts[graph]} launches, none left after --skip {skip}")
    else:
        steps = [kernels]
    rows = collections.OrderedDict()
    walls, idles = [], []
    for ks in steps:
        own, idle, wall = step_split(ks)
        walls.append(wall)
        idles.append(idle)
        for k, o in own:
            add_row(rows, k, o, full)
    n = len(steps)
    out = {
        "graph": graph,
        "steps": n,
        "wall_us": sum(walls) / n / 1e3,
        "wall_us_min": min(walls) / 1e3,
        "wall_us_max": max(walls) / 1e3,
        "idle_us": sum(idles) / n / 1e3,
        "kernels": finish_rows(rows, n),
    }
    # Between one launch's end and the next one's start: the kernels run outside the graph
    # (a decode step's LM head and sampling, launched eagerly) and the time none runs (the
    # host's part of a step: its syncs and launches).
    if graph is not None and len(steps) > 1:
        inside = {id(k) for ks in steps for k in ks}
        bounds = [(min(k["start"] for k in ks), max(k["end"] for k in ks)) for ks in steps]
        brows, bidle, periods = collections.OrderedDict(), 0, []
        for (s0, e0), (s1, _) in zip(bounds, bounds[1:]):
            periods.append(s1 - s0)
            ks = [k for k in kernels if id(k) not in inside and k["end"] > e0 and k["start"] < s1]
            own, idle = window_split(ks, e0, s1)
            bidle += idle
            for k, o in own:
                add_row(brows, k, o, full)
        m = len(periods)
        out["period_us"] = sum(periods) / m / 1e3
        out["between"] = {"gaps": m, "idle_us": bidle / m / 1e3, "kernels": finish_rows(brows, m)}
    return out


def compare(base, s):
    """Each kernel's own time a step in s against base (the same kernel name), the rows in
    either; the step's wall, idle and period (where both have them) likewise."""
    b = {r["name"]: r for r in base["kernels"]}
    t = {r["name"]: r for r in s["kernels"]}
    names = [r["name"] for r in s["kernels"]] + [n for n in b if n not in t]
    rows = []
    for n in names:
        bo = b[n]["own_us"] if n in b else None
        so = t[n]["own_us"] if n in t else None
        rows.append({"name": n, "base_own_us": bo, "own_us": so, "delta_us": (so or 0.0) - (bo or 0.0)})
    out = {"kernels": rows}
    for k in ("wall_us", "idle_us", "period_us"):
        if k in base and k in s:
            out[k] = {"base": base[k], "trace": s[k], "delta": s[k] - base[k]}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--graph", type=int, help="the graph id to summarise (default: the most launched)")
    ap.add_argument("--skip", type=int, default=2, help="launches left out at the start (default 2)")
    ap.add_argument("--per", type=int, help="also divide each row's own time by N (layers a step)")
    ap.add_argument("--full-names", action="store_true", help="the kernels' whole demangled names")
    ap.add_argument("--json", action="store_true", help="the summary as JSON")
    ap.add_argument("--against", metavar="BASE", help="a second trace, summarised alike: each kernel's own "
                    "time against it (a configuration against the defaults)")
    a = ap.parse_args()
    if a.skip < 0:
        ap.error("--skip must be 0 or more")
    if a.per is not None and a.per < 1:
        ap.error("--per must be 1 or more")
    try:
        kernels, closing = read(a.trace)
        s = summarise(kernels, a.graph, a.skip, a.full_names)
    except BadInput as e:
        print(f"ktrace-summary.py: {e}", file=sys.stderr)
        return 1
    s["dropped"] = closing.get("dropped") if closing else None
    if a.against:
        try:
            bk, bclosing = read(a.against)
            base = summarise(bk, None, a.skip, a.full_names)
        except BadInput as e:
            print(f"ktrace-summary.py: {e}", file=sys.stderr)
            return 1
        base["dropped"] = bclosing.get("dropped") if bclosing else None
        d = compare(base, s)
        if a.json:
            json.dump({"base": base, "trace": s, "compare": d}, sys.stdout, indent=1)
            print()
            return 0
        print(f"{a.trace} against {a.against} (own us a step; each the graph launched most, "
              f"{a.skip} launches skipped):")
        for k, what in (("wall_us", "the graph's wall"), ("idle_us", "idle"), ("period_us", "a step's period")):
            if k in d:
                print(f"  {what}: {d[k]['base']:.1f} -> {d[k]['trace']:.1f} ({d[k]['delta']:+.1f})")
        per = f" | delta / {a.per}" if a.per else ""
        print(f"\n| kernel | base | this | delta{per} |")
        print("| --- | --- | --- | ---" + (" | ---" if a.per else "") + " |")
        for r in d["kernels"]:
            bo = f"{r['base_own_us']:.1f}" if r["base_own_us"] is not None else "–"
            so = f"{r['own_us']:.1f}" if r["own_us"] is not None else "–"
            p = f" | {r['delta_us'] / a.per:+.2f}" if a.per else ""
            print(f"| {r['name']} | {bo} | {so} | {r['delta_us']:+.1f}{p} |")
        return 0
    if a.json:
        json.dump(s, sys.stdout, indent=1)
        print()
        return 0
    what = f"graph {s['graph']}, {s['steps']} launches" if s["graph"] is not None else "all kernels, one span"
    print(f"{a.trace}: {what}; wall {s['wall_us']:.1f} us a step (min {s['wall_us_min']:.1f}, "
          f"max {s['wall_us_max']:.1f}), idle {s['idle_us']:.1f} us")
    if closing is None:
        print("the trace has no closing line: the program did not exit normally, kernels may be missing")
    elif closing.get("dropped"):
        print(f"CUPTI dropped {closing['dropped']} records: the trace is incomplete")
    per = f" | own / {a.per} (us)" if a.per else ""
    print(f"\n| kernel | a step | own (us) | share{per} | dur each (us) |")
    print("| --- | --- | --- | ---" + (" | ---" if a.per else "") + " | --- |")
    for r in s["kernels"]:
        share = r["own_us"] / s["wall_us"] if s["wall_us"] else 0.0
        p = f" | {r['own_us'] / a.per:.2f}" if a.per else ""
        print(f"| {r['name']} | {r['per_step']:g} | {r['own_us']:.1f} | {share:.3f}{p} | {r['dur_us_each']:.2f} |")
    print(f"| (idle) | | {s['idle_us']:.1f} | {s['idle_us'] / s['wall_us'] if s['wall_us'] else 0:.3f}"
          + (" |" if a.per else "") + " | |")
    if "between" in s:
        b = s["between"]
        print(f"\nbetween launches ({b['gaps']} gaps): a step's period {s['period_us']:.1f} us = the graph's wall "
              f"{s['wall_us']:.1f} + kernels outside it {sum(r['own_us'] for r in b['kernels']):.1f} + idle "
              f"{b['idle_us']:.1f} (the host's part, with the tracer's cost)")
        if b["kernels"]:
            print("\n| kernel outside the graph | a gap | own (us) | dur each (us) |")
            print("| --- | --- | --- | --- |")
            for r in b["kernels"]:
                print(f"| {r['name']} | {r['per_step']:g} | {r['own_us']:.1f} | {r['dur_us_each']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
