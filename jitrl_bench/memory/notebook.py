"""What the in-context baselines learn, kept in words: earlier episodes, reflections, workflows, lessons.

A notebook is one JSON-lines file under <run>/memory/<agent>/notes.jsonl. Each note belongs to the episode that wrote
it, and a note is written before its episode is committed, so on reopening only the notes of committed episodes are
read back (a line cut by a kill is dropped): a resumed run sees exactly what an uninterrupted one saw. Notes are data;
nothing in them is ever executed.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from jitrl_bench.errors import UserError

NOTES = "notes.jsonl"


@dataclass(frozen=True)
class Note:
    kind: str
    """"episode" (a compact transcript), "reflection", "workflow" or "lessons"."""
    task: str
    scope: str
    """What the note is shared within: the task, a web site, or "*" (everything)."""
    episode: int
    uid: str
    """The episode that wrote it."""
    text: str
    success: bool = False
    ret: float = 0.0
    query: str = ""
    """What retrieval matches it by (ReasoningBank: the task's goal)."""

    @classmethod
    def parse(cls, line: str) -> Note | None:
        """A note from one line, or None when the line is cut or not a note."""
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        types: dict[str, type | tuple[type, ...]] = {
            "kind": str, "task": str, "scope": str, "episode": int, "uid": str, "text": str, "success": bool,
            "ret": (int, float), "query": str,
        }  # fmt: skip
        values = {f.name: data.get(f.name) for f in fields(cls)}
        if not all(isinstance(values[k], t) for k, t in types.items()):
            return None
        return cls(**values)  # type: ignore[arg-type]


class Notebook:
    """An agent's notes in write order; in memory only when `path` is None (benchmarks and tests)."""

    def __init__(self, path: Path | None, committed: Callable[[str], bool] | None = None) -> None:
        self.path = path
        self._notes: list[Note] = []
        self._lock = threading.Lock()
        if path is None or not path.exists():
            return
        kept, dropped = [], 0
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines():
            note = Note.parse(line) if line.strip() else None
            if note is None or (committed is not None and not committed(note.uid)):
                dropped += 1
                continue
            kept.append(note)
        self._notes = kept
        if dropped or text[-1:] not in ("", "\n"):  # notes of episodes never committed (to be played again), or
            self._rewrite()  # a kept last note that lost its newline: the next note must not be glued onto it

    def __len__(self) -> int:
        return len(self._notes)

    def add(self, note: Note) -> None:
        self.extend([note])

    def extend(self, notes: Iterable[Note]) -> int:
        """Append notes in one write (and one fsync); returns how many."""
        batch = list(notes)
        with self._lock:
            self._notes.extend(batch)
            if self.path is not None and batch:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as out:
                    out.write("".join(json.dumps(asdict(n), ensure_ascii=False) + "\n" for n in batch))
                    out.flush()
                    os.fsync(out.fileno())
        return len(batch)

    def notes(self, kind: str, scope: str | None = None) -> list[Note]:
        """The notes of a kind (within a scope), oldest first."""
        with self._lock:
            return [n for n in self._notes if n.kind == kind and (scope is None or n.scope == scope)]

    def all(self) -> list[Note]:
        with self._lock:
            return list(self._notes)

    def _rewrite(self) -> None:
        assert self.path is not None
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(asdict(n), ensure_ascii=False) + "\n" for n in self._notes), "utf-8")
        tmp.replace(self.path)


def source_notes(folder: Path, committed: Callable[[str], bool] | None) -> list[Note]:
    """The committed notes of another run's agent (`memory.load_from`), read-only."""
    path = folder / NOTES
    if not path.exists():
        raise UserError(f"memory.load_from: no notes at {path} (did that run use this agent?)")
    notes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        note = Note.parse(line)
        if note is not None and (committed is None or committed(note.uid)):
            notes.append(note)
    return notes
