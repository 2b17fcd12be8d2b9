"""What learning agents keep across episodes, opened under the run directory: each agent's experience memory and
notebook (`memory/<agent>/`), seeded once from `memory.load_from` when the run is new.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from jitrl_bench.errors import UserError
from jitrl_bench.memory.embed import CachedEmbedder, Embedder
from jitrl_bench.memory.notebook import NOTES, Notebook, source_notes
from jitrl_bench.memory.store import ExperienceMemory
from jitrl_bench.run.rundir import RunDirectory, existing_run
from jitrl_bench.run.spec import RunSpec


class RunMemories:
    """Opens each learning agent's memory under <run>/memory/<agent>/; loads the embedder once, on first use."""

    def __init__(self, spec: RunSpec, run_dir: RunDirectory, committed: set[str], fresh: bool, run_id: str) -> None:
        self.spec = spec
        self.run_id = run_id
        self.run_dir = run_dir
        self.committed = committed
        self.fresh = fresh
        self._embedder: Embedder | None = None

    @property
    def frozen(self) -> bool:
        return self.spec.memory.frozen

    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = CachedEmbedder(self.spec.memory.embedder.make())
        return self._embedder

    def notebook(self, agent: str) -> Notebook:
        source = self.spec.memory.load_from
        imported: set[str] = set()  # notes `load_from` brought: their episodes are the other run's, committed there
        if source and not self.fresh:
            folder, committed = source_folder(Path(source), agent)
            if (folder / NOTES).exists():
                imported = {note.uid for note in source_notes(folder, committed)}
        path = self.run_dir.path / "memory" / agent / NOTES
        notebook = Notebook(path, lambda uid: uid in self.committed or uid in imported)
        if source and self.fresh and len(notebook) == 0:
            folder, committed = source_folder(Path(source), agent)
            notebook.extend(source_notes(folder, committed))
        return notebook

    def open(self, agent: str, gamma: float) -> tuple[ExperienceMemory, Embedder]:
        embedder = self.embedder()
        return self.store(agent, embedder.dim, embedder.name, gamma), embedder

    def store(self, agent: str, dim: int, embedder: str, gamma: float) -> ExperienceMemory:
        """The agent's memory folder, seeded from `memory.load_from` on a new run. A Ray run's driver opens it with
        the dim and name its workers' embedder reported, and never loads the embedder itself."""
        folder = self.run_dir.path / "memory" / agent
        committed, zero_fill = self.committed.__contains__, self.spec.reward.zero_fill
        memory = self.spec.memory.open(folder, dim, gamma, embedder, committed, zero_fill, own_run=self.run_id)
        for cut in memory.report.dropped:  # a torn end, cut back: one line each (what was dropped, and where)
            Console(stderr=True, soft_wrap=True).print(f"warning: memory {cut}", markup=False, highlight=False)
        source = self.spec.memory.load_from
        if source and self.fresh and len(memory) == 0:
            memory.import_from(source_memory(Path(source), agent, dim, embedder, gamma))
        return memory


def source_folder(source: Path, agent: str) -> tuple[Path, Callable[[str], bool] | None]:
    """`memory.load_from` names a run directory (its committed episodes only) or a bare memory folder."""
    if not (source / "episodes.jsonl").exists():
        return source, None
    committed = {r.episode_uid for r in existing_run(source).finished()}
    return source / "memory" / agent, committed.__contains__


def source_memory(source: Path, agent: str, dim: int, embedder: str, gamma: float) -> ExperienceMemory:
    folder, committed = source_folder(source, agent)
    if not (folder / "entries.jsonl").exists():
        raise UserError(f"memory.load_from={source}: no memory for agent {agent!r} there ({folder}/entries.jsonl)")
    return ExperienceMemory(folder, dim, gamma=gamma, embedder=embedder, committed=committed, read_only=True)
