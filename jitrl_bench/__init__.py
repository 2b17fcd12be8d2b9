"""jitrl-bench: run, compare and reproduce Just-In-Time Reinforcement Learning for LLM agents."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jitrl_bench.results.run_data import Run

__version__ = "0.1.0"
__all__ = ["open_run"]


def open_run(path: str | Path) -> Run:
    """A run directory's episodes, steps, decisions, neighbours and memory as pandas DataFrames, each read on first
    use (docs/run-files.md is the schema). Imported on call, so `import jitrl_bench` (and every command) stays light."""
    from jitrl_bench.results.run_data import open_run as opened

    return opened(path)
