"""What a Ray run's workers share through actors: the lease keeper of the env's copies (WebArena instances), and the
memory service of agents whose one memory serves every task (`run.ray.shared_memory=service`).

The memory service holds what the driver committed of such an agent, as the driver committed it (entries under the
run's ids, notes), in commit order. A worker playing one task of that agent asks it, before each episode, for what
other tasks committed since its last question, and adds that to its replica. So an episode reads every entry of
every episode committed before it started, its own stream's earlier episodes, and nothing of episodes in flight.
Deterministic: with one worker (or any schedule that commits in the sequential order) the run equals a sequential
one. Not deterministic: with several workers, which episodes of other tasks were committed when an episode started
depends on timing; the steps' neighbours record what each decision read. Durability is the store's: the service
is a copy of the committed entries, rebuilt from the run's memory file when a run resumes.

Ray's actor handles are dynamic (typed `Any`); these classes put the typed seam in front of them, so the env's pool
and the worker's memories call protocols that mypy checks.
"""

from __future__ import annotations

from typing import Any

from jitrl_bench.contract import Lease
from jitrl_bench.leases import lease_of
from jitrl_bench.run.replica import Learned


class KeeperLeases:
    """`Leases` kept by one `LeaseKeeper` actor for every worker of the run."""

    def __init__(self, keeper: Any) -> None:
        import ray

        self._get = ray.get
        self._keeper = keeper

    def take(self, task: str, holder: str) -> Lease | None:
        return lease_of(self._get(self._keeper.take_json.remote(task, holder)))

    def ready(self, index: int, task: str) -> None:
        self._get(self._keeper.ready.remote(index, task))

    def give_back(self, index: int) -> None:
        self._get(self._keeper.give_back.remote(index))


class MemoryService:
    """The Ray actor: per agent, each committed episode's learning, from the stream (lane) that wrote it."""

    def __init__(self) -> None:
        self._log: dict[str, list[tuple[str, str, bytes]]] = {}

    def publish(self, agent: str, lane: str, header: str, vectors: bytes) -> int:
        """One committed episode's entries (the run's ids) and notes; returns how many the agent has."""
        log = self._log.setdefault(agent, [])
        log.append((lane, header, vectors))
        return len(log)

    def since(self, agent: str, lane: str, cursor: int) -> tuple[list[tuple[str, bytes]], int]:
        """What lanes other than `lane` published from `cursor` on, and the cursor to ask from next."""
        log = self._log.get(agent, [])
        return [(header, vectors) for own, header, vectors in log[cursor:] if own != lane], max(cursor, len(log))


class ServiceClient:
    """A worker's typed view of the `MemoryService` actor."""

    def __init__(self, service: Any) -> None:
        import ray

        self._get = ray.get
        self._service = service

    def since(self, agent: str, lane: str, cursor: int) -> tuple[Learned, int]:
        published, cursor = self._get(self._service.since.remote(agent, lane, cursor))
        learned = Learned()
        for header, vectors in published:
            learned.extend(Learned.parse(header, vectors))
        return learned, cursor
