# run 42, call 2 (typed at the console, the warm H200 after call 1): the prefill rows under
# the default (fa3wts since run 41) and under --kernels attention=fa3, once each; then
# next-r41b.sh (fa3wts' knobs: the trial, both knobs' racecheck and synccheck) in the
# call's remaining time.
source gpurun/env.sh; export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu; mkdir -p /tmp/r41p; for k in "" "--kernels attention=fa3"; do n=tree; [ -n "$k" ] && n=fa3; timeout 100 $B/bench/gpu_bench --model /tmp/llama3-8b-random --only 0,1 --no-profile $k --json /tmp/r41p/$n.json > /tmp/r41p/$n.txt 2>&1; echo "$n exit $?"; grep -E '^  prefill' /tmp/r41p/$n.txt; done; tar czf $OUT/r41p.tgz -C /tmp/r41p .; REUSE=1 LIMIT=430 bash gpurun/next-r41b.sh
