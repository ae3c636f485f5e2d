#!/bin/sh
# run.sh: runs one libFuzzer target for `make fuzz` (see fuzz.am). New corpus entries go
# to OUT/corpus/TARGET; the committed corpus and regressions are read only, unless
# FUZZ_MERGE=1, which afterwards merges the new entries that add coverage into the
# committed corpus. Exits non-zero when the fuzzer finds a crash, leak, timeout or OOM;
# the input is then under OUT/artifacts/TARGET.
#
# usage: run.sh BINARY TARGET MAX_LEN SECONDS FUZZDIR OUT
# environment: FUZZ_FLAGS (extra libFuzzer flags), FUZZ_MERGE (1 to merge)
set -u
if [ $# -ne 6 ]; then
    echo "usage: $0 BINARY TARGET MAX_LEN SECONDS FUZZDIR OUT" >&2
    exit 2
fi
bin=$1 target=$2 max_len=$3 secs=$4 fuzzdir=$5 out=$6
corpus=$out/corpus/$target
artifacts=$out/artifacts/$target
log=$out/$target.log
dict=$out/$target.dict
mkdir -p "$corpus" "$artifacts" || exit 1
cat "$fuzzdir/dict/json.dict" "$fuzzdir/dict/$target.dict" >"$dict" || exit 1

# The committed inputs, read only (the first directory given is the one written to).
set -- "$corpus"
for d in "$fuzzdir/corpus/$target" "$fuzzdir/regressions/$target"; do
    if [ -d "$d" ]; then set -- "$@" "$d"; fi
done

echo "fuzz $target: ${secs} s, max_len $max_len, log $log"
# shellcheck disable=SC2086
"$bin" -max_len="$max_len" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 \
    -print_final_stats=1 -dict="$dict" -artifact_prefix="$artifacts/" ${FUZZ_FLAGS:-} \
    "$@" >"$log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
    echo "---- fuzz $target FAILED (exit $rc); end of $log:"
    tail -n 60 "$log"
    echo "---- input(s) in $artifacts:"
    ls -l "$artifacts"
    echo "Fix the bug, then copy the input to $fuzzdir/regressions/$target/ so make check replays it."
    exit 1
fi
# The summary: executions, speed, corpus size, memory.
grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" |
    sed "s/^/fuzz $target: /"
if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    echo "fuzz $target: merging new entries into $fuzzdir/corpus/$target"
    "$bin" -merge=1 -max_len="$max_len" "$fuzzdir/corpus/$target" "$corpus" >>"$log" 2>&1 || {
        echo "fuzz $target: merge failed, see $log"
        exit 1
    }
    grep -E 'MERGE-OUTER: [0-9]+ new files' "$log" | tail -n 1 | sed "s/^/fuzz $target: /"
fi
exit 0
