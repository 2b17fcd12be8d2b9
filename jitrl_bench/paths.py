"""Where things live: the shipped configs (inside the package), results (under the working directory), one cache root
for what is made on the user's machine (overridable by environment variables)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_ROOT / "configs"
"""The Hydra config groups; they ship inside the wheel, so a non-editable install has them too."""
SOURCE_ROOT = PACKAGE_ROOT.parent
"""The repository, in a source checkout (editable install); in a wheel install, site-packages."""


def results_dir(*parts: str) -> Path:
    """`$JITRL_BENCH_RESULTS` or ./results (relative to where the command runs), e.g. results/runs/<id>."""
    return Path(os.environ.get("JITRL_BENCH_RESULTS") or "results", *parts)


def cache_dir(*parts: str) -> Path:
    """`$JITRL_BENCH_CACHE` or `$XDG_CACHE_HOME/jitrl-bench` or `~/.cache/jitrl-bench`, created on demand."""
    root = os.environ.get("JITRL_BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jitrl-bench"
    )
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
