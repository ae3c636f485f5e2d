#!/bin/sh
# test_gguf_hf.sh: the real model. `llama-diff convert` of the cached
# SmolLM2-135M-Instruct Q4_1 GGUF must equal, bit for bit and tensor by tensor,
# what transformers makes of the same file (from_pretrained(..., gguf_file=...),
# float32, which dequantizes with the gguf package and undoes the q/k permutation
# itself); the converted directory must also load in transformers as a plain checkpoint
# and give the same logits. Not in the default make check (a minute or more on 2
# cores): `make check-gguf-hf`. Skips (77) without the cached file or torch,
# transformers, accelerate and gguf in $LR_PYTHON.
set -u
LD=${LLAMA_DIFF:-./llama-diff}
TMP=${LR_TMPDIR:-/tmp}/gguf-hf
CACHE=${LLAMAREF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llamaref}
GGUF=$CACHE/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$GGUF" ]; then
    echo "test_gguf_hf: $GGUF not found; skipped (tools/fetch-smollm2.sh fills the cache)"
    exit 77
fi
PY=${LR_PYTHON:-python3}     # Makefile.am: the venv tools/install-deps.sh makes (gguf, numpy)
# transformers 5 loads GGUF files only with accelerate installed.
if ! "$PY" -c "import torch, transformers, accelerate, gguf, numpy" >/dev/null 2>&1; then
    echo "test_gguf_hf: $PY lacks torch, transformers, accelerate, gguf or numpy; skipped" \
        "(tools/install-deps.sh installs gguf and numpy, not torch)"
    exit 77
fi
rm -rf "$TMP" && mkdir -p "$TMP"
"$LD" convert --gguf "$GGUF" --out "$TMP/hf" || { echo "FAIL: convert"; exit 1; }
"$PY" - "$GGUF" "$TMP/hf" <<'PY'
import json, os, struct, sys
import numpy as np, torch, transformers
from transformers import AutoModelForCausalLM

gguf_path, out = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)

def read_st(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    d = b[8 + n:]
    return {k: np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], dtype="<f4").reshape(v["shape"])
            for k, v in h.items() if v["dtype"] == "F32"}, h

ours, header = read_st(os.path.join(out, "model.safetensors"))
assert all(v["dtype"] == "F32" for v in header.values()), "non-F32 tensor written"
ref = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path),
                                           torch_dtype=torch.float32)
sd = {k: v.detach().cpu().numpy() for k, v in ref.state_dict().items()}
tied = ref.config.tie_word_embeddings
fails = 0
for k, v in sd.items():
    if k == "lm_head.weight" and tied:
        if "lm_head.weight" in ours:
            print("FAIL: lm_head.weight written although tied"); fails += 1
        continue
    if k not in ours:
        print("FAIL: %s: missing from the conversion" % k); fails += 1; continue
    a = ours[k]
    if a.shape != v.shape or a.dtype != v.dtype or not np.array_equal(a.view(np.uint32), v.view(np.uint32)):
        d = np.abs(a.astype(np.float64) - v.astype(np.float64)).max() if a.shape == v.shape else float("nan")
        print("FAIL: %s: %s %s vs transformers %s %s, max |diff| %g" % (k, a.shape, a.dtype, v.shape, v.dtype, d))
        fails += 1
extra = sorted(set(ours) - set(sd))
for k in extra:
    print("FAIL: %s: written but not in transformers' model" % k); fails += 1
print("test_gguf_hf: %d tensors compared bit for bit with transformers %s (%s)"
      % (len(sd) - (1 if tied else 0), transformers.__version__, "tied lm_head" if tied else "untied"))

# The directory loads as an ordinary checkpoint, with the same config, and computes the same.
conv = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "rms_norm_eps", "tie_word_embeddings", "max_position_embeddings"):
    a, b = getattr(conv.config, key, None), getattr(ref.config, key, None)
    if a != b:
        print("FAIL: config %s: %r, transformers says %r" % (key, a, b)); fails += 1
ids = torch.tensor([[1, 504, 3458, 314, 260, 2784, 30]])
with torch.no_grad():
    la, lb = conv(ids).logits, ref(ids).logits
if not torch.equal(la, lb):
    print("FAIL: logits differ, max |diff| %g" % (la - lb).abs().max().item()); fails += 1
sys.exit(1 if fails else 0)
PY
rc=$?
[ $rc -eq 0 ] && echo "test_gguf_hf: PASS" || echo "test_gguf_hf: FAIL"
rm -rf "$TMP"
exit $rc
