source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r40c; mkdir -p $L
pack() { tar czf $OUT/r40c.tgz -C $L . 2>/dev/null; }
el build; bash tools/gpu-check.sh --build-only --reuse > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B
el timing
for sh in len=1024,seqs=4 len=512,seqs=16 len=1024,seqs=2 len=1536 len=1024 len=2048 len=512,seqs=8; do for v in fa3 fa3wt fa3wts fa3wts; do
  n=$((n+1)); timeout 30 ./llama-diff ops --op attention --variant $v --dtype bf16 --shape heads=32,kv=8,hd=128,$sh --perf > $L/perf-$n-$v.txt 2>&1; echo "$v $sh: $(grep -hE '^(PASS|FAIL)' $L/perf-$n-$v.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us|[0-9.]+ TFLOP/s' | tr '\n' ' ')"; done; done; pack
el "shape check fp16"; cd $SRC
OUT=$L/shape timeout $(( $(left) - 15 )) bash tools/gpu-shape-check.sh --variants fa3wts --precisions fp16 --no-faults > $L/shape-check.txt 2>&1; echo "shape check exit $?"; tail -8 $L/shape-check.txt | cut -c1-300
rm -f $L/shape/*.safetensors; pack; el done
