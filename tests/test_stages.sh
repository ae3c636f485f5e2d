#!/bin/sh
# test_stages.sh: the Python tools' stage table (tools/llamaref_stages.py) says what the C
# library's does (ref/llamaref.h: LR_LAYER_STAGE_MAP, LR_MODEL_STAGE_MAP, the kind and
# width enums; lr_stage_kind_name's spellings): the same stages, in the same order, with
# the same kinds and widths. And every committed golden fixture names only stages the
# module knows, holds every required one, and stores each at the module's width; where
# its model is bundled, llama-diff check lists the fixture's stages in the module's
# forward order with the module's kinds. Needs python3 (standard library only); skips
# (77) without it.
set -u
LD=${LLAMA_DIFF:-./llama-diff}
FX=${LR_FIXTURES:?}
TMP=${LR_TMPDIR:?}/stages-sh
SRC=$(cd "$FX/.." && pwd)
if ! command -v python3 >/dev/null 2>&1; then
    echo "test_stages: python3 not found; skipped"
    exit 77
fi
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

cat >"$TMP/check.py" <<'PY'
"""check.py SRC table | SRC meta FIXTURE | SRC fixture FIXTURE [LLAMA_DIFF_JSON]"""
import glob
import json
import os
import re
import struct
import sys

src, mode = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(src, "tools"))
import llamaref_stages as S  # noqa: E402

bad = []


def check(cond, what):
    if not cond:
        bad.append(what)
    return cond


def same_list(got, want, what):
    """got == want, or a FAIL naming the first rows that differ."""
    got, want = list(got), list(want)
    if got == want:
        return
    rows = [f"\n    row {i}: module {got[i] if i < len(got) else '(none)'!r}, "
            f"C {want[i] if i < len(want) else '(none)'!r}"
            for i in range(max(len(got), len(want)))
            if i >= len(got) or i >= len(want) or got[i] != want[i]]
    check(False, f"{what}: the module and the C side differ" + "".join(rows[:4]) +
          (f"\n    ... {len(rows) - 4} more rows" if len(rows) > 4 else ""))


def uncomment(text):
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


def x_rows(text, macro):
    """The X(ID, "name", KIND, WIDTH) rows of an X-macro, in order."""
    m = re.search(r"#define\s+" + macro + r"\(X\)((?:[^\n]*\\\n)*[^\n]*)", text)
    if not check(m is not None, f"ref/llamaref.h: no #define {macro}(X)"):
        return []
    rows = re.findall(r'X\(\s*(\w+)\s*,\s*"([^"]*)"\s*,\s*(\w+)\s*,\s*(\w+)\s*\)', m.group(1))
    check(len(rows) > 0, f"ref/llamaref.h: {macro}: no X(...) rows parsed")
    return rows


def enum_members(text, typename, prefix):
    m = re.search(r"typedef\s+enum\s*\{([^}]*)\}\s*" + typename + r"\s*;", text)
    if not check(m is not None, f"ref/llamaref.h: no enum {typename}"):
        return []
    return [x.lower() for x in re.findall(r"\b" + prefix + r"(\w+)", m.group(1))]


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def table():
    h = uncomment(open(os.path.join(src, "ref", "llamaref.h")).read())
    layer = x_rows(h, "LR_LAYER_STAGE_MAP")
    model = x_rows(h, "LR_MODEL_STAGE_MAP")
    kinds = enum_members(h, "lr_stage_kind", "LR_STAGE_")
    widths = enum_members(h, "lr_stage_width_unit", "LR_WIDTH_")
    same_list(S.KINDS, [k for k in kinds if k != "unknown"], "stage kinds (lr_stage_kind)")
    same_list(S.WIDTHS, widths, "width units (lr_stage_width_unit)")
    # lr_stage_kind_name's spellings (what llama-diff --json writes as "kind").
    names = None
    for c in glob.glob(os.path.join(src, "ref", "**", "*.c"), recursive=True):
        m = re.search(r"lr_stage_kind_name\s*\(\s*lr_stage_kind\s+\w+\s*\)\s*\{[^{}]*?"
                      r"names\[\]\s*=\s*\{([^}]*)\}", uncomment(open(c).read()))
        if m:
            names = re.findall(r'"([^"]*)"', m.group(1))
    if check(names is not None, "ref/: lr_stage_kind_name's names[] not found"):
        same_list(list(S.KINDS) + ["unknown"], names, "lr_stage_kind_name spellings")
    same_list(S.LAYER_STAGE_TABLE, [(s, k.lower(), w.lower()) for _, s, k, w in layer],
              "layer stages (LR_LAYER_STAGE_MAP: suffix, kind, width)")
    same_list(S.MODEL_STAGE_TABLE, [(n, k.lower(), w.lower()) for _, n, k, w in model],
              "model stages (LR_MODEL_STAGE_MAP: name, kind, width)")
    for _, _, k, w in layer + model:
        check(k.lower() in S.KINDS and w.lower() in S.WIDTHS, f"C row kind {k} / width {w} unknown")
    same_list(S.LAYER_STAGES, [s for _, s, _, _ in layer if s], "LAYER_STAGES (the sub-stages)")
    same_list(S.MODEL_STAGES, [n for _, n, _, _ in model], "MODEL_STAGES")
    # The forward order (ref/llamaref.h): the first model stage, every layer's stages,
    # then the other model stages.
    same_list(list(S.STAGES_BEFORE_LAYERS) + list(S.STAGES_AFTER_LAYERS), S.MODEL_STAGES,
              "model stages before + after the layers")
    check(len(model) > 1 and S.STAGES_BEFORE_LAYERS == (model[0][1],),
          "STAGES_BEFORE_LAYERS is not the first LR_MODEL_STAGE_MAP row")
    for n_layers in range(4):
        want = [(model[0][1], model[0][2], model[0][3])] if model else []
        for i in range(n_layers):
            want += [(f"model.layers.{i}.{s}" if s else f"model.layers.{i}", k, w)
                     for _, s, k, w in layer]
        want += [(n, k, w) for _, n, k, w in model[1:]]
        got = S.stage_names(n_layers)
        same_list(got, [n for n, _, _ in want], f"stage_names({n_layers})")
        same_list([(n, S.kind_of(n).upper(), S.width_of(n).upper()) for n in got if S.is_stage(n)],
                  want, f"kind_of / width_of over stage_names({n_layers})")
        same_list(sorted(reversed(got), key=S.stage_order), got, f"stage_order over stage_names({n_layers})")
    for n in ("", "model", "model.layers", "model.layers.", "model.layers.01", "model.layers.x",
              "model.layers.-1", "model.layers.0.", "model.layers.0.mlp.foo", "model.layers.0.mlp.",
              "lm_head.weight", "model.embed_tokens.weight", "layers.0.mlp"):
        try:
            S.kind_of(n)
            check(False, f"kind_of({n!r}) accepts a name that is no stage")
        except ValueError:
            pass
        check(not S.is_stage(n) and S.stage_order(n) is None, f"{n!r} taken for a stage")
    check(S.kind_of("model.layers.12345.mlp") == "block", "kind_of of a deep layer")


