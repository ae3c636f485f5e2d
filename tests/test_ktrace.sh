#!/bin/sh
# test_ktrace.sh: the kernel tracer's parts that run without a GPU.
#  - tools/ktrace-summary.py on a made trace of two launches of one graph (overlapping
#    kernels, idle gaps, an eager kernel and a second graph beside them): each kernel's own
#    time, the idle time and the wall time, by hand; --skip, --graph, --per, gzip input, a
#    trace with no graphs; --against (each kernel's own time against another trace); its refusals (a missing file, a line not JSON, a missing field,
#    an end before its start, an unknown graph, bad options), each naming the file and line.
#  - tools/ktrace.sh's refusals (no -o, no program, no library, an existing trace).
#  - The tracer library (bench/libllamaref_ktrace.so, where configure found CUPTI), its
#    entry point called as the CUDA driver calls it: LLAMAREF_KTRACE unset, an existing file
#    (left as it was), and a new file, which either becomes a trace with its opening and
#    closing lines (a machine with a GPU) or is removed when CUPTI refuses (none).
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
SUM=$SRC/tools/ktrace-summary.py
TMP=${LR_TMPDIR:?}/ktrace-sh
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null 2>&1 || { echo "test_ktrace: no python3; skipped"; exit 77; }

# Graph 3, two launches (corr 7 and 9); a graph 5 launched once; an eager kernel. Times in ns.
# Launch 7: a [1000,1010], b [1008,1020] (starts 2 early: own 10), idle 5, a [1025,1030]:
#   wall 30, a 15, b 10, idle 5. Launch 9: a [2000,2010], b [2010,2030], idle 10, a
#   [2040,2050]: wall 50, a 20, b 20, idle 10. Between them (1030 to 2000, a period of
#   1000): lm_head [1040,1500] and argmax [1600,1700] eagerly, 410 idle. The lines out of
#   start order, as CUPTI's buffers may hold them.
cat >"$TMP/t.jsonl" <<'T'
{"ktrace": 1, "cupti_api": 130001}
{"name": "void a<float, 2>(int, float const*)", "start": 1025, "end": 1030, "graph": 3, "corr": 7}
{"name": "void a<float, 2>(int, float const*)", "start": 1000, "end": 1010, "graph": 3, "corr": 7}
{"name": "b", "start": 1008, "end": 1020, "graph": 3, "corr": 7}
{"name": "void a<float, 2>(int, float const*)", "start": 2000, "end": 2010, "graph": 3, "corr": 9}
{"name": "b", "start": 2010, "end": 2030, "graph": 3, "corr": 9}
{"name": "void a<float, 2>(int, float const*)", "start": 2040, "end": 2050, "graph": 3, "corr": 9}
{"name": "lm_head", "start": 1040, "end": 1500, "graph": 0, "corr": 8}
{"name": "argmax", "start": 1600, "end": 1700, "graph": 0, "corr": 8}
{"name": "c", "start": 3000, "end": 3100, "graph": 5, "corr": 11}
{"name": "eager", "start": 0, "end": 500, "graph": 0, "corr": 1}
{"dropped": 0, "kernels": 8}
T
expect 0 "the most launched graph, none skipped" -- python3 "$SUM" --json --skip 0 "$TMP/t.jsonl"
json_ok "d['graph'] == 3 and d['steps'] == 2 and abs(d['wall_us'] - 0.040) < 1e-12 and abs(d['idle_us'] - 0.0075) < 1e-12"
json_ok "abs(d['wall_us_min'] - 0.030) < 1e-12 and abs(d['wall_us_max'] - 0.050) < 1e-12 and d['dropped'] == 0"
json_ok "[(k['name'], k['count'], k['own_ns']) for k in d['kernels']] == [('a<float, 2>', 4, 35), ('b', 2, 30)]"
json_ok "abs(sum(k['own_us'] for k in d['kernels']) + d['idle_us'] - d['wall_us']) < 1e-12"
json_ok "d['kernels'][1]['per_step'] == 1 and abs(d['kernels'][1]['dur_us_each'] - 0.016) < 1e-12"
json_ok "abs(d['period_us'] - 1.0) < 1e-12 and d['between']['gaps'] == 1 and abs(d['between']['idle_us'] - 0.41) < 1e-12"
json_ok "[(k['name'], k['own_ns']) for k in d['between']['kernels']] == [('lm_head', 460), ('argmax', 100)]"
expect 0 "--skip 1" -- python3 "$SUM" --json --skip 1 "$TMP/t.jsonl"
json_ok "d['steps'] == 1 and abs(d['wall_us'] - 0.050) < 1e-12 and d['kernels'][0]['own_ns'] == 20 and 'between' not in d"
expect 0 "--graph 5" -- python3 "$SUM" --json --skip 0 --graph 5 "$TMP/t.jsonl"
json_ok "d['steps'] == 1 and [k['name'] for k in d['kernels']] == ['c'] and d['idle_us'] == 0"
expect 0 "--full-names" -- python3 "$SUM" --json --skip 0 --full-names "$TMP/t.jsonl"
json_ok "d['kernels'][0]['name'] == 'void a<float, 2>(int, float const*)'"
expect 0 "the table, --per 2" -- python3 "$SUM" --skip 0 --per 2 "$TMP/t.jsonl"
ok "the header line" -- grep -qF "graph 3, 2 launches; wall 0.0 us a step" "$TMP/out"
ok "a row with its share and its time a layer" -- grep -qF "| a<float, 2> | 2 | 0.0 | 0.438 | 0.01 | 0.01 |" "$TMP/out"
ok "the idle row" -- grep -qF "| (idle) | | 0.0 | 0.188 | |" "$TMP/out"
ok "between launches" -- grep -qF "between launches (1 gaps): a step's period 1.0 us = the graph's wall 0.0 + kernels outside it 0.6 + idle 0.4" "$TMP/out"
ok "a kernel outside the graph" -- grep -qF "| lm_head | 1 | 0.5 | 0.46 |" "$TMP/out"
gzip -c "$TMP/t.jsonl" >"$TMP/t.jsonl.gz"
expect 0 "gzip input" -- python3 "$SUM" --json --skip 0 "$TMP/t.jsonl.gz"
json_ok "d['steps'] == 2"

