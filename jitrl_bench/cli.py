"""The `jitrl-bench` command: thin wrappers that parse, compose, and call into the package.

Every command turns bad input into one red line and exit code 2, and SIGINT / SIGTERM (Ctrl-C, `timeout`, SLURM
preemption) into a clean stop: the `finally` blocks below the command stop what it started (a vLLM engine or server,
the browser, worker threads), finished episodes stay saved, and the same command resumes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from jitrl_bench.bench.commands import bench_app
from jitrl_bench.commands import Overrides, console, err, user_errors
from jitrl_bench.errors import UserError
from jitrl_bench.terminal import say

if TYPE_CHECKING:
    from jitrl_bench.contract import GameFile, GameFiles

app = typer.Typer(
    help="Run, compare and reproduce Just-In-Time Reinforcement Learning (JitRL) for LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
games_app = typer.Typer(
    help="Game files no package ships (Jericho's ROMs, ALFWorld's games): list, download, verify.", no_args_is_help=True
)
app.add_typer(games_app, name="games")
app.add_typer(bench_app, name="bench")


@app.command()
@user_errors
def run(overrides: Overrides = None) -> None:
    """Play one run (agent + baselines on the same tasks, seeds and budget) and print the per-task table."""
    from jitrl_bench.experiment import execute
    from jitrl_bench.results.tables import episodes_frame
    from jitrl_bench.run.spec import load_spec

    path = execute(load_spec(list(overrides or [])), console=console)
    say(console, f"run directory: {path}")
    episodes = episodes_frame(path)
    ungraded = episodes[episodes.status == "ungraded"] if not episodes.empty else episodes
    if len(ungraded):
        say(err, f"{len(ungraded)} episode(s) played but not graded ({ungraded.error.iloc[0]}); "
                 f"once that is fixed: jitrl-bench regrade {path}")  # fmt: skip
    if not episodes.empty and (episodes.status == "error").all():
        say(err, f"no episode was played: every task failed (each error above is recorded in {path}/episodes.jsonl); "
                 "fix them and run the same command again", "error:", "red")  # fmt: skip
    if not episodes.empty and (episodes.status != "ok").any():
        raise typer.Exit(1)  # some task could not run; its error was printed and recorded


@app.command()
@user_errors
def reproduce(
    name: Annotated[str | None, typer.Argument(help="A paper setting (see --list), e.g. paper_jericho")] = None,
    overrides: Overrides = None,
    budget: Annotated[
        str, typer.Option(help="smoke: the embedded model, minutes; paper: the paper's budget")
    ] = "paper",
    list_: Annotated[bool, typer.Option("--list", help="Name the paper settings and what each compares with")] = False,
) -> None:
    """Run one of the paper's settings and write reproduction.md / .csv: our numbers beside the paper's."""
    from jitrl_bench import reproduce as paper

    if list_ or name is None:
        console.print(paper.listing(), highlight=False, markup=False, soft_wrap=True)
        return
    paper.run(name, budget, list(overrides or []), console)


@app.command("config")
@user_errors
def show_config(overrides: Overrides = None) -> None:
    """Compose and check a config without running anything; print it resolved, as a run's config.yaml holds it."""
    from jitrl_bench.config import compose_config, resolved_yaml
    from jitrl_bench.run.spec import build_spec

    composed = compose_config(list(overrides or []))
    spec = build_spec(composed)
    console.print(resolved_yaml(composed), highlight=False, markup=False, soft_wrap=True)
    for key, choice in spec.resolved.items():  # what `auto` became on this machine (config.yaml's _meta.resolved)
        console.print(f"# {key}: {choice}", highlight=False, markup=False, soft_wrap=True)


@app.command()
@user_errors
def sweep(overrides: Overrides = None) -> None:
    """Hydra multirun over comma lists (agent.beta=0.1,0.5 agent.k=5,10), then one aggregated table.
    Pick a launcher with hydra/launcher=basic|joblib|submitit_local|submitit_slurm (SLURM: one job per run)."""
    from jitrl_bench.sweep.multirun import run_sweep

    run_sweep(list(overrides or []), console=console)


@app.command()
@user_errors
def table(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run or sweep directories")],
    reference: Annotated[
        bool, typer.Option("--reference", help="Also print each run beside the matching rows of the paper's numbers")
    ] = False,
) -> None:
    """Re-render finished runs: one run → its summary files; several (or a sweep) → one aggregated table."""
    from jitrl_bench.results.tables import INTERVALS, aggregate, rich_table, summary_shown, write_summary
    from jitrl_bench.run.received import check_run
    from jitrl_bench.sweep.multirun import expand_runs

    for path in run_dirs:
        check_run(path)  # a received run is data: no link inside it is followed, read or written through
    runs = expand_runs(run_dirs)
    if len(runs) == 1:
        write_summary(runs[0], console=console)
    else:
        console.print(rich_table(summary_shown(aggregate(runs)), title=f"{len(runs)} runs", note=INTERVALS))
    if reference:
        from jitrl_bench.reproduce import ours_with_interval, reference_table

        for run_dir in runs:
            frame = reference_table(run_dir)
            if frame.empty:
                say(console, f"{run_dir}: no reference row matches this run's benchmark, games and agents")
            else:
                title = f"{run_dir.name} beside the paper (paper values: their source)"
                console.print(rich_table(ours_with_interval(frame), title=title))


