#!/usr/bin/env bash
# compare-builds.sh: two llama-diff builds (e.g. before and after a refactor) on every
# committed fixture: each stage dump byte for byte, and the --isolate and --decode checks'
# JSON (timings and the memory a run held left out: the host's peak RSS differs run to
# run, and a build before the memory report has none); then the dump of a 20-token prefill
# of a random model of 16384 words (tools/make-sparse-model.py --random 1: a vocabulary
# the fixtures lack, so that the LM head runs over many blocks of rows and sgemm calls).
# Exit 1 on any difference; prints what differed.
#   tools/compare-builds.sh [--backend cpu|cuda] [--tp "1 2 4"] [--b-args "ARGS"] LLAMA_DIFF_A LLAMA_DIFF_B
# --b-args: more options for B's runs alone (e.g. "--memory 4K": the CPU reference's
# weights streamed, against A's held whole).
# cpu runs f64 and f32; cuda runs bf16, fp16 and fp32.
set -uo pipefail
BACKEND=cpu TPS="1 2 4" BARGS=""
while [ $# -gt 2 ]; do
    case $1 in
    --backend) BACKEND=$2; shift 2 ;;
    --tp) TPS=$2; shift 2 ;;
    --b-args) BARGS=$2; shift 2 ;;
    *) echo "compare-builds: unknown option $1" >&2; exit 2 ;;
    esac
done
[ $# -eq 2 ] && [ -x "$1" ] && [ -x "$2" ] || { echo "usage: $0 [--backend B] [--tp LIST] LLAMA_DIFF_A LLAMA_DIFF_B" >&2; exit 2; }
A=$1 B=$2
F=$(cd "$(dirname "$0")/../fixtures" && pwd)
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
case $BACKEND in cpu) PRECS="f64 f32" ;; cuda) PRECS="bf16 fp16 fp32" ;; *) echo "compare-builds: backend $BACKEND" >&2; exit 2 ;; esac
strip() { # a check's JSON without its timings and memory, one key per line
    python3 -c 'import json, sys
try:
    d = json.load(sys.stdin)
except ValueError:
    sys.exit(0)
d.pop("memory", None)
print(json.dumps(d, indent=1, sort_keys=True))' | grep -v -e seconds -e time
}
fail=0 n=0
for c in gqa-f32:gqa-f32-batch mha-bias-bf16:mha-bias-bf16 mqa-hd-f16:mqa-hd-f16 long-gqa-f32:long-gqa-f32-300; do
    m=$F/models/${c%%:*} fx=$F/golden/${c#*:}.safetensors
    for p in $PRECS; do
        for tp in $TPS; do
            run="-b $BACKEND -m $m -f $fx -p $p --tp $tp -q"
            "$A" dump $run -o "$D/a.st" --force >"$D/a.err" 2>&1; ea=$?
            "$B" dump $run $BARGS -o "$D/b.st" --force >"$D/b.err" 2>&1; eb=$?
            n=$((n + 1))
            if [ $ea -ne 0 ] || [ $eb -ne 0 ] || ! cmp -s "$D/a.st" "$D/b.st"; then
                echo "DIFFER: dump ${c#*:} $p tp $tp (exit $ea / $eb) $(head -c 200 "$D/a.err") $(head -c 200 "$D/b.err")"
                fail=1
            fi
            for x in --isolate "--decode 2"; do
                "$A" check $run $x --json 2>/dev/null | strip >"$D/a.json"
                "$B" check $run $BARGS $x --json 2>/dev/null | strip >"$D/b.json"
                n=$((n + 1))
                if [ ! -s "$D/a.json" ] || ! cmp -s "$D/a.json" "$D/b.json"; then
                    echo "DIFFER: check $x ${c#*:} $p tp $tp"
                    fail=1
                fi
            done
        done
    done
done
R=$D/random
python3 "$(dirname "$0")/make-sparse-model.py" "$R" --layers 1 --hidden 64 --heads 4 --kv-heads 2 \
    --intermediate 128 --vocab 16384 --random 1 >/dev/null || { echo "compare-builds: make-sparse-model.py failed"; exit 2; }
TOK="1 5 9 77 300 1000 2000 4000 8000 12000 16000 16383 42 43 44 45 46 47 48 49"
for p in $PRECS; do
    for tp in $TPS; do
        run="-b $BACKEND -m $R -p $p --tp $tp -q"
        "$A" dump $run -t "$TOK" -o "$D/a.st" --force >"$D/a.err" 2>&1; ea=$?
        "$B" dump $run $BARGS -t "$TOK" -o "$D/b.st" --force >"$D/b.err" 2>&1; eb=$?
        n=$((n + 1))
        if [ $ea -ne 0 ] || [ $eb -ne 0 ] || ! cmp -s "$D/a.st" "$D/b.st"; then
            echo "DIFFER: dump random-16384 $p tp $tp (exit $ea / $eb) $(head -c 200 "$D/a.err") $(head -c 200 "$D/b.err")"
            fail=1
        fi
    done
done
echo "compare-builds: $n runs of $BACKEND, $([ $fail -eq 0 ] && echo 'all identical' || echo 'some differ')"
exit $fail
