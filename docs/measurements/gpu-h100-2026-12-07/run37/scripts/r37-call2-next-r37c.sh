# run 37, call C (session 31; any card, fresh or warm with REUSE=1): the kernel tracer's first
# run (bench/ktrace.c through CUDA_INJECTION64_PATH, CUPTI's activity records), on both decode
# rows with graphs: what each kernel of a replayed step takes with PDL's overlaps (Nsight
# Compute serialises the kernels; the machine has no Nsight Systems: run 23). Each row first
# untraced, then traced, to see what the tracing costs; tools/ktrace-summary.py on each.
source gpurun/env.sh
export LR_FIXTURES=$PWD/fixtures LR_TMPDIR=/tmp/lr-tmp CK_FORK=no; mkdir -p $LR_TMPDIR
SRC=$PWD; T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r37c; mkdir -p $L
pack() { tar czf $OUT/r37c.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
(cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1) || { tail -20 $L/build-bench.log; pack; exit 1; }
el "CUPTI"; grep -i "cupti" $B/config.log | grep -E "result|checking" | head -3 > $L/cupti-configure.txt; cat $L/cupti-configure.txt
KL=$B/bench/libllamaref_ktrace.so
if [ ! -f $KL ]; then # configure found none: look for it, build the library by hand
  find / -xdev \( -name 'cupti.h' -o -name 'libcupti.so*' \) 2>/dev/null | grep -v "^/proc" | tee $L/cupti-found.txt
  CI=$(dirname "$(grep -m1 'cupti.h$' $L/cupti-found.txt)"); CL=$(dirname "$(grep -m1 'libcupti.so' $L/cupti-found.txt)")
  KL=/tmp/libktrace.so
  gcc -O2 -Wall -fPIC -shared -I$CI -o $KL bench/ktrace.c -L$CL -Wl,-rpath,$CL -lcupti -ljansson -lstdc++ -lpthread > $L/ktrace-build.log 2>&1 || { cat $L/ktrace-build.log; pack; exit 1; }
fi
wait
for row in 4 5; do for tr in 0 1 0 1; do [ $(left) -gt 50 ] || break 2
  n=row$row-trace$tr-$(date +%s); KT=; [ $tr = 1 ] && KT="bash tools/ktrace.sh --lib $KL -o $L/$n.jsonl --"
  timeout 90 $KT $B/bench/gpu_bench --model /tmp/llama3-8b-random --only $row --graphs --no-profile --json $L/$n.json > $L/$n.txt 2>&1; rc=$?
  echo "row $row trace $tr exit $rc: $(grep -E "load|^  decode" $L/$n.txt | sed -E 's/ +/ /g' | cut -c1-100 | tr '\n' '|')"
  if [ $tr = 1 ]; then python3 tools/ktrace-summary.py --per 32 $L/$n.jsonl > $L/$n-summary.txt 2>&1; head -30 $L/$n-summary.txt; gzip $L/$n.jsonl; fi
done; done; pack
el done
