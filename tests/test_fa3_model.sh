#!/bin/sh
# test_fa3_model.sh: tools/model-fa3-layout.py, the CPU model of attention fa3's and fa3p's
# data movement (gpu/attention_fa3.cu), agrees with a direct softmax(Q K^T) V; fa3p's
# schedule reads only tiles that have landed and no buffer a copy in flight writes, and its
# output is fa3's exactly; fa3w's and fa3wp's hand-overs (a producer warpgroup and three or
# two consumers, named barriers; fa3wp's releasing a tile an iteration late, with and
# without its consumers' turns) hold in random interleavings and catch three planted
# protocols each; fdt's first stages split at the batch's first new key (FDT_KV_EARLY) write
# every slot once, nothing new before the wait, and catch three planted faults; fa3wt's TMA
# copies (a box a page, the 128-byte swizzle) put every key where fa3_sw and the consumers'
# descriptors have it at block sizes 8 to 64, misplace keys at 12 and 24 (which its launcher
# refuses), and catch five planted faults; fa3wt's hand-over (an mbarrier a stage, the
# copies' bytes, the cp.async last tile) holds in random interleavings and catches five
# planted faults; and fa3wts' hand-over (fa3wt persistent: a block taking several work
# tiles, the stages one ring over them, Q in two buffers, the output staged in Q) holds in
# random interleavings and catches ten planted faults. Needs no GPU: the tests' Python
# (LR_PYTHON) or the system's with numpy (tools/install-deps.sh installs it); skips (77)
# where neither has it.
for PY in "${LR_PYTHON:-python3}" /usr/bin/python3; do
    if "$PY" -c 'import numpy' 2>/dev/null; then
        exec "$PY" "$(dirname "$0")/../tools/model-fa3-layout.py"
    fi
done
echo "test_fa3_model: no Python with numpy (${LR_PYTHON:-python3}, /usr/bin/python3); skipping"
exit 77
