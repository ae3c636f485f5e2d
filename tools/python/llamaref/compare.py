"""compare: `llama-diff compare --json` from Python, for pytest and scripts.

:func:`compare` runs the C tool (the one judge: budgets, coverage, drill-down all live
there) and returns its parsed JSON; a divergence or a coverage failure raises
:class:`Divergence` or :class:`CoverageError`, both AssertionErrors, so pytest reports
them as failed assertions, with a stage table in the message.
"""

import json
import os
import shutil
import subprocess

from .golden import read_metadata


class LlamaDiffError(RuntimeError):
    """llama-diff could not be found or run, or refused its input (exit 2)."""


class CompareError(AssertionError):
    """The dump under test does not match the golden; .result is llama-diff's JSON,
    .table every stage, one line each."""

    def __init__(self, message, result, table):
        super().__init__(message)
        self.result = result
        self.table = table


class Divergence(CompareError):
    """A stage diverges (fails its budget, its worst token, an element, or holds NaN/Inf)."""


class CoverageError(CompareError):
    """Stages of the golden are missing from the dump under test."""


def find_llama_diff(llama_diff=None):
    """The llama-diff to run: the argument, else $LLAMA_DIFF, else llama-diff on PATH."""
    if llama_diff:
        cand, src = os.fspath(llama_diff), "llama_diff="
    elif os.environ.get("LLAMA_DIFF"):
        cand, src = os.environ["LLAMA_DIFF"], "$LLAMA_DIFF"
    else:
        cand, src = shutil.which("llama-diff"), "PATH"
        if cand is None:
            raise LlamaDiffError("llama-diff not found: pass llama_diff=, set $LLAMA_DIFF, "
                                 "or put llama-diff on PATH")
    if not (os.path.isfile(cand) and os.access(cand, os.X_OK)):
        raise LlamaDiffError(f"{cand} (from {src}): not an executable file")
    return cand


def _pct(x):
    # The share of the budget used: a percentage up to 10 budgets, then a multiple.
    if x is None or x < 0:
        return "-"
    return f"{100 * x:.0f}%" if x < 10 else f"{x:.2g}x"


def _num(x):
    return "-" if x is None else ("nan/inf" if x < 0 else f"{x:.2e}")


def stage_table(result, only_failing=False):
    """llama-diff's JSON stages as a text table, one line per stage."""
    rows = [s for s in result.get("stages", []) if not (only_failing and s.get("pass"))]
    w = max([len(s["name"]) for s in rows] + [5])
    out = [f"{'stage':<{w}}  {'kind':<10}  {'rel_l2':>9}  {'budget':>9}  {'used':>7}  "
           f"{'token':>7}  {'over':>6}  verdict"]
    for s in rows:
        tok = s.get("token") or {}
        el = s.get("elements") or {}
        verdict = "PASS" if s.get("pass") else "FAIL " + ",".join(s.get("fails", []))
        out.append(f"{s['name']:<{w}}  {s.get('kind', ''):<10}  {_num(s.get('rel_l2')):>9}  "
                   f"{_num(s.get('tolerance')):>9}  {_pct(s.get('budget_used')):>7}  "
                   f"{_pct(tok.get('budget_used')):>7}  {el.get('over', 0):>6}  {verdict}")
    return "\n".join(out)


def _message(result, dump, golden):
    cov = result.get("coverage") or {}
    missing = cov.get("missing") or []
    lines = [f"llama-diff compare {dump} {golden}: {result.get('result')} at {result.get('precision')} "
             f"budgets; {result.get('passed', 0)} stages agree, {result.get('failed', 0)} diverge; "
             f"{cov.get('compared', '?')} of {cov.get('golden', '?')} golden stages compared"]
    if result.get("first_divergence"):
        dd = result.get("drill_down") or {}
        lines.append(f"first divergence: {result['first_divergence']}"
                     + (f" (error grows x{dd['growth']:.3g} there, by {dd.get('by')})"
                        if dd.get("growth") is not None else ""))
    if missing:
        lines.append(f"missing from the dump ({len(missing)}): " + ", ".join(missing[:8])
                     + (" ..." if len(missing) > 8 else ""))
    for u in (cov.get("unmatched") or [])[:8]:
        if isinstance(u, dict):
            lines.append(f"not in the golden: {u.get('name')}"
                         + (f" (did you mean {u['nearest']}?)" if u.get("nearest") else ""))
        else:
            lines.append(f"not in the golden: {u}")
    failing = [s for s in result.get("stages", []) if not s.get("pass")]
    if failing:
        lines.append(stage_table({"stages": failing[:20]}))
        if len(failing) > 20:
            lines.append(f"... {len(failing) - 20} more failing stages (.table has every stage)")
    return "\n".join(lines)


def compare(dump, golden, model=None, *, precision=None, stages=None, names=None, rounding=None,
            report=None, llama_diff=None, args=(), timeout=None):
    """Runs `llama-diff compare DUMP GOLDEN --json` and returns its parsed JSON.

    dump: the file under test; golden: the reference (both llama-golden/1). model: the
    checkpoint directory or GGUF file (`--model`: real-model budgets). precision,
    stages, report: `--precision`, `--stages PATTERN`, `--report FILE`. names: the name
    flavour of the dump (`--names`; "hf", the spec's names, passes none); None takes the
    dump's own `names` metadata, which :func:`llamaref.write_dump` and the hooks write for
    an engine's own names. rounding: where the engine rounds (`--rounding`, one of
    ROUNDING_PROFILES), over the dump's own `rounding` metadata. args: more
    arguments. llama_diff: the executable (else $LLAMA_DIFF, else PATH).

    Raises Divergence or CoverageError (AssertionErrors carrying .result and .table) when
    the dump does not match, LlamaDiffError when llama-diff cannot run or refuses its input.
    """
    exe = find_llama_diff(llama_diff)
    dump, golden = os.fspath(dump), os.fspath(golden)
    if names is None:
        try:
            names = read_metadata(dump).get("names")
        except ValueError:
            names = None          # llama-diff itself names what is wrong with the file
    if names == "hf":
        names = None              # the spec's own names: nothing to translate
    cmd = [exe, "compare", dump, golden, "--json"]
    for opt, val in (("--model", model), ("--precision", precision), ("--stages", stages),
                     ("--names", names), ("--rounding", rounding), ("--report", report)):
        if val is not None:
            cmd += [opt, os.fspath(val)]
    cmd += [os.fspath(a) for a in args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LlamaDiffError(f"{exe}: {exc}")
    if p.returncode not in (0, 1):
        err = p.stderr.strip() or p.stdout.strip()[-500:]
        raise LlamaDiffError(f"llama-diff compare exited {p.returncode}: {err}")
    try:
        result = json.loads(p.stdout)
    except ValueError as exc:
        raise LlamaDiffError(f"llama-diff compare exited {p.returncode} without JSON ({exc}): "
                             f"{p.stderr.strip()}")
    cov = result.get("coverage") or {}
    ok = (p.returncode == 0 and result.get("result") == "agree" and not cov.get("missing")
          and result.get("failed", 0) == 0)
    if ok:
        return result
    table = stage_table(result)
    msg = _message(result, dump, golden)
    if cov.get("missing"):
        raise CoverageError(msg, result, table)
    raise Divergence(msg, result, table)
