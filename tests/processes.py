"""Helpers for tests that start `jitrl-bench` as a user would and stop it with a signal."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TAG_VARIABLE = "JITRL_BENCH_TEST_SUITE"
SUITE_TAG = f"{os.getpid()}-{uuid.uuid4().hex}"
os.environ[TAG_VARIABLE] = SUITE_TAG  # inherited by everything the suite starts, directly or through a server or Ray


_started: list[subprocess.Popen[str]] = []


def as_at_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell (CI) starts children with Ctrl-C ignored


def start(command: list[str], ctrl_c: bool = False) -> subprocess.Popen[str]:
    """In a session of its own: afterwards, every process it started can be found by the session id. A session of its
    own also escapes the signal that stops the suite, so the suite kills what is left of it when it exits.
    `ctrl_c`: SIGINT acts as at a terminal even where the suite itself runs with it ignored."""
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=as_at_a_terminal if ctrl_c else None,
    )
    _started.append(proc)
    return proc


@atexit.register
def _kill_leftovers() -> None:
    """What a stopped test left running: the sessions of the commands it started, then any process still carrying the
    suite's tag (a vLLM server runs in a session of its own, so a killed command's server is not in its session)."""
    for proc in _started:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    for pid in suite_processes("") - {os.getpid()}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def rows_of(run_dir: Path) -> list[dict]:
    path = run_dir / "episodes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def session_processes(sid: int) -> list[str]:
    """Live (not zombie) processes of a session, with their command lines."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()[:120]
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(f"{stat.parent.name}: {command!r}")
    return found


def processes_with(env_entry: str, marker: str = "") -> set[int]:
    """Live processes whose environment holds `env_entry` ("NAME=value") and whose command line contains `marker`."""
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() not in (proc / "cmdline").read_bytes():
                continue
            if env_entry.encode() + b"\0" not in (proc / "environ").read_bytes() + b"\0":
                continue
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.add(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def suite_processes(marker: str) -> set[int]:
    """Live processes this suite started (they inherit its tag), whose command line contains `marker`.

    Leftover checks look only here, never machine-wide: a benchmark or another suite running beside this one has its
    own servers and Ray workers, and must neither fail these tests nor be counted as theirs."""
    return processes_with(f"{TAG_VARIABLE}={SUITE_TAG}", marker)


def stop_processes(env_entry: str, grace_s: float = 10.0) -> None:
    """SIGTERM every process holding `env_entry`, then SIGKILL what is left after `grace_s` (e.g. one Ray head's)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_with(env_entry):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while processes_with(env_entry) and time.monotonic() < deadline:
            time.sleep(0.2)


def vllm_servers() -> set[int]:
    """vLLM servers this suite started that are alive now (a server runs in a session of its own)."""
    return suite_processes("vllm.entrypoints.openai.api_server")


def terminate_after_first_episode(proc: subprocess.Popen[str], run_dir: Path, timeout_s: float = 600) -> str:
    """SIGTERM once an episode is committed; return stderr. The process and everything in its session must be gone."""
    deadline = time.monotonic() + timeout_s
    while not rows_of(run_dir) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rows_of(run_dir), f"no episode finished (exit {proc.poll()})"
    return terminate(proc)


def terminate(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated: finished episodes are saved" in err and "Traceback" not in err
    deadline = time.monotonic() + 10
    while session_processes(proc.pid) and time.monotonic() < deadline:  # children the kernel has yet to reap
        time.sleep(0.2)
    assert session_processes(proc.pid) == [], "SIGTERM left processes behind"
    return err
