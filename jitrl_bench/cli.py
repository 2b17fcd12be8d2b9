"""The `jitrl-bench` command: thin wrappers that parse, compose, and call into the package."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from jitrl_bench.errors import UserError

app = typer.Typer(
    help="Run, compare and reproduce Just-In-Time Reinforcement Learning (JitRL) for LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
games_app = typer.Typer(help="The Jericho game files (ROMs): list, download, verify.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks; results go to results/bench/.", no_args_is_help=True)
app.add_typer(games_app, name="games")
app.add_typer(bench_app, name="bench")
console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
Overrides = Annotated[
    list[str] | None, typer.Argument(help="Hydra overrides, e.g. env=jericho env.game=zork1 agent.beta=0.5")
]


def user_errors(fn: F) -> F:
    """Bad input → one red line on stderr and exit code 2; Ctrl-C → a resume hint and exit code 130."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted: finished episodes are saved; run the same command with the same run.dir to resume")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def run(overrides: Overrides = None) -> None:
    """Play one run (agent + baselines on the same tasks, seeds and budget) and print the per-task table."""
    from jitrl_bench.config import load_spec
    from jitrl_bench.experiment import execute
    from jitrl_bench.results import episodes_frame

    _quiet_libraries()
    path = execute(load_spec(list(overrides or [])), console=console)
    console.print(f"run directory: {path}")
    episodes = episodes_frame(path)
    ungraded = episodes[episodes.status == "ungraded"] if not episodes.empty else episodes
    if len(ungraded):
        err.print(
            f"{len(ungraded)} episode(s) played but not graded ({ungraded.error.iloc[0]}); "
            f"once that is fixed: jitrl-bench regrade {path}", highlight=False, soft_wrap=True,
        )  # fmt: skip
    if not episodes.empty and (episodes.status != "ok").any():
        raise typer.Exit(1)  # some task could not run; its error was printed and recorded


@app.command()
@user_errors
def sweep(overrides: Overrides = None) -> None:
    """Hydra multirun over comma lists (agent.beta=0.1,0.5 agent.k=5,10), then one aggregated table.
    Pick a launcher with hydra/launcher=basic|joblib."""
    from jitrl_bench.sweep import run_sweep

    _quiet_libraries()
    run_sweep(list(overrides or []), console=console)


@app.command()
@user_errors
def table(run_dirs: Annotated[list[Path], typer.Argument(help="Run or sweep directories")]) -> None:
    """Re-render finished runs: one run → its summary files; several (or a sweep) → one aggregated table."""
    from jitrl_bench.results import aggregate, rich_table, write_summary
    from jitrl_bench.sweep import expand_runs

    runs = expand_runs(run_dirs)
    if len(runs) == 1:
        write_summary(runs[0], console=console)
        return
    console.print(rich_table(aggregate(runs), title=f"{len(runs)} runs"))


@app.command()
@user_errors
def regrade(run_dir: Annotated[Path, typer.Argument(help="A finished WebArena run directory")]) -> None:
    """Grade a web run again, offline, from the answers and HARs it kept; writes regrade.csv beside episodes.jsonl."""
    from jitrl_bench.regrade import regrade as regrade_run

    _quiet_libraries()
    frame = regrade_run(run_dir, console=console)
    recorded = frame[frame.status == "ok"]
    differ = int((~recorded.agree & recorded.regraded.notna()).sum())
    newly = int(((frame.status == "ungraded") & frame.regraded.notna()).sum())
    console.print(
        f"{len(frame)} episodes: {differ} grades differ from the recorded ones, {newly} ungraded ones now graded; "
        f"{run_dir / 'regrade.csv'}"
    )


@games_app.command("list")
@user_errors
def games_list(rom_dir: Annotated[str | None, typer.Option(help="ROM folder")] = None) -> None:
    """Jericho's supported games and whether each file is present and valid."""
    from jitrl_bench.envs import games

    _print_rows(games.verify(games.rom_dir(rom_dir)))


@games_app.command("verify")
@user_errors
def games_verify(rom_dir: Annotated[str | None, typer.Option(help="ROM folder")] = None) -> None:
    """Check every ROM's header and md5 against Jericho's table; exit 1 if any file is bad."""
    from jitrl_bench.envs import games

    rows = games.verify(games.rom_dir(rom_dir))
    _print_rows(rows)
    bad = [r for r in rows if _status(r) not in ("ok", "missing", "unknown")]
    if bad:
        raise typer.Exit(1)


