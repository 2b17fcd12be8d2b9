"""Where things live on the user's machine: one cache root, overridable by environment variables."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "configs"


def cache_dir(*parts: str) -> Path:
    """`$JITRL_BENCH_CACHE` or `$XDG_CACHE_HOME/jitrl-bench` or `~/.cache/jitrl-bench`, created on demand."""
    root = os.environ.get("JITRL_BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jitrl-bench"
    )
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
