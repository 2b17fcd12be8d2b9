"""`jitrl-bench sweep` on Hydra's submitit launchers: hydra/launcher=submitit_local (jobs as processes on this machine)
and hydra/launcher=submitit_slurm (jobs submitted with sbatch). Each job is a full run directory, <sweep>/<job num>/,
exactly as with the basic launcher; submitit's own files go to <sweep>/.submitit/<job id>/.

Pickles: submitit moves each job's call (Hydra's launcher, its config loader and our job function) to the job process,
and the job's outcome back, as pickle files in that .submitit folder: they are the launcher's job transport between our
own processes on a shared filesystem. No run data goes through them: a job returns None, or a `SweepJobError` that
holds a message; episodes, memories and summaries are written as JSON Lines, CSV and YAML in the run directory, and the
sweep's table and report are made from those files only. Nothing here pickles or unpickles anything itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from omegaconf import DictConfig, OmegaConf

from jitrl_bench.errors import UserError
from jitrl_bench.machine import usable_cores

SUBMITIT = ("submitit_local", "submitit_slurm")
LOCAL_TIMEOUT_MIN = 7 * 24 * 60
"""submitit_local's default per-job limit: a week. The plugin's 60 minutes would cut a laptop run after an hour."""
LOCAL_AT_ONCE = 4
"""submitit_local's default batch at most: four jobs at once, each with its own policy, embedder and memory."""
GPUS_ENV = "JITRL_BENCH_SWEEP_CUDA_VISIBLE_DEVICES"
"""The GPUs the sweep command sees, for its submitit_local jobs (submitit hides every GPU unless gpus_per_node)."""
ALL_GPUS = "<unset>"


def launcher_of(overrides: list[str]) -> str:
    """The Hydra launcher the overrides choose (the last `hydra/launcher=` wins); basic when none."""
    chosen = "basic"
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "hydra/launcher":
            chosen = value
    return chosen


def given(overrides: list[str], key: str) -> bool:
    """Whether the user set `key` (plain, + or ++ override)."""
    return any(o.lstrip("+~").partition("=")[0] == key for o in overrides)


def check_launcher(launcher: str, overrides: list[str]) -> None:
    """Refuse, before anything is composed or loaded, a submitit launcher this machine cannot use, or jobs of several
    tasks (each task would play the same run directory: a run is one process)."""
    if launcher not in SUBMITIT:
        return
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        raise UserError(f"hydra/launcher={launcher} needs Hydra's submitit launcher: pip install '.[cluster]'")
    for key in ("hydra.launcher.tasks_per_node", "hydra.launcher.nodes"):
        if (_int_value(overrides, key) or 1) > 1:
            raise UserError(f"{key}={value_of(overrides, key)}: a sweep job is one run, one process: leave it at 1")
    if launcher == "submitit_slurm":
        missing = [command for command in ("sbatch", "srun") if shutil.which(command) is None]
        if missing:
            raise UserError(
                "hydra/launcher=submitit_slurm needs SLURM's sbatch and srun on PATH "
                f"(not found: {', '.join(missing)}): run the sweep on a SLURM login node, "
                "or use hydra/launcher=submitit_local here"
            )


