"""Which WebArena tasks must run before which: BrowserGym's task metadata (package browsergym-experiments).

WebArena tasks change the sites (a task that edits an issue leaves it edited for the next), so BrowserGym records for
each task the tasks whose effects it expects (`depends_on`). A run that orders its tasks by these edges sees the
sites in the state the task authors did. The CSV files are read as data; the package itself is never imported.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib.util import find_spec
from pathlib import Path

METADATA = Path("experiments", "benchmark", "metadata")


def metadata_file(benchmark: str) -> Path | None:
    """browsergym/experiments/benchmark/metadata/<benchmark>.csv where installed, else None."""
    spec = find_spec("browsergym")
    for location in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / METADATA / f"{benchmark}.csv"
        if path.is_file():
            return path
    return None


@cache
def dependencies(benchmark: str) -> dict[int, tuple[int, ...]]:
    """Task id → the ids of the tasks it depends on, for `webarena`, `webarenalite` or `webarena_verified`.

    Empty when browsergym-experiments is not installed (tasks then run in id order)."""
    path = metadata_file(benchmark)
    if path is None:
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    ids = {row["task_name"]: int(row["task_id"]) for row in rows}
    return {
        int(row["task_id"]): tuple(ids[name] for name in (row["depends_on"] or "").split() if name in ids)
        for row in rows
    }