@app.command()
@user_errors
def merge(
    shard_dirs: Annotated[list[Path], typer.Argument(help="The run directories of a run's shards (run.shard=i/n)")],
    out: Annotated[Path, typer.Option("-o", "--out", help="The merged run directory (new or empty)")],
) -> None:
    """Join the shards of one run into one run directory (same config hash, no stream twice), then its tables."""
    from jitrl_bench.results.report import write_report
    from jitrl_bench.results.tables import write_summary
    from jitrl_bench.run.merge import merge as join

    merged = join(shard_dirs, out, console)
    write_summary(merged, console=console)
    say(console, f"report: {write_report([merged], merged / 'report.html')}")
    say(console, f"run directory: {merged}")


@app.command()
@user_errors
def export(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run or sweep directories")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder for the files (one per table, every run in each)")],
    file_format: Annotated[str, typer.Option("--format", help="File format: parquet")] = "parquet",
) -> None:
    """Every run's episodes, steps, decisions, neighbours and memory as Parquet files (schema: docs/run-files.md),
    for DuckDB, polars or pandas; the same tables as jitrl_bench.open_run(path)."""
    from jitrl_bench.results.export import FORMATS
    from jitrl_bench.results.export import export as write
    from jitrl_bench.run.received import check_run
    from jitrl_bench.sweep.multirun import expand_runs

    if file_format not in FORMATS:
        raise UserError(f"--format {file_format!r}: use one of {', '.join(FORMATS)}")
    for path in run_dirs:
        check_run(path)
    runs = expand_runs(run_dirs)
    written = write(runs, out, on_run=lambda path, n: say(console, f"{path}: {n} episodes"))
    rows = ", ".join(f"{table} {n}" for table, n in written.items())
    say(console, f"{out}: {file_format} files of {rows} rows")


@app.command()
@user_errors
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run or sweep directories")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="The HTML file (default: RUN/report.html for one run or sweep)"),
    ] = None,
    prices: Annotated[
        Path | None, typer.Option(help="A price table (YAML, like jitrl_bench/configs/prices/default.yaml)")
    ] = None,
) -> None:
    """One self-contained HTML report (tables, learning curves, the decision viewer, cost, the cost/quality frontier,
    provenance) for one run, several runs or a sweep; it opens from disk, no server."""
    from jitrl_bench.paths import results_dir
    from jitrl_bench.results.cost import load_prices
    from jitrl_bench.results.report import write_report
    from jitrl_bench.run.received import check_run
    from jitrl_bench.sweep.multirun import expand_runs

    for path in run_dirs:
        check_run(path)  # a received run is data: no link inside it is followed, read or written through
    runs = expand_runs(run_dirs)
    if prices is not None:
        load_prices(prices)  # a bad price file fails here, in one line, before anything is read
    if output is None:
        output = (
            run_dirs[0] / "report.html"
            if len(run_dirs) == 1
            else results_dir("reports", f"{time.strftime('%Y%m%d-%H%M%S')}.html")
        )
    if output.suffix != ".html":
        raise UserError(f"-o {output}: the report is one HTML file; name it *.html")
    say(console, f"report: {write_report(runs, output, prices)}")


@app.command()
@user_errors
def regrade(
    run_dir: Annotated[Path, typer.Argument(help="A finished WebArena run directory")],
    judge_url: Annotated[
        str | None,
        typer.Option(
            help="The LLM judge (fuzzy_match, ua_match): an OpenAI-compatible endpoint, e.g. "
            "http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL, else OpenAI's API when the key is set). "
            "Never taken from the run's config"
        ),
    ] = None,
    judge_key_env: Annotated[
        str, typer.Option(help="The environment variable holding the judge's key")
    ] = "OPENAI_API_KEY",
    judge_model: Annotated[
        str | None, typer.Option(help="The judge's model (default: the one the run's config names)")
    ] = None,
) -> None:
    """Grade a web run again, offline, from the answers and HARs it kept; writes regrade.csv beside episodes.jsonl.
    The LLM judge is the one named here, never the endpoint or key a (perhaps received) run's config names."""
    from jitrl_bench.contract import JudgeChoice
    from jitrl_bench.regrade import regrade as regrade_run

    frame = regrade_run(run_dir, console=console, judge=JudgeChoice(judge_url, judge_key_env, judge_model))
    recorded = frame[frame.status == "ok"]
    differ = int((~recorded.agree & recorded.regraded.notna()).sum())
    newly = int(((frame.status == "ungraded") & frame.regraded.notna()).sum())
    say(console, f"{len(frame)} episodes: {differ} grades differ from the recorded ones, {newly} ungraded ones now "
                 f"graded; {run_dir / 'regrade.csv'}")  # fmt: skip


