"""Experience memory M = {(s_i, a_i, rewards_i)}: append-only, durable, safe for concurrent writers.

On disk (the run's `memory/` folder), no pickles:
    meta.json          format version, embedding dim, embedder name
    entries.jsonl      one JSON record per step; a record's line is its commit mark
    embeddings.f32     row i = the float32 embedding of entry id i (raw little-endian, dim from meta.json)

A write appends the embedding rows first (fsync), then the JSON lines (fsync), under a file lock. A crash can leave at
most orphan embedding rows or one cut line at the end. Reading checks that record i has id i and that its row exists
(`entries.py` checks what a record is): a torn end (a line with no newline, records whose rows are missing, bytes past
the last record's row) is cut back to the last consistent entry, in one logged line, so the next add continues at
the right id and row; anything else is a UserError naming the file and line.
Each record keeps its step rewards r_t..r_T, so the discount γ is applied when the memory is opened, never stored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from jitrl_bench.checks import BadValue, Checked
from jitrl_bench.errors import UserError
from jitrl_bench.memory.embed import EmbedderConfig
from jitrl_bench.memory.entries import checked_record, parse_line
from jitrl_bench.memory.entries import read_meta as read_meta  # merge.py reads meta.json through here
from jitrl_bench.memory.index import IndexConfig, VectorIndex
from jitrl_bench.memory.returns import discounted_return

FORMAT_VERSION = 1
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Experience:
    """One step of a finished episode, as written to memory."""

    state: str
    action: str
    action_key: str
    rewards: list[float]
    """Step rewards from this step to the end of the episode: r_t, r_{t+1}, ..., r_T."""
    episode: str
    """Unique id of the episode attempt (a resumed run never reuses one)."""
    task: str
    step: int
    success: bool
    fields: dict[str, str] = field(default_factory=dict)
    run_id: str = ""
    config_hash: str = ""


@dataclass(frozen=True)
class Neighbour:
    """A retrieved entry: what the advantage estimators need, plus enough to trace it."""

    id: int
    similarity: float
    action_key: str
    ret: float
    """Discounted return G = Σ_u γ^u r_{t+u} of the entry's step."""
    step: int


@dataclass
class LoadReport:
    loaded: int = 0
    uncommitted: int = 0
    """Complete records of episodes the run never committed (crash between memory write and episodes.jsonl)."""
    dropped: list[str] = field(default_factory=list)
    """One line per cut: a torn last line, records whose embedding rows are missing, orphan embedding bytes."""


