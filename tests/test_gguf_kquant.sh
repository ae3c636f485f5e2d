#!/bin/sh
# test_gguf_kquant.sh: the K-quant expectations against the gguf package as installed
# now, not as it was when the test data was committed. tests/test_gguf checks the C
# dequantization bit for bit against tests/data/kquant-blocks.bin and
# fixtures/gguf/expected.json; here (1) tools/make-test-gguf.py --blocks regenerates the
# crafted blocks and the package's values, which must equal the committed file byte for
# byte, and (2) every tensor of the committed GGUF test files, read and dequantized by
# the package (GGUFReader, gguf.quants.dequantize; the q/k rows put back by the
# generator's own unpermute), must equal what `llama-diff convert` writes, bit for bit.
# Needs gguf and numpy in ${LR_PYTHON:-python3}; skips (77) without them.
set -u
LD=${LLAMA_DIFF:-./llama-diff}
FX=${LR_FIXTURES:?}
TMP=${LR_TMPDIR:?}/gguf-kquant-sh
PY=${LR_PYTHON:-python3}
SRC=$FX/..
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"

if ! "$PY" -c "import gguf, numpy" 2>/dev/null; then
    echo "SKIP: $PY cannot import gguf and numpy (set LR_PYTHON to a Python that has them)"
    exit 77
fi
"$PY" -c "import importlib.metadata as m, numpy; print('gguf', m.version('gguf'), 'numpy', numpy.__version__)"

# (1) The committed blocks file is what the package computes today.
ok "regenerate the K-quant blocks" -- "$PY" "$SRC/tools/make-test-gguf.py" --blocks "$TMP/kquant-blocks.bin"
if cmp "$TMP/kquant-blocks.bin" "$SRC/tests/data/kquant-blocks.bin"; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: tests/data/kquant-blocks.bin differs from the gguf package's output now"
fi

# (2) The C loader, through llama-diff convert, against the package's reading of each file.
for f in kquant-mixed gqa-mixed; do
    expect 0 "convert $f.gguf" -- "$LD" convert --gguf "$FX/gguf/$f.gguf" --out "$TMP/$f"
    ok "$f.gguf: every tensor as the gguf package reads it" -- "$PY" - "$SRC" "$FX/gguf/$f.gguf" \
        "$TMP/$f/model.safetensors" <<'PY'
import importlib.util, json, os, struct, sys
import numpy as np
import gguf

src, path, st = sys.argv[1:4]
spec = importlib.util.spec_from_file_location("mtg", os.path.join(src, "tools", "make-test-gguf.py"))
mtg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mtg)

with open(st, "rb") as f:
    b = f.read()
n = struct.unpack("<Q", b[:8])[0]
header = json.loads(b[8:8 + n])
header.pop("__metadata__", None)
data = b[8 + n:]

r = gguf.GGUFReader(path)
field = lambda k: int(r.fields[k].parts[-1][0])
heads, kv = field("llama.attention.head_count"), field("llama.attention.head_count_kv")
names = dict(mtg.gguf_names(field("llama.block_count")))
bad, types = 0, set()
for t in r.tensors:
    hname = names[t.name]
    qt = gguf.GGMLQuantizationType(t.tensor_type)
    types.add(qt.name)
    shape = [int(x) for x in reversed(t.shape)]
    want = mtg.dequantize(np.asarray(t.data), qt).reshape(shape).astype(np.float32)
    if ".attn_q." in t.name:
        want = mtg.unpermute(want, heads)
    elif ".attn_k." in t.name:
        want = mtg.unpermute(want, kv)
    e = header[hname]
    lo, hi = e["data_offsets"]
    got = np.frombuffer(data[lo:hi], dtype="<f4").reshape(e["shape"])
    if e["dtype"] != "F32" or list(got.shape) != shape:
        print("%s: %s %s, expected F32 %s" % (hname, e["dtype"], e["shape"], shape))
        bad += 1
    elif not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
        i = int(np.argmax(got.view(np.uint32).reshape(-1) != want.view(np.uint32).reshape(-1)))
        print("%s (%s): element %d is %r, the gguf package's %r" % (hname, qt.name, i, got.reshape(-1)[i],
                                                                    want.reshape(-1)[i]))
        bad += 1
if len(header) != len(r.tensors):
    print("%d tensors converted, the file has %d" % (len(header), len(r.tensors)))
    bad += 1
print("%s: %d tensors (%s), %d differ" % (os.path.basename(path), len(r.tensors), ", ".join(sorted(types)), bad))
sys.exit(1 if bad else 0)
PY
done

finish