# --against: the same trace, then one where launch 9's b ends 10 ns later (its a after it too)
# and a kernel "d" is new
expect 0 "--against itself" -- python3 "$SUM" --json --skip 0 --against "$TMP/t.jsonl" "$TMP/t.jsonl"
json_ok "all(k['delta_us'] == 0 for k in d['compare']['kernels']) and d['compare']['wall_us']['delta'] == 0"
sed -e 's/"start": 2010, "end": 2030/"start": 2010, "end": 2040/' \
    -e 's/"start": 2040, "end": 2050, "graph": 3/"start": 2045, "end": 2055, "graph": 3/' "$TMP/t.jsonl" >"$TMP/t2.jsonl"
echo '{"name": "d", "start": 1030, "end": 1032, "graph": 3, "corr": 7}' >>"$TMP/t2.jsonl"
expect 0 "--against a slower b" -- python3 "$SUM" --json --skip 0 --against "$TMP/t.jsonl" "$TMP/t2.jsonl"
# a step's averages: b 15 -> 20 ns, d 0 -> 1 (launch 7 only), the wall 40 -> 43.5
json_ok "{k['name']: round(k['delta_us'] * 1e3, 6) for k in d['compare']['kernels']} == {'a<float, 2>': 0, 'b': 5, 'd': 1}"
json_ok "[k['base_own_us'] for k in d['compare']['kernels'] if k['name'] == 'd'] == [None] and abs(d['compare']['wall_us']['delta'] - 0.0035) < 1e-12"
expect 0 "--against, the table" -- python3 "$SUM" --skip 0 --per 2 --against "$TMP/t.jsonl" "$TMP/t2.jsonl"
ok "the header" -- grep -qF "| kernel | base | this | delta | delta / 2 |" "$TMP/out"
ok "the wall" -- grep -qF "the graph's wall: 0.0 -> 0.0 (+0.0)" "$TMP/out"
ok "a kernel new in this trace" -- grep -qF "| d | – | 0.0 | +0.0 | +0.00 |" "$TMP/out"
expect 1 "--against a missing file" -- python3 "$SUM" --skip 0 --against "$TMP/none.jsonl" "$TMP/t.jsonl"
expect_err "ktrace-summary.py: $TMP/none.jsonl: No such file"

