"""Where a thread's time goes, by kind of work (llm, embedding, retrieval, env): each episode runs in one thread, so the
runner reads the difference across an episode and records it (`EpisodeRecord.seconds`), for cost accounting and for
`jitrl-bench bench run`'s breakdown. Cheap enough to leave on: one perf_counter pair per call."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

LLM, EMBEDDING, RETRIEVAL, ENV = "llm", "embedding", "retrieval", "env"
COMPUTE = "compute"
"""Everything the agent and the reward source do (LLM calls, embeddings and retrieval included)."""
P = ParamSpec("P")
R = TypeVar("R")


class _Clock(threading.local):
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.inside: set[str] = set()


_clock = _Clock()


@contextmanager
def spent(kind: str) -> Iterator[None]:
    """Charge the time inside the block to `kind` (a block inside another of the same kind is not counted twice)."""
    if kind in _clock.inside:
        yield
        return
    _clock.inside.add(kind)
    start = time.perf_counter()
    try:
        yield
    finally:
        _clock.inside.discard(kind)
        _clock.seconds[kind] = _clock.seconds.get(kind, 0.0) + time.perf_counter() - start


def seconds_in_this_thread() -> dict[str, float]:
    return dict(_clock.seconds)


def since(before: dict[str, float]) -> dict[str, float]:
    """This thread's seconds by kind since `before` (a `seconds_in_this_thread()` taken earlier), rounded to ms."""
    now = seconds_in_this_thread()
    return {
        kind: round(now[kind] - before.get(kind, 0.0), 3) for kind in sorted(now) if now[kind] > before.get(kind, 0)
    }


def charged(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator: every call's time is charged to `kind` (a policy's model calls, an embedder's encodes)."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            with spent(kind):
                return fn(*args, **kwargs)

        return timed

    return wrap
