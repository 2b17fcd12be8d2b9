"""Child processes that end with the process that started them, even when it is killed (kill -9, a segfault).

A server started in a session of its own (so that stopping it reaches its whole group) also escapes the signals that
stop its parent; when the parent cannot clean up, Linux's parent-death signal still reaches it."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable

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
