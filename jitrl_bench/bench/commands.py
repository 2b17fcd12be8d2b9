"""`jitrl-bench bench ...`: the speed and memory benchmarks, each writing a CSV under results/bench/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jitrl_bench.commands import Overrides, console, ints, user_errors
from jitrl_bench.errors import UserError

bench_app = typer.Typer(help="Benchmarks; results go to results/bench/.", no_args_is_help=True)


@bench_app.command("memory")
@user_errors
def bench_memory(
    sizes: Annotated[str, typer.Option(help="Comma list of memory sizes")] = "1000,10000,100000",
    out: Annotated[Path, typer.Option(help="CSV to write")] = Path("results/bench/memory.csv"),
    queries: Annotated[int, typer.Option(help="Decisions timed per size")] = 300,
) -> None:
    """Per-decision overhead of retrieve + advantage + update (K=10 candidates, k=10, 384-d), and bytes per entry."""
    from jitrl_bench.bench.memory import bench_memory as run_bench

    if queries < 1:
        raise UserError(f"--queries {queries}: give at least 1")
    run_bench(ints(sizes, "--sizes"), out, queries=queries, console=console)


@bench_app.command("policy")
@user_errors
def bench_policy(
    ks: Annotated[str, typer.Option("--k", help="Comma list of candidate counts K")] = "5,10,30,100",
    concurrency: Annotated[str, typer.Option(help="Comma list of episodes in flight (vLLM server)")] = "1,4,8",
    repeats: Annotated[int, typer.Option(help="Timed calls per row (median reported)")] = 3,
    dtype: Annotated[str, typer.Option(help="transformers dtype: float32 | bfloat16")] = "float32",
    full: Annotated[bool, typer.Option("--full", help="Also start a vLLM server and time it (minutes more)")] = False,
    out: Annotated[Path, typer.Option(help="CSV to write")] = Path("results/bench/policy.csv"),
) -> None:
    """Candidate scoring against the floor (one pass over the prompt and all candidate tokens): one-pass,
    shared-prefix and padded at each K; --full adds the vLLM server in score and choice mode."""
    from jitrl_bench.bench.policy import bench_policy as run_bench

    if dtype not in ("float32", "bfloat16"):
        raise UserError(f"--dtype {dtype!r}: use float32 or bfloat16")
    if repeats < 1:
        raise UserError(f"--repeats {repeats}: give at least 1")
    run_bench(out, ints(ks, "--k"), ints(concurrency, "--concurrency"), repeats, dtype, full, console)


@bench_app.command("run")
@user_errors
def bench_run(
    overrides: Overrides = None,
    episodes: Annotated[int, typer.Option(help="Episodes per agent in each variant")] = 6,
    steps: Annotated[int, typer.Option(help="Steps per episode")] = 15,
    out: Annotated[Path, typer.Option(help="CSV to write")] = Path("results/bench/run.csv"),
) -> None:
    """Steps per second of the demo configuration (the scorer before one-pass, one-pass, 4 episodes in flight), split
    into LLM, embedding, retrieval, env, agent and runner time."""
    from jitrl_bench.bench.run import bench_run as run_bench
    from jitrl_bench.run.spec import load_spec

    if episodes < 1 or steps < 1:
        raise UserError(f"--episodes {episodes} --steps {steps}: give at least 1 of each")
    load_spec(["experiment=demo", *(overrides or [])])  # bad overrides: one line, before any model loads
    run_bench(out, episodes, steps, list(overrides or []), console)


@bench_app.command("scale")
@user_errors
def bench_scale(
    overrides: Overrides = None,
    episodes: Annotated[int, typer.Option(help="Episodes per task and agent")] = 6,
    steps: Annotated[int, typer.Option(help="Steps per episode")] = 15,
    workers: Annotated[str, typer.Option(help="Comma list of Ray worker counts")] = "1,2,4",
    out: Annotated[Path, typer.Option(help="CSV to write")] = Path("results/bench/scale.csv"),
) -> None:
    """Episodes per minute of one run (uniform policy, 4 TextWorld games, JitRL + static) played locally and on a
    private Ray instance with 1, 2 and 4 workers; every variant must commit the same episodes."""
    from jitrl_bench.bench.scale import bench_scale as run_bench

    if episodes < 1 or steps < 1:
        raise UserError(f"--episodes {episodes} --steps {steps}: give at least 1 of each")
    run_bench(out, episodes, steps, ints(workers, "--workers"), list(overrides or []), console)


@bench_app.command("export")
@user_errors
def bench_export(
    decisions: Annotated[int, typer.Option(help="Candidate rows in the synthetic run")] = 1_000_000,
    out: Annotated[Path, typer.Option(help="CSV to write")] = Path("results/bench/export.csv"),
) -> None:
    """Time and peak memory of `export --format parquet` on a synthetic run of 10^6 decisions, beside loading the
    same decisions whole with open_run; each reader in a fresh process."""
    from jitrl_bench.bench.export import bench_export as run_bench

    if decisions < 1:
        raise UserError(f"--decisions {decisions}: give at least 1")
    run_bench(out, decisions, console)
