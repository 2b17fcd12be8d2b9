"""`jitrl-bench bench scale`: episodes per minute of one run played locally and on 1, 2 and 4 Ray workers.

Each variant is a real `jitrl-bench run` in a scratch folder (the uniform policy, so the harness is measured, not a
model): JitRL and the static baseline on several TextWorld games, the same seeds and budget everywhere. Ray variants
start a private Ray instance on this machine (`run.ray.address=null`) sized to the workers, each worker taking an
equal share of the machine's cores; the wall time includes starting Ray and the workers (their embedder included),
which is what a user waits for. Every variant must commit the same episodes: the benchmark checks that as it goes.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from jitrl_bench.bench import publish
from jitrl_bench.errors import UserError

COLUMNS = ["variant", "workers", "episodes", "steps", "wall_s", "episodes_per_min", "speedup", "same_results"]


def bench_scale(out: Path, episodes: int, steps: int, workers: list[int], overrides: list[str],
                console: Console) -> list[dict[str, Any]]:  # fmt: skip
    from jitrl_bench.config import load_spec
    from jitrl_bench.experiment import execute

    cores = os.cpu_count() or 1
    base = ["policy=uniform", "env=textworld", "env.seeds=[7,11,13,17]", f"run.episodes={episodes}",
            f"run.max_steps={steps}", "run.progress=false", *overrides]  # fmt: skip
    variants = [("local", 0, ["run.executor=local"])] + [
        (f"ray, {n} worker{'s' if n > 1 else ''}", n,
         ["run.executor=ray", f"run.ray.workers={n}", f"run.ray.cpus_per_worker={min(1.0, cores / n):g}"])
        for n in workers
    ]  # fmt: skip
    rows: list[dict[str, Any]] = []
    reference: list[tuple[Any, ...]] | None = None
    for variant, n, extra in variants:
        with tempfile.TemporaryDirectory(prefix="jitrl-bench-scale-") as folder:
            spec = load_spec([*base, *extra, f"run.dir={folder}/run"])
            start = time.perf_counter()
            execute(spec, console=Console(quiet=True))
            wall = time.perf_counter() - start
            played = outcomes(Path(folder) / "run")
        reference = reference if reference is not None else played
        count = len(played)
        rows.append({"variant": variant, "workers": n, "episodes": count, "steps": sum(p[-1] for p in played),
                     "wall_s": round(wall, 1), "episodes_per_min": round(60 * count / wall, 1), "speedup": 0.0,
                     "same_results": played == reference})  # fmt: skip
        console.print(f"{variant}: {rows[-1]['episodes_per_min']} episodes/min ({count} episodes in {wall:.0f} s)")
    for row in rows:
        row["speedup"] = round(row["episodes_per_min"] / rows[0]["episodes_per_min"], 2)
    publish(rows, COLUMNS, out, f"{cores} cores, uniform policy, {episodes} episodes × {steps} steps", console)
    if not all(row["same_results"] for row in rows):
        raise UserError("a variant committed other episodes than the local run: the executors disagree (a bug)")
    return rows


def outcomes(run_dir: Path) -> list[tuple[Any, ...]]:
    """What every variant must agree on: each episode's task, number, agent, score and steps."""
    rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    return sorted((r["task"], r["episode"], r["agent"], r["score"], r["steps"]) for r in rows)
