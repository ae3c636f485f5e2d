# run 42, call B (session 37 or later; an H200, fresh or warm with REUSE=1): the prefill rows
# under the default (fa3wts at 1 x 2048 since run 41) and under --kernels attention=fa3,
# alternating, three times each. Run 42 (call 2) put 1 x 2048 at 1.24 of its floor under
# the default in one sample (48.249 ms; fa3 49.276, 1.28), the first sample under the 1.25
# target; the rows move by about 1 ms between runs on one machine, so the row is called met
# only on repeats. Each line gives the time, the run's floor and its ratio.
source gpurun/env.sh
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }; left() { echo $(( ${LIMIT:-585} - ($(date +%s) - T0) )); }
L=/tmp/r42b; mkdir -p $L
pack() { tar czf $OUT/r42b.tgz -C $L . 2>/dev/null; }
[ -d /tmp/llama3-8b-random ] || python3 tools/make-bench-model.py /tmp/llama3-8b-random > $L/make-model.log 2>&1 &
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el build; bash tools/gpu-check.sh --build-only ${REUSE:+--reuse} > $L/build.log 2>&1 || { tail -30 $L/build.log; pack; exit 1; }
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
(cd $B && make -j16 bench-gpu > $L/build-bench.log 2>&1) || { tail -20 $L/build-bench.log; pack; exit 1; }
wait
for r in 1 2 3; do for c in tree fa3; do [ $(left) -gt 60 ] || break 2
  k=; [ $c = fa3 ] && k="--kernels attention=fa3"
  timeout 100 $B/bench/gpu_bench --model /tmp/llama3-8b-random --only 0,1 --no-profile $k --json $L/$c-$r.json > $L/$c-$r.txt 2>&1
  echo "$c $r exit $?"; grep -E '^  prefill' $L/$c-$r.txt | sed -E 's/ +/ /g' | cut -c1-150
done; done; pack; el done
