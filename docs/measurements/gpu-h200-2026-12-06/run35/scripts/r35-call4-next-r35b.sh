# run 35, call B (session 29): linear auto with gemv also at T 3 and 4 on the narrower
# projections, now bounded in K as well (-DAUTO_GEMV_MID_N=8192 -DAUTO_GEMV_MID_K=4096:
# qkv_proj and o_proj, not down_proj). Run 34's call C timed N <= 8192 alone: gemv ahead at
# T 3 and 4 on qkv_proj and o_proj (K 4096), behind on down_proj (K 14336); its control
# (gate_up_proj, cuBLAS in both builds) moved 6% between builds, so here the tree runs
# twice, first and last, and the knob between. Through gpu-trial.sh: each build's linear
# sweep (auto), auto at T 3 and 4 on the four shapes, cublas and gemv the peers; then
# test_gpu_linear built with the knobs (its auto case reads them). Fits a fresh machine
# or a warm one (REUSE=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r35b; mkdir -p $L
pack() { tar czf $OUT/r35b.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
SH=""; for t in 3 4; do for nk in N=6144,K=4096 N=4096,K=4096 N=4096,K=14336 N=28672,K=4096; do SH="$SH --shape T=$t,$nk"; done; done
el "trial auto: the tree, the knobs, the tree"
timeout $(( $(left) - 150 )) bash tools/gpu-trial.sh --build $B --out $L/trial-auto --op linear --variant auto $SH \
  --peer cublas --peer gemv -- "" "-DAUTO_GEMV_MID_N=8192 -DAUTO_GEMV_MID_K=4096" "" 2>&1 | tee $L/trial-console.txt | tail -14; pack
el "test_gpu_linear with the knob"
cd $B && BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
rm -f gpu/*.o tests/test_gpu_linear.o tests/test_gpu_linear-test_gpu_linear.o; make -j16 CPPFLAGS="$BASE -DAUTO_GEMV_MID_N=8192 -DAUTO_GEMV_MID_K=4096" tests/test_gpu_linear > $L/build-knob.log 2>&1 || { tail -5 $L/build-knob.log; pack; exit 1; }
timeout $(( $(left) - 60 )) ./tests/test_gpu_linear > $L/test_gpu_linear-knob.log 2>&1; echo "test_gpu_linear (knob) exit $?: $(grep -E '^[0-9]+%' $L/test_gpu_linear-knob.log | tr '\n' ' ')"; grep -E ':[EF]:' $L/test_gpu_linear-knob.log | cut -c1-240 | head -4; pack
rm -f gpu/*.o tests/test_gpu_linear*.o; make -j16 CPPFLAGS="$BASE" llama-diff tests/test_gpu_linear > $L/build-tree.log 2>&1 || tail -5 $L/build-tree.log; pack
el done
