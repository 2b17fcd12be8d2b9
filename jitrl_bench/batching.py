"""Requests from several threads (episodes in flight) served together: the first thread to find the engine free takes
every request waiting (up to a token budget) and runs them as one batch; the others find their result done.

No request waits for a timer: with one episode in flight every batch holds one request, and under load the batch is
whatever queued while the previous one ran.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Req = TypeVar("Req")
Res = TypeVar("Res")


@dataclass
class _Slot(Generic[Req, Res]):
    request: Req
    result: Res | None = None
    error: BaseException | None = None
    done: bool = False


class Batcher(Generic[Req, Res]):
    def __init__(
        self,
        run: Callable[[list[Req]], list[Res]],
        engine: threading.Lock,
        cost: Callable[[Req], int],
        budget: int,
    ) -> None:
        """`run` serves a batch (under `engine`, the lock every other use of the model takes too); a batch holds
        requests while their summed `cost` stays within `budget` (a request over it runs alone)."""
        self._run = run
        self.engine = engine
        self._cost = cost
        self._budget = budget
        self._queue: list[_Slot[Req, Res]] = []
        self._queue_lock = threading.Lock()
        self.largest = 0
        """The most requests one batch has held (what `jitrl-bench bench run` and the tests read)."""

    def submit(self, request: Req) -> Res:
        slot: _Slot[Req, Res] = _Slot(request)
        with self._queue_lock:
            self._queue.append(slot)
        while not slot.done:  # served by another thread's batch, or lead one (oldest requests first) until it is
            with self.engine:
                if slot.done:
                    break
                batch = self._take()
                try:
                    results = self._run([s.request for s in batch])
                    for s, result in zip(batch, results, strict=True):
                        s.result = result
                except BaseException as e:  # every request of the batch fails with it (a bug, not bad input)
                    for s in batch:
                        s.error = e
                finally:
                    for s in batch:
                        s.done = True
        if slot.error is not None:
            raise slot.error
        assert slot.result is not None
        return slot.result

    @property
    def waiting(self) -> int:
        with self._queue_lock:
            return len(self._queue)

    def _take(self) -> list[_Slot[Req, Res]]:
        """The waiting requests, oldest first, within the budget (at least one)."""
        with self._queue_lock:
            taken: list[_Slot[Req, Res]] = []
            used = 0
            for s in self._queue:
                if taken and used + self._cost(s.request) > self._budget:
                    break
                taken.append(s)
                used += self._cost(s.request)
            del self._queue[: len(taken)]
        self.largest = max(self.largest, len(taken))
        return taken