# two graphs launched equally often: the first captured (the lower id)
printf '%s\n' '{"name": "x", "start": 0, "end": 10, "graph": 7, "corr": 1}' '{"name": "y", "start": 20, "end": 30, "graph": 9, "corr": 2}' \
    '{"name": "x", "start": 40, "end": 50, "graph": 7, "corr": 3}' '{"name": "y", "start": 60, "end": 70, "graph": 9, "corr": 4}' >"$TMP/tie.jsonl"
expect 0 "a tie between graphs" -- python3 "$SUM" --json --skip 0 "$TMP/tie.jsonl"
json_ok "d['graph'] == 7 and d['kernels'][0]['name'] == 'x'"

# no graphs: every kernel, one span (the eager one and a later one: 100 ns idle)
printf '%s\n' '{"name": "x", "start": 0, "end": 100, "graph": 0, "corr": 1}' \
    '{"name": "y", "start": 200, "end": 250, "graph": 0, "corr": 2}' >"$TMP/eager.jsonl"
expect 0 "an eager trace" -- python3 "$SUM" --json "$TMP/eager.jsonl"
json_ok "d['graph'] is None and d['steps'] == 1 and abs(d['wall_us'] - 0.25) < 1e-12 and abs(d['idle_us'] - 0.1) < 1e-12"
expect 0 "no closing line is said" -- python3 "$SUM" "$TMP/eager.jsonl"
ok "said" -- grep -qF "the trace has no closing line" "$TMP/out"
printf '%s\n' '{"name": "x", "start": 0, "end": 100, "graph": 0, "corr": 1}' '{"dropped": 3, "kernels": 1}' >"$TMP/dropped.jsonl"
expect 0 "dropped records are said" -- python3 "$SUM" "$TMP/dropped.jsonl"
ok "said" -- grep -qF "CUPTI dropped 3 records" "$TMP/out"

expect 1 "a missing file" -- python3 "$SUM" "$TMP/none.jsonl"
expect_err "ktrace-summary.py: $TMP/none.jsonl: No such file"
printf '{"name": "x", "start": 0,\n' >"$TMP/cut.jsonl"
expect 1 "a line not JSON" -- python3 "$SUM" "$TMP/cut.jsonl"
expect_err "$TMP/cut.jsonl:1: not JSON"
printf '%s\n' '{"ktrace": 1}' '{"name": "x", "start": 0, "end": 1, "graph": 0}' >"$TMP/nocorr.jsonl"
expect 1 "a missing field" -- python3 "$SUM" "$TMP/nocorr.jsonl"
expect_err "$TMP/nocorr.jsonl:2: field 'corr' missing"
printf '%s\n' '{"name": "x", "start": 5, "end": 1, "graph": 0, "corr": 1}' >"$TMP/back.jsonl"
expect 1 "an end before its start" -- python3 "$SUM" "$TMP/back.jsonl"
expect_err "$TMP/back.jsonl:1: field 'end' is before 'start'"
printf '%s\n' '{"name": "x", "start": "0", "end": 1, "graph": 0, "corr": 1}' >"$TMP/str.jsonl"
expect 1 "a time that is not an integer" -- python3 "$SUM" "$TMP/str.jsonl"
expect_err "$TMP/str.jsonl:1: field 'start' is not an integer"
printf '%s\n' '{"ktrace": 1}' '{"dropped": 0, "kernels": 0}' >"$TMP/empty.jsonl"
expect 1 "no kernels" -- python3 "$SUM" "$TMP/empty.jsonl"
expect_err "$TMP/empty.jsonl: no kernels in the trace"
expect 1 "an unknown graph" -- python3 "$SUM" --graph 4 "$TMP/t.jsonl"
expect_err "graph 4 is not in the trace (graphs: [3, 5])"
expect 1 "every launch skipped" -- python3 "$SUM" --skip 2 "$TMP/t.jsonl"
expect_err "graph 3 has 2 launches, none left after --skip 2"
expect 2 "a negative --skip" -- python3 "$SUM" --skip -1 "$TMP/t.jsonl"
expect 2 "--per 0" -- python3 "$SUM" --per 0 "$TMP/t.jsonl"
expect 2 "no trace" -- python3 "$SUM"

