# run 35, call A (session 29): where fa3w (fa3 warp-specialised, correct at its first run in
# run 34 but no faster: 120.7 us against fa3's 119.2 at 1 x 2048, 102.5 against 83.9 at
# 8 x 512) loses its time, against fa3 in the same call, and fa3wp (after next-r35c.sh
# has shown it finishes and passes). Nsight Compute on one launch of
# each at op level (llama-diff ops --shape, the check launch), run 31's sections: stall
# reasons (are the consumers waiting on the full barriers, i.e. the producer, or on their
# own wgmma and softmax chain?), pipe use (the tensor pipe's share beside fa3's),
# occupancy, and the top stall sites in SASS. Short: fits a warm machine (REUSE=1) after
# another call, or a fresh one.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r35a; mkdir -p $L
pack() { tar czf $OUT/r35a.tgz --exclude='*.ncu-rep' -C $L . 2>/dev/null; cp $L/*.ncu-rep $OUT/ 2>/dev/null; } # the reports apart: one too large to come back leaves the rest
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
cd $B
SECT="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section InstructionStats --section SourceCounters"
KEEP="Duration|Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issued Warp|No Eligible|Stall|Pipe|Executed Ipc|Block Limit|Waves Per SM"
prof() { # name, kernel regex, llama-diff ops arguments
  local n=$1 k=$2; shift 2
  [ $(left) -gt 50 ] || return
  el "ncu: $n"
  timeout $(( $(left) - 20 < 150 ? $(left) - 20 : 150 )) ncu --clock-control none $SECT -k regex:"$k" --launch-count ${LC:-1} -o $L/$n -f ./llama-diff ops "$@" > $L/ncu-$n.log 2>&1; echo "exit $?"
  [ -f $L/$n.ncu-rep ] && ncu --import $L/$n.ncu-rep --page details > $L/ncu-$n.txt 2>&1 && grep -E "$KEEP" $L/ncu-$n.txt | cut -c1-130 | head -30
  [ -f $L/$n.ncu-rep ] && ncu --import $L/$n.ncu-rep --page source --csv --print-source sass > $L/ncu-$n-sass.csv 2>/dev/null; pack
}
prof fa3w-2048 "attention_fa3w_kernel" --op attention --variant fa3w --dtype bf16 --shape heads=32,kv=8,hd=128,len=2048
prof fa3-2048 "attention_fa3_kernel" --op attention --variant fa3 --dtype bf16 --shape heads=32,kv=8,hd=128,len=2048
prof fa3wp-2048 "attention_fa3wp_kernel" --op attention --variant fa3wp --dtype bf16 --shape heads=32,kv=8,hd=128,len=2048
prof fa3w-8x512 "attention_fa3w_kernel" --op attention --variant fa3w --dtype bf16 --shape heads=32,kv=8,hd=128,len=512,seqs=8
el done
