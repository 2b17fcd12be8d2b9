"""What this machine lets the process use (its CPU affinity, where the platform has one)."""

from __future__ import annotations

import os


def usable_cores() -> list[int]:
    """The CPU cores this process may run on: its affinity mask on Linux, else every core."""
    if hasattr(os, "sched_getaffinity"):  # a platform check: macOS and Windows have no affinity call
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))