def launcher_defaults(launcher: str, overrides: list[str], runs: int, sweep_name: str) -> tuple[list[str], str]:
    """Hydra overrides that fit the chosen submitit launcher, each only where the user did not set that key; and a
    few words for the sweep's first line.

    submitit_local (a laptop or one workstation): jobs in batches of half the cores, at most 4
    (hydra.sweeper.max_batch_size; submitit_local itself would start them all at once, each loading its own model),
    each job's torch threads the cores split between them (hydra.launcher.cpus_per_task, applied in the job), and no
    per-job time limit to speak of (a week; the plugin's 60 minutes would cut a real run).

    submitit_slurm: the jobs are named jitrl-bench-<sweep>, so `scancel --name` finds them; the partition, GPUs, time
    and memory are the cluster's to set (hydra.launcher.partition=... timeout_min=...).
    """
    defaults: list[str] = []
    if launcher == "submitit_local":
        cores = len(usable_cores())
        at_once = min(runs, max(1, min(LOCAL_AT_ONCE, cores // 2)))
        batch = _int_value(overrides, "hydra.sweeper.max_batch_size")
        if batch is not None:
            at_once = max(1, min(runs, batch))
        elif at_once < runs and not given(overrides, "hydra/sweeper"):
            defaults.append(f"hydra.sweeper.max_batch_size={at_once}")
        cpus = _int_value(overrides, "hydra.launcher.cpus_per_task")
        if cpus is None:
            cpus = max(1, cores // at_once)
            defaults.append(f"hydra.launcher.cpus_per_task={cpus}")
        if not given(overrides, "hydra.launcher.timeout_min"):
            defaults.append(f"hydra.launcher.timeout_min={LOCAL_TIMEOUT_MIN}")
        return defaults, f"submitit_local, {at_once} at a time, {cpus} CPU(s) each"
    if launcher == "submitit_slurm":
        name = value_of(overrides, "hydra.launcher.name")
        if name is None:
            name = "jitrl-bench-" + re.sub(r"[^A-Za-z0-9_.-]", "_", sweep_name)
            defaults.append(f"hydra.launcher.name={name}")
        return defaults, f"submitit_slurm, job name {name}"
    return defaults, launcher


def value_of(overrides: list[str], key: str) -> str | None:
    """The value the overrides give `key` (the last one wins), or None."""
    value = None
    for override in overrides:
        name, _, text = override.lstrip("+~").partition("=")
        if name == key:
            value = text
    return value


def _int_value(overrides: list[str], key: str) -> int | None:
    text = value_of(overrides, key)
    return int(text) if text is not None and text.strip().isdigit() else None


@contextlib.contextmanager
def job_environment(launcher: str) -> Iterator[None]:
    """While the sweep launches on submitit_local: the GPUs this command sees, for the jobs to see too (`prepare_job`);
    and each job's controller process (submitit's `python -m submitit.local._local`, our child, in the terminal's
    process group) starts with Ctrl-C ignored, a disposition a new process keeps. Without that, Ctrl-C makes every
    controller print a KeyboardInterrupt traceback on the terminal and SIGKILL its job one second later, cutting the
    job's clean stop. The job itself takes SIGINT again (`prepare_job`), so Ctrl-C still stops it, cleanly."""
    if launcher != "submitit_local":
        yield
        return
    saved = os.environ.get(GPUS_ENV)
    os.environ[GPUS_ENV] = os.environ.get("CUDA_VISIBLE_DEVICES", ALL_GPUS)
    from submitit.local import local as submitit_local

    original: Any = submitit_local.start_controller  # pinned submitit 1.5.4 (requirements/main.lock)
    wrap = threading.current_thread() is threading.main_thread()
    if wrap:

        def start_controller(*args: Any, **kwargs: Any) -> Any:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                return original(*args, **kwargs)
            finally:
                signal.signal(signal.SIGINT, previous)

        submitit_local.start_controller = start_controller
    try:
        yield
    finally:
        if wrap:
            submitit_local.start_controller = original
        if saved is None:
            os.environ.pop(GPUS_ENV, None)
        else:
            os.environ[GPUS_ENV] = saved


def prepare_job(launcher: DictConfig | None) -> Path | None:
    """In a submitit job, before anything loads: torch threads = hydra.launcher.cpus_per_task; a submitit_local job
    without hydra.launcher.gpus_per_node sees the GPUs the sweep command saw (submitit would hide them all). Returns
    the job's stderr log (None outside submitit)."""
    executor = os.environ.get("SUBMITIT_EXECUTOR")
    if not executor:
        return None
    settings: dict[str, Any] = {}
    if launcher is not None:
        settings = dict(OmegaConf.to_container(launcher, resolve=False))  # type: ignore[arg-type]
    cpus = settings.get("cpus_per_task")
    if isinstance(cpus, int) and cpus > 0:
        import torch

        torch.set_num_threads(cpus)
    if executor == "local":
        signal.signal(signal.SIGINT, _interrupt_once)  # its controller ignores Ctrl-C; the job stops on it
    if executor == "local" and settings.get("gpus_per_node") is None and GPUS_ENV in os.environ:
        visible = os.environ.pop(GPUS_ENV)
        if visible == ALL_GPUS:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible
    import submitit

    return Path(submitit.JobEnvironment().paths.stderr)


def _interrupt_once(signum: int, frame: FrameType | None) -> None:
    """SIGINT in a submitit_local job: KeyboardInterrupt, the clean stop of `jitrl-bench run`; one more SIGINT (the
    terminal's Ctrl-C and then the sweep's, see `stop_local_jobs`) would cut that stop short, so it is ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def stop_local_jobs(grace_s: float = 30.0) -> None:
    """Stop the submitit_local jobs this process started (Ctrl-C, SIGTERM, or a job that failed while others run).

    Each job is a controller process (`python -m submitit.local._local`, our child) and its task (the job itself).
    The tasks get SIGINT, the same clean stop as Ctrl-C on `jitrl-bench run` (finished episodes stay saved, the same
    sweep resumes them), and `grace_s` to finish; their controllers then end by themselves. Whatever is left is
    killed. Only our own descendants are touched, found by process id.
    """
    try:
        import psutil
    except ImportError:  # psutil comes with accelerate; without it, submitit's own clean-up is all there is
        return
    me = psutil.Process()
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        controllers = [p for p in _children(me) if "submitit.local._local" in _cmdline(p)]
        if not controllers:
            return
        for task in (t for c in controllers for t in _children(c)):  # again each second: a job still starting
            with contextlib.suppress(psutil.Error):  # (imports, before `prepare_job`) does not hear it yet
                task.send_signal(signal.SIGINT)
        psutil.wait_procs(controllers, timeout=1.0)
    for controller in (p for p in _children(me) if "submitit.local._local" in _cmdline(p)):
        for process in [*_children(controller, recursive=True), controller]:
            with contextlib.suppress(psutil.Error):
                process.kill()
        with contextlib.suppress(psutil.Error):
            controller.wait(5)


def _children(process: Any, recursive: bool = False) -> list[Any]:
    import psutil

    try:
        return list(process.children(recursive=recursive))
    except psutil.Error:
        return []


def _cmdline(process: Any) -> str:
    import psutil

    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def submitit_failure(error: BaseException, sweep_dir: Path, job_name: Callable[[int, list[str]], str]) -> str:
    """One line for a submitit job that ended without an outcome (killed, out of memory, out of time) or a submission
    that SLURM refused: which job (`job_name(num, overrides)`), what happened, where its log is."""
    cause = error.__cause__
    command = cause.cmd if isinstance(cause, subprocess.CalledProcessError) else None
    if isinstance(command, list | tuple) and command and command[0] == "sbatch":
        said = re.sub(r"^sbatch: (error: )?", "", _last_line(str(error)))
        code = cause.returncode if isinstance(cause, subprocess.CalledProcessError) else "?"
        return f"SLURM refused the sweep's jobs: {said or 'no message'} (sbatch exit {code}; script {command[-1]})"
    text = str(error)
    found = re.search(r"Job (\S+) \(task", text) or re.search(r"/([^/\s]+)_\d+_log\.(?:err|out)", text)
    job_id = found.group(1) if found else None
    job = _hydra_job(sweep_dir, job_id) if job_id else None
    which = job_name(*job) if job else f"submitit job {job_id or '?'}"
    if "has not produced any output" in text:
        reason = "its process ended without a result (killed? out of memory?)"
    else:  # the job's own error, between submitit's dashed lines: its last line
        parts = text.split("-" * 22)
        reason = _last_line(parts[1] if len(parts) > 2 else text)
    logs = sorted((sweep_dir / ".submitit").glob(f"{job_id}/*_log.err")) if job_id else []
    logs = [log for log in logs if log.stat().st_size] or logs
    where = f"; log: {logs[0]}" if logs else f"; logs in {sweep_dir / '.submitit'}"
    return f"{which} did not finish: {reason}{where}"


def _hydra_job(sweep_dir: Path, job_id: str) -> tuple[int, list[str]] | None:
    """Our job number and overrides for a submitit job id, from the job's .hydra/hydra.yaml (hydra.job.id)."""
    for hydra_yaml in sweep_dir.glob("*/.hydra/hydra.yaml"):
        with contextlib.suppress(Exception):
            hydra = OmegaConf.load(hydra_yaml).hydra
            if str(hydra.job.id) == job_id:
                return int(hydra.job.num), [str(o) for o in hydra.overrides.task]
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def remove_empty_placeholder(sweep_dir: Path) -> None:
    """submitit_local's controller creates the folder pattern itself (<sweep>/.submitit/%j), empty: remove it."""
    with contextlib.suppress(OSError):
        (sweep_dir / ".submitit" / "%j").rmdir()
