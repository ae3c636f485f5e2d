# run 31, call B (session 25; first prepared as run 25's call E, run24/next-r25e.sh, never
# run): two of the prefill rows' small kernels, by knobs that change no bit. Run 30's
# profile of prefill 1 x 2048 (H100) charged rms_norm 2.48 ms and rotary (the fused RoPE +
# cache write) 1.81 ms, 8 x 512 4.89 and 3.99 ms: the fused kernel moves about 54 MB a layer
# at 2048 tokens in some 55 us where a copy takes 18, at 138 registers a thread (7 blocks of
# 64 threads an SM); -DROT_CACHE_MINB=16 caps it at 64 (no spills, 16 blocks an SM).
# RMSNorm's vec kernel holds 4 chunks a thread where a 4096-wide row needs 2 (56 registers,
# 2 blocks of 512 an SM): -DRMS_VEC_FIT=1 launches the 2-chunk instance there. Through
# gpu-trial.sh over the tree and both knobs in one build (they touch different ops, and the
# profile charges each op apart): the rmsnorm vec sweep (bf16) of each build and both
# prefill rows (--sustain 0) with their profiles; then test_gpu_forward
# (rope_cache_changes_no_bit, the fused kernel's bits against the two kernels apart) with
# both knobs. Fits a fresh machine or a warm one (REUSE=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r31b; mkdir -p $L
pack() { tar czf $OUT/r31b.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
( cd $B && make -j16 bench-gpu tests/test_gpu_forward > $L/build-more.log 2>&1 ) || { tail -20 $L/build-more.log; pack; exit 1; }
wait
el "trial: the tree, ROT_CACHE_MINB=16 with RMS_VEC_FIT=1"
timeout $(( $(left) - 120 )) bash tools/gpu-trial.sh --build $B --out $L/trial-small --op rmsnorm --variant vec \
  --step "--model /tmp/llama3-8b-random --only 01 --sustain 0" \
  -- "" "-DROT_CACHE_MINB=16 -DRMS_VEC_FIT=1" 2>&1 | tee $L/trial-console.txt | tail -14; pack
el "test_gpu_forward with both knobs"
cd $B && BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
rm -f gpu/*.o; make -j16 CPPFLAGS="$BASE -DROT_CACHE_MINB=16 -DRMS_VEC_FIT=1" tests/test_gpu_forward > $L/build-knobs.log 2>&1 || tail -5 $L/build-knobs.log
timeout $(( $(left) - 40 )) ./tests/test_gpu_forward > $L/test_gpu_forward-knobs.log 2>&1; echo "exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_forward-knobs.log | cut -c1-240 | head -5
rm -f gpu/*.o; make -j16 CPPFLAGS="$BASE" llama-diff bench-gpu > $L/build-tree.log 2>&1 || tail -5 $L/build-tree.log; pack
el done
