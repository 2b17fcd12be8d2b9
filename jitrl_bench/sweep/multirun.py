"""`jitrl-bench sweep`: Hydra's own multirun (its sweeper and launchers: basic, joblib, submitit_local, submitit_slurm)
over our run function, then one aggregated table. Every combination is composed and validated before the first job
starts; each job is a full run directory, <sweep>/<job num>/. A job that fails is one line: which job, why, where its
log is. On the submitit launchers, see `launchers.py` beside this file (and why its pickles are submitit's job
transport only).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from jitrl_bench.config import baselines_of, compose_config
from jitrl_bench.errors import UserError
from jitrl_bench.paths import CONFIG_DIR, results_dir
from jitrl_bench.results.report import write_report
from jitrl_bench.results.tables import INTERVALS, aggregate, rich_table, summary_shown, to_markdown
from jitrl_bench.run.protocols import part_dirs
from jitrl_bench.run.repeats import replica_dirs
from jitrl_bench.run.rundir import make_writable_dir
from jitrl_bench.run.spec import build_spec
from jitrl_bench.sweep import launchers
from jitrl_bench.terminal import plain, say


def combinations(overrides: list[str]) -> list[list[str]]:
    """Expand comma lists / range() sweeps into the runs Hydra's basic sweeper will launch (hydra.* left out)."""
    science = [o for o in overrides if not o.startswith(("hydra.", "hydra/"))]
    try:
        parsed = OverridesParser.create().parse_overrides(science)
    except Exception as e:  # hydra raises OverrideParseException with a multi-line message
        raise UserError(f"cannot parse overrides: {str(e).splitlines()[0]}") from None
    axes = []
    for o in parsed:
        key = o.get_key_element()
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        axes.append([f"{key}={v}" for v in values])
    return [list(combo) for combo in itertools.product(*axes)]


class SweepJobError(Exception):
    """A job that failed: its number, its overrides, the reason (one line) and its log. Raised in the job (for
    submitit, in the job's process: it reaches the sweep inside submitit's result file, so it holds only strings and a
    number, never run data)."""

    def __init__(self, num: int, overrides: list[str], reason: str, log: str | None) -> None:
        super().__init__(num, overrides, reason, log)
        self.num, self.overrides, self.reason, self.log = num, overrides, reason, log

    def __str__(self) -> str:
        return f"job {self.num} failed: {self.reason}"


def run_sweep(overrides: list[str], console: Console) -> Path:
    launcher = launchers.launcher_of(overrides)
    launchers.check_launcher(
        launcher, overrides
    )  # e.g. submitit_slurm without sbatch: one line before anything is composed
    combos = combinations(overrides)
    baselines = set()
    for combo in combos:
        build_spec(compose_config(combo))  # fail fast, before any job, on any bad combination
        baselines.add(tuple(baselines_of(combo)))
    if len(baselines) > 1:
        raise UserError("run.baselines (and agent) must give the same baselines in every run of a sweep")
    sweep_dir = _sweep_dir(overrides)
    make_writable_dir(sweep_dir, "run.dir")
    defaults, how = launchers.launcher_defaults(launcher, overrides, len(combos), sweep_dir.name)
    say(console, f"sweep: {len(combos)} runs → {sweep_dir}" + (f" ({how})" if launcher in launchers.SUBMITIT else ""))
    argv = [
        "jitrl-bench",
        "--multirun",
        f"hydra.sweep.dir={sweep_dir}",
        "hydra.sweep.subdir=${hydra.job.num}",
        "hydra.job.chdir=false",
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
        *baselines.pop(),  # each job composes its baseline agents as `jitrl-bench run` does
        *defaults,  # the launcher's defaults that the user did not set
        *[o for o in overrides if not o.startswith("run.dir=")],
    ]
    swept = _swept_keys(combos)

    def job_name(num: int, job_overrides: list[str]) -> str:
        values = " ".join(o for o in job_overrides if o.lstrip("+~").partition("=")[0] in swept)
        return f"sweep job {num}" + (f" ({values})" if values else "")

    saved, sys.argv = sys.argv, argv
    held = _HeldStderr(hold=launcher in launchers.SUBMITIT)
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        interrupted.set()
        signal.default_int_handler(signum, frame)

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main else None
    try:
        with _hydra_raises(held), launchers.job_environment(launcher):
            _hydra_entry()
    except SystemExit as e:  # hydra exits on its own errors (e.g. bad command-line arguments)
        held.release()
        if e.code not in (0, None):
            raise UserError(f"hydra multirun failed (exit {e.code}); check the hydra/* overrides") from None
    except BaseException as e:
        if launcher == "submitit_local":
            launchers.stop_local_jobs()  # Ctrl-C, SIGTERM, a failed job: no job process outlives the sweep
        if interrupted.is_set() and not isinstance(e, KeyboardInterrupt):
            held.drop()  # Ctrl-C reached a job first: its stop is the interruption, not a failed job
            raise KeyboardInterrupt from None
        elif launcher == "submitit_slurm" and isinstance(e, KeyboardInterrupt):
            name = launchers.value_of([*defaults, *overrides], "hydra.launcher.name")
            console.print(f"the sweep's SLURM jobs go on; `scancel --name={name}` stops them")
        if isinstance(e, SweepJobError):
            held.drop()
            log = f"; log: {e.log}" if e.log else ""
            raise UserError(f"{job_name(e.num, e.overrides)} failed: {e.reason}{log}") from None
        if _is_submitit_error(e):
            held.drop()
            raise UserError(launchers.submitit_failure(e, sweep_dir, job_name)) from None
        held.release()
        if isinstance(e, HydraException):
            message = _joined_lines(str(e).split("Config search path")[0])  # the search path is Hydra's detail
            raise UserError(f"hydra multirun failed: {message}") from None
        raise
    finally:
        sys.argv = saved
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        launchers.remove_empty_placeholder(sweep_dir)
    held.release()
    runs = expand_runs([sweep_dir])
    frame = aggregate(runs)
    frame.to_csv(sweep_dir / "summary.csv", index=False)
    (sweep_dir / "summary.md").write_text(to_markdown(summary_shown(frame)) + f"\n\n_{INTERVALS}_\n")
    console.print(rich_table(summary_shown(frame), title=f"sweep {sweep_dir.name}: {len(runs)} runs", note=INTERVALS))
    say(console, f"report: {write_report(runs, sweep_dir / 'report.html')}")
    return sweep_dir


