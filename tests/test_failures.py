"""Runs that fail or are stopped, as a user meets them: a run in which no task can run writes its error rows and exits
1 with one line (it once ended in a traceback from the cost table of a run with no episode); SIGTERM while the model
loads or mid-episode exits 143 with one line and keeps every finished episode."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import REPO, rows_of, start

GAMES = Path(os.environ.get("JITRL_BENCH_GAMES") or REPO.parent / "shared" / "jericho-games")
FAST = ["policy=uniform", "run.progress=false", "run.episodes=1", "run.max_steps=3", "run.baselines=[]"]


def jitrl_bench(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "jitrl_bench", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def assert_failed_in_one_line(
    done: subprocess.CompletedProcess[str], run_dir: Path, tasks: set[str], tail: str
) -> None:
    """Exit 1, no traceback, each task's error on one line (ending in `tail`), no table of nothing, one closing line
    on stderr; the error rows written."""
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    shown = [line for line in done.stdout.splitlines() if line.strip()]
    errors = [line for line in shown if line.startswith("error ")]
    assert sorted(line.split(":")[0] for line in errors) == sorted(f"error {task}" for task in tasks), done.stdout
    assert all(line.rstrip().endswith(tail) for line in errors), done.stdout  # each one line, never wrapped
    assert shown[len(errors) :] == [f"report: {run_dir}/report.html", f"run directory: {run_dir}"], done.stdout
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        f"error: no episode was played: every task failed (each error above is recorded in {run_dir}/episodes.jsonl); "
        "fix them and run the same command again"
    ]  # fmt: skip
    assert {(r["task"], r["status"]) for r in rows_of(run_dir)} == {(task, "error") for task in tasks}


@pytest.mark.slow
def test_a_run_whose_only_task_is_an_unknown_game_exits_1_in_one_line(tmp_path: Path) -> None:
    """Mutants: `cost_table` back to a frame without columns when every row is an error (the summary's
    `cost.llm_calls`, then the report's frontier, raise); `write_summary` printing its table of a run with nothing
    played."""
    if not (GAMES / "detective.z5").exists():
        pytest.skip("Jericho game files not found (../shared/jericho-games or $JITRL_BENCH_GAMES)")
    run_dir = tmp_path / "r"
    done = jitrl_bench("run", *FAST, "env=jericho", "env.game=notagame", f"run.dir={run_dir}")
    assert_failed_in_one_line(done, run_dir, {"notagame"}, "shows the supported games)")


@pytest.mark.slow
def test_a_run_of_corrupt_and_truncated_roms_exits_1_in_one_line(tmp_path: Path) -> None:
    """Game files copied from the suite at run time (never committed), one cut short and one overwritten inside.
    Mutant: the runner's error line printed by Rich without `say` (soft wrap off: wrapped at 80 columns)."""
    if not (GAMES / "detective.z5").exists() or not (GAMES / "zork1.z5").exists():
        pytest.skip("Jericho game files not found (../shared/jericho-games or $JITRL_BENCH_GAMES)")
    roms = tmp_path / "roms"
    roms.mkdir()
    (roms / "detective.z5").write_bytes((GAMES / "detective.z5").read_bytes()[:3000])  # truncated
    shutil.copy(GAMES / "zork1.z5", roms / "zork1.z5")
    with open(roms / "zork1.z5", "r+b") as f:  # corrupt: the right size, bytes overwritten past the header
        f.seek(100)
        f.write(b"\xff" * 3900)
    run_dir = tmp_path / "r"
    done = jitrl_bench("run", *FAST, "env=jericho", "env.game=[detective,zork1]", f"env.rom_dir={roms}",
                       f"run.dir={run_dir}")  # fmt: skip
    assert_failed_in_one_line(done, run_dir, {"detective", "zork1"}, "`jitrl-bench games download`")
    assert (run_dir / "report.html").is_file() and (run_dir / "summary.md").is_file()


def stopped(run_dir: Path, when: str, sig: signal.Signals) -> tuple[int, str, int]:
    """The embedded model's run, stopped by `sig` while the model loads (`load`) or once an episode is committed
    and the next is being played (`episode`): exit code, stderr, episodes committed."""
    command = [sys.executable, "-m", "jitrl_bench", "run", "run.progress=false", "run.episodes=3", "run.max_steps=3",
               f"run.dir={run_dir}"]  # fmt: skip
    proc = start(command, ctrl_c=True)
    deadline = time.monotonic() + 600
    if when == "load":  # config.yaml is written before the policy loads (experiment.execute's order)
        while not (run_dir / "config.yaml").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.5)
        assert not rows_of(run_dir), "the signal must land before the first episode"
    else:
        while not rows_of(run_dir) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
    assert proc.poll() is None, "the run ended before the signal"
    committed = len(rows_of(run_dir))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert len(rows_of(run_dir)) >= committed  # every finished episode kept
    return proc.returncode, err, len(rows_of(run_dir))


@pytest.mark.slow
@pytest.mark.parametrize("when", ["load", "episode"])
def test_sigterm_exits_143_in_one_line_and_keeps_finished_episodes(tmp_path: Path, when: str) -> None:
    """Mutant: `user_errors` without its SIGTERM handler (the process dies of the signal: -15, no line, nothing
    cleaned up). The abort seen once after the line (`terminate called without an active exception`) would show as
    -6 and that text on stderr."""
    code, err, committed = stopped(tmp_path / "r", when, signal.SIGTERM)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 143 and lines == [
        "terminated: finished episodes are saved; the same command (same run.dir) resumes"
    ], err
    assert (committed > 0) == (when == "episode")
    assert all(row["status"] == "ok" for row in rows_of(tmp_path / "r"))


@pytest.mark.slow
def test_ctrl_c_mid_episode_exits_130_in_one_line_and_keeps_finished_episodes(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT, as at a terminal) once an episode is committed. Mutant: `user_errors` not catching
    KeyboardInterrupt (a traceback and exit 1)."""
    code, err, committed = stopped(tmp_path / "r", "episode", signal.SIGINT)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 130 and lines == [
        "interrupted: finished episodes are saved; the same command (same run.dir) resumes"
    ]
    assert committed > 0 and all(row["status"] == "ok" for row in rows_of(tmp_path / "r"))
