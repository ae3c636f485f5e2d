# run 25, call E (prepared in session 18, which was lent no GPU): the fused RoPE + cache
# kernel at prefill. ptxas gives it 138 registers a thread (7 blocks of 64 threads an SM,
# about 14 KB of loads in flight an SM), and run 24's profile charged it 55 us a layer at
# 2048 tokens where its 54 MB take 13 at copy bandwidth. -DROT_CACHE_MINB=16 caps it at 64
# registers (no spills, 16 blocks an SM); the bits are the same. The trial's sweep is the
# rotary family's (the heads kernel; the fused kernel is the backend's, checked bit for bit
# against the two kernels by test_gpu_forward's rope_cache_changes_no_bit, run here with the
# knob), then the prefill rows per build, then the owed --decode 4 shape check (run 24's
# call D ran out of time before it) with the tree's values.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r25e; mkdir -p $L
pack() { tar czf $OUT/r25e.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
el "test_gpu_forward with -DROT_CACHE_MINB=16"
rm -f gpu/*.o; make -j16 CPPFLAGS="$(sed -n 's/^CPPFLAGS = //p' Makefile) -DROT_CACHE_MINB=16" tests/test_gpu_forward > $L/build-minb.log 2>&1 || tail -5 $L/build-minb.log
timeout 100 ./tests/test_gpu_forward > $L/test_gpu_forward-minb.log 2>&1; echo "test_gpu_forward exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_forward-minb.log | head -4
wait; cd $SRC
el "trial ROT_CACHE_MINB"; timeout 300 bash tools/gpu-trial.sh --build $B --out $L/trial-rot --op rotary --variant heads \
  --step "--model /tmp/llama3-8b-random --only 01" -- "" -DROT_CACHE_MINB=16 2>&1 | tee $L/trial-rot-console.txt | tail -8; pack
el "shape check --decode 4 (tree)"
( OUT=$L/shape timeout $(( $(left) - 10 )) bash tools/gpu-shape-check.sh --variants fd --kernels linear=auto --precisions bf16 --tokens 516 --decode 4 --no-faults > $L/shape-decode.txt 2>&1; echo "exit $?" >> $L/shape-decode.txt; rm -f $L/shape/*.safetensors )
grep -E "^attention=|^exit" $L/shape-decode.txt | cut -c1-300; pack
el done
