#!/bin/sh
# test_cpu_memory.sh: the CPU reference's weights streamed under a memory budget
# (llama-diff --memory, lr_options.memory_budget; docs/architecture.md, "The CPU
# backend's weights"). On a generated model (tools/make-sparse-model.py: Llama-shaped,
# 48M parameters, 385 MB once converted to float64, a sparse file on disk), a float64
# dump with --memory 32M must hold at most the budget and one block of the LM head in
# converted weights, and the process must grow by no more than the budget and 32 MiB
# once the model is created: the reference before streaming held all 385 MB. On the
# committed fixtures, streamed runs (a 4K budget: every layer reconverted, the embedding
# and LM head by rows) must write the same bytes as runs that hold every weight.
set -u
LD=${LLAMA_DIFF:-./llama-diff}
FX=${LR_FIXTURES:?}
TMP=${LR_TMPDIR:?}/cpu-memory-sh
SRC=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"

M=$TMP/model
python3 "$SRC/tools/make-sparse-model.py" "$M" --layers 4 --hidden 512 --heads 8 --kv-heads 2 \
    --intermediate 2048 --vocab 32000 >/dev/null || { echo "FAIL: make-sparse-model.py"; exit 1; }

MiB=1048576
expect 0 "dump at f64 with --memory 32M" -- "$LD" dump -m "$M" -t "1 2 3 4 5 6 7 8 31999" -p f64 \
    --memory 32M -o "$TMP/streamed.st" --json -q
json_ok "d['memory']['host_weights_budget'] == 32 * $MiB"
# what the reference held before: every converted weight, over 10 times the budget here
json_ok "d['memory']['host_weights_total'] >= 10 * 32 * $MiB"
json_ok "d['memory']['host_weights_peak'] <= 32 * $MiB + 32 * $MiB // 4"
json_ok "d['memory']['host_weights_converted'] >= d['memory']['host_weights_total'] // 2"
json_ok "d['memory']['host_peak_rss'] - d['memory']['host_peak_rss_after_load'] <= 32 * $MiB + 32 * $MiB"
python3 -c "import json; m = json.load(open('$TMP/out'))['memory']; print('test_cpu_memory: peak RSS %.0f MiB, %.0f MiB after loading, converted weights held at most %.0f MiB of %.0f MiB in all' % (m['host_peak_rss'] / $MiB, m['host_peak_rss_after_load'] / $MiB, m['host_weights_peak'] / $MiB, m['host_weights_total'] / $MiB))"

# The text output says it too.
expect 0 "dump's memory line" -- "$LD" dump -m "$M" -t "1 2 3" -p f32 --memory 32M -o "$TMP/t.st" --force -q
if grep -q "^memory: host peak RSS .*cpu weights .* held of a 32.0 MiB budget" "$TMP/out"; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: dump prints no memory line"; cat "$TMP/out"
fi

# Streamed and held runs write the same bytes (f64, f32, the emulated bf16; tp 1 and 2;
# a tied and an untied embedding).
for c in gqa-f32:gqa-f32-batch mha-bias-bf16:mha-bias-bf16; do
    m=$FX/models/${c%%:*} fx=$FX/golden/${c#*:}.safetensors
    for p in f64 f32 bf16; do
        for tp in 1 2; do
            expect 0 "${c%%:*} $p tp $tp held" -- "$LD" dump -m "$m" -f "$fx" -p $p --tp $tp -o "$TMP/a.st" --force -q
            expect 0 "${c%%:*} $p tp $tp streamed" -- "$LD" dump -m "$m" -f "$fx" -p $p --tp $tp --memory 4K \
                -o "$TMP/b.st" --force -q
            if cmp -s "$TMP/a.st" "$TMP/b.st"; then pass=$((pass + 1)); else
                fail=$((fail + 1)); echo "FAIL: ${c%%:*} $p tp $tp: streamed dump differs from held"
            fi
        done
    done
    # decode through the KV cache, the weights reconverted at every step
    expect 0 "${c%%:*} --decode 2 streamed" -- "$LD" check -m "$m" -f "$fx" --decode 2 --memory 4K -q
done
expect 2 "--memory refuses a bad size" -- "$LD" dump -m "$M" -t "1" --memory 12X -o "$TMP/c.st"
expect_err "--memory" "12X"

finish
