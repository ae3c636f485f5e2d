#!/bin/sh
# test_report.sh: llama-diff check --report FILE writes one self-contained HTML report
# (inline SVG charts, the stage table, the first divergence), keeps the exit status of
# the check, and never overwrites an existing report without --force.
set -u
LD=${LLAMA_DIFF:-./llama-diff}
FX=${LR_FIXTURES:?}
TMP=${LR_TMPDIR:?}/report-sh
rm -rf "$TMP" && mkdir -p "$TMP/x"
. "$(dirname "$0")/lib.sh"

# The stage names the JSON document lists, one a line.
stage_names() {
    python3 -c "import json,sys; [print(s['name']) for s in json.load(open(sys.argv[1]))['stages']]" "$1"
}
report_ok() { # report_ok FILE JSON: the report exists, is self-contained and has every stage
    r=$1 j=$2
    ok "$r exists" -- test -s "$r"
    ok "$r has inline SVG charts" -- grep -q "<svg" "$r"
    ok "$r has the stage table" -- grep -q "<table" "$r"
    ok "$r is one HTML document" -- grep -qi "</html>" "$r"
    # Self-contained: no URL at all, nothing a browser would fetch or run.
    if grep -Eqi "https?://|<script|<link|<img|<iframe|@import|url\(" "$r"; then
        fail=$((fail + 1)); echo "FAIL: $r refers outside itself:"
        grep -Eoi "https?://[^\"' <>]*|<script|<link|<img|<iframe|@import|url\(" "$r" | sort -u | head
    else
        pass=$((pass + 1))
    fi
    missing=0
    for s in $(stage_names "$j"); do
        grep -qF "<code>$s</code>" "$r" || { missing=$((missing + 1)); echo "  missing stage: $s"; }
    done
    [ "$(stage_names "$j" | wc -l)" -gt 0 ] && [ "$missing" -eq 0 ] && pass=$((pass + 1)) ||
        { fail=$((fail + 1)); echo "FAIL: $r: the table lacks $missing stage(s)"; }
    ls "$(dirname "$r")" | grep -q '\.tmp\.' && { fail=$((fail + 1)); echo "FAIL: temp file left"; } || pass=$((pass + 1))
}

M=$FX/models/gqa-f32
F=$FX/golden/gqa-f32-batch.safetensors

# The default fixture agrees: exit 0, a report with no divergence.
R=$TMP/x/report.html
expect 0 "check --json" -- "$LD" check -m "$M" -f "$F" --json
cp "$TMP/out" "$TMP/agree.json"
expect 0 "check --report" -- "$LD" check -m "$M" -f "$F" --report "$R"
report_ok "$R" "$TMP/agree.json"
ok "agree: result shown" -- grep -q "agree" "$R"
ok "agree: no first divergence" -- grep -qi "first divergence.*none" "$R"
ok "agree: the error model drawn beside the measurement" -- grep -q "error model (expected" "$R"
ok "agree: every criterion's share drawn" -- grep -q "Share of each criterion" "$R"
ok "agree: worst token and elements in the table" -- grep -q "<th>worst token (share of its budget)</th><th>elements over" "$R"

# Nothing overwritten: a second run without --force refuses (2), one line naming the file.
cp "$R" "$TMP/keep"
expect 2 "second --report refuses to overwrite" -- "$LD" check -m "$M" -f "$F" --report "$R"
grep -qF "report.html" "$TMP/err" && grep -q "already exists" "$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ] &&
    pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: refusal is not one line naming the file:"; sed 's/^/  | /' "$TMP/err"; }
cmp -s "$TMP/keep" "$R" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: report changed"; }
ls "$TMP/x" | grep -q '\.tmp\.' && { fail=$((fail + 1)); echo "FAIL: temp file left"; } || pass=$((pass + 1))
expect 0 "--report --force replaces" -- "$LD" check -m "$M" -f "$F" --report "$R" --force
report_ok "$R" "$TMP/agree.json"

# A diverging run: an f64 check against an f32 dump (exit 1), first divergence named.
expect 0 "dump f32" -- "$LD" dump -m "$M" -f "$F" -p f32 -o "$TMP/f32.safetensors"
expect 1 "diverge --json" -- "$LD" check -m "$M" -f "$TMP/f32.safetensors" --json
cp "$TMP/out" "$TMP/diverge.json"
D=$TMP/x/diverge.html
expect 1 "diverge --report" -- "$LD" check -m "$M" -f "$TMP/f32.safetensors" --report "$D"
report_ok "$D" "$TMP/diverge.json"
ok "diverge: result shown" -- grep -q "diverge" "$D"
first=$(python3 -c "import json; print(json.load(open('$TMP/diverge.json'))['first_divergence'])")
ok "diverge: first divergence is model.layers.0.input_layernorm" -- test "$first" = model.layers.0.input_layernorm
ok "diverge: report names the first divergence" -- grep -qi "first divergence.*<code>$first</code>" "$D"
ok "diverge: failing rows highlighted" -- grep -q "<tr class=\"fail" "$D"
ok "diverge: drill-down section" -- grep -qi "drill-down" "$D"
ok "diverge: the first divergence's failed criteria" -- grep -q "First divergence</th><td><code>$first</code>.*fails: rel_l2, token, elements; worst token" "$D"

# A planted o_proj error of ten f32 budgets (1e-5) right after the exact embedding: the
# report's drill-down names o_proj, and its table's growth is the tool's (one definition).
plant "$M" model.layers.0.self_attn.o_proj.weight 1.00001 "$TMP/planted"
expect 1 "planted --json" -- "$LD" check -m "$TMP/planted" -f "$F" -p f32 --json
cp "$TMP/out" "$TMP/planted.json"
P=$TMP/x/planted.html
expect 1 "planted --report" -- "$LD" check -m "$TMP/planted" -f "$F" -p f32 --report "$P"
report_ok "$P" "$TMP/planted.json"
growth=$(python3 -c "import json; d=json.load(open('$TMP/planted.json'))['drill_down']; assert d['stage'] == 'model.layers.0.self_attn.o_proj'; print('x%.3g' % d['growth'])")
ok "planted: the report's drill-down names o_proj" -- grep -q "grows most at <code>model.layers.0.self_attn.o_proj</code> ($growth over" "$P"
ok "planted: the drill table's growth is the tool's" -- grep -q "<tr class=\"fail cause\"><td><code>model.layers.0.self_attn.o_proj</code>.*$growth" "$P"

finish
