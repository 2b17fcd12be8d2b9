"""The seam between a run and its learning agents' memory: what an agent may open. The run opens memories under its
run directory (`run/memories.py`); benchmarks and tests give agents memories of their own (`agents/recall.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from jitrl_bench.memory.embed import Embedder
    from jitrl_bench.memory.notebook import Notebook
    from jitrl_bench.memory.store import ExperienceMemory


class Memories(Protocol):
    """Opens what learning agents keep across episodes, under the run directory (the embedder is loaded once)."""

    @property
    def frozen(self) -> bool:
        """`memory.frozen`: read what `memory.load_from` holds, write nothing."""
        ...

    def open(self, agent: str, gamma: float) -> tuple[ExperienceMemory, Embedder]:
        """The agent's experience memory (states, actions, returns) and the embedder of its states."""
        ...

    def notebook(self, agent: str) -> Notebook:
        """The agent's notes (reflections, workflows, lessons, past episodes)."""
        ...

    def embedder(self) -> Embedder: ...
