"""`policy.dtype=auto`: bfloat16 only where this machine runs it fast, float32 everywhere else.

bfloat16 halves the bytes the model reads, but a CPU without bf16 matrix units converts operands to float32 and back:
slower than float32, and less exact. Measured with `jitrl-bench bench run` (SmolLM2-135M, 15-step episodes, 2 cores):
on a CPU with AVX512-BF16 but no AMX, LLM time per step was 330-352 ms in float32 against 468-528 ms in bfloat16
(1.4x slower); on an AVX2-only CPU 4.2x slower. So `auto` picks bfloat16 on a CUDA device of compute capability 8 or
more (bf16 tensor cores) and on a CPU with AMX-BF16 tiles that torch is allowed to use (`ATEN_CPU_CAPABILITY` and
`ONEDNN_MAX_CPU_ISA` set below AVX-512 take the fast path away, so `ATEN_CPU_CAPABILITY=avx2` picks float32 as an
AVX2-only CPU does); float32 everywhere else. Every choice comes with its reason, which config.yaml,
`jitrl-bench config`, `doctor` and `bench run` show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from omegaconf import DictConfig

AUTO = "auto"
DTYPE_NAMES = ("float32", "bfloat16")
HF_TARGET = "jitrl_bench.policies.hf.HFPolicyConfig"
ONEDNN_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")
"""`ONEDNN_MAX_CPU_ISA` values below AVX512_CORE_BF16: oneDNN then has no native bf16 dot product to use."""


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype a policy loads its weights in, and why (for `auto`: what this machine has)."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


def choose(dtype: str, device: str) -> DtypeChoice:
    """`dtype` as given, or for `auto` the one this machine runs fast on `device`."""
    if dtype != AUTO:
        return DtypeChoice(dtype, "set")
    native, why = native_bf16(device)
    if native:
        return DtypeChoice("bfloat16", f"auto: fast bf16, {why}")
    return DtypeChoice("float32", f"auto: no fast bf16, {why}")


def native_bf16(device: str) -> tuple[bool, str]:
    """Does `device` ("cpu", "cuda", "cuda:N", "mps") compute in bfloat16 natively, and what says so."""
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return False, "CUDA not available"
        suffix = device.partition(":")[2]
        index = int(suffix) if suffix.isdigit() else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return major >= 8, f"{torch.cuda.get_device_name(index)}, compute capability {major}.{minor}"
    if device != "cpu":
        return False, f"device {device}: bf16 is not known to be faster there"
    capability = torch.backends.cpu.get_cpu_capability()  # what torch's kernels run: ATEN_CPU_CAPABILITY lowers it
    flags = torch.cpu.get_capabilities()
    has = [name for name in ("avx512_bf16", "amx_bf16") if flags.get(name)]
    if not has:
        return False, f"cpu capability {capability}, no AVX512-BF16 or AMX-BF16"
    if "amx_bf16" not in has:  # bf16 dot products without tiles: measured 1.4x slower than float32 (docstring)
        return False, f"cpu capability {capability}, avx512_bf16 but no AMX-BF16, where bfloat16 is slower"
    if capability != "AVX512":
        return False, f"cpu capability {capability} as ATEN_CPU_CAPABILITY sets it; the CPU has {'+'.join(has)}"
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if onednn in ONEDNN_WITHOUT_BF16:
        return False, f"ONEDNN_MAX_CPU_ISA={onednn}; the CPU has {'+'.join(has)}"
    return True, f"cpu capability {capability}, {'+'.join(has)}"


def resolve_auto(node: DictConfig) -> DtypeChoice | None:
    """Replace `dtype: auto` in a transformers policy's config node by this machine's choice, so that config.yaml and
    the config hash hold the dtype that runs (a run resumed on a machine that would choose otherwise is refused, not
    mixed); the choice, with its reason, or None when there was nothing to resolve."""
    if node.get("_target_") != HF_TARGET or node.get("dtype") != AUTO:
        return None
    choice = choose(AUTO, str(node.get("device", "cpu")))
    node.dtype = choice.name
    return choice