def meta(path):
    print(read_header(path).get("__metadata__", {}).get("model", ""))


def config_widths(path):
    c = json.load(open(path))
    heads = c["num_attention_heads"]
    kv = c.get("num_key_value_heads") or heads
    hd = c.get("head_dim") or c["hidden_size"] // heads
    return {"hidden": c["hidden_size"], "q": heads * hd, "kv": kv * hd,
            "intermediate": c["intermediate_size"], "vocab": c["vocab_size"]}


def fixture(path, report=None):
    name = os.path.basename(path)
    h = read_header(path)
    stages = [k for k in h if k not in ("__metadata__", "input_ids", "positions", "seq_lens")]
    unknown = [s for s in stages if not S.is_stage(s)]
    check(not unknown, f"{name}: names the module does not know: {unknown[:5]}")
    if unknown:
        return
    layers = sorted({S.stage_order(s)[1] for s in stages if S.stage_order(s)[0] == 1})
    n_layers = layers[-1] + 1 if layers else 0
    check(n_layers > 0, f"{name}: no layer stages")
    required = list(S.MODEL_STAGES) + [f"model.layers.{i}" for i in range(n_layers)]
    missing = [s for s in required if s not in h]
    check(not missing, f"{name}: required stages missing: {missing[:5]}")
    forward = [s for s in S.stage_names(n_layers) if s in h]
    same_list(sorted(stages, key=S.stage_order), forward, f"{name}: stages in the module's forward order")
    cfg = os.path.join(src, "fixtures", "models", h.get("__metadata__", {}).get("model", ""), "config.json")
    if os.path.isfile(cfg):
        w = config_widths(cfg)
        for s in stages:
            shape = h[s]["shape"]
            check(len(shape) == 2 and shape[1] == w[S.width_of(s)],
                  f"{name}: {s} has shape {shape}, the module's width is {S.width_of(s)} = {w[S.width_of(s)]}")
    if report:
        d = json.load(open(report))
        got = [x["name"] for x in d["stages"]]
        same_list(forward, got, f"{name}: llama-diff check's stage order")
        for x in d["stages"]:
            if S.is_stage(x["name"]):
                check(S.kind_of(x["name"]) == x["kind"],
                      f"{name}: {x['name']}: llama-diff kind {x['kind']}, module {S.kind_of(x['name'])}")
    print(f"{name}: {len(stages)} stages, {n_layers} layers")


if mode == "table":
    table()
elif mode == "meta":
    meta(sys.argv[3])
else:
    fixture(sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
for b in bad:
    print("FAIL: " + b)
sys.exit(1 if bad else 0)
PY

check_py() { # check_py DESCRIPTION -- check.py arguments...: the check passes
    what=$1
    shift 2
    if python3 "$TMP/check.py" "$SRC" "$@" >"$TMP/out" 2>&1; then
        pass=$((pass + 1))
        sed 's/^/  /' "$TMP/out"
    else
        fail=$((fail + 1))
        echo "FAIL: $what"
        sed 's/^/  | /' "$TMP/out" | head -40
    fi
}

echo "source root: $SRC"
check_py "tools/llamaref_stages.py agrees with ref/llamaref.h" -- table

n=0
for f in "$FX"/golden/*.safetensors; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    base=$(basename "$f" .safetensors)
    model=$(python3 "$TMP/check.py" "$SRC" meta "$f")
    if [ -n "$model" ] && [ -f "$FX/models/$model/config.json" ]; then
        # llama-diff's own order and kinds for this fixture (0: agree, 1: diverge; either
        # lists every stage the fixture holds).
        "$LD" check -m "$FX/models/$model" -f "$f" --json >"$TMP/$base.json" 2>"$TMP/err"
        st=$?
        if [ "$st" -le 1 ]; then
            pass=$((pass + 1))
            check_py "golden $base" -- fixture "$f" "$TMP/$base.json"
        else
            fail=$((fail + 1)); echo "FAIL: llama-diff check $base: exit $st"; sed 's/^/  | /' "$TMP/err" | head -5
            check_py "golden $base" -- fixture "$f"
        fi
    else
        check_py "golden $base" -- fixture "$f"
    fi
done
if [ "$n" -gt 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: no fixtures in $FX/golden"; fi

finish
