"""golden: reads and writes llama-golden/1 files (shared/spec/golden-fixtures.md) with numpy.

A safetensors file is eight bytes of header length, a JSON header, then the tensors' raw
little-endian bytes. The package writes it itself rather than through the safetensors
library: numpy has no bfloat16, so safetensors' numpy API cannot hold the BF16 stages
engines compute in, and its lower-level API changed shape between releases. The tests
read every file this module writes back with the safetensors library, so the format is
checked by an implementation other than this one.

BF16 tensors are held as :class:`BF16` (their raw bits in a uint16 array), everything
else as numpy arrays; a file read and written again is the same bytes per tensor.
"""

import json
import os
import struct
import tempfile

import numpy as np

from . import stages as _stages

FORMAT = "llama-golden/1"
COMPUTE_DTYPES = ("float64", "float32", "bfloat16", "float16")
# Where an engine computing in bf16/fp16 rounds: the rounding profiles of llama-diff's
# emulated reference (ref/core/rounding.h, LR_ROUNDING_PROFILE_MAP), written as metadata
# `rounding`. "cuda" is the rounding map itself.
ROUNDING_PROFILES = ("cuda", "transformers", "transformers-eager")

# safetensors dtype name -> numpy dtype of its bytes (BF16: the raw bits).
_NP = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4"}
_FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
_BY_KIND = {("f", 8): "F64", ("f", 4): "F32", ("f", 2): "F16", ("i", 8): "I64", ("i", 4): "I32"}
INPUT_TENSORS = ("input_ids", "positions", "seq_lens")


class DumpError(ValueError):
    """Bad input to the writer, reader or hooks: the message names the file or stage."""


class BF16:
    """A bfloat16 tensor: its raw bits (uint16, the top half of a float32) and shape."""

    def __init__(self, bits):
        bits = np.asarray(bits)
        if bits.dtype != np.uint16:
            raise DumpError(f"BF16 bits must be uint16, not {bits.dtype}")
        self.bits = bits

    @classmethod
    def from_float(cls, values):
        """Rounds float32/float64 values to the nearest bfloat16 (ties to even), as
        torch's .to(torch.bfloat16) does; NaN stays a quiet NaN."""
        f = np.ascontiguousarray(np.asarray(values, dtype=np.float32))
        u = f.view(np.uint32).astype(np.uint64)
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        nan = np.isnan(f)
        if nan.any():
            r[nan] = ((u[nan] >> 16).astype(np.uint16) | 0x0040)
        return cls(r)

    @property
    def shape(self):
        return self.bits.shape

    def to_float32(self):
        """The exact float32 values."""
        return (self.bits.astype(np.uint32) << 16).view(np.float32)

    def reshape(self, *shape):
        return BF16(self.bits.reshape(*shape))

    def __repr__(self):
        return f"BF16(shape={list(self.shape)})"


def dtype_name(t):
    """The safetensors dtype name of an array (or BF16) the writer accepts."""
    if isinstance(t, BF16):
        return "BF16"
    t = np.asarray(t)
    name = _BY_KIND.get((t.dtype.kind, t.dtype.itemsize))   # either byte order: written little-endian
    if name is not None:
        return name
    raise DumpError(f"dtype {t.dtype} cannot be written (float64, float32, float16, BF16, int64, int32)")


def as_float(t):
    """A tensor's values as a float numpy array (BF16 widened exactly to float32)."""
    return t.to_float32() if isinstance(t, BF16) else np.asarray(t)


# ---- the file ------------------------------------------------------------------------

