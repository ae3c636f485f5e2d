#!/bin/sh
# test_bench_budget.sh: tools/bench-budget.py on bench/gpu_bench's JSON from run 35 (an H200,
# tests/data/bench/gpu-bench-h200-run35.json): the op times scaled to the timed pass, the
# split into GEMMs, attention and the rest, what each target leaves, a GEMM-bound row (the
# same file with 8 x 512's target lowered below its GEMMs' time), gzip input; and its
# refusals (a missing file, not JSON, no rows, a field that is not a number), each exit 1
# with one line naming the file and the field.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
TOOL=$SRC/tools/bench-budget.py
DATA=$SRC/tests/data/bench/gpu-bench-h200-run35.json
TMP=${LR_TMPDIR:?}/bench-budget-sh
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null 2>&1 || { echo "test_bench_budget: no python3; skipped"; exit 77; }

expect 0 "the table" -- python3 "$TOOL" "$DATA"
ok "the 8 x 512 row: GEMMs 84.69 ms, 4.37 ms left by the target" -- \
    grep -qF "| prefill 8 x 512 | 95.921 ms | 1.29 | 89.057 ms (1.20) | 84.69 ms | 3.31 ms | 7.92 ms | 4.37 ms |" "$TMP/out"
ok "decode batch 32 met" -- grep -qE "^\| decode batch 32, graphs .*\| met \|$" "$TMP/out"
ok "the graphs' note" -- grep -qF "rows with graphs: the split is the eager steps' profile" "$TMP/out"

expect 0 "--json" -- python3 "$TOOL" --json "$DATA"
# the four rows; each split sums to the row's time; the scale is the timed over the profiled pass
json_ok "len(d['rows']) == 4 and all(abs(b['gemm_s'] + b['attention_s'] + b['rest_s'] - b['seconds']) < 1e-12 for b in d['rows'])"
json_ok "abs(d['rows'][0]['profile_scale'] - 0.04986816 / 0.050856253) < 1e-9 and abs(d['rows'][1]['gemm_s'] - 0.08469) < 1e-4"
json_ok "[b['met'] for b in d['rows']] == [False, False, False, True] and not any(b['gemm_bound'] for b in d['rows'])"
json_ok "abs(d['rows'][1]['leaves_s'] - (1.2 * 0.07421442 - d['rows'][1]['gemm_s'])) < 1e-9 and d['rows'][3]['over_s'] == 0"

# a GEMM-bound row: 8 x 512's target lowered to 1.10 (81.6 ms, under its GEMMs' 84.7)
python3 -c "
import json,sys; d=json.load(open(sys.argv[1])); d['rows'][1]['target']=1.10
json.dump(d, open(sys.argv[2], 'w'))" "$DATA" "$TMP/bound.json"
expect 0 "a GEMM-bound row" -- python3 "$TOOL" "$TMP/bound.json"
ok "named GEMM-bound" -- grep -qE "^\| prefill 8 x 512 .*GEMM-bound: the GEMMs alone fill the target \|$" "$TMP/out"
ok "and only that row" -- test "$(grep -c GEMM-bound "$TMP/out")" = 1

gzip -c "$DATA" >"$TMP/run35.json.gz"
expect 0 "gzip input" -- python3 "$TOOL" --json "$TMP/run35.json.gz"
json_ok "len(d['rows']) == 4 and d['card'] == 'NVIDIA H200'"
expect 0 "two files" -- python3 "$TOOL" --json "$DATA" "$TMP/bound.json"
json_ok "isinstance(d, list) and len(d) == 2 and d[1]['rows'][1]['gemm_bound']"

# a row without a profile is listed, not split
python3 -c "
import json,sys; d=json.load(open(sys.argv[1])); del d['rows'][2]['profile_ns']
json.dump(d, open(sys.argv[2], 'w'))" "$DATA" "$TMP/noprof.json"
expect 0 "a row without a profile" -- python3 "$TOOL" "$TMP/noprof.json"
ok "listed as such" -- grep -qF "rows without a profile (gpu_bench --no-profile): decode batch 1, graphs" "$TMP/out"

expect 1 "a missing file" -- python3 "$TOOL" "$TMP/none.json"
expect_err "bench-budget: $TMP/none.json: cannot read"
printf '{"rows": [' >"$TMP/cut.json"
expect 1 "not JSON" -- python3 "$TOOL" "$TMP/cut.json"
expect_err "bench-budget: $TMP/cut.json: not JSON"
echo '{"card": "x"}' >"$TMP/norows.json"
expect 1 "no rows" -- python3 "$TOOL" "$TMP/norows.json"
expect_err "$TMP/norows.json: no 'rows' list"
python3 -c "
import json,sys; d=json.load(open(sys.argv[1])); d['rows'][1]['floor_s']='fast'
json.dump(d, open(sys.argv[2], 'w'))" "$DATA" "$TMP/badfield.json"
expect 1 "a field that is not a number" -- python3 "$TOOL" "$TMP/badfield.json"
expect_err "$TMP/badfield.json: rows[1] (prefill 8 x 512): 'floor_s' is \"fast\", not a number"
python3 -c "
import json,sys; d=json.load(open(sys.argv[1])); d['rows'][0]['profile_ns']['attention']=None
json.dump(d, open(sys.argv[2], 'w'))" "$DATA" "$TMP/badop.json"
expect 1 "an op time that is not a number" -- python3 "$TOOL" "$TMP/badop.json"
expect_err "rows[0] (prefill 1 x 2048) profile_ns: 'attention' is null, not a number"
expect 2 "no file" -- python3 "$TOOL"
finish