def _game_files(env: str) -> GameFiles:
    from jitrl_bench.config import unchecked_env

    files = unchecked_env(env).game_files()
    if files is None:
        raise UserError(f"env={env} has no game files to manage (only jericho and alfworld have)")
    return files


@games_app.command("list")
@user_errors
def games_list(
    rom_dir: Annotated[str | None, typer.Option(help="Game folder")] = None,
    env: Annotated[str, typer.Option(help="Whose game files: jericho or alfworld")] = "jericho",
) -> None:
    """The env's game files (default: Jericho's supported games) and whether each is present and valid."""
    files = _game_files(env)
    _print_rows(files.verify(files.folder(rom_dir)))


@games_app.command("verify")
@user_errors
def games_verify(
    rom_dir: Annotated[str | None, typer.Option(help="Game folder")] = None,
    env: Annotated[str, typer.Option(help="Whose game files: jericho or alfworld")] = "jericho",
) -> None:
    """Check every game file (Jericho: each ROM's header and md5 against Jericho's table); exit 1 if any file is bad
    or none is there."""
    files = _game_files(env)
    folder = files.folder(rom_dir)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (give --rom-dir, set $JITRL_BENCH_GAMES, or games download)")
    rows = files.verify(folder)
    if all(r.status == "missing" for r in rows):  # nothing checked is not a pass
        raise UserError(f"no {env} game files in {folder}: jitrl-bench games download, or --rom-dir elsewhere")
    _print_rows(rows)
    if any(r.status not in ("ok", "missing", "unknown") for r in rows):
        raise typer.Exit(1)


@games_app.command("download")
@user_errors
def games_download(
    dest: Annotated[str | None, typer.Option(help="Target folder (default: the env's game folder)")] = None,
    base_url: Annotated[str | None, typer.Option(help="Where the files are served")] = None,
    names: Annotated[list[str] | None, typer.Argument(help="Games to fetch (default: all)")] = None,
    env: Annotated[str, typer.Option(help="Whose game files: jericho or alfworld")] = "jericho",
) -> None:
    """Fetch the public Jericho game suite and verify md5s; `games download alfworld` (or --env alfworld): ALFWorld's
    official text games into the cache (where env=alfworld env.games=official finds them)."""
    env, wanted = ("alfworld", []) if names == ["alfworld"] else (env, names or [])
    files = _game_files(env)
    folder = files.folder(dest)
    say(console, f"fetching {env}'s game files into {folder}")
    rows = files.download(folder, base_url, wanted)
    _print_rows(rows)
    if any(r.status == "failed" for r in rows):
        raise typer.Exit(1)


@app.command()
@user_errors
def doctor() -> None:
    """What is present or missing (ROMs, model, embedder, chromium, vLLM, GPU, WebArena URLs) and how to fix each."""
    from jitrl_bench.doctor import checks, render

    rows = checks()
    console.print(render(rows))
    missing = [r.part for r in rows if r.required and not r.ok]
    if missing:  # the default run cannot work without these
        raise UserError(f"missing what every run needs: {', '.join(missing)} (see the fix column)")


@app.command()
@user_errors
def serve(
    overrides: Overrides = None,
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one)")] = None,
) -> None:
    """Start a vLLM OpenAI-compatible server for the configured policy's model, print the override to use, and keep
    it up until Ctrl-C. E.g. jitrl-bench serve policy=vllm policy.model=Qwen/Qwen2.5-7B-Instruct"""
    from jitrl_bench.policies.server import KEY_ENV, VLLMServer
    from jitrl_bench.run.spec import load_spec

    wanted = load_spec(list(overrides or [])).policy.serve_spec()
    if wanted is None:
        raise UserError("this policy has no model to serve: pick policy=vllm, policy=hf or policy=openai")
    model = wanted.model
    given_key = os.environ.get(KEY_ENV)  # the user's own key stays unprinted; a random one is printed once, here
    server = VLLMServer(model, port=port, dtype=wanted.dtype, api_key=given_key, enforce_eager=wanted.enforce_eager)
    say(console, f"starting vLLM for {model} ...")
    with server:
        say(console, f"in {server.startup_s:.0f} s: {server.base_url} (log: {server.log_path})", "ready", "green")
        key = "" if given_key else f"{KEY_ENV}={server.api_key} "
        say(console, f"use it with:  {key}jitrl-bench run {server.override()}")
        try:
            while server.process is not None and server.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping the server")
            return
    raise UserError(f"the vLLM server exited; see its log {server.log_path}")


def _print_rows(rows: list[GameFile]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    for col in ("game", "file", "status", "detail"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(escape(str(value)) for value in (r.name, r.file, r.status, r.detail)))
    console.print(table)
