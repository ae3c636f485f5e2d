# run 34, call A (session 28): the checks owed by session 27's two new defaults, run 33's
# fa3 with its block's block-table entries in shared memory (FA3_TABLE_SMEM 256: sweeps at
# bf16 and f16, racecheck and synccheck ran on a build with it and two other knobs, the
# 1 x 2048 row's logits bit for bit the tree's; not yet memcheck, nor the model-level
# suites) and mmr's x asked for ahead at one step in flight for one tile of tokens (its
# sweep ran on a build with MR_DEPTH=1 everywhere; not yet a sanitizer). Here:
# test_gpu_linear and test_gpu_forward (every fixture at bf16 and fp16, the model level),
# every attention variant's sweep at bf16 (fa3w aside) with the new many-blocks shape (block size 1,
# 300 entries: fa3's global-table path) and fa3's at f16, mmr's sweeps, fa3 at 1 x 2048
# and 8 x 512 and mmr at T 4 and 8 (qkv_proj, o_proj) against cublas, timed; then
# memcheck on fa3's and mmr's sweeps, racecheck and synccheck on fa3's, as time allows.
# Fits a fresh machine or a warm one (REUSE=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r34a; mkdir -p $L
pack() { tar czf $OUT/r34a.tgz --exclude='*.ncu-rep' -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 tests/test_gpu_linear tests/test_gpu_forward > $L/build-tests.log 2>&1 || { tail -20 $L/build-tests.log; pack; exit 1; }
# (test_gpu_ops, the whole op sweep of every family, took 402 s in run 33's call 3: the
# sweeps it owes here run below, one by one)
for t in test_gpu_linear test_gpu_forward; do el $t
  timeout 150 ./tests/$t > $L/$t.log 2>&1; echo "$t exit $?: $(grep -E '^[0-9]+%' $L/$t.log | tr '\n' ' ')"; grep -E ':[EF]:' $L/$t.log | cut -c1-240 | head -4; pack; done
el "sweeps: every attention variant at bf16, fa3 at f16, mmr at bf16 and f16"
# (fa3w, new and not yet run, has a call of its own: next-r34c.sh)
for v in fa3 fa2 fa3p fd fdt fdtc tc flash simple; do timeout 60 ./llama-diff ops --op attention --variant $v --dtype bf16 > $L/ops-$v-bf16.txt 2>&1; echo "$v bf16 exit $?: $(grep -h planned $L/ops-$v-bf16.txt)"; done
grep -h "many-blocks" $L/ops-*-bf16.txt | cut -c1-100
timeout 60 ./llama-diff ops --op attention --variant fa3 --dtype f16 > $L/ops-fa3-f16.txt 2>&1; echo "fa3 f16 exit $?: $(grep -h planned $L/ops-fa3-f16.txt)"
for dt in bf16 f16; do timeout 60 ./llama-diff ops --op linear --variant mmr --dtype $dt > $L/ops-mmr-$dt.txt 2>&1; echo "mmr $dt exit $?: $(grep -h planned $L/ops-mmr-$dt.txt)"; done; pack
el timing
for sh in len=2048 len=512,seqs=8; do [ $(left) -gt 60 ] || break; timeout 30 ./llama-diff ops --op attention --variant fa3 --dtype bf16 --shape heads=32,kv=8,hd=128,$sh --perf > $L/perf-fa3-$sh.txt 2>&1; echo "fa3 $sh: $(grep -hE '^(PASS|FAIL)' $L/perf-fa3-$sh.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us|[0-9.]+ TFLOP/s' | tr '\n' ' ')"; done
for v in mmr cublas; do for sh in T=4,N=6144,K=4096 T=4,N=4096,K=4096 T=8,N=6144,K=4096 T=8,N=4096,K=4096; do [ $(left) -gt 60 ] || break
  timeout 20 ./llama-diff ops --op linear --variant $v --dtype bf16 --shape $sh --perf > $L/perf-$v-$sh.txt 2>&1; echo "$v $sh: $(grep -hE '^(PASS|FAIL)' $L/perf-$v-$sh.txt | grep -oE '(PASS|FAIL)|[0-9.]+ us' | tr '\n' ' ')"; done; done; pack
el sanitizers
for run in "memcheck attention fa3" "memcheck linear mmr" "racecheck attention fa3" "synccheck attention fa3"; do set -- $run; [ $(left) -gt 40 ] || break
  timeout $(( $(left) - 20 < 120 ? $(left) - 20 : 120 )) /usr/local/cuda/bin/compute-sanitizer --tool $1 --error-exitcode 9 ./llama-diff ops --op $2 --variant $3 --dtype bf16 > $L/san-$3-$1.txt 2>&1
  echo "$3 $1 exit $?: $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/san-$3-$1.txt)"; done; pack
el done