# tools/ktrace.sh
KT=$SRC/tools/ktrace.sh
expect 0 "ktrace.sh --help" -- bash "$KT" --help
ok "usage" -- grep -qF "Usage: tools/ktrace.sh" "$TMP/out"
expect 2 "ktrace.sh without -o" -- bash "$KT" -- true
expect_err "ktrace.sh: -o TRACE is required"
expect 2 "ktrace.sh without a program" -- bash "$KT" -o "$TMP/k.jsonl"
expect_err "ktrace.sh: no program given after --"
expect 2 "ktrace.sh with no library" -- bash "$KT" --lib "$TMP/none.so" -o "$TMP/k.jsonl" -- true
expect_err "ktrace.sh: $TMP/none.so: no tracer library"
echo keep >"$TMP/kept.jsonl"
expect 2 "ktrace.sh onto an existing trace" -- bash "$KT" --lib "$SUM" -o "$TMP/kept.jsonl" -- true
expect_err "ktrace.sh: $TMP/kept.jsonl exists (a trace is never overwritten)"
ok "left as it was" -- test "$(cat "$TMP/kept.jsonl")" = keep

# the library, where it was built (configure found CUPTI)
LIB=${LR_BUILDDIR:-$SRC}/bench/libllamaref_ktrace.so
if [ -f "$LIB" ]; then
    init="import ctypes; ctypes.CDLL('$LIB').InitializeInjection()"
    expect 2 "the library without LLAMAREF_KTRACE" -- env -u LLAMAREF_KTRACE python3 -c "$init"
    expect_err "ktrace: LLAMAREF_KTRACE names no file"
    expect 2 "the library onto an existing file" -- env LLAMAREF_KTRACE="$TMP/kept.jsonl" python3 -c "$init"
    expect_err "ktrace: cannot create $TMP/kept.jsonl: File exists (a trace is never overwritten)"
    ok "left as it was" -- test "$(cat "$TMP/kept.jsonl")" = keep
    LLAMAREF_KTRACE="$TMP/new.jsonl" python3 -c "$init" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    if [ $rc = 0 ]; then # a GPU: a trace with its first and last lines, no kernels
        ok "a trace of no kernels" -- python3 -c "
import json,sys; l=[json.loads(x) for x in open(sys.argv[1])]
sys.exit(0 if len(l) == 2 and l[0]['ktrace'] == 1 and l[1]['kernels'] == 0 else 1)" "$TMP/new.jsonl"
    else # no GPU: CUPTI refuses; exit 2, the reason, and no file left
        ok "CUPTI's refusal: exit 2 (got $rc)" -- test $rc = 2
        expect_err "ktrace: cuptiActivity"
        ok "no file left" -- test ! -e "$TMP/new.jsonl"
    fi
else
    echo "-- the tracer library is not built (configure found no CUPTI): its checks left out"
fi
finish