def sweep_job(cfg: DictConfig) -> None:
    """One multirun job: the composed config, run in Hydra's job directory. A failure leaves as a SweepJobError (one
    line for the sweep); its traceback, for a failure that is not bad input, goes to the job's stderr (its log)."""
    from jitrl_bench.experiment import execute

    hydra_cfg = HydraConfig.get()
    OmegaConf.set_struct(cfg, False)
    cfg.run.dir = hydra_cfg.runtime.output_dir
    cfg.run.progress = False
    log = launchers.prepare_job(hydra_cfg.launcher)
    try:
        execute(build_spec(cfg), console=Console(quiet=True))
    except Exception as e:
        if isinstance(e, UserError):
            if log is not None:
                print(f"error: {plain(str(e))}", file=sys.stderr, flush=True)
            reason = _joined_lines(str(e))
        else:
            traceback.print_exc()
            reason = f"{type(e).__name__}: {_joined_lines(str(e))}"
        run_log = Path(cfg.run.dir) / "run.log"
        where = str(log) if log is not None else str(run_log) if run_log.exists() else None
        raise SweepJobError(int(hydra_cfg.job.num), list(hydra_cfg.overrides.task), reason, where) from None


_hydra_entry = hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=None)(sweep_job)


def expand_runs(paths: list[Path]) -> list[Path]:
    """Run directories under the given paths: a run (has episodes.jsonl, or replicas: run.repeats) or a sweep (runs
    inside)."""
    runs: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise UserError(f"{path}: no such run directory")
        if (path / "episodes.jsonl").exists() or replica_dirs(path) or part_dirs(path):  # a run with sub-runs too
            runs.append(path)
            continue
        inner = sorted((p for p in path.iterdir() if (p / "episodes.jsonl").exists()), key=_natural)
        if not inner:
            raise UserError(f"{path}: neither a run directory (episodes.jsonl) nor a sweep of runs")
        runs.extend(inner)
    return runs


def _sweep_dir(overrides: list[str]) -> Path:
    for o in overrides:
        if o.startswith("run.dir="):
            return Path(o.split("=", 1)[1]).resolve()
    return results_dir("sweeps", time.strftime("%Y%m%d-%H%M%S")).resolve()


def _swept_keys(combos: list[list[str]]) -> set[str]:
    """The keys whose value differs between the runs, e.g. {"agent.beta", "agent.k"}."""
    values: dict[str, set[str]] = {}
    for combo in combos:
        for override in combo:
            key, _, value = override.partition("=")
            values.setdefault(key.lstrip("+~"), set()).add(value)
    return {key for key, seen in values.items() if len(seen) > 1}


def _joined_lines(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip()) or "(no message)"


def _is_submitit_error(error: BaseException) -> bool:
    """submitit's UncompletedJobError (or FailedJobError): a job ended without an outcome, or sbatch refused."""
    try:
        from submitit.core.utils import UncompletedJobError
    except ImportError:  # no cluster extra: no submitit job either
        return False
    return isinstance(error, UncompletedJobError)


@contextlib.contextmanager
def _hydra_raises(held: _HeldStderr) -> Iterator[None]:
    """Hydra prints an exception with its traceback and exits 1, unless HYDRA_FULL_ERROR=1: then it raises it, and the
    sweep says in one line what failed (see `_HeldStderr` for what else is written to stderr meanwhile)."""
    saved_env, saved_stderr = os.environ.get("HYDRA_FULL_ERROR"), sys.stderr
    os.environ["HYDRA_FULL_ERROR"] = "1"
    held.stream = saved_stderr
    sys.stderr = held
    try:
        yield
    finally:
        sys.stderr = saved_stderr
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_env


class _HeldStderr:
    """A stand-in for sys.stderr. Hydra's own line for a failed job ("Error executing job with overrides") is dropped:
    the sweep's line names the job. With `hold` (submitit launchers: the jobs are other processes, so what is written
    here comes from Hydra or submitit, e.g. sbatch's refusal) the rest is kept until `release` or `drop`; without it
    (basic, joblib: jobs in this process, whose messages and tracebacks must show as they come) it goes straight on."""

    def __init__(self, hold: bool) -> None:
        self.hold = hold
        self.stream: TextIO = sys.stderr
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        if text.startswith("Error executing job with overrides"):
            return len(text)
        if not self.hold:
            return self.stream.write(text)
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        if not self.hold:
            self.stream.flush()

    def release(self) -> None:
        text, self.parts = "".join(self.parts), []
        if text:
            self.stream.write(text)
            self.stream.flush()

    def drop(self) -> None:
        self.parts = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _natural(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, path.name)
