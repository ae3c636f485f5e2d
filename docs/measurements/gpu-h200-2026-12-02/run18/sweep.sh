#!/bin/bash
# SmolLM2 against the all-layers golden through every non-default kernel variant, bf16 and
# fp16, free / --isolate op / --decode 2 (run 18: the emulated reference now rounds P as the
# run's attention variant does).
. gpurun/env.sh
cd $B
vars=$($LD ops --list --json | python3 -c "
import json,sys
d=json.load(sys.stdin)
for f in d['families']:
    for v in f['variants']:
        if not v.get('default') and f['name']!='helpers': print(f['name']+'='+v['name'])")
one() {
    k=$1 p=$2 m=$3
    tag=$(echo "$k-$p-$m" | tr '=/ ' '___' | tr -d -)
    s=$(date +%s)
    # shellcheck disable=SC2086
    $LD check -b cuda -p $p -k $k -m $M -f $FA ${m/free/} --json -q > $R/v-$tag.json 2> $R/v-$tag.err
    rc=$?
    echo "variant $k $p $m: exit $rc $(( $(date +%s) - s ))s $(summ $R/v-$tag.json)"
}
export -f one summ; export LD M FA R
for k in $vars; do for p in bf16 fp16; do for m in free "--isolate op" "--decode 2"; do printf '%s\t%s\t%s\n' "$k" "$p" "$m"; done; done; done |
    xargs -P 6 -d '\n' -I{} bash -c 'IFS=$'"'"'\t'"'"' read -r k p m <<< "{}"; one "$k" "$p" "$m"' | tee $R/sweep.txt
echo "sweep: $(grep -c 'exit 0' $R/sweep.txt) exit 0 of $(grep -c '^variant' $R/sweep.txt)"