@games_app.command("download")
@user_errors
def games_download(
    dest: Annotated[str | None, typer.Option(help="Target folder (default: the ROM folder)")] = None,
    base_url: Annotated[str | None, typer.Option(help="Where the suite's files are served")] = None,
    names: Annotated[list[str] | None, typer.Argument(help="Games to fetch (default: all)")] = None,
) -> None:
    """Fetch the public Jericho game suite and verify md5s."""
    from jitrl_bench.envs import games

    kwargs: dict[str, Any] = {"names": names or None}
    if base_url:
        kwargs["base_url"] = base_url
    rows = games.download(games.rom_dir(dest), **kwargs)
    _print_rows(rows)
    if any(_status(r) == "failed" for r in rows):
        raise typer.Exit(1)


@app.command()
@user_errors
def doctor() -> None:
    """What is present or missing (ROMs, model, embedder, chromium, vLLM, GPU, WebArena URLs) and how to fix each."""
    from jitrl_bench.doctor import checks, render

    rows = checks()
    console.print(render(rows))


@app.command()
@user_errors
def serve(
    overrides: Overrides = None,
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one)")] = None,
) -> None:
    """Start a vLLM OpenAI-compatible server for the configured policy's model, print the override to use, and keep
    it up until Ctrl-C. E.g. jitrl-bench serve policy=vllm policy.model=Qwen/Qwen2.5-7B-Instruct"""
    from jitrl_bench.config import load_spec
    from jitrl_bench.policies.server import VLLMServer

    _quiet_libraries()
    policy = load_spec(list(overrides or [])).policy
    model = getattr(policy, "tokenizer", None) or policy.model
    dtype = getattr(policy, "dtype", "float32")
    server = VLLMServer(
        model, port=port, dtype=dtype if dtype in ("float32", "bfloat16", "float16", "auto") else "auto"
    )
    console.print(f"starting vLLM for {model} (log: {server.log_path or 'the jitrl-bench cache'}) ...")
    with server:
        console.print(f"[green]ready[/green] in {server.startup_s:.0f} s: {server.base_url}")
        console.print(f"use it with:  jitrl-bench run {server.override()}", soft_wrap=True, highlight=False)
        try:
            while server.process is not None and server.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping the server")
            return
    raise UserError(f"the vLLM server exited; see its log {server.log_path}")


@bench_app.command("memory")
@user_errors
def bench_memory(
    sizes: Annotated[str, typer.Option(help="Comma list of memory sizes")] = "1000,10000,100000",
    out: Annotated[Path, typer.Option(help="CSV to write")] = Path("results/bench/memory.csv"),
    queries: Annotated[int, typer.Option(help="Decisions timed per size")] = 300,
) -> None:
    """Per-decision overhead of retrieve + advantage + update (K=10 candidates, k=10, 384-d), and bytes per entry."""
    from jitrl_bench.bench.memory import bench_memory as run_bench

    run_bench(_ints(sizes), out, queries=queries, console=console)


@bench_app.command("policy")
@user_errors
def bench_policy(
    ks: Annotated[str, typer.Option("--k", help="Comma list of candidate counts K")] = "5,10,30",
    concurrency: Annotated[str, typer.Option(help="Comma list of episodes in flight (vLLM server)")] = "1,4,8",
    repeats: Annotated[int, typer.Option(help="Timed calls per row (median reported)")] = 5,
    dtype: Annotated[str, typer.Option(help="transformers dtype: float32 | bfloat16")] = "float32",
    vllm: Annotated[bool, typer.Option(help="Also start a vLLM server and time it")] = True,
    out: Annotated[Path, typer.Option(help="CSV to write")] = Path("results/bench/policy.csv"),
) -> None:
    """Per-decision latency and candidates/s: transformers shared-prefix vs padded, vLLM server score and choice."""
    from jitrl_bench.bench.policy import bench_policy as run_bench

    _quiet_libraries()
    run_bench(out, _ints(ks), _ints(concurrency), repeats, dtype, vllm, console)


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"expected a comma list of integers, got {text!r}") from None


def _print_rows(rows: list[Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    for col in ("game", "file", "status", "detail"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(escape(str(getattr(r, col, ""))) for col in ("name", "file", "status", "detail")))
    console.print(table)


def _status(row: Any) -> str:
    return str(row.status)


def _quiet_libraries() -> None:
    """Model loaders print progress bars and hub warnings; the run has its own progress display."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
