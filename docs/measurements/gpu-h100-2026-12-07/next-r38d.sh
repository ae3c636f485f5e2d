# run 38, call D (session 32; any card, fresh or warm with REUSE=1): attention fdt's keys and
# values read before its PDL wait (FDT_KV_EARLY, with META_EARLY: gpu/attention_fdt.cu), the
# first run. Run 37's trace (H100) put fdt's own time at 7.5 us a layer at batch 1 and its
# merge's at 3.9: chains of dependent loads behind qkv_proj. With the knobs every key cached
# before the step is copied while qkv_proj still runs, and only the step's own key after the
# wait. Here: gpu-trial.sh over the tree, META_EARLY alone, both, and the tree again (each
# build's fdt sweep must pass; 1, 8, 32 sequences of 1024 keys; both decode rows with
# graphs, and each config's step traced: trace-N-vs-1.md, fdt's own time against the tree's); then the knobs' build of test_gpu_forward (graphs and PDL change no bit) and
# llama-diff check -b cuda with --decode 4 on the fixtures, and compute-sanitizer racecheck
# and synccheck on fdt's sweep. TRIAL='"" "$KNOBS"' (words as the shell reads them) replaces
# the trial's four configurations; TRIAL_ONLY=1 stops after the trial.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r38d; mkdir -p $L; KNOBS="-DMETA_EARLY=1 -DFDT_KV_EARLY=1"
pack() { tar czf $OUT/r38d.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
( cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 ) || { tail -20 $L/build-bench.log; pack; exit 1; }
wait
if [ -n "${TRIAL:-}" ]; then eval "CFG=($TRIAL)"; else CFG=("" -DMETA_EARLY=1 "$KNOBS" ""); fi
el "trial fdt: ${#CFG[@]} configurations"
R=200; [ -n "${TRIAL_ONLY:-}" ] && R=10
timeout $(( $(left) - R )) bash tools/gpu-trial.sh --build $B --out $L/trial-fdt --op attention --variant fdt \
  --shape heads=32,kv=8,hd=128,past=1024 --shape heads=32,kv=8,hd=128,past=1024,seqs=8 \
  --shape heads=32,kv=8,hd=128,past=1024,seqs=32 \
  --step "--model /tmp/llama3-8b-random --only 45 --graphs --no-profile" --trace \
  -- "${CFG[@]}" 2>&1 | tee $L/trial-console.txt | tail -16; pack
[ -n "${TRIAL_ONLY:-}" ] && { el done; exit 0; }
el "the knobs' build: test_gpu_forward, llama-diff check -b cuda --decode 4, the sanitizers"
cd $B && BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
rm -f gpu/*.o tests/test_gpu_forward*.o; make -j16 CPPFLAGS="$BASE $KNOBS" llama-diff tests/test_gpu_forward > $L/build-knob.log 2>&1 || { tail -5 $L/build-knob.log; pack; exit 1; }
timeout 150 ./tests/test_gpu_forward > $L/test_gpu_forward-knob.log 2>&1; echo "test_gpu_forward (knobs) exit $?: $(grep -E '^[0-9]+%' $L/test_gpu_forward-knob.log)"; grep -E ':[EF]:' $L/test_gpu_forward-knob.log | cut -c1-240 | head -4; pack
n=0; bad=0; cd $SRC; for c in gqa-f32:gqa-f32-batch mha-bias-bf16:mha-bias-bf16 mqa-hd-f16:mqa-hd-f16 long-gqa-f32:long-gqa-f32-300; do
  m=${c%%:*} f=${c##*:}; for p in bf16 fp16; do [ $(left) -gt 60 ] || break 2
    o=$L/check-$f-$p-decode.txt; timeout 30 $B/llama-diff check -b cuda -p $p --decode 4 -m fixtures/models/$m -f fixtures/golden/$f.safetensors > $o 2>&1; rc=$?; n=$((n+1))
    [ $rc -eq 0 ] || { bad=$((bad+1)); echo "check $f $p exit $rc"; tail -2 $o | cut -c1-200; }
done; done; echo "llama-diff check -b cuda --decode 4 (knobs): $((n-bad)) of $n exit 0"; pack; cd $B
for tool in memcheck racecheck synccheck; do [ $(left) -gt 60 ] || break
  timeout $(( $(left) - 40 < 90 ? $(left) - 40 : 90 )) /usr/local/cuda/bin/compute-sanitizer --tool $tool --error-exitcode 9 ./llama-diff ops --op attention --variant fdt --dtype bf16 > $L/sanitize-$tool.log 2>&1; echo "$tool exit $?: $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/sanitize-$tool.log)"; pack; done
rm -f gpu/*.o tests/test_gpu_forward*.o; make -j16 CPPFLAGS="$BASE" llama-diff tests/test_gpu_forward > $L/build-tree.log 2>&1 || tail -5 $L/build-tree.log; pack
el done
