# run 31, call B (session 25): the prefill rows' small kernels. Run 30's profile of prefill
# 1 x 2048 (H100) charged rotary (the fused RoPE + cache write) 1.81 ms and rms_norm 2.48 ms,
# 8 x 512 3.99 and 4.89 ms: the fused kernel moves about 52 MB a layer at 2048 tokens in
# some 56 us where a copy takes 18. Three ways at it, none changing a bit:
#  - lr_gpu_rotary_cache's kernel for many tokens (session 25, LLAMAREF_ROPE_WIDE=1: a block
#    a token, 16-byte vectors, its loads issued before the float64 angles, 80 registers):
#    its bits against the old kernel first (test_gpu_linear's rotary_cache_wide case), then
#    both prefill rows without and with it on the same build; after the trial below, as
#    time allows, that case under compute-sanitizer's memcheck, racecheck and synccheck, and
#    the rows again in turn;
#  - the old kernel capped at 64 registers (-DROT_CACHE_MINB=16) and RMSNorm's 2-chunk
#    instance for 4096-wide rows (-DRMS_VEC_FIT=1), prepared as run 25's call E and never
#    run: through gpu-trial.sh over the tree and both knobs in one build (they touch
#    different ops; the profile charges each apart), the rmsnorm vec sweep of each build and
#    both rows with their profiles;
#  - then, if time is left, test_gpu_forward with both knobs (rope_cache_changes_no_bit
#    among its checks).
# Fits a fresh machine or a warm one (REUSE=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r31b; mkdir -p $L
pack() { tar czf $OUT/r31b.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
( cd $B && make -j16 bench-gpu tests/test_gpu_forward tests/test_gpu_linear > $L/build-more.log 2>&1 ) || { tail -20 $L/build-more.log; pack; exit 1; }
el "the wide kernel's bits (test_gpu_linear, case rotary_cache_wide)"
( cd $B && CK_RUN_CASE=rotary_cache_wide timeout 60 ./tests/test_gpu_linear > $L/test_gpu_linear-wide.log 2>&1; echo "exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_linear-wide.log | cut -c1-260 | head -4 ); pack
wait
rows() { ( cd $B && timeout 80 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 01 --sustain 0 --json $L/bench-$1.json > $L/bench-$1.txt 2>&1; echo "gpu_bench ($1) exit $?"; grep -E "^  prefill" $L/bench-$1.txt | sed -E 's/ +/ /g' | cut -c1-90
  python3 -c 'import json,sys; [print("   ", r["name"], "rotary %.3f ms, rms_norm %.3f ms" % (r["profile_ns"]["rotary"] / 1e6, r["profile_ns"]["rms_norm"] / 1e6)) for r in json.load(open(sys.argv[1]))["rows"]]' $L/bench-$1.json ); pack; }
el "prefill rows: the old kernel, the wide kernel"
rows old-1; LLAMAREF_ROPE_WIDE=1 rows wide-1
el "trial: the tree, ROT_CACHE_MINB=16 with RMS_VEC_FIT=1"
timeout $(( $(left) - 20 )) bash tools/gpu-trial.sh --build $B --out $L/trial-small --op rmsnorm --variant vec \
  --step "--model /tmp/llama3-8b-random --only 01 --sustain 0" \
  -- "" "-DROT_CACHE_MINB=16 -DRMS_VEC_FIT=1" 2>&1 | tee $L/trial-console.txt | tail -12; pack
[ $(left) -gt 80 ] && { el "the wide kernel's case under memcheck, racecheck, synccheck"
  ( cd $B && for tool in memcheck racecheck synccheck; do [ $(left) -gt 25 ] || break; CK_RUN_CASE=rotary_cache_wide timeout $(( $(left) - 15 < 60 ? $(left) - 15 : 60 )) /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./tests/test_gpu_linear > $L/san-wide-$tool.txt 2>&1; echo "$tool exit $?: $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/san-wide-$tool.txt)"; done ); pack; }
[ $(left) -gt 170 ] && { el "prefill rows again, in turn"; rows old-2; LLAMAREF_ROPE_WIDE=1 rows wide-2; }
[ $(left) -gt 120 ] && { el "test_gpu_forward with both knobs"
  cd $B && BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
  rm -f gpu/*.o; make -j16 CPPFLAGS="$BASE -DROT_CACHE_MINB=16 -DRMS_VEC_FIT=1" tests/test_gpu_forward > $L/build-knobs.log 2>&1 || tail -5 $L/build-knobs.log
  timeout $(( $(left) - 45 )) ./tests/test_gpu_forward > $L/test_gpu_forward-knobs.log 2>&1; echo "exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_forward-knobs.log | cut -c1-240 | head -5
  rm -f gpu/*.o; make -j16 CPPFLAGS="$BASE" llama-diff bench-gpu > $L/build-tree.log 2>&1 || tail -5 $L/build-tree.log; }; pack
el done
