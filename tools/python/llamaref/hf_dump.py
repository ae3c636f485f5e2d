"""hf_dump: the package's command line, `tools/hf-dump.py` (docs/hf-dump.md).

Loads a Hugging Face checkpoint with transformers, runs it on a fixture's inputs (or on
--tokens), and writes every stage as llama-golden/1 in the dtype it ran in. Everything
about the arguments and the inputs is checked before torch is imported, so bad input is
reported (exit 2) on a machine without torch too.

Also the names older scripts loaded from tools/hf-dump.py: attach, Recorder, DumpError,
HF_NAME_MAP and VLLM_NAME_MAP, which here is the map that splits vLLM's packed outputs
into the spec's names (llamaref.VLLM_SPLIT_NAME_MAP; llamaref.VLLM_NAME_MAP records
vLLM's own names).
"""

import argparse
import json
import os
import sys

import numpy as np

from .golden import COMPUTE_DTYPES, DumpError, read_safetensors, write_safetensors
from .hooks import Recorder, _versions, attach
from .namemaps import HF_NAME_MAP, VLLM_SPLIT_NAME_MAP

VLLM_NAME_MAP = VLLM_SPLIT_NAME_MAP
EXIT_OK, EXIT_BAD = 0, 2

__all__ = ["attach", "Recorder", "DumpError", "HF_NAME_MAP", "VLLM_NAME_MAP", "COMPUTE_DTYPES",
           "write_safetensors", "read_inputs", "load_model", "main"]


def read_inputs(args, vocab):
    """(input_ids [T], positions [T], seq_lens [B] or None, lengths) as int64 numpy arrays,
    from --tokens or --fixture; DumpError naming the source when they are unusable."""
    if args.tokens is not None:
        try:
            ids = [int(x) for x in args.tokens.replace(",", " ").split()]
        except ValueError:
            raise DumpError(f"--tokens: \"{args.tokens}\" is not a list of integers")
        if not ids:
            raise DumpError("--tokens: no tokens given")
        ids_a = np.array(ids, dtype=np.int64)
        pos_a = np.arange(len(ids), dtype=np.int64)
        seq_lens = None
        src = "--tokens"
    else:
        if not os.path.isfile(args.fixture):
            raise DumpError(f"{args.fixture}: no such file")
        try:
            tensors, _ = read_safetensors(args.fixture)
        except DumpError as exc:
            raise DumpError(f"{args.fixture}: not a readable safetensors file "
                            f"({str(exc).removeprefix(args.fixture + ': ')})")
        for k in ("input_ids", "positions"):
            if k not in tensors:
                raise DumpError(f"{args.fixture}: tensor \"{k}\" missing")
        try:
            ids_a = np.asarray(tensors["input_ids"]).astype(np.int64).reshape(-1)
            pos_a = np.asarray(tensors["positions"]).astype(np.int64).reshape(-1)
            seq_lens = (np.asarray(tensors["seq_lens"]).astype(np.int64).reshape(-1)
                        if "seq_lens" in tensors else None)
        except (TypeError, ValueError) as exc:
            raise DumpError(f"{args.fixture}: input tensors are not integers ({exc})")
        if ids_a.size != pos_a.size or ids_a.size == 0:
            raise DumpError(f"{args.fixture}: input_ids has {ids_a.size} tokens, positions {pos_a.size}")
        if seq_lens is not None and (int(seq_lens.sum()) != ids_a.size or bool((seq_lens <= 0).any())):
            raise DumpError(f"{args.fixture}: tensor \"seq_lens\" does not split {ids_a.size} tokens")
        src = args.fixture
    bad = [int(x) for x in ids_a if not 0 <= int(x) < vocab]
    if bad:
        raise DumpError(f"{src}: token {bad[0]} is outside the vocabulary (0..{vocab - 1})")
    if bool((pos_a < 0).any()):
        raise DumpError(f"{src}: negative position")
    lens = [int(x) for x in seq_lens] if seq_lens is not None else [int(ids_a.size)]
    return ids_a, pos_a, seq_lens, lens


def load_model(model_dir, dtype, device, attn_impl):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM
    try:
        transformers.utils.logging.disable_progress_bar()
    except AttributeError:
        pass
    tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
           "float64": torch.float32}[dtype]
    kw = dict(attn_implementation=attn_impl)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=tdt, **kw)
    except TypeError:   # transformers 4.x
        model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=tdt, **kw)
    if dtype == "float64":
        model = model.to(torch.float64)   # exact upcast of the saved F32/F16/BF16 weights
    return model.to(device).eval()


def parser(prog="hf-dump.py"):
    ap = argparse.ArgumentParser(prog=prog,
                                 description="Dump a Hugging Face Llama forward pass as llama-golden/1.")
    ap.add_argument("--model", required=True, help="Hugging Face checkpoint directory")
    ap.add_argument("--out", required=True, help="output .safetensors (never replaced without --force)")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--tokens", help='token ids of one sequence, e.g. "1 2 3"')
    g.add_argument("--fixture", help="take input_ids/positions/seq_lens from this llama-golden/1 file")
    ap.add_argument("--dtype", default="float32", choices=COMPUTE_DTYPES)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--attn-impl", default="sdpa", choices=("sdpa", "eager"))
    ap.add_argument("--force", action="store_true", help="replace an existing output file")
    return ap


def main(argv=None, prog="hf-dump.py"):
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    args = parser(prog).parse_args(argv)
    try:
        cfg_path = os.path.join(args.model, "config.json")
        if not os.path.isfile(cfg_path):
            raise DumpError(f"{args.model}: not a checkpoint directory (no config.json)")
        if os.path.exists(args.out) and not args.force:
            raise DumpError(f"{args.out}: exists; pass --force to replace it")
        try:
            with open(cfg_path) as f:
                vocab = int(json.load(f).get("vocab_size", 0))
        except (OSError, ValueError, TypeError) as exc:
            raise DumpError(f"{cfg_path}: not a readable config ({exc})")
        ids, pos, seq_lens, lens = read_inputs(args, vocab)
        try:
            import torch
            import transformers  # noqa: F401
        except ImportError as exc:
            raise DumpError(f"missing dependency ({exc}); pip install torch transformers")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise DumpError("--device cuda: no CUDA device available to torch")
        try:
            model = load_model(args.model, args.dtype, args.device, args.attn_impl)
        except Exception as exc:
            raise DumpError(f"{args.model}: transformers could not load it ({type(exc).__name__}: {exc})")
        rec = attach(model)
        ids_t, pos_t = torch.from_numpy(ids), torch.from_numpy(pos)
        start = 0
        with torch.no_grad():
            for n in lens:   # each sequence alone, with its own positions
                model(input_ids=ids_t[start:start + n][None].to(args.device),
                      position_ids=pos_t[start:start + n][None].to(args.device), use_cache=False)
                start += n
        rec.remove()
        rounding = rec.rounding(args.dtype)   # where it rounds: transformers' profile on the CPU
        rec.save(args.out, ids, pos, seq_lens, compute_dtype=args.dtype,
                 model_name=os.path.basename(os.path.normpath(args.model)),
                 generator=f"{_versions()} (tools/hf-dump.py)", force=args.force, rounding=rounding)
        print(f"wrote {len(rec.parts)} stages of {ids.size} tokens "
              f"({args.dtype} on {args.device}{', rounding ' + rounding if rounding else ''}) to {args.out}")
        return EXIT_OK
    except DumpError as exc:
        print(f"hf-dump: {exc}", file=sys.stderr)
        return EXIT_BAD


if __name__ == "__main__":
    sys.exit(main(prog="python -m llamaref.hf_dump"))
