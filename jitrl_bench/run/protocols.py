"""`run.protocol`: what a run learns from and what it scores, as sub-runs of one run directory.

- `online` (the default): one run, learning and scored on the same stream of episodes.
- `train_test`: `RUN/train/` learns on the train split, then `RUN/test/` scores the test split with the memory the
  train split left, frozen (`memory.load_from` + `memory.frozen`: nothing is written, no learning call is made). The
  test split is `run.test_tasks` (held-out tasks, the others trained on), or, when that is empty, every task again
  for `run.test_episodes` episodes on seeds the train split never played. Where the benchmark has a test split of
  its own (ScienceWorld's variations, TextWorld Express's folds: `EnvConfig.test_split`), the test episodes play it.
- `stream`: `RUN/stream/` learns over the tasks in order with one memory read across tasks; `RUN/scratch/` plays
  each task with its own memory only (same seeds); `RUN/replay/` replays every task but the last, at the end, with
  the stream's final memory frozen, on the seeds of its last min(5, episodes) stream episodes. Forward transfer and
  forgetting are read from these three (`results/stream.py`).

Each sub-run is an ordinary run directory (its own config.yaml, resumable as any run); the run's own folder holds
the config with the protocol and the tables over its sub-runs, each row saying which split or phase it is from.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jitrl_bench.run.spec import RunSpec

PARTS = {"train_test": ("split", ("train", "test")), "stream": ("phase", ("stream", "scratch", "replay"))}
"""Per protocol: the column its rows carry, and its sub-runs in the order they play."""
REPLAYED = 5
"""`stream`: the last episodes of each task that `replay` plays again (its final-5, as the tables' final5)."""


def part_dirs(run_dir: Path) -> list[tuple[str, str, Path]]:
    """(column, value, folder) of each sub-run of a train_test or stream run that holds results; [] otherwise."""
    if (run_dir / "episodes.jsonl").exists():
        return []
    for column, names in PARTS.values():
        found = [(column, n, run_dir / n) for n in names if (run_dir / n / "episodes.jsonl").is_file()]
        if found:
            return found
    return []


def parts(spec: RunSpec, run_dir: Path) -> Iterator[tuple[str, RunSpec]]:
    """Each sub-run of the spec's protocol with its spec, in the order they must play (none for `online`)."""
    run = spec.run
    tasks = spec.tasks()
    if run.protocol == "train_test":
        held = [t for t in run.test_tasks if t in tasks]
        train = [t for t in tasks if t not in held] if held else tasks
        yield "train", _part(spec, run_dir / "train", {"run.tasks": train})
        yield "test", _part(spec, run_dir / "test", {
            "run.tasks": held or tasks, "run.episodes": run.test_episodes, "run.seed": run.seed + run.episodes,
            "memory.load_from": str(run_dir / "train"), "memory.frozen": True,
            **{f"env.{key}": value for key, value in spec.env.test_split().items()},
        })  # fmt: skip
    elif run.protocol == "stream":
        replayed = min(REPLAYED, run.episodes)
        yield "stream", _part(spec, run_dir / "stream", {"run.tasks": tasks, "memory.partition_by": []})
        yield "scratch", _part(spec, run_dir / "scratch", {"run.tasks": tasks, "memory.partition_by": ["task"]})
        yield "replay", _part(spec, run_dir / "replay", {
            "run.tasks": tasks[:-1], "run.episodes": replayed, "run.seed": run.seed + run.episodes - replayed,
            "memory.load_from": str(run_dir / "stream"), "memory.frozen": True, "memory.partition_by": [],
        })  # fmt: skip


def _part(spec: RunSpec, folder: Path, changes: dict[str, Any]) -> RunSpec:
    """The run's config as one online sub-run in `folder`, with `changes` (dotted keys) applied."""
    from omegaconf import OmegaConf

    from jitrl_bench.run.spec import build_spec  # here: the tables read part_dirs without composing anything

    raw = copy.deepcopy(spec.raw)
    for key, value in {"run.protocol": "online", "run.dir": str(folder), **changes}.items():
        OmegaConf.update(raw, key, value, force_add=True)
    return build_spec(raw)
