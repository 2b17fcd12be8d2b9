"""`jitrl-bench sweep` on Hydra's submitit launchers: submitit_local runs each point as a job process with a full run
directory and the usual sweep table and report; a failed job, Ctrl-C and a machine without SLURM are one line each."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf
from typer.testing import CliRunner

from jitrl_bench.cli import app
from jitrl_bench.sweep.launchers import launcher_defaults
from tests.processes import rows_of, session_processes, start

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

FAST = ["policy=uniform", "run.progress=false", "run.max_steps=4"]
LOCAL = "hydra/launcher=submitit_local"


def sweep(*args: str) -> subprocess.CompletedProcess[str]:
    proc = start([sys.executable, "-m", "jitrl_bench", "sweep", *args])
    out, err = proc.communicate(timeout=240)
    deadline = time.monotonic() + 10
    while session_processes(proc.pid) and time.monotonic() < deadline:  # children the kernel has yet to reap
        time.sleep(0.2)
    assert session_processes(proc.pid) == [], "the sweep left processes behind"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_submitit_local_runs_a_two_point_sweep(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    done = sweep(LOCAL, *FAST, "agent.beta=0.5,1", "run.episodes=2", f"run.dir={sweep_dir}")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    for num, beta in (("0", 0.5), ("1", 1.0)):
        run = sweep_dir / num
        rows = rows_of(run)
        assert sorted((r["agent"], r["episode"]) for r in rows) == [(a, e) for a in ("jitrl", "static") for e in (0, 1)]
        assert {r["status"] for r in rows} == {"ok"}
        assert OmegaConf.load(run / "config.yaml").agent.beta == beta
    table = pd.read_csv(sweep_dir / "summary.csv")
    assert sorted(table[table.agent == "jitrl"]["agent.beta"]) == [0.5, 1.0]
    assert (table.episodes == 2).all()
    assert (sweep_dir / "report.html").stat().st_size > 1000
    assert f"report: {sweep_dir / 'report.html'}" in done.stdout.replace("\n", "")
    # submitit's own files (its job transport and the jobs' logs) stay inside the sweep, one folder per job
    jobs = sorted(p for p in (sweep_dir / ".submitit").iterdir())
    assert len(jobs) == 2 and all(p.name.isdigit() for p in jobs), jobs
    for job in jobs:
        assert "Job completed successfully" in (job / f"{job.name}_0_log.out").read_text()
    # the laptop defaults: no one-hour cut, the cores split between the jobs at once
    launcher = OmegaConf.load(sweep_dir / "0" / ".hydra" / "hydra.yaml").hydra.launcher
    assert launcher.timeout_min == 7 * 24 * 60 and launcher.cpus_per_task >= 1


@pytest.mark.slow  # Ray: not in `make test-fast`
def test_each_point_of_a_sweep_can_play_its_episodes_on_ray(tmp_path: Path) -> None:
    """`run.executor=ray` per job: each point starts its own Ray instance, plays, and stops it before the next."""
    pytest.importorskip("ray")
    sweep_dir = tmp_path / "sweep"
    done = sweep(*FAST, "agent.beta=0.5,1", "run.episodes=1", "run.executor=ray", "run.ray.workers=1",
                 f"run.dir={sweep_dir}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    for num in ("0", "1"):
        rows = rows_of(sweep_dir / num)
        assert sorted(r["agent"] for r in rows) == ["jitrl", "static"] and {r["status"] for r in rows} == {"ok"}
        assert OmegaConf.load(sweep_dir / num / "config.yaml").run.executor == "ray"
    table = pd.read_csv(sweep_dir / "summary.csv")
    assert sorted(table[table.agent == "jitrl"]["agent.beta"]) == [0.5, 1.0]


def test_a_failed_job_is_one_line_naming_the_job_and_its_log(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    (sweep_dir / "0").mkdir(parents=True)
    (sweep_dir / "0" / "notes.txt").write_text("not a run\n")  # job 0 must refuse this folder
    done = sweep(
        LOCAL, *FAST, "agent.beta=0.5,1", "run.episodes=1", "hydra.sweeper.max_batch_size=1", f"run.dir={sweep_dir}"
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error: sweep job 0 (agent.beta=0.5) failed: run.dir ") and "is not empty" in lines[0]
    log = Path(lines[0].rsplit("; log: ", 1)[1])
    assert log.parent.parent == sweep_dir / ".submitit" and "is not empty" in log.read_text()


def test_ctrl_c_stops_every_job_process(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = [LOCAL, *FAST, "agent.beta=0.5,1", "run.episodes=500", "hydra.sweeper.max_batch_size=2"]
    proc = start([sys.executable, "-m", "jitrl_bench", "sweep", *args, f"run.dir={sweep_dir}"])
    deadline = time.monotonic() + 120
    while not rows_of(sweep_dir / "0") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rows_of(sweep_dir / "0"), f"job 0 played no episode (exit {proc.poll()})"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted: finished episodes are saved" in err and "Traceback" not in err, err
    deadline = time.monotonic() + 10
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert session_processes(proc.pid) == [], "Ctrl-C left submitit processes behind"
    assert 0 < len(rows_of(sweep_dir / "0")) < 1000  # stopped in the middle; what finished is kept


def test_submitit_slurm_without_sbatch_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["sweep", "hydra/launcher=submitit_slurm", *FAST, f"run.dir={tmp_path / 's'}"])
    assert result.exit_code == 2, result.output
    assert "submitit_slurm needs SLURM's sbatch and srun on PATH (not found: sbatch, srun)" in result.output
    assert not (tmp_path / "s").exists()  # refused before anything was made


def test_submitit_slurm_hands_the_jobs_to_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in sbatch records what it was given and refuses it, as SLURM does with a bad partition."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        '#!/bin/sh\necho "$@" >> "$(dirname "$0")/calls"\ncp "$1" "$(dirname "$0")/script"\n'
        'echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2\nexit 1\n'
    )
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # only run inside the batch script, on the cluster
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod((bin_dir / tool).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    sweep_dir = tmp_path / "sweep"
    args = ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=nope", "hydra.launcher.gpus_per_node=1"]
    result = CliRunner().invoke(app, ["sweep", *args, *FAST, "agent.beta=0.5,1", f"run.dir={sweep_dir}"])
    assert result.exit_code == 2, result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("error: SLURM refused the sweep's jobs: Batch job submission failed: Invalid partition")
    assert "Traceback" not in result.output
    calls = (bin_dir / "calls").read_text().split()
    assert len(calls) == 1 and Path(calls[0]).parent == sweep_dir / ".submitit"  # one job array, from the sweep
    script = (bin_dir / "script").read_text()
    for line in ("--array=0-1", "--partition=nope", "--gpus-per-node=1", "--job-name=jitrl-bench-sweep"):
        assert line in script, script
    assert f"--output={sweep_dir}/.submitit/" in script and "submitit.core._submit" in script


def test_launcher_defaults_fill_only_what_the_user_left_unset() -> None:
    mine = ["hydra.launcher.timeout_min=30", "hydra.launcher.cpus_per_task=3", "hydra.sweeper.max_batch_size=2"]
    assert launcher_defaults("submitit_local", mine, 6, "s")[0] == []
    defaults = launcher_defaults("submitit_local", [], 64, "s")[0]
    assert f"hydra.launcher.timeout_min={7 * 24 * 60}" in defaults
    assert any(d.startswith("hydra.launcher.cpus_per_task=") for d in defaults)
    assert any(d.startswith("hydra.sweeper.max_batch_size=") for d in defaults)  # 64 jobs never start at once
    assert launcher_defaults("submitit_slurm", [], 2, "my sweep")[0] == ["hydra.launcher.name=jitrl-bench-my_sweep"]
    assert launcher_defaults("submitit_slurm", ["hydra.launcher.name=x"], 2, "s")[0] == []
    assert launcher_defaults("basic", [], 2, "s")[0] == launcher_defaults("joblib", [], 2, "s")[0] == []


def test_a_job_of_several_tasks_is_refused(tmp_path: Path) -> None:
    args = ["sweep", LOCAL, "hydra.launcher.tasks_per_node=2", *FAST, f"run.dir={tmp_path / 's'}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "tasks_per_node=2: a sweep job is one run, one process" in result.output
    assert not (tmp_path / "s").exists()
