# run 25, call E (prepared in session 18, which was lent no GPU): two of the prefill rows'
# small kernels, by knobs that change no bit. The fused RoPE + cache kernel takes 138
# registers a thread (7 blocks of 64 threads an SM, about 14 KB of loads in flight an SM);
# run 24's profile charged it 55 us a layer at 2048 tokens where its 54 MB take 13 at copy
# bandwidth: -DROT_CACHE_MINB=16 caps it at 64 (no spills, 16 blocks an SM). RMSNorm's vec
# kernel holds 4 chunks a thread where Llama-3-8B's rows need 2 (56 registers, 2 blocks of
# 512 an SM; 72% of copy bandwidth at prefill): -DRMS_VEC_FIT=1 launches the 2-chunk
# instance there (32 registers, 4 blocks). Both rows' per-op profiles (JSON) for the tree
# and the knobs in the same call, test_gpu_forward (rope_cache_changes_no_bit among its
# checks) and the rmsnorm and rotary sweeps with the knobs, then the owed --decode 4 shape
# check of the tree (run 24's call D ran out of time before it).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( 585 - ($(date +%s) - T0) )); }
L=/tmp/r25e; mkdir -p $L
pack() { tar czf $OUT/r25e.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
el build; bash tools/gpu-check.sh --build-only > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1 || { tail -20 $L/build-bench.log; pack; exit 1; }
BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile); KNOBS="-DROT_CACHE_MINB=16 -DRMS_VEC_FIT=1"
rows() { timeout 80 ./bench/gpu_bench --model /tmp/llama3-8b-random --only 01 --json $L/bench-$1.json > $L/bench-$1.txt 2>&1; echo "gpu_bench ($1) exit $?"; grep -E "^  prefill" $L/bench-$1.txt | cut -c1-100
  python3 -c 'import json,sys; [print("   ", r["name"], "rms_norm %.3f ms, rotary %.3f ms" % (r["profile_ns"]["rms_norm"] / 1e6, r["profile_ns"]["rotary"] / 1e6)) for r in json.load(open(sys.argv[1]))["rows"]]' $L/bench-$1.json; }
wait
el "prefill rows, the tree"; rows tree; pack
el "rebuild with $KNOBS"
rm -f gpu/*.o; make -j16 CPPFLAGS="$BASE $KNOBS" llama-diff tests/test_gpu_forward bench-gpu > $L/build-knobs.log 2>&1 || { tail -5 $L/build-knobs.log; pack; exit 1; }
timeout 100 ./tests/test_gpu_forward > $L/test_gpu_forward-knobs.log 2>&1; echo "test_gpu_forward exit $?"; grep -E "^[0-9]+%|:[EF]:" $L/test_gpu_forward-knobs.log | head -4
for d in bf16 f16; do for op in "rmsnorm --variant vec" "rotary --variant heads"; do timeout 60 ./llama-diff ops --op $op --dtype $d > "$L/ops-${op%% *}-$d.txt" 2>&1; echo "sweep $op $d exit $?"; grep -h "planned" "$L/ops-${op%% *}-$d.txt"; done; done
el "prefill rows, the knobs"; rows knobs; pack
el "rebuild the tree; shape check --decode 4"
rm -f gpu/*.o; make -j16 CPPFLAGS="$BASE" llama-diff > $L/build-tree.log 2>&1 || tail -5 $L/build-tree.log
cd $SRC
( OUT=$L/shape timeout $(( $(left) - 10 )) bash tools/gpu-shape-check.sh --variants fd --kernels linear=auto --precisions bf16 --tokens 516 --decode 4 --no-faults > $L/shape-decode.txt 2>&1; echo "exit $?" >> $L/shape-decode.txt; rm -f $L/shape/*.safetensors )
grep -E "^attention=|^exit" $L/shape-decode.txt | cut -c1-300; pack
el done
