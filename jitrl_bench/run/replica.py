"""A stream's copy of its agent's memory on a worker, and what travels between the driver and the workers.

The driver is the only writer of the run directory. A worker that plays a stream gets, when the stream opens, the
committed memory entries and notes the stream can read (`Learned`, seeded from the driver's store), keeps them in a
scratch folder of its own, and after each episode sends back what the episode added. Entry ids are the replica's:
entry i of the replica is entry `ids[i]` of the run's store (the driver keeps that list per stream and rewrites the
neighbour ids of the steps it commits). Everything crosses as JSON text and raw float32 rows: no pickles of ours.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jitrl_bench.memory.embed import Embedder
from jitrl_bench.memory.notebook import NOTES, Note, Notebook
from jitrl_bench.memory.store import ExperienceMemory, MemoryConfig, experiences


@dataclass(frozen=True)
class Uses:
    """What an agent keeps across episodes (a worker reports it, so the driver opens only what exists)."""

    memory: bool = False
    notes: bool = False


@dataclass
class Learned:
    """Memory entries (with their ids in the store they come from) and notes of one agent."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    vectors: bytes = b""
    """The entries' embeddings: float32 rows, little-endian, one per entry."""
    notes: list[dict[str, Any]] = field(default_factory=list)
    dim: int = 0
    embedder: str = ""

    def header(self) -> str:
        return json.dumps({"entries": self.entries, "notes": self.notes, "dim": self.dim, "embedder": self.embedder})

    @classmethod
    def parse(cls, header: str, vectors: bytes) -> Learned:
        data = json.loads(header)
        learned = cls(list(data["entries"]), vectors, list(data["notes"]), int(data["dim"]), str(data["embedder"]))
        if learned.entries and len(vectors) != len(learned.entries) * learned.dim * 4:
            raise ValueError(f"{len(learned.entries)} memory entries arrived with {len(vectors)} bytes of embeddings")
        return learned

    def matrix(self) -> np.ndarray:
        return np.frombuffer(self.vectors, dtype="<f4").reshape(len(self.entries), max(self.dim, 1))

    def extend(self, other: Learned) -> None:
        self.entries += other.entries
        self.vectors += other.vectors
        self.notes += other.notes
        self.dim, self.embedder = other.dim or self.dim, other.embedder or self.embedder


def read_store(memory: ExperienceMemory, wanted: Callable[[dict[str, Any]], bool]) -> Learned:
    """The store's committed entries that `wanted` keeps, in id order, with their embeddings."""
    entries = [r for r in memory.records() if wanted(r)]
    vectors = memory.embeddings_of([int(r["id"]) for r in entries]) if entries else np.zeros((0, memory.dim))
    return Learned(entries, vectors.astype("<f4").tobytes(), [], memory.dim, memory.embedder)


class StreamMemories:
    """The `Memories` a worker builds a stream's agent with: a replica in `folder`, seeded from the driver."""

    def __init__(self, folder: Path, config: MemoryConfig, zero_fill: bool, embedder: Callable[[], Embedder],
                 seed: Learned) -> None:  # fmt: skip
        self.folder = folder
        self.config = config
        self.zero_fill = zero_fill
        self._embedder = embedder
        self._seed = seed
        self._memory: ExperienceMemory | None = None
        self._notebook: Notebook | None = None
        self._sent_entries = 0
        self._sent_notes = len(seed.notes)

    @property
    def frozen(self) -> bool:
        return self.config.frozen

    def embedder(self) -> Embedder:
        return self._embedder()

    def open(self, agent: str, gamma: float) -> tuple[ExperienceMemory, Embedder]:
        embedder = self.embedder()
        memory = self.config.open(self.folder / agent, embedder.dim, gamma, embedder.name, None, self.zero_fill)
        if self._seed.entries:
            memory.add(experiences(self._seed.entries), self._seed.matrix())
        self._sent_entries = memory.next_id
        self._memory = memory
        return memory, embedder

    def notebook(self, agent: str) -> Notebook:
        notebook = Notebook(self.folder / agent / NOTES)
        notebook.extend(Note(**note) for note in self._seed.notes)
        self._notebook = notebook
        return notebook

    @property
    def uses(self) -> Uses:
        """What the agent built on this opened: its memory, its notebook."""
        return Uses(self._memory is not None, self._notebook is not None)

    def absorb(self, learned: Learned) -> dict[int, int]:
        """What other streams of the agent committed (entries under the run's ids), added to the replica; returns
        replica id → run id for the entries, so the driver can name them in the steps that read them."""
        known: dict[int, int] = {}
        if self._memory is not None and learned.entries:
            ids = self._memory.add(experiences(learned.entries), learned.matrix())
            known = dict(zip(ids, (int(r["id"]) for r in learned.entries), strict=True))
            self._sent_entries = self._memory.next_id
        if self._notebook is not None and learned.notes:
            self._notebook.extend(Note(**note) for note in learned.notes)
            self._sent_notes = len(self._notebook.all())
        return known

    def take(self) -> Learned:
        """What the stream's agent wrote since the last call (its last episode), with the replica's ids."""
        learned = Learned()
        if self._memory is not None:
            memory = self._memory
            learned = read_store(memory, lambda r: int(r["id"]) >= self._sent_entries)
            self._sent_entries = memory.next_id
        if self._notebook is not None:
            notes = self._notebook.all()
            learned.notes = [asdict(n) for n in notes[self._sent_notes :]]
            self._sent_notes = len(notes)
        return learned
