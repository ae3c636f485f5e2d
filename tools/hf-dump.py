#!/usr/bin/env python3
"""hf-dump: dump a Hugging Face (or vLLM-style) Llama forward pass as ``llama-golden/1``.

The command line of the llamaref Python package (tools/python/llamaref/hf_dump.py), run
from the checkout without installing it; ``pip install tools/python`` gives the same as
``python3 -m llamaref.hf_dump``. See docs/hf-dump.md::

    python3 tools/hf-dump.py --model DIR --out OUT.safetensors \\
        (--tokens "1 2 3" | --fixture F.safetensors) \\
        [--dtype float32|bfloat16|float16|float64] [--device cpu|cuda] \\
        [--attn-impl sdpa|eager] [--force]

Scripts that load this file as a module (importlib) get what they got before: attach,
Recorder, DumpError, HF_NAME_MAP and VLLM_NAME_MAP (vLLM's tree under the spec's names);
new code imports the package instead (docs/outside-engines.md).
"""

import os
import sys

# The package beside this file, ahead of any installed copy, so the checkout's tools
# always run the checkout's package.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "python"))
from llamaref.hf_dump import *  # noqa: E402,F401,F403
from llamaref.hf_dump import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
