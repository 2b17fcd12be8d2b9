"""`jitrl-bench bench scale`: episodes per minute of one run played locally and on 1, 2 and 4 Ray workers, and of one
memory shared across tasks played as one stream or through the memory service.

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

COLUMNS = ["variant", "workers", "memory", "episodes", "steps", "wall_s", "episodes_per_min", "speedup",
           "same_results"]  # fmt: skip


def bench_scale(out: Path, episodes: int, steps: int, workers: list[int], overrides: list[str],
                console: Console) -> list[dict[str, Any]]:  # fmt: skip
    """Memory per task (every executor must agree with the local run), then one memory over every task: local, two
    workers playing it as one stream (must agree), two workers sharing it through the memory service (faster; what
    each episode reads depends on timing, so its results are reported, not required to agree)."""
    from jitrl_bench.experiment import execute
    from jitrl_bench.run.spec import load_spec

    cores = os.cpu_count() or 1
    base = ["policy=uniform", "env=textworld", "env.seeds=[7,11,13,17]", f"run.episodes={episodes}",
            f"run.max_steps={steps}", "run.progress=false", *overrides]  # fmt: skip

    def ray(n: int) -> list[str]:
        return ["run.executor=ray", f"run.ray.workers={n}", f"run.ray.cpus_per_worker={min(1.0, cores / n):g}"]

    def named(n: int) -> str:
        return f"ray, {n} worker{'s' if n > 1 else ''}"

    one, pair = ["memory.partition_by=[]"], 2 if 2 in workers else max(workers)  # two workers: one per core here
    variants = [("local", 0, "per task", ["run.executor=local"])]
    variants += [(named(n), n, "per task", ray(n)) for n in workers]
    variants += [("local", 0, "one: local", [*one, "run.executor=local"]),
                 (named(pair), pair, "one: stream", [*one, *ray(pair), "run.ray.shared_memory=stream"]),
                 (named(pair), pair, "one: service", [*one, *ray(pair), "run.ray.shared_memory=service"])]  # fmt: skip
    rows: list[dict[str, Any]] = []
    reference: dict[str, tuple[float, list[tuple[Any, ...]]]] = {}
    for variant, n, memory, extra in variants:
        with tempfile.TemporaryDirectory(prefix="jitrl-bench-scale-") as folder:
            spec = load_spec([*base, *extra, f"run.dir={folder}/run"])
            start = time.perf_counter()
            execute(spec, console=Console(quiet=True))
            wall = time.perf_counter() - start
            played = outcomes(Path(folder) / "run")
        count = len(played)
        rate = 60 * count / wall
        base_rate, expected = reference.setdefault(memory.split(":")[0], (rate, played))
        rows.append({"variant": variant, "workers": n, "memory": memory, "episodes": count,
                     "steps": sum(p[-1] for p in played), "wall_s": round(wall, 1),
                     "episodes_per_min": round(rate, 1), "speedup": round(rate / base_rate, 2),
                     "same_results": played == expected})  # fmt: skip
        console.print(f"{variant} (memory {memory}): {rate:.1f} episodes/min ({count} episodes in {wall:.0f} s)")
    publish(rows, COLUMNS, out, f"{cores} cores, uniform policy, {episodes} episodes × {steps} steps", console)
    if not all(row["same_results"] for row in rows if row["memory"] != "one: service"):
        raise UserError("a variant committed other episodes than the local run: the executors disagree (a bug)")
    return rows


def outcomes(run_dir: Path) -> list[tuple[Any, ...]]:
    """What every variant must agree on: each episode's task, number, agent, score and steps."""
    rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    return sorted((r["task"], r["episode"], r["agent"], r["score"], r["steps"]) for r in rows)
