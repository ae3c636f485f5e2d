#!/bin/bash
# f32 planted table on CUDA: a scale fault of EPS at one projection's output (a relative
# error of EPS in its weights) at layers 0,5,10,15,20,25,29 x 5 projections, free and
# --isolate op, against the all-layers golden: caught (exit 1) and named in its layer.
. gpurun/env.sh
cd $B
one() {
    l=$1 pr=$2 e=$3 m=$4
    st=model.layers.$l.$pr
    j=$R/p.$l.$pr.$e.${m// /}.json
    # shellcheck disable=SC2086
    $LD check -b cuda -p f32 -m $M -f $FA ${m/free/} --inject $st=scale:$e --json -q > $j 2> $j.err
    rc=$?
    first=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1])).get('first_divergence'))" $j 2>/dev/null)
    echo "$e|$m|$l|$pr|$rc|${first:-None}"
}
export -f one; export LD M FA R
for e in 1e-4 1e-5; do for m in free "--isolate op"; do for l in 0 5 10 15 20 25 29; do
  for pr in self_attn.q_proj self_attn.v_proj self_attn.o_proj mlp.gate_proj mlp.down_proj; do
    printf '%s\t%s\t%s\t%s\n' $l $pr $e "$m"; done; done; done; done |
  xargs -P 8 -d '\n' -I{} bash -c 'IFS=$'"'"'\t'"'"' read -r l pr e m <<< "{}"; one "$l" "$pr" "$e" "$m"' > $R/planted-raw.txt
python3 - $R/planted-raw.txt <<'PY' | tee $R/planted.txt
import sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    e, mode, l, pr, rc, first = line.rstrip('\n').split('|')
    caught = rc == '1'
    named = caught and (first == 'model.layers.' + l or first.startswith('model.layers.%s.' % l))
    rows[(e, mode)].append(('%s/%s' % (l, pr), caught, named, first))
for (e, mode), r in sorted(rows.items()):
    print('eps %s %s: caught %d/%d named %d/%d; not named: %s' % (e, mode, sum(x[1] for x in r), len(r),
          sum(x[2] for x in r), len(r), ' '.join('%s:%s' % (x[0], x[3]) for x in r if not x[2])))
PY
