# run 38, call C (session 32; a warm machine with REUSE=1 after a build): make check on the
# GPU without test_gpu_ops (next-r38b.sh runs it; with it make check ran past run 37's
# 560 s, call 4), so that every other test, the GPU suites test_gpu_forward and
# test_gpu_linear among them, reports on a machine with a GPU (run 37 found test_plugin.sh's
# no-device assumption so).
source gpurun/env.sh
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
export LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include PKG_CONFIG_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu/pkgconfig
[ -x $B/llama-diff ] || bash tools/gpu-check.sh --build-only > /tmp/r38c-build.log 2>&1 || { tail -20 /tmp/r38c-build.log; exit 1; }
cd $B
T=$(echo 'print-tests: ; @echo $(TESTS)' | make -s -f Makefile -f - print-tests | tr ' ' '\n' | grep -v '^tests/test_gpu_ops$' | tr '\n' ' ')
el "make check without test_gpu_ops"
timeout $(( ${LIMIT:-585} - 30 )) make -j16 check TESTS="$T" > /tmp/r38c-check.log 2>&1; echo "make check exit $?"
grep -E '^(FAIL|ERROR|SKIP|# )' /tmp/r38c-check.log | tail -20
for t in $(find tests bench -name '*.trs'); do printf '%s %s\n' "$(grep -h ':test-result:' $t | cut -d' ' -f2 | sort -u | tr '\n' ' ')" "$t"; done | sort > /tmp/r38c-trs.txt
tar czf $OUT/r38c.tgz /tmp/r38c-check.log /tmp/r38c-trs.txt test-suite.log tests/*.log 2>/dev/null
el done
