# run 29, call B (session 24): the decode ops at Llama-3-8B's shapes against both ceilings
# that `llama-diff ops --perf` now reports (c5b9176): the 2 GiB copy of the card, and a copy
# of each case's own bytes timed launch by launch as the case is (what one launch moving
# that much can reach). Issue 19 asks 0.85 of copy of the decode GEMVs and 0.70 of split-KV
# attention at 8 sequences and more; this says how much of what is missing at the small
# shapes (o_proj's 32 MB, 8 sequences' 34 MB of keys and values) is the launch and ramp
# any kernel of that size pays. linear: gemv (the default at T 1 and 2) and cublas at T 1 to
# 8 on the five projections; attention: fdt and fd at 1, 8 and 32 sequences of 1024 keys.
# Fits a warm machine (REUSE=1) or a fresh one.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r29b; mkdir -p $L
pack() { tar czf $OUT/r29b.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B
for v in fdt fd; do [ $(left) -gt 60 ] || break
  for sh in heads=32,kv=8,hd=128,past=1024 heads=32,kv=8,hd=128,past=1024,seqs=8 heads=32,kv=8,hd=128,past=1024,seqs=32; do
    timeout 60 ./llama-diff ops --op attention --variant $v --dtype bf16 --shape $sh --perf >> $L/attn-$v.txt 2>&1
  done; el "attention $v"; grep -E "^(PASS|FAIL)" $L/attn-$v.txt | sed -E 's/ +/ /g' | cut -c1-220
done; pack
for v in gemv cublas; do [ $(left) -gt 60 ] || break
  timeout $(( $(left) - 20 )) ./llama-diff ops --shapes llama3-8b --op linear --variant $v --dtype bf16 --perf > $L/lin-$v.txt 2>&1
  el "linear $v exit $?"; grep -E "copy bandwidth|^(PASS|FAIL).* T [1248] " $L/lin-$v.txt | sed -E 's/ +/ /g' | cut -c1-200 | head -24
done; pack
el done
