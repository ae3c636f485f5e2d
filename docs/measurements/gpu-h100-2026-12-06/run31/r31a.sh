# run 31, call A (session 25): linear mmr, the candidate for the decode GEMVs at T 3-8 on the
# narrow projections. Run 30 (H100) put gemv at 1.01-1.04 of a same-size copy at T 1 on
# every Llama-3-8B projection, but auto's cuBLAS at T 3-8 at 0.66-0.72 of it on qkv_proj
# (6144 x 4096) and o_proj (4096 x 4096). mmr (written in session 16: w straight from global
# memory into mma.sync's A fragments, no shared-memory stage, K split over a cluster) has
# never run. Here, through gpu-trial.sh over the tree and -DAUTO_MMR_MIN_T=3 (auto runs mmr
# from T 3 to 32 instead of cublas): each build's mmr sweep (bf16), mmr at T 4, 8 and 32 on
# both narrow shapes and at T 32 on gate_up_proj's and down_proj's, with cublas and gemv as
# peers, and the batch-32 row with graphs (T 32: cublas in the tree, mmr under the knob) per
# build; then, as time allows, mmr's f16 sweep, test_gpu_linear (mmr's bits run to run and
# its fallbacks) and memcheck on the bf16 sweep. The trial takes about 7 of the call's 10
# minutes on a fresh machine; fits a warm one (REUSE=1) too.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r31a; mkdir -p $L
pack() { tar czf $OUT/r31a.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
( cd $B && make -j16 bench-gpu tests/test_gpu_linear > $L/build-more.log 2>&1 ) || { tail -20 $L/build-more.log; pack; exit 1; }
wait
SH=""; for t in 4 8 32; do for nk in N=6144,K=4096 N=4096,K=4096; do SH="$SH --shape T=$t,$nk"; done; done
SH="$SH --shape T=32,N=28672,K=4096 --shape T=32,N=4096,K=14336"
el "trial mmr: the tree, auto with mmr from T 3"
timeout $(( $(left) - 30 )) bash tools/gpu-trial.sh --build $B --out $L/trial-mmr --op linear --variant mmr $SH \
  --peer cublas --peer gemv --step "--model /tmp/llama3-8b-random --only 5 --graphs --sustain 0" \
  -- "" -DAUTO_MMR_MIN_T=3 2>&1 | tee $L/trial-console.txt | tail -16; pack
cd $B
[ $(left) -gt 60 ] && { el "mmr f16 sweep"
  timeout $(( $(left) - 10 < 90 ? $(left) - 10 : 90 )) ./llama-diff ops --op linear --variant mmr --dtype f16 > $L/ops-mmr-f16.txt 2>&1; echo "exit $?"; grep -h "planned" $L/ops-mmr-f16.txt; grep -m3 "^FAIL" $L/ops-mmr-f16.txt | cut -c1-200; }; pack
el "test_gpu_linear"
[ $(left) -gt 40 ] && { timeout $(( $(left) - 30 < 100 ? $(left) - 30 : 100 )) ./tests/test_gpu_linear > $L/test_gpu_linear.log 2>&1; echo "exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_linear.log | cut -c1-240 | head -5; }; pack
el "memcheck on mmr's bf16 sweep"
[ $(left) -gt 40 ] && { timeout $(( $(left) - 10 )) /usr/local/cuda/bin/compute-sanitizer --tool memcheck --error-exitcode 9 ./llama-diff ops --op linear --variant mmr --dtype bf16 > $L/san-mmr-memcheck.txt 2>&1; echo "exit $?"; grep -m1 "ERROR SUMMARY" $L/san-mmr-memcheck.txt; }; pack
el done
