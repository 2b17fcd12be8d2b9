"""The rules of leasing copies of something episodes change (WebArena's site instances), in one place.

A `LeaseBook` only keeps the books: which copy is free, who holds which, the task each copy last ran, how often it was
reset. It never waits and does no I/O, so one class serves both a process's own pool (`InstancePool`, threads wait
on a condition) and a Ray run (one book in an actor; every worker's pool leases from it, and the driver hands back
the copies of a worker that died).
"""

from __future__ import annotations

import json

from jitrl_bench.contract import Lease


class LeaseBook:
    """One holder per copy at a time. Reset mode `run`: each copy before its first episode; `task`: before each new
    task on it (a free copy that last ran the same task is preferred, to spare the reset); `none`: never. A copy
    whose holder was lost is reset before its next episode (under `run` and `task`): what the lost episode left on it
    is unknown."""

    def __init__(self, copies: int, mode: str) -> None:
        self.mode = mode
        self._free = list(range(copies))
        self._holder: dict[int, str] = {}
        self._last_task: dict[int, str] = {}
        self._resets = [0] * copies

    def take(self, task: str, holder: str) -> Lease | None:
        if not self._free:
            return None
        index = next((i for i in self._free if self._last_task.get(i) == task), self._free[0])
        self._free.remove(index)
        self._holder[index] = holder
        first = index not in self._last_task
        reset = (self.mode == "run" and first) or (self.mode == "task" and self._last_task.get(index) != task)
        self._resets[index] += reset
        return Lease(index, reset, self._resets[index])

    def ready(self, index: int, task: str) -> None:
        self._last_task[index] = task

    def give_back(self, index: int) -> None:
        if self._holder.pop(index, None) is not None:
            self._free.append(index)

    def drop(self, holder: str) -> list[int]:
        """Every copy `holder` held, back in the book (the holder is gone); they are reset before their next use."""
        lost = sorted(i for i, h in self._holder.items() if h == holder)
        for index in lost:
            self._last_task.pop(index, None)
            self.give_back(index)
        return lost


class LeaseKeeper(LeaseBook):
    """A `LeaseBook` for a Ray actor: leases cross as JSON text, like everything else between a run's processes."""

    def take_json(self, task: str, holder: str) -> str:
        lease = self.take(task, holder)
        return json.dumps(None if lease is None else [lease.index, lease.reset, lease.resets])


def lease_of(text: str) -> Lease | None:
    data = json.loads(text)
    return None if data is None else Lease(int(data[0]), bool(data[1]), int(data[2]))
