# run 36, call A (session 30): linear auto with gemv at T 3 only on the narrower
# projections (-DAUTO_GEMV_MID_N=8192 -DAUTO_GEMV_MID_K=4096 -DAUTO_GEMV_MID_T=3: qkv_proj
# and o_proj at K 4096), the checks a default owes before it changes. Runs 34 (H100) and 35
# (H200) timed gemv ahead of cuBLAS at T 3 on both projections on both cards (H100 25.7 /
# 16.6 us against 29.7 / 21.6; H200 21.2 / 17.0 against 23.5 and 22.7 / 19.6 and 19.7) and
# no clear gain at T 4, where the tree's own two builds moved 15%. Here: the timing once
# more (the tree first and last, the knobs between, cublas and gemv the peers), then the
# knobs' build of test_gpu_linear (auto's bits: gemv's at T 3 where the bounds hold) and
# test_gpu_forward (the model level: its graph cases prefill 3 tokens a sequence, T 3),
# and llama-diff check -b cuda on every fixture at bf16 and fp16, plain and with 4 decode
# steps, with the knobs. Where all
# pass, AUTO_GEMV_MID_{N,K,T} become gpu/linear.cu's defaults (8192, 4096, 3) and
# test_gpu_linear.c's mirror with them. Fits a fresh machine or a warm one (REUSE=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r36a; mkdir -p $L
pack() { tar czf $OUT/r36a.tgz -C $L . 2>/dev/null; }
KNOBS="-DAUTO_GEMV_MID_N=8192 -DAUTO_GEMV_MID_K=4096 -DAUTO_GEMV_MID_T=3"
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
SH=""; for t in 3 4; do for nk in N=6144,K=4096 N=4096,K=4096; do SH="$SH --shape T=$t,$nk"; done; done
el "trial auto: the tree, the knobs, the tree"
timeout $(( $(left) - 330 )) bash tools/gpu-trial.sh --build $B --out $L/trial-auto --op linear --variant auto $SH \
  --peer cublas --peer gemv -- "" "$KNOBS" "" 2>&1 | tee $L/trial-console.txt | tail -10; pack
el "the knobs' build: test_gpu_linear, test_gpu_forward, llama-diff check -b cuda"
cd $B && BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
rm -f gpu/*.o tests/test_gpu_linear*.o tests/test_gpu_forward*.o; make -j16 CPPFLAGS="$BASE $KNOBS" llama-diff tests/test_gpu_linear tests/test_gpu_forward > $L/build-knob.log 2>&1 || { tail -5 $L/build-knob.log; pack; exit 1; }
for t in test_gpu_linear test_gpu_forward; do
  timeout 160 ./tests/$t > $L/$t-knob.log 2>&1; echo "$t (knobs) exit $?: $(grep -E '^[0-9]+%' $L/$t-knob.log | tr '\n' ' ')"; grep -E ':[EF]:' $L/$t-knob.log | cut -c1-240 | head -4; pack; done
n=0; bad=0; cd $SRC; for c in gqa-f32:gqa-f32-batch mha-bias-bf16:mha-bias-bf16 mqa-hd-f16:mqa-hd-f16 long-gqa-f32:long-gqa-f32-300; do
  m=${c%%:*} f=${c##*:}; for p in bf16 fp16; do for d in "" "--decode 4"; do [ $(left) -gt 40 ] || break 3
    o=$L/check-$f-$p${d:+-decode}.txt; timeout 30 $B/llama-diff check -b cuda -p $p $d -m fixtures/models/$m -f fixtures/golden/$f.safetensors > $o 2>&1; rc=$?; n=$((n+1))
    [ $rc -eq 0 ] || { bad=$((bad+1)); echo "check $f $p $d exit $rc"; tail -2 $o | cut -c1-200; }
done; done; done; echo "llama-diff check -b cuda (knobs), plain and --decode 4: $((n-bad)) of $n exit 0"; pack; cd $B
rm -f gpu/*.o tests/test_gpu_linear*.o tests/test_gpu_forward*.o; make -j16 CPPFLAGS="$BASE" llama-diff tests/test_gpu_linear tests/test_gpu_forward > $L/build-tree.log 2>&1 || tail -5 $L/build-tree.log; pack
el done
