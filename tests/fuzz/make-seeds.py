#!/usr/bin/env python3
"""make-seeds.py: writes the seed corpora of the fuzz targets (tests/fuzz/corpus/) from
the bundled fixtures and a few hand-written cases. Standard library only; the output is
deterministic. Rerun after the fixtures change:

    python3 tests/fuzz/make-seeds.py            # from the source tree root

It only writes the files it owns (seed-*); entries libFuzzer merged in (FUZZ_MERGE=1)
stay."""
import json
import os
import struct
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FIX = os.path.join(ROOT, "fixtures")
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")
DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4}


def read_st(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    meta = header.pop("__metadata__", None)
    data = b[8 + n:]
    tensors = []  # (name, dtype, shape, bytes) in file order
    for name, e in header.items():
        lo, hi = e["data_offsets"]
        tensors.append((name, e["dtype"], e["shape"], data[lo:hi]))
    return meta, tensors


def st_bytes(meta, tensors, pad=True):
    header = {}
    if meta is not None:
        header["__metadata__"] = meta
    off = 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    js = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        js += b" " * (-len(js) % 8)
    return struct.pack("<Q", len(js)) + js + b"".join(t[3] for t in tensors)


def row_bytes(dtype, shape):
    n = DTYPE_SIZE[dtype]
    for d in shape[1:]:
        n *= d
    return n


def take_rows(tensor, rows):
    """The tensor cut to the given rows of its first dimension."""
    name, dtype, shape, raw = tensor
    if not shape:
        return tensor
    rb = row_bytes(dtype, shape)
    return (name, dtype, [len(rows)] + shape[1:], b"".join(raw[r * rb:(r + 1) * rb] for r in rows))


def f64_to_f32(tensor):
    name, dtype, shape, raw = tensor
    vals = struct.unpack("<%dd" % (len(raw) // 8), raw)
    return (name, "F32", shape, struct.pack("<%df" % len(vals), *vals))


def write(target, name, blob):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(blob if isinstance(blob, bytes) else blob.encode())


MODELS = ["gqa-f32", "long-gqa-f32", "mha-bias-bf16", "mqa-hd-f16"]


def safetensors_seeds():
    for m in MODELS:
        meta, ts = read_st(os.path.join(FIX, "models", m, "model.safetensors"))
        # Every tensor cut to its first two rows: the real header, little data.
        write("safetensors", "model-%s.safetensors" % m,
              st_bytes(meta, [take_rows(t, range(min(2, t[2][0]))) for t in ts]))
    meta, ts = read_st(os.path.join(FIX, "golden", "mha-bias-bf16.safetensors"))
    write("safetensors", "golden-mha-bias-bf16.safetensors",
          st_bytes(meta, [take_rows(t, [0]) for t in ts]))
    one = {
        "F64": struct.pack("<3d", 1.5, -0.0, float("inf")),
        "F32": struct.pack("<3f", 1.5, float("nan"), -2.0),
        "F16": struct.pack("<3H", 0x3c00, 0x0001, 0x7c01),
        "BF16": struct.pack("<3H", 0x3f80, 0x8000, 0x7fc0),
        "I64": struct.pack("<3q", -1, 0, 2 ** 62),
        "I32": struct.pack("<3i", -7, 0, 2 ** 30),
    }
    write("safetensors", "every-dtype.safetensors",
          st_bytes({"format": "pt"}, [("t." + k, k, [3], v) for k, v in one.items()]))
    write("safetensors", "empty.safetensors", st_bytes(None, []))
    write("safetensors", "metadata-only.safetensors", st_bytes({"a": "b", "format": "pt"}, []))
    write("safetensors", "shapes.safetensors", st_bytes(None, [
        ("scalar", "F32", [], struct.pack("<f", 3.0)),
        ("zero", "F32", [0, 5], b""),
        ("four-d", "BF16", [1, 2, 1, 2], struct.pack("<4H", 1, 2, 3, 4)),
        ("zero-too", "I64", [2, 0], b""),
    ]))
    write("safetensors", "unpadded.safetensors",
          st_bytes(None, [("x", "F16", [2], struct.pack("<2H", 0x3c00, 0xbc00))], pad=False))


def fixture_seeds():
    # Each golden cut to two tokens (the first of each of the first two sequences).
    cases = {
        "mha-bias-bf16": ([0, 1], None, False),
        "gqa-f32-batch": ([0, 7], [1, 1], False),
        "mqa-hd-f16": ([0, 9], [1, 1], True),  # stages stored as F32
        "long-gqa-f32-300": ([0, 1], None, False),
    }
    for case, (rows, seq_lens, as_f32) in cases.items():
        meta, ts = read_st(os.path.join(FIX, "golden", case + ".safetensors"))
        out = []
        for t in ts:
            if t[0] == "seq_lens":
                if seq_lens is not None:
                    out.append(("seq_lens", "I64", [len(seq_lens)], struct.pack("<%dq" % len(seq_lens), *seq_lens)))
                continue
            t = take_rows(t, rows)
            if as_f32 and t[1] == "F64":
                t = f64_to_f32(t)
            out.append(t)
        write("fixture", case + ".safetensors", st_bytes(meta, out))
    # The smallest valid fixture: inputs only, no stages.
    ids = struct.pack("<2q", 3, 4)
    write("fixture", "inputs-only.safetensors", st_bytes({"format": "llama-golden/1"}, [
        ("input_ids", "I64", [2], ids), ("positions", "I64", [2], struct.pack("<2q", 0, 1)),
        ("seq_lens", "I64", [2], struct.pack("<2q", 1, 1))]))


CONFIG_VARIANTS = {
    "minimal.json": {"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
                     "num_hidden_layers": 1, "num_attention_heads": 2},
    "rope-parameters-llama3.json": {
        "model_type": "llama", "vocab_size": 64, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 8192}},
    "rope-parameters-linear.json": {
        "model_type": "llama", "vocab_size": 64, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 4,
        "rope_parameters": {"rope_type": "linear", "rope_theta": 10000, "factor": 4}},
    "rope-scaling-default.json": {
        "model_type": "llama", "hidden_act": "silu", "vocab_size": 32000, "hidden_size": 4096,
        "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 32, "max_position_embeddings": 4096, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "rope_scaling": {"rope_type": "default"}, "tie_word_embeddings": False,
        "pad_token_id": None, "bos_token_id": 1},
    "mqa-replicated.json": {
        "model_type": "llama", "vocab_size": 130, "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 1, "head_dim": 24,
        "attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True, "rope_scaling": None},
    "huge-dims.json": {
        "model_type": "llama", "vocab_size": 2147483648, "hidden_size": 2147483648,
        "intermediate_size": 2147483648, "num_hidden_layers": 100000, "num_attention_heads": 1,
        "head_dim": 2147483648, "max_position_embeddings": 2147483648},
    "bad-kv-heads.json": {"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
                          "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 3},
}


def config_seeds():
    for m in MODELS:
        with open(os.path.join(FIX, "models", m, "config.json"), "rb") as f:
            write("config", m + ".json", f.read())
    for name, c in CONFIG_VARIANTS.items():
        write("config", name, json.dumps(c, indent=1) + "\n")


def index_seeds():
    meta, ts = read_st(os.path.join(FIX, "models", "gqa-f32", "model.safetensors"))
    names = [t[0] for t in ts]
    total = sum(len(t[3]) for t in ts)
    half = len(names) // 2
    two = {"metadata": {"total_size": total},
           "weight_map": {n: "model-0000%d-of-00002.safetensors" % (1 if i < half else 2)
                          for i, n in enumerate(sorted(names))}}
    write("index", "two-shards.index.json", json.dumps(two, indent=2) + "\n")
    three = {"metadata": {"total_size": total, "format": "pt"},
             "weight_map": {n: "model-0000%d-of-00003.safetensors" % (i % 3 + 1) for i, n in enumerate(names)}}
    write("index", "three-shards-interleaved.index.json", json.dumps(three) + "\n")
    write("index", "empty-map.index.json", '{"weight_map": {}}\n')
    write("index", "one-shard.index.json",
          json.dumps({"weight_map": {"model.norm.weight": "model.safetensors", "lm_head.weight": "model.safetensors"}}))


def main():
    if not os.path.isdir(FIX):
        sys.exit("make-seeds.py: %s not found" % FIX)
    safetensors_seeds()
    fixture_seeds()
    config_seeds()
    index_seeds()


if __name__ == "__main__":
    main()
