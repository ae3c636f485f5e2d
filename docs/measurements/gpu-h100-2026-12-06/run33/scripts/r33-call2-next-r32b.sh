# run 32, call B (session 26): linear mmr with x asked for ahead (-DMR_X_AHEAD=1, written
# after run 31 without a GPU; the same values in the same order, so the same bits). Run 31
# (H100) timed mmr, the tensor-core GEMV that reads w straight into mma.sync's fragments,
# slower than cuBLAS at every decode shape (o_proj at T 4 22.3 us against 17.1), where
# T 3-8 on qkv_proj and o_proj is the one GEMV gap left (cuBLAS at 0.66-0.72 of a
# same-size copy). Its loop asks for w two steps ahead but for x only at the step, so each
# step waits a trip to L2 before its products; with the knob, at T <= 8, x goes with w.
# Run 32's short call (run32/callS) tried it once: qkv_proj at T 4 34.5 -> 30.7 us (cuBLAS
# 33.9 in that call), but o_proj at T 4 and 8 22.5 -> 28.9 and 22.6 -> 28.4 (cuBLAS 18.8,
# 21.0). With the knob's 106 registers (the tree's 75) the launcher's one-wave rule split
# qkv_proj's K in 4 slices where it had split it in 8 (o_proj kept 8), so part of that gain
# may be the smaller cluster's merge. Here, through gpu-trial.sh over the tree, the knob,
# the split capped at 4 slices at K 4096 (-DMM_MIN_SLICE=16: no slice under 16 steps of
# 64 k), both, and the knob with one step in flight instead of two (-DMR_DEPTH=1: 56
# registers): each build's mmr sweep (bf16), mmr at T 4 and 8 on qkv_proj and o_proj,
# cublas and gemv the peers; then Nsight Compute on the tree's mmr at T 4 on o_proj (stall
# reasons and SASS stall sites), and on the knob's if time is left. Fits a fresh machine or
# a warm one (REUSE=1).
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r32b; mkdir -p $L
pack() { tar czf $OUT/r32b.tgz --exclude='*.ncu-rep' -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
SH=""; for t in 4 8; do for nk in N=6144,K=4096 N=4096,K=4096; do SH="$SH --shape T=$t,$nk"; done; done
el "trial mmr: the tree, MR_X_AHEAD=1, MM_MIN_SLICE=16, both, MR_X_AHEAD=1 with MR_DEPTH=1"
timeout $(( $(left) - 120 )) bash tools/gpu-trial.sh --build $B --out $L/trial-mmr --op linear --variant mmr $SH \
  --peer cublas --peer gemv -- "" -DMR_X_AHEAD=1 -DMM_MIN_SLICE=16 "-DMR_X_AHEAD=1 -DMM_MIN_SLICE=16" \
  "-DMR_X_AHEAD=1 -DMR_DEPTH=1" 2>&1 | tee $L/trial-console.txt | tail -10; pack
cd $B
SECT="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis --section SourceCounters"
prof() { # name
  [ $(left) -gt 40 ] || return
  el "ncu: $1"
  timeout $(( $(left) - 15 < 90 ? $(left) - 15 : 90 )) ncu --clock-control none $SECT -k regex:linear_mmr_kernel --launch-count 1 -o $L/$1 -f ./llama-diff ops --op linear --variant mmr --dtype bf16 --shape T=4,N=4096,K=4096 > $L/ncu-$1.log 2>&1; echo "exit $?"
  [ -f $L/$1.ncu-rep ] && { ncu --import $L/$1.ncu-rep --page details > $L/ncu-$1.txt 2>&1; grep -E "Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Issued Warp|No Eligible|Waves Per SM|Grid Size" $L/ncu-$1.txt | cut -c1-120
    ncu --import $L/$1.ncu-rep --page source --csv --print-source sass 2>/dev/null | gzip -9 > $L/ncu-$1-sass.csv.gz; }; pack
}
prof mmr-t4-tree
[ $(left) -gt 100 ] && { BASE=$(sed -n 's/^CPPFLAGS = //p' Makefile)
  rm -f gpu/*.o; make -j16 CPPFLAGS="$BASE -DMR_X_AHEAD=1" llama-diff > $L/build-knob.log 2>&1 && prof mmr-t4-xahead
  rm -f gpu/*.o; make -j16 CPPFLAGS="$BASE" llama-diff > $L/build-tree.log 2>&1 || tail -5 $L/build-tree.log; }; pack
el done
