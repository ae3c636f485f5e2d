# run 25, call A (prepared in session 16): linear mmr's first run (its sweeps, then the
# trial at T 1 and 32 with both decode rows), and the model-level check at fp16 of this
# run's defaults at Llama-3-8B shapes (fa2 with 32 rows a warp, fd with a pair a key).
# Session 17: the trial's step runs the default kernels, over the tree (auto: gemv at
# T <= 2, cublas above) and -DAUTO_MMR_MIN_T=3 (auto with mmr from T 3 to 32), so the
# batch-32 row compares mmr with cublas in the same call; batch 1 is gemv in both, and
# mmr's T = 1 shapes are timed against gemv at op level. MR_DEPTH=4 left for later.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r25a; mkdir -p $L
pack() { tar czf $OUT/r25a.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "sweeps of mmr; test_gpu_linear"
for d in bf16 f16; do timeout 60 ./llama-diff ops --op linear --variant mmr --dtype $d > $L/ops-mmr-$d.txt 2>&1; echo "sweep mmr $d exit $?"; grep -h "planned" $L/ops-mmr-$d.txt; grep -m3 "^FAIL" $L/ops-mmr-$d.txt; done
timeout 100 ./tests/test_gpu_linear > $L/test_gpu_linear.log 2>&1; echo "test_gpu_linear exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_linear.log | head -5; pack
cd $SRC
( OUT=$L/shape timeout 240 bash tools/gpu-shape-check.sh --variants fa2,fd --kernels linear=auto --precisions fp16 --tokens 516 --no-faults > $L/shape-fp16.txt 2>&1; echo "exit $?" >> $L/shape-fp16.txt; rm -f $L/shape/*.safetensors ) &
wait
grep -E "^attention=|^exit" $L/shape-fp16.txt | cut -c1-300; pack
el "trial mmr"; timeout $(( $(left) - 5 )) bash tools/gpu-trial.sh --build $B --out $L/trial-mmr --op linear --variant mmr \
  --shape T=1,N=6144,K=4096 --shape T=1,N=4096,K=4096 --shape T=32,N=6144,K=4096 --shape T=32,N=4096,K=4096 \
  --shape T=32,N=28672,K=4096 --shape T=32,N=4096,K=14336 --peer cublas --peer gemv \
  --step "--model /tmp/llama3-8b-random --only 45 --graphs --steps 32" -- "" -DAUTO_MMR_MIN_T=3 2>&1 | tee $L/trial-mmr-console.txt | tail -16; pack
el done
