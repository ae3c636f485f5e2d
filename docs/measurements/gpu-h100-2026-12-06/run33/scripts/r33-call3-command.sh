source gpurun/env.sh; export OUT; timeout 560 bash tools/gpu-check.sh --reuse > /tmp/gc.log 2>&1; echo "exit $?"; tail -40 /tmp/gc.log; cp /tmp/gc.log $OUT/; ls $OUT
