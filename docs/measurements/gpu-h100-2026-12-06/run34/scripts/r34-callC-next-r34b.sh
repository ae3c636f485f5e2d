# run 34, call B (session 28): linear auto with gemv also at T 3 and 4 where N is at most
# 8192 (-DAUTO_GEMV_MID_N=8192, written in session 27 without a GPU; auto's bits become
# gemv's there). Run 30 (H100) timed gemv at T 4 ahead of cublas on qkv_proj, o_proj and
# down_proj (0.73 / 0.82 / 0.89 of a same-size copy against 0.70 / 0.66 / 0.85) and behind
# it on gate_up_proj and lm_head, which the knob leaves to cublas (gate_up_proj here is the
# control: the same kernel in both builds, so its spread is the call's noise). Through
# gpu-trial.sh over the tree and the knob: each build's linear sweep (auto), auto at T 3
# and 4 on the four shapes, cublas, gemv and mmr the peers; then test_gpu_linear built
# with the knob (its auto case reads the same knob: gemv's bits at T 3-4 where N <= 8192).
# Fits a fresh machine or a warm one (REUSE=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r34b; mkdir -p $L
pack() { tar czf $OUT/r34b.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
SH=""; for t in 3 4; do for nk in N=6144,K=4096 N=4096,K=4096 N=4096,K=14336 N=28672,K=4096; do SH="$SH --shape T=$t,$nk"; done; done
el "trial auto: the tree, AUTO_GEMV_MID_N=8192"
timeout $(( $(left) - 150 )) bash tools/gpu-trial.sh --build $B --out $L/trial-auto --op linear --variant auto $SH \
  --peer cublas --peer gemv --peer mmr -- "" -DAUTO_GEMV_MID_N=8192 2>&1 | tee $L/trial-console.txt | tail -14; pack
el "test_gpu_linear with the knob"
cd $B && BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
rm -f gpu/*.o tests/test_gpu_linear.o tests/test_gpu_linear-test_gpu_linear.o; make -j16 CPPFLAGS="$BASE -DAUTO_GEMV_MID_N=8192" tests/test_gpu_linear > $L/build-knob.log 2>&1 || { tail -5 $L/build-knob.log; pack; exit 1; }
timeout $(( $(left) - 60 )) ./tests/test_gpu_linear > $L/test_gpu_linear-knob.log 2>&1; echo "test_gpu_linear (knob) exit $?: $(grep -E '^[0-9]+%' $L/test_gpu_linear-knob.log | tr '\n' ' ')"; grep -E ':[EF]:' $L/test_gpu_linear-knob.log | cut -c1-240 | head -4; pack
rm -f gpu/*.o tests/test_gpu_linear*.o; make -j16 CPPFLAGS="$BASE" llama-diff tests/test_gpu_linear > $L/build-tree.log 2>&1 || tail -5 $L/build-tree.log; pack
el done
