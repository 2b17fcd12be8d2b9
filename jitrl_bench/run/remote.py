"""What a Ray run's workers share through actors: the lease keeper of the env's copies (WebArena instances).

Ray's actor handles are dynamic (typed `Any`); these classes put the typed seam in front of them, so the env's pool
and the worker's memories call protocols that mypy checks.
"""

from __future__ import annotations

from typing import Any

from jitrl_bench.contract import Lease
from jitrl_bench.envs.leases import lease_of


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
