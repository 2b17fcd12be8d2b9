"""`run.repeats=K`: K independent replicas of the whole run in one run directory, `<run.dir>/repeats/<r>/`.

Each replica is an ordinary run directory (its own config.yaml, episodes.jsonl, memory), so each resumes as any run
does and the run as a whole resumes replica by replica. Replica r differs from the run only in `run.seed`, offset by
r × run.episodes: no two replicas share an env seed or a decision draw, and each starts with empty memory. The run's
own folder holds its config (with `run.repeats`) and the tables over every replica (`results/repeats.py`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jitrl_bench.run.spec import RunSpec

REPEATS = "repeats"
"""The folder of a repeated run that holds its replicas."""


def replica_dir(run_dir: Path, r: int) -> Path:
    return run_dir / REPEATS / str(r)


def replica_dirs(run_dir: Path) -> list[Path]:
    """The replicas of a repeated run that hold results, in order; [] for any other folder."""
    folder = run_dir / REPEATS
    if not folder.is_dir() or (run_dir / "episodes.jsonl").exists():
        return []
    found = [p for p in folder.iterdir() if p.name.isdigit() and (p / "episodes.jsonl").is_file()]
    return sorted(found, key=lambda p: int(p.name))


def replicas(spec: RunSpec, run_dir: Path) -> Iterator[RunSpec]:
    """The spec of each replica: the run's config with its own seed and folder, and one repeat."""
    from omegaconf import OmegaConf

    from jitrl_bench.run.spec import build_spec  # here: the tables read replica_dirs without composing anything

    for r in range(spec.run.repeats):
        raw = copy.deepcopy(spec.raw)
        OmegaConf.update(raw, "run.seed", spec.run.seed + r * spec.run.episodes)
        OmegaConf.update(raw, "run.dir", str(replica_dir(run_dir, r)))
        OmegaConf.update(raw, "run.repeats", 1)
        yield build_spec(raw)
