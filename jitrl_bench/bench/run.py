"""`jitrl-bench bench run`: steps per second of the demo configuration, and where the time goes.

Each variant is a real `jitrl-bench run` (experiment=demo, fewer episodes) in a scratch folder, one after the other in
this process, so they share the machine's state: `before` is the scorer as it was before one-pass scoring (K copies of
the prompt's cache, identical prompts reused only); `one-pass` is the default; `one-pass, 4 in flight` adds
`run.concurrency=4`; `one-pass, float32` or `one-pass, bfloat16` is the default in the dtype `policy.dtype` (`auto`
unless set: `policies/dtype.py`) did not choose here, to show what the choice is worth on this machine
(`llm_ms_per_step`). Time is split from what every episode records (`EpisodeRecord.seconds`, `compute_s`, `wall_s`):
llm (model calls), embedding, retrieval, env (reset, steps, grading), agent (the rest of the agent's and the reward
source's time: advantages, memory writes, prompts) and runner (the rest of the run's wall time: commits, scheduling).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from jitrl_bench.bench import publish

COLUMNS = ["variant", "dtype", "episodes", "steps", "wall_s", "steps_per_s", "llm_s", "llm_ms_per_step", "embedding_s",
           "retrieval_s", "env_s", "agent_s", "runner_s", "llm_calls"]  # fmt: skip
DTYPES = ("float32", "bfloat16")
VARIANTS = {
    "before (shared-prefix, no prefix cache)": ["policy.scorer=shared_prefix", "policy.prefix_cache=0"],
    "one-pass": [],
    "one-pass, 4 in flight": ["run.concurrency=4"],
}


def bench_run(out: Path, episodes: int, steps: int, overrides: list[str], console: Console) -> list[dict[str, Any]]:
    from jitrl_bench.run.spec import load_spec

    base = ["experiment=demo", f"run.episodes={episodes}", f"run.max_steps={steps}", "run.progress=false", *overrides]
    spec = load_spec(base)
    dtype = str(spec.raw.policy.get("dtype", ""))
    for key, choice in spec.resolved.items():
        console.print(f"{key}: {choice}")
    variants = dict(VARIANTS)
    if dtype in DTYPES:  # the same default run in the dtype not chosen: what the choice is worth on this machine
        other = DTYPES[1 - DTYPES.index(dtype)]
        variants[f"one-pass, {other}"] = [f"policy.dtype={other}"]
    rows = []
    for variant, extra in variants.items():
        rows.append(play(variant, [*base, *extra]))
        console.print(
            f"{variant}: {rows[-1]['steps_per_s']} steps/s ({rows[-1]['steps']} steps in {rows[-1]['wall_s']} s)"
        )
    publish(rows, COLUMNS, out, f"the demo configuration, {episodes} episodes × {steps} steps per agent", console)
    console.print(verdict(rows))
    return rows


def play(variant: str, overrides: list[str]) -> dict[str, Any]:
    """One variant: a real run in a scratch folder, and its time by kind."""
    from jitrl_bench.experiment import execute
    from jitrl_bench.results.tables import episodes_frame
    from jitrl_bench.run.spec import load_spec

    with tempfile.TemporaryDirectory(prefix="jitrl-bench-run-") as folder:
        spec = load_spec([*overrides, f"run.dir={folder}/run"])
        start = time.perf_counter()
        execute(spec, console=Console(quiet=True))
        wall = time.perf_counter() - start
        frame = episodes_frame(Path(folder) / "run")
    row = breakdown(variant, frame, wall, spec.run.concurrency)
    row["dtype"] = str(spec.raw.policy.get("dtype", ""))
    return row


def breakdown(variant: str, frame: Any, wall: float, concurrency: int) -> dict[str, Any]:
    """Seconds by kind summed over episodes; with several episodes in flight they add up to more than the wall."""

    def kind(name: str) -> float:
        return float(sum(s.get(name, 0.0) for s in frame.seconds))

    llm, embedding, retrieval, env = kind("llm"), kind("embedding"), kind("retrieval"), kind("env")
    steps = int(frame.steps.sum())
    return {
        "variant": variant,
        "episodes": len(frame),
        "steps": steps,
        "wall_s": round(wall, 1),
        "steps_per_s": round(steps / wall, 2),
        "llm_s": round(llm, 1),
        "llm_ms_per_step": round(1000 * llm / max(steps, 1), 1),
        "embedding_s": round(embedding, 1),
        "retrieval_s": round(retrieval, 1),
        "env_s": round(env, 1),
        "agent_s": round(max(float(frame.compute_s.sum()) - llm - embedding - retrieval, 0.0), 1),
        "runner_s": round(max(wall * concurrency - float(frame.wall_s.sum()), 0.0), 1) if concurrency == 1 else "",
        "llm_calls": int(frame.llm_calls.sum()),
    }


def verdict(rows: list[dict[str, Any]]) -> str:
    """The targets: the demo's time per step down ≥ 30% against the scorer before; 4 in flight beats 1; and the dtype
    `policy.dtype` runs in here is the faster one of float32 and bfloat16 (LLM time per step)."""
    by = {r["variant"]: r for r in rows}
    before, one_pass, four = (by[v]["steps_per_s"] for v in VARIANTS)
    cut = 1 - before / one_pass
    said = (
        f"time per step {cut:.0%} lower than before ({'met' if cut >= 0.3 else 'NOT met'}: ≥ 30%); "
        f"4 in flight {four / one_pass:.2f}× the steps/s of 1 ({'met' if four > one_pass else 'NOT met'}: > 1)"
    )
    other = [r for r in rows if r["variant"] == f"one-pass, {r['dtype']}"]
    if not other:
        return said
    chosen, alternative = by["one-pass"], other[0]
    ms = {r["dtype"]: r["llm_ms_per_step"] for r in (chosen, alternative)}
    faster = chosen["llm_ms_per_step"] <= alternative["llm_ms_per_step"]
    return (
        f"{said}; LLM time per step float32 {ms['float32']} ms, bfloat16 {ms['bfloat16']} ms: {chosen['dtype']} "
        f"(policy.dtype) is {'the faster' if faster else 'NOT the faster'} here"
    )