class ExperienceMemory:
    """The store plus its search indexes (one faiss index per partition, e.g. per task)."""

    def __init__(
        self,
        path: Path | None,
        dim: int,
        *,
        gamma: float,
        embedder: str = "",
        partition_by: Sequence[str] = ("task",),
        index: IndexConfig | None = None,
        committed: Callable[[str], bool] | None = None,
        read_only: bool = False,
        zero_fill: bool = False,
        own_run: str | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.read_only = read_only
        self.dim = dim
        self.gamma = gamma
        self.zero_fill = zero_fill
        """The reference's return quirk (see `discounted_return`)."""
        self.embedder = embedder
        self.partition_by = tuple(partition_by)
        self.index_config = index or IndexConfig()
        self.report = LoadReport()
        self._committed = committed
        self._own_run = own_run
        """With `committed`: entries another run wrote (imported by `memory.load_from`, committed there) are kept."""
        self._lock = threading.Lock()
        self._indexes: dict[tuple[str, ...], VectorIndex] = {}
        # Columns kept in RAM (what retrieval, advantages and traces read); texts stay on disk except `fields`.
        self._action_key: dict[int, str] = {}
        self._step: dict[int, int] = {}
        self._return: dict[int, float] = {}
        self._fields: dict[int, dict[str, str]] = {}
        self._next_id = 0
        self._offset = 0  # bytes of entries.jsonl already read
        self._lines = 0  # lines of entries.jsonl already read
        if self.path is not None:
            if not read_only:
                self.path.mkdir(parents=True, exist_ok=True)
            with self._file_lock():
                self._init_meta()
                self._sync(repair=not read_only)

    # ------------------------------------------------------------------ public API

    def __len__(self) -> int:
        """Number of searchable entries."""
        return len(self._action_key)

    def add(self, experiences: Sequence[Experience], embeddings: np.ndarray) -> list[int]:
        """Append one batch (typically one episode) atomically with respect to other writers; return the new ids."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(len(experiences), self.dim)
        if not experiences:
            return []
        if self.read_only:
            raise PermissionError(f"memory at {self.path} was opened read-only")
        with self._lock:
            if self.path is None:
                ids = list(range(self._next_id, self._next_id + len(experiences)))
                self._ingest(ids, [asdict(e) for e in experiences], embeddings)
                return ids
            with self._file_lock():
                self._sync(repair=True)  # see other writers' records and cut any crashed tail
                ids = list(range(self._next_id, self._next_id + len(experiences)))
                records = [{"id": i, **asdict(e)} for i, e in zip(ids, experiences, strict=True)]
                self._append_embeddings(embeddings)
                payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
                with open(self._entries_path, "ab") as f:
                    f.write(payload)
                    f.flush()
                    os.fsync(f.fileno())
                self._offset += len(payload)
                self._ingest(ids, records, embeddings)
                return ids

    def search(
        self, query: np.ndarray, k: int, threshold: float = -1.0, where: dict[str, str] | None = None
    ) -> list[Neighbour]:
        """Top-k entries by cosine similarity (≥ threshold), best first, inside the partition named by `where`
        (None: across all partitions)."""
        if where is None:
            indexes = list(self._indexes.values())
        else:
            found = self._indexes.get(self._partition_key(where))
            indexes = [found] if found is not None else []
        hits: list[tuple[float, int]] = []
        for index in indexes:
            ids, sims = index.search(query, k)
            hits += [(float(s), int(i)) for i, s in zip(ids, sims, strict=True) if s >= threshold]
        hits.sort(key=lambda h: (-h[0], h[1]))
        return [self.neighbour(i, s) for s, i in hits[:k]]

    def indexes(self) -> list[VectorIndex]:
        """The per-partition search indexes (read-only use: benchmarks, diagnostics)."""
        return list(self._indexes.values())

    def neighbour(self, entry_id: int, similarity: float) -> Neighbour:
        return Neighbour(
            id=entry_id,
            similarity=similarity,
            action_key=self._action_key[entry_id],
            ret=self._return[entry_id],
            step=self._step[entry_id],
        )

    def fields(self, entry_id: int) -> dict[str, str]:
        """The named state fields of an entry (used by the lexical re-rank)."""
        return self._fields[entry_id]

    def records(self) -> Iterable[dict[str, Any]]:
        """Every complete, committed record on disk, in id order (for export and `memory.load_from`)."""
        if self.path is None or not self._entries_path.exists():
            return
        with open(self._entries_path, "rb") as f:
            for line in f:
                record = parse_line(line)
                if record is not None and record.get("id") in self._action_key:
                    yield record

    def embeddings_of(self, ids: Sequence[int]) -> np.ndarray:
        assert self.path is not None
        n_rows = os.path.getsize(self._embeddings_path) // (self.dim * 4)
        rows = np.memmap(self._embeddings_path, dtype="<f4", mode="r", shape=(n_rows, self.dim))
        return np.asarray(rows[np.asarray(ids, dtype=np.int64)], dtype=np.float32)

    def import_from(self, other: ExperienceMemory) -> int:
        """Copy another memory's committed entries into this one (provenance fields are kept as they were)."""
        records = list(other.records())
        if not records:
            return 0
        self.add(experiences(records), other.embeddings_of([r["id"] for r in records]))
        return len(records)

    @property
    def next_id(self) -> int:
        """The id the next entry will get."""
        return self._next_id

    # ------------------------------------------------------------------ internals

    @property
    def _entries_path(self) -> Path:
        assert self.path is not None
        return self.path / "entries.jsonl"

    @property
    def _embeddings_path(self) -> Path:
        assert self.path is not None
        return self.path / "embeddings.f32"

    def _file_lock(self) -> FileLock:
        assert self.path is not None
        return FileLock(str(self.path / ".lock"))

    def _init_meta(self) -> None:
        assert self.path is not None
        meta_path = self.path / "meta.json"
        if meta_path.exists():
            meta = read_meta(meta_path)
            if int(meta["dim"]) != self.dim:
                raise UserError(
                    f"memory at {self.path} holds {meta['dim']}-d embeddings ({meta.get('embedder')}), "
                    f"the configured embedder gives {self.dim}-d: use the same memory.embedder or a new run.dir"
                )
            return
        if self.read_only:
            return
        tmp = meta_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": FORMAT_VERSION, "dim": self.dim, "embedder": self.embedder}))
        os.replace(tmp, meta_path)

    def _append_embeddings(self, embeddings: np.ndarray) -> None:
        row_bytes = self.dim * 4
        with open(self._embeddings_path, "ab") as f:
            f.truncate(self._next_id * row_bytes)  # drop orphan rows left by a crashed writer
            f.seek(self._next_id * row_bytes)
            f.write(embeddings.astype("<f4").tobytes())
            f.flush()
            os.fsync(f.fileno())

    def _sync(self, repair: bool) -> None:
        """Read records appended since the last read (by anyone), cutting a torn end. Must hold the file lock."""
        path = self._entries_path
        if not path.exists():
            return
        with open(path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        rows = os.path.getsize(self._embeddings_path) // (self.dim * 4) if self._embeddings_path.exists() else 0
        complete = data[: data.rfind(b"\n") + 1]
        lines = complete.splitlines(keepends=True)
        kept, kept_lines, ids, records = 0, 0, [], []
        for n, line in enumerate(lines, start=self._lines + 1):
            record = checked_record(line, path, n, self._next_id)
            if self._next_id >= rows:
                break  # this record's embedding row is missing, and so are those of all after it
            kept, kept_lines, self._next_id = kept + len(line), kept_lines + 1, self._next_id + 1
            imported = self._own_run is not None and record.get("run_id", "") != self._own_run
            if self._committed is None or imported or self._committed(str(record["episode"])):
                ids.append(self._next_id - 1)
                records.append(record)
            else:
                self.report.uncommitted += 1
        self._lines += kept_lines
        what = []
        if kept_lines < len(lines):
            what.append(f"{len(lines) - kept_lines} record(s) whose embedding rows are missing ({rows} rows)")
        if len(complete) < len(data):
            what.append(f"a cut record ({len(data) - len(complete)} bytes, no newline)")
        self._offset += kept
        end = self._next_id * self.dim * 4
        size = os.path.getsize(self._embeddings_path) if self._embeddings_path.exists() else 0
        if size > end:
            what.append(f"{size - end} bytes of embedding rows whose records never came")
        if what:
            message = f"{self.path}: cut back to {self._next_id} entries, dropping " + " and ".join(what)
            self.report.dropped.append(message)
            log.warning("memory %s", message)
            if repair and kept < len(data):
                _truncate(path, self._offset)
            if repair and size > end:
                _truncate(self._embeddings_path, end)
        if ids:
            self._ingest(ids, records, self.embeddings_of(ids))
            self.report.loaded += len(ids)

    def _ingest(self, ids: Sequence[int], records: Sequence[dict[str, Any]], embeddings: np.ndarray) -> None:
        by_partition: dict[tuple[str, ...], list[int]] = {}
        for row, (entry_id, r) in enumerate(zip(ids, records, strict=True)):
            self._action_key[entry_id] = str(r["action_key"])
            self._step[entry_id] = int(r["step"])
            self._return[entry_id] = discounted_return(r["rewards"], self.gamma, self.zero_fill)
            self._fields[entry_id] = dict(r.get("fields") or {"state": r["state"]})
            key = self._partition_key({"task": r["task"], **self._fields[entry_id]})
            by_partition.setdefault(key, []).append(row)
        self._next_id = max(self._next_id, max(ids) + 1)
        for key, rows in by_partition.items():
            index = self._indexes.get(key)
            if index is None:
                index = self._indexes[key] = VectorIndex(self.dim, self.index_config)
            index.add(np.asarray([ids[r] for r in rows]), embeddings[rows])

    def _partition_key(self, values: dict[str, str]) -> tuple[str, ...]:
        return tuple(str(values.get(name, "")) for name in self.partition_by)


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)
        os.fsync(f.fileno())


def experiences(records: Iterable[dict[str, Any]]) -> list[Experience]:
    """Records as read from entries.jsonl, back to what `add` takes (ids dropped: the store gives its own)."""
    known = {f.name for f in dataclasses.fields(Experience)}
    return [Experience(**{k: v for k, v in r.items() if k in known}) for r in records]


@dataclass
class MemoryConfig(Checked):
    """Where experiences live and how they are searched (the `memory` config group)."""

    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    partition_by: list[str] = field(default_factory=lambda: ["task"])
    """Hard filters: retrieval only sees entries whose fields equal the current state's (task; a normalised URL...).
    An empty list shares one memory across all tasks (the paper's web setting)."""
    index: IndexConfig = field(default_factory=IndexConfig)
    load_from: str | None = None
    """Another run's directory (or its memory/ folder) whose committed experiences seed this run's memory."""
    frozen: bool = False
    """Read-only memory (transfer runs): agents read what `load_from` brought and write nothing."""

    def check(self) -> None:
        for field_name in self.partition_by:
            if not field_name.strip():
                raise BadValue("partition_by", self.partition_by, "names of state fields, e.g. [task] or [task, url]")
        if self.load_from is not None:
            source = Path(self.load_from).expanduser()
            if not source.is_dir():
                raise BadValue("load_from", self.load_from, "no such folder: give a run directory or a memory folder")
            markers = (source / "episodes.jsonl", source / "meta.json", source / "memory")
            if not any(marker.exists() for marker in markers):
                raise BadValue("load_from", self.load_from, "neither a run directory nor a memory folder")

    def open(
        self,
        path: Path | None,
        dim: int,
        gamma: float,
        embedder: str,
        committed: Callable[[str], bool] | None = None,
        zero_fill: bool = False,
        own_run: str | None = None,
    ) -> ExperienceMemory:
        return ExperienceMemory(
            path,
            dim,
            gamma=gamma,
            embedder=embedder,
            partition_by=self.partition_by,
            index=self.index,
            committed=committed,
            zero_fill=zero_fill,
            own_run=own_run,
        )
