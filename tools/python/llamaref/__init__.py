"""llamaref: check an inference engine's Llama forward pass against llamaref's goldens.

Hook a PyTorch model (Hugging Face, vLLM, or your own tree through a name map), write its
stages as a llama-golden/1 dump in the dtype it computed in, and judge the dump with
`llama-diff compare` from pytest::

    import llamaref
    rec = llamaref.attach(model)                       # HF names; VLLM_NAME_MAP for vLLM
    with torch.no_grad():
        model(input_ids=ids[None], position_ids=pos[None], use_cache=False)
    rec.save("mine.safetensors", ids, pos)
    llamaref.compare("mine.safetensors", "golden.safetensors", model="checkpoint/")

Engines that are not PyTorch write their stages with :func:`write_dump` (numpy arrays,
or :class:`BF16`). Only numpy is needed; torch only for the hooks. See
docs/outside-engines.md.
"""

from . import stages
from .compare import (CompareError, CoverageError, Divergence, LlamaDiffError, compare,
                      find_llama_diff, stage_table)
from .golden import (BF16, COMPUTE_DTYPES, FORMAT, ROUNDING_PROFILES, Dump, DumpError, order_stages,
                     read_dump, read_metadata, read_safetensors, write_dump, write_safetensors)
from .hooks import Recorder, attach
from .namemaps import HF_NAME_MAP, VLLM_NAME_MAP, VLLM_SPLIT_NAME_MAP, NameMap

__version__ = "0.1.0"

__all__ = ["stages", "CompareError", "CoverageError", "Divergence", "LlamaDiffError", "compare",
           "find_llama_diff", "stage_table", "BF16", "COMPUTE_DTYPES", "FORMAT", "ROUNDING_PROFILES", "Dump",
           "DumpError", "order_stages", "read_dump", "read_metadata", "read_safetensors",
           "write_dump", "write_safetensors", "Recorder", "attach", "HF_NAME_MAP",
           "VLLM_NAME_MAP", "VLLM_SPLIT_NAME_MAP", "NameMap"]
