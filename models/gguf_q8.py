"""Builder for the embedded LLM: the wheel's GGUF, re-quantized to Q8_0 by llama.cpp.

The wheel ships SmolLM2 in Q4_1. Every Q4_1 weight is one of 16 levels of its block, and Q8_0
holds such a block to within 0.4 % of its range, so the model's outputs hardly change; but
llama.cpp reads prompts ~1.7x faster in Q8_0 on CPUs with its repacked / AMX kernels (on this
machine 3.7 instead of 6.2 ms per prompt token; ``parley bench models`` prints the first-token
time). The conversion is llama.cpp's own ``llama_model_quantize`` (from llama-cpp-python, the
``cloud`` extra), run once at build time.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from pathlib import Path

from shared.errors import ModelBuildError

BUILDER_VERSION = "1"


def build(inputs: dict[str, Path], out_dir: Path, progress: Callable[[str], None]) -> None:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelBuildError("building the LLM needs llama-cpp-python: pip install -e "
                              "'.[cloud]' (an edge-only device does not need the LLM)") from exc
    (name, source), = inputs.items()
    target = out_dir / name.replace("Q4_1", "Q8_0")
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # its log of every tensor
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    params.nthread = 2
    progress(f"  re-quantizing {name} to Q8_0 (llama.cpp)")
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(),
                                          ctypes.byref(params))
    if code != 0 or not target.is_file():
        raise ModelBuildError(f"llama.cpp could not re-quantize {name} (code {code})")
