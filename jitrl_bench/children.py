"""Child processes that end with the process that started them, even when it is killed (kill -9, a segfault).

A server started in a session of its own (so that stopping it reaches its whole group) also escapes the signals that
stop its parent; when the parent cannot clean up, Linux's parent-death signal still reaches the guard it runs under,
and the guard ends the server's whole group. Children a library forks itself (vLLM's engine core), which no
`preexec_fn` reaches, get a watcher instead (`watched`): a small process that ends them once their starter is gone."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

PR_SET_PDEATHSIG = 1
"""prctl(2): the signal the calling process gets when its parent thread ends."""


def end_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen` that makes the child receive `sig` when this process dies, or None where
    that cannot be promised: off Linux, and off the main thread (the signal follows the thread that forked, and a
    worker thread can end while the process, and its server, live on)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child runs only the call below
    parent = os.getpid()

    def in_child() -> None:
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the call: nobody would send the signal
            os._exit(1)

    return in_child


PR_SET_CHILD_SUBREAPER = 36
"""prctl(2): orphans of this process's descendants are reparented to it, so it can reap them."""
GRACE_S = 30.0
"""How long what is left of the group has between SIGTERM and SIGKILL."""


def guarded(command: Sequence[str]) -> list[str]:
    """`command` run under `main` below (on Linux), for a server started in a session of its own: the server alone
    may die of a signal and leave its own children running (vLLM's engine core outlived its API server killed while
    loading); the guard then ends the whole group."""
    if not sys.platform.startswith("linux"):
        return list(command)
    return [sys.executable, "-m", "jitrl_bench.children", *command]


def main(command: list[str]) -> int:
    """`python -m jitrl_bench.children COMMAND...`: run COMMAND in this process group; pass on SIGTERM, SIGINT and
    SIGHUP; when COMMAND ends, end every process left in the group (SIGTERM, SIGKILL after `GRACE_S`). Exits with
    COMMAND's code (128 + the signal that ended it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    child = subprocess.Popen(command)

    def pass_on(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, pass_on)
    code = child.wait()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + (GRACE_S if sig == signal.SIGTERM else 5.0)
        for pid in _left_in_group():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        while _left_in_group() and time.monotonic() < deadline:
            time.sleep(0.1)
    return code if code >= 0 else 128 - code


def _left_in_group() -> list[int]:
    """The other live processes of this process group, after reaping the orphans handed to this subreaper."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    group, me, found = os.getpgid(0), os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry)) == group and not _zombie(int(entry)):
                    found.append(int(entry))
    return found


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"


WATCH_FLAG = "--end-with"
POLL_S = 0.5


def watched() -> subprocess.Popen[bytes] | None:
    """Start a watcher of this process (`watch`): when this process dies, even by kill -9, the watcher ends what it
    had started. None off Linux. The caller kills the watcher once it has stopped its children itself."""
    if not sys.platform.startswith("linux"):
        return None
    command = [sys.executable, "-m", "jitrl_bench.children", WATCH_FLAG, str(os.getpid())]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True)


def watch(parent: int) -> int:
    """`python -m jitrl_bench.children --end-with PARENT`: every `POLL_S`, note PARENT's descendants; once PARENT is
    gone (this watcher is handed to another parent), end those still alive and all they started (SIGTERM, SIGKILL
    after `GRACE_S`). A process PARENT started less than `POLL_S` before it died is missed. Ctrl-C and SIGTERM are
    PARENT's to handle: ignored here."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    me, seen = os.getpid(), {}
    while os.getppid() == parent:
        seen = {pid: _started_at(pid) for pid in _descendants([parent]) if pid not in (parent, me)}
        time.sleep(POLL_S)
    _end([pid for pid, start in seen.items() if start and _started_at(pid) == start])
    return 0


def _end(roots: list[int]) -> None:
    tree = _descendants(roots)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (GRACE_S if sig == signal.SIGTERM else 5.0)
        while any(_started_at(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.1)


def _descendants(roots: list[int]) -> list[int]:
    """`roots` and every live process below them (by parent pid, read from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError):
            if entry.isdigit():
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(b")", 1)[1].split()[1])
    found, frontier = list(roots), list(roots)
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in found]
        found += frontier
    return found


def _started_at(pid: int) -> str:
    """The process's start time (clock ticks since boot), "" when it is gone or a zombie: a pid and its start time
    name one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return ""
    return "" if fields[0] == b"Z" else fields[19].decode()


if __name__ == "__main__":
    if sys.argv[1:2] == [WATCH_FLAG]:
        sys.exit(watch(int(sys.argv[2])))
    sys.exit(main(sys.argv[1:]))
