"""The single writer of a run played elsewhere (Ray workers, or shards being merged): it commits each episode that
arrives as records in the local run's order and format (memory entries → notes → steps → rewards → episodes.jsonl),
and keeps, per stream, which entry of the run's memory each entry of the stream's replica is.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from jitrl_bench.memory.notebook import Note, Notebook
from jitrl_bench.memory.store import ExperienceMemory, experiences
from jitrl_bench.records import EpisodeRecord
from jitrl_bench.run.episode import Played
from jitrl_bench.run.memories import RunMemories
from jitrl_bench.run.replica import Learned, Uses, read_store
from jitrl_bench.run.streams import Stream, Unit


@dataclass
class Shipped:
    """One played episode as it travels to the writer: JSON text and raw embedding rows."""

    record: EpisodeRecord
    steps: list[dict[str, Any]]
    rewards: dict[str, Any]
    learned: Learned = field(default_factory=Learned)
    known: dict[int, int] = field(default_factory=dict)
    """Entries the memory service brought into the replica before this episode: replica id → run id."""

    @classmethod
    def of(cls, played: Played, learned: Learned, known: dict[int, int]) -> Shipped:
        return cls(played.record, [asdict(s) for s in played.steps], played.rewards.record, learned, known)

    def pack(self) -> tuple[str, bytes]:
        text = json.dumps({"record": self.record.to_json(), "steps": self.steps, "rewards": self.rewards,
                           "learned": self.learned.header(), "known": list(self.known.items())})  # fmt: skip
        return text, self.learned.vectors

    @classmethod
    def unpack(cls, text: str, vectors: bytes) -> Shipped:
        data = json.loads(text)
        record = EpisodeRecord.from_json(data["record"])
        known = {int(replica): int(run) for replica, run in data["known"]}
        return cls(record, list(data["steps"]), dict(data["rewards"]), Learned.parse(data["learned"], vectors), known)


class RunWriter:
    def __init__(self, memories: RunMemories, uses: dict[str, Uses], dim: int = 0, embedder: str = "") -> None:
        self.memories = memories
        self.run_dir = memories.run_dir
        self.uses = uses
        self.dim = dim
        self.embedder = embedder
        self._stores: dict[str, ExperienceMemory] = {}
        self._notebooks: dict[str, Notebook] = {}
        self._ids: dict[str, dict[int, int]] = {}
        """Per lane (a Ray stream, a merged shard's agent): the entry id where it was written → the run's."""
        self._tasks: dict[str, Counter[str]] = {}
        """Committed entries per agent and task: a stream whose tasks have none is seeded without reading the store."""

    def store(self, agent: str) -> ExperienceMemory | None:
        if not self.uses.get(agent, Uses()).memory:
            return None
        if agent not in self._stores:
            store = self._stores[agent] = self.memories.store(agent, self.dim, self.embedder, gamma=1.0)
            self._tasks[agent] = Counter(str(r["task"]) for r in store.records())  # one read; commits keep it
        return self._stores[agent]

    def notebook(self, agent: str) -> Notebook | None:
        if not self.uses.get(agent, Uses()).notes:
            return None
        if agent not in self._notebooks:
            self._notebooks[agent] = self.memories.notebook(agent)
        return self._notebooks[agent]

    def seed(self, stream: Stream) -> Learned:
        """What the stream can read of its agent's committed memory and notes, to open its replica with."""

        def ours(task: str) -> bool:
            return stream.across_tasks or stream.shared or task in stream.tasks

        store, notebook = self.store(stream.agent), self.notebook(stream.agent)
        held = self._tasks.get(stream.agent, Counter())
        readable = stream.across_tasks or stream.shared or any(held[task] for task in stream.tasks)
        learned = read_store(store, lambda r: ours(str(r["task"]))) if store is not None and readable else Learned()
        if notebook is not None:
            learned.notes = [asdict(n) for n in notebook.all() if ours(n.task)]
        self._ids[stream.key] = {i: int(r["id"]) for i, r in enumerate(learned.entries)}
        return learned

    def commit(self, lane: str, shipped: Shipped) -> EpisodeRecord:
        """Commit one episode written in `lane` (a seeded stream's key, or a shard's agent); its steps' neighbour ids
        become the run's memory ids."""
        ids = self._ids.setdefault(lane, {})
        ids.update(shipped.known)
        learned, record = shipped.learned, shipped.record
        if learned.entries:
            local = [int(r["id"]) for r in learned.entries]
            if any(i in ids for i in local):
                raise RuntimeError(f"{lane}: memory entries {local[:3]}... arrived twice")
            store = self.store(record.agent)
            if store is None:
                raise RuntimeError(f"agent {record.agent!r} wrote memory, but its worker said it keeps none")
            ids.update(zip(local, store.add(experiences(learned.entries), learned.matrix()), strict=True))
            self._tasks[record.agent].update(str(r["task"]) for r in learned.entries)
        if learned.notes:
            notebook = self.notebook(record.agent)
            if notebook is None:
                raise RuntimeError(f"agent {record.agent!r} wrote notes, but its worker said it keeps none")
            notebook.extend(Note(**note) for note in learned.notes)
        self.run_dir.write_step_rows(record, [renumbered(step, ids) for step in shipped.steps])
        self.run_dir.write_rewards(record, shipped.rewards)
        self.run_dir.commit(record)
        return record

    def as_committed(self, lane: str, learned: Learned) -> Learned:
        """What an episode of `lane` added, under the run's ids (for the memory service to hand to other lanes)."""
        ids = self._ids[lane]
        entries = [{**r, "id": ids[int(r["id"])]} for r in learned.entries]
        return Learned(entries, learned.vectors, learned.notes, self.dim, self.embedder)

    def known(self, lane: str, ids: dict[int, int]) -> None:
        """Entries of `lane` that are already in the run's memory (a merged shard's copy of `memory.load_from`)."""
        self._ids.setdefault(lane, {}).update(ids)


def renumbered(step: dict[str, Any], ids: dict[int, int]) -> dict[str, Any]:
    """A step row whose neighbours name the run's memory entries instead of the replica's."""
    decision = dict(step["decision"])
    decision["neighbours"] = [{**n, "id": ids[int(n["id"])]} for n in decision.get("neighbours", [])]
    return {**step, "decision": decision}


@dataclass
class Outcome:
    """How a unit ends: a played episode, an error row, or nothing (the rest of a task that could not run)."""

    record: EpisodeRecord | None = None
    shipped: Shipped | None = None

    def commit(self, writer: RunWriter, stream: Stream) -> EpisodeRecord | None:
        if self.shipped is not None:
            return writer.commit(stream.key, self.shipped)
        if self.record is not None:
            writer.run_dir.commit(self.record)
        return self.record


class InOrder:
    """Outcomes that arrive in any order, released in the order a sequential run commits them (so the memory ids,
    the log and the tables are the sequential run's). A stream's later episodes wait here for earlier ones. `eager`
    units (shared streams) are released as they arrive: other tasks read them as soon as they are committed."""

    def __init__(self, order: list[Unit], eager: set[Unit]) -> None:
        self.order = [u for u in order if u not in eager]
        self.eager = eager
        self.cursor = 0
        self.ready: dict[Unit, Outcome] = {}

    def put(self, unit: Unit, outcome: Outcome) -> None:
        self.ready[unit] = outcome

    def drop(self, units: list[Unit]) -> None:
        """Forget what arrived but is not committed (its stream will play it again)."""
        for unit in units:
            self.ready.pop(unit, None)

    def release(self) -> list[tuple[Unit, Outcome]]:
        out = [(u, self.ready.pop(u)) for u in [u for u in self.ready if u in self.eager]]
        while self.cursor < len(self.order) and self.order[self.cursor] in self.ready:
            unit = self.order[self.cursor]
            out.append((unit, self.ready.pop(unit)))
            self.cursor += 1
        return out
