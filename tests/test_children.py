"""A guarded child (jitrl_bench/children.py) leaves nothing of its process group when it dies, and its starter's
death (kill -9) ends it: checked on real processes, a shell standing in for a server that forks a helper."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.processes import session_processes

STARTER = """
import subprocess, sys, time
from jitrl_bench.children import end_with_parent, guarded
server = subprocess.Popen(guarded(["sh", "-c", "sleep 300 & exec sleep 301"]), start_new_session=True,
                          preexec_fn=end_with_parent())
print(server.pid, flush=True)
time.sleep(300)
"""
"""A starter (the harness) that launches a stand-in server as policies/server.py does, then waits to be killed."""


def _gone(sid: int, timeout_s: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while session_processes(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return session_processes(sid)


def _group_up(sid: int) -> None:
    deadline = time.monotonic() + 20
    while len(session_processes(sid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)  # the guard, the shell's background helper, the server
    assert len(session_processes(sid)) == 3, session_processes(sid)


def test_the_starters_kill_9_ends_the_servers_whole_group(tmp_path: Path) -> None:
    """Mutant tried: without `preexec_fn=end_with_parent()` the three processes are all alive 20 s later."""
    starter = subprocess.Popen([sys.executable, "-c", STARTER], stdout=subprocess.PIPE, text=True)
    assert starter.stdout is not None
    sid = int(starter.stdout.readline())
    _group_up(sid)
    starter.kill()
    starter.wait()
    assert _gone(sid) == []


def test_a_server_that_dies_alone_takes_its_helpers_with_it() -> None:
    """The server (`exec sleep 301`) killed by itself, as vLLM's API server killed while loading: its helper (`sleep
    300`, vLLM's engine core) is ended by the guard, and the guard exits with the server's code, 128 + 9. Mutant
    tried: the guard returning at once after its command (no group clean-up) leaves `sleep 300` running."""
    from jitrl_bench.children import guarded

    guard = subprocess.Popen(guarded(["sh", "-c", "sleep 300 & exec sleep 301"]), start_new_session=True)
    _group_up(guard.pid)
    server = next(int(line.split(":")[0]) for line in session_processes(guard.pid) if "b'sleep\\x00301" in line)
    subprocess.run(["kill", "-9", str(server)], check=True)
    assert guard.wait(20) == 128 + signal.SIGKILL
    assert _gone(guard.pid) == []


FORKER = """
import os, subprocess, sys, time
from jitrl_bench.children import watched
watcher = watched() if sys.argv[1] == "watched" else None
helper = subprocess.Popen(["sh", "-c", "sleep 302 & exec sleep 303"])  # no preexec_fn: a library's own child
print(helper.pid, flush=True)
time.sleep(300)
"""
"""A harness that lets a library fork children it cannot give a death signal (vLLM's engine core), under a watcher."""


def test_a_watched_process_killed_takes_what_it_started_with_it() -> None:
    """kill -9 of the harness: the watcher ends its child and the child's own child, which the kernel would have
    left running. Mutant (the same script without the watcher): both sleeps still run 10 s later."""
    for mode, expected_alive in (("watched", 0), ("unwatched", 2)):
        harness = subprocess.Popen([sys.executable, "-c", FORKER, mode], stdout=subprocess.PIPE, text=True,
                                   start_new_session=True)  # fmt: skip
        assert harness.stdout is not None
        int(harness.stdout.readline())
        deadline = time.monotonic() + 20
        while len([p for p in session_processes(harness.pid) if "sleep" in p]) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the watcher polls every POLL_S: it has seen them
        harness.kill()
        harness.wait()
        left = _gone(harness.pid, timeout_s=10.0)
        assert len([p for p in left if "sleep" in p]) == expected_alive, (mode, left)
        for line in left:  # the unwatched case's leftovers
            subprocess.run(["kill", "-9", line.split(":")[0]], check=False)
