# run 22, call B: linear `mma`'s stage shape (k per stage, stages): per build, its bf16
# sweep, then one launch per Llama-3-8B projection at T 1 and 32 (--perf), against gemv
# and cublas in the same call.
cp gpurun/orig/gpu/* gpu/  # the HEAD attention files (a helper edits them meanwhile)
source gpurun/env.sh
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r22b; mkdir -p $L
pack() { tar czf $OUT/r22b.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
SHAPES="N=6144,K=4096 N=4096,K=4096 N=28672,K=4096 N=4096,K=14336"
perf() { # variant tag
  for t in 1 32; do for sh in $SHAPES; do
    ./llama-diff ops --op linear --variant $1 --dtype bf16 --shape T=$t,$sh --perf 2>&1 | grep -E "^(PASS|FAIL|ERROR)" | sed "s/^/$2 /"
  done; done | tee -a $L/perf.txt | awk '{u=""; for(i=1;i<NF;i++) if($(i+1)=="us") u=$i; printf "%s T%s %sx%s %s%s | ", $1, $7, $9, $11, u, ($2=="PASS"?"":" "$2)}' ; echo
}
el "perf cublas, gemv"; perf cublas cublas; perf gemv gemv; pack
for cfg in 64:4 128:4 128:3 256:3; do
  [ $(left) -gt 60 ] || break
  BK=${cfg%:*} ST=${cfg#*:}
  el "mma BK $BK stages $ST"; rm -f gpu/linear.o; make -j16 CPPFLAGS="-DMM_BK=$BK -DMM_STAGES=$ST" llama-diff > $L/build-$BK-$ST.log 2>&1 || { tail -5 $L/build-$BK-$ST.log; continue; }
  timeout 40 ./llama-diff ops --op linear --variant mma --dtype bf16 > $L/ops-mma-$BK-$ST.txt 2>&1; echo "sweep exit $?"; tail -1 $L/ops-mma-$BK-$ST.txt
  perf mma mma-$BK-$ST; pack
done
el done