def write_safetensors(path, tensors, metadata, force=False):
    """Writes {name: array or BF16} (in that order) and string metadata to path.

    Never replaces an existing file unless force; writes a temporary file in the same
    directory first and links (force: renames) it into place, so a reader never sees a
    partial file and a file that appeared meanwhile is not replaced.
    """
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise DumpError(f"{path}: directory {d} does not exist")
    if os.path.exists(path) and not force:
        raise DumpError(f"{path}: exists; pass --force (force=True) to replace it")
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise DumpError(f"{path}: metadata {k!r}: keys and values must be strings")
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name, t in tensors.items():
        dt = dtype_name(t)
        raw = t.bits if isinstance(t, BF16) else np.asarray(t)
        b = np.ascontiguousarray(raw, dtype=np.dtype(_NP[dt])).tobytes()
        header[name] = {"dtype": dt, "shape": [int(x) for x in raw.shape], "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)   # the data starts 8-byte aligned, as safetensors writes it
    fd, tmp = tempfile.mkstemp(prefix=".llamaref-", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for b in blobs:
                f.write(b)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)        # fails if the file appeared meanwhile
            except FileExistsError:
                raise DumpError(f"{path}: exists; pass --force (force=True) to replace it")
            except OSError:               # a file system without hard links
                if os.path.exists(path):
                    raise DumpError(f"{path}: exists; pass --force (force=True) to replace it")
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file: {name: array or BF16} in file order."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DumpError(f"{path}: no such file")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise DumpError(f"{path}: not a safetensors file (shorter than its header length)")
    n = struct.unpack("<Q", data[:8])[0]
    if n > len(data) - 8:
        raise DumpError(f"{path}: header length {n} runs past the end of the file")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as exc:
        raise DumpError(f"{path}: header is not JSON ({exc})")
    if not isinstance(header, dict):
        raise DumpError(f"{path}: header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    body = memoryview(data)[8 + n:]
    out = {}
    for name, info in header.items():
        try:
            dt, shape, (a, b) = info["dtype"], [int(x) for x in info["shape"]], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise DumpError(f"{path}: tensor \"{name}\": header entry lacks dtype, shape or data_offsets")
        if dt not in _NP:
            raise DumpError(f"{path}: tensor \"{name}\": dtype {dt} is not read "
                            f"({', '.join(_NP)})")
        size = np.dtype(_NP[dt]).itemsize * int(np.prod(shape, dtype=np.int64))
        if not 0 <= a <= b <= len(body) or b - a != size:
            raise DumpError(f"{path}: tensor \"{name}\": data_offsets [{a}, {b}] do not hold "
                            f"{dt} {shape} in a body of {len(body)} bytes")
        arr = np.frombuffer(body[a:b], dtype=np.dtype(_NP[dt])).reshape(shape).copy()
        out[name] = BF16(arr) if dt == "BF16" else arr
    return out, meta


def read_metadata(path):
    """The __metadata__ of a safetensors file, reading its header alone."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            size = os.fstat(f.fileno()).st_size
            if not 0 <= n <= size - 8:
                raise DumpError(f"{path}: not a safetensors file (header length)")
            header = json.loads(f.read(n))
    except OSError as exc:
        raise DumpError(f"{path}: cannot open ({exc.strerror})")
    except ValueError as exc:
        raise DumpError(f"{path}: header is not JSON ({exc})")
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


# ---- llama-golden/1 ------------------------------------------------------------------

class Dump:
    """A llama-golden/1 file: inputs, stages (forward order) and metadata."""

    def __init__(self, path, tensors, metadata):
        self.path = path
        self.metadata = metadata
        self.tensors = tensors

    @property
    def input_ids(self):
        return self.tensors["input_ids"]

    @property
    def positions(self):
        return self.tensors["positions"]

    @property
    def seq_lens(self):
        return self.tensors.get("seq_lens")

    @property
    def stages(self):
        """{stage name: array or BF16}, everything but the inputs."""
        return {k: v for k, v in self.tensors.items() if k not in INPUT_TENSORS}

    def dtype(self, name):
        return dtype_name(self.tensors[name])

    def values(self, name):
        """A stage's values as floats (BF16 widened exactly to float32)."""
        return as_float(self.tensors[name])


def read_dump(path):
    """Reads a llama-golden/1 file; DumpError naming the file and field when it is not one."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise DumpError(f"{path}: __metadata__.format is {meta.get('format')!r}, not {FORMAT!r}")
    for k in ("input_ids", "positions"):
        if k not in tensors:
            raise DumpError(f"{path}: tensor \"{k}\" missing")
    return Dump(os.fspath(path), tensors, meta)


def _ints(name, v):
    a = np.asarray(v)
    if a.dtype.kind not in "iu" and not (a.size == 0 and a.dtype.kind == "f"):
        raise DumpError(f"{name}: integers expected, not {a.dtype}")
    return a.astype(np.int64).reshape(-1)


def write_dump(path, stages, input_ids, positions, seq_lens=None, *, model, compute_dtype=None,
               generator, names="hf", rounding=None, metadata=None, force=False):
    """Writes a llama-golden/1 file.

    stages: {name: [T, F] or [1, T, F] array or BF16}, written in the order given
    (forward order for the spec's names, see :func:`order_stages`), each in its own dtype
    (F64, F32, F16, BF16); input_ids, positions: [T] integers; seq_lens: the sequences'
    lengths (None: one sequence). compute_dtype: float64|float32|bfloat16|float16, the
    precision whose budgets `llama-diff compare` applies; None leaves it out (compare then
    judges by the stages' dtype). names: "hf" (the spec's stage names, checked here) or
    the name flavour of an engine ("vllm", "llama.cpp"), written as metadata `names` and
    translated by `llama-diff compare --names`. rounding: where the engine rounds, one of
    ROUNDING_PROFILES (metadata `rounding`), which `llama-diff compare --model` holds a
    bf16/fp16 dump's ops to without the one more rounding it allows an engine that names
    none. metadata: more string keys.
    """
    ids, pos = _ints("input_ids", input_ids), _ints("positions", positions)
    T = ids.size
    if T == 0:
        raise DumpError("input_ids: no tokens")
    if pos.size != T:
        raise DumpError(f"input_ids has {T} tokens but positions {pos.size}")
    if (pos < 0).any():
        raise DumpError("positions: negative position")
    tensors = {"input_ids": ids, "positions": pos}
    if seq_lens is not None:
        sl = _ints("seq_lens", seq_lens)
        if int(sl.sum()) != T or (sl <= 0).any():
            raise DumpError(f"seq_lens {sl.tolist()} do not split {T} tokens")
        tensors["seq_lens"] = sl
    if compute_dtype is not None and compute_dtype not in COMPUTE_DTYPES:
        raise DumpError(f"compute_dtype {compute_dtype!r} is not one of {', '.join(COMPUTE_DTYPES)}")
    if rounding is not None and rounding not in ROUNDING_PROFILES:
        raise DumpError(f"rounding {rounding!r} is not one of {', '.join(ROUNDING_PROFILES)}")
    if not stages:
        raise DumpError("no stages to write")
    widths = {}
    for name, t in stages.items():
        if name in INPUT_TENSORS:
            raise DumpError(f"stage {name}: that name is an input tensor's")
        if names == "hf" and not _stages.is_stage(name):
            raise DumpError(f"stage {name} is not a stage of the spec (names \"hf\"); "
                            "pass names= for an engine's own names")
        dt = dtype_name(t)
        if dt not in _FLOAT_DTYPES:
            raise DumpError(f"stage {name}: dtype {dt}, a float dtype expected (F64, F32, F16, BF16)")
        shape = list(t.shape)
        if len(shape) == 3 and shape[0] == 1:
            t = t.reshape(shape[1], shape[2])
            shape = shape[1:]
        if len(shape) != 2 or shape[0] != T:
            raise DumpError(f"stage {name}: shape {shape}, [{T}, F] or [1, {T}, F] expected "
                            f"({T} tokens in input_ids)")
        if names == "hf":
            w = _stages.width_of(name)
            if w in widths and widths[w][1] != shape[1]:
                raise DumpError(f"stage {name}: {shape[1]} features, but {widths[w][0]} has "
                                f"{widths[w][1]} (both are {w} wide)")
            widths.setdefault(w, (name, shape[1]))
        tensors[name] = t
    meta = {"format": FORMAT, "model": str(model), "generator": str(generator)}
    if compute_dtype is not None:
        meta["compute_dtype"] = compute_dtype
    if names != "hf":
        meta["names"] = str(names)
    if rounding is not None:
        meta["rounding"] = rounding
    for k, v in (metadata or {}).items():
        if k in meta:
            raise DumpError(f"metadata {k!r}: set by write_dump itself")
        meta[k] = v
    return write_safetensors(path, tensors, meta, force)


def order_stages(names):
    """The names in forward order (the spec's stages first, others after, sorted)."""
    known = sorted((n for n in names if _stages.is_stage(n)), key=_stages.stage_order)
    return known + sorted(n for n in names if not _stages.is_stage(n))

