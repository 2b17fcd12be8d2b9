"""A run from code: `open_run(path)` gives its episodes, steps, decisions, neighbours and memory as DataFrames.

The tables are the run's files in long form (docs/run-files.md is the schema): one row per episode, per step, per
(step, candidate), per (step, neighbour) and per memory entry, each keyed by run, task, agent and episode so they join.
Only what the run committed is read (episodes.jsonl is the commit log: a memory entry of an episode the log does not
list was never part of the run). Each table is read on first use and kept; `iter_episode_rows` streams the same rows
episode by episode for readers that must not hold a whole run (the Parquet export).

A run is data, wherever it came from: nothing in it is followed (links), interpolated or executed, each file is read
through `run/received.py`'s bounded readers, and a schema newer than this package reads is refused with one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jitrl_bench.errors import UserError
from jitrl_bench.memory.entries import checked_record
from jitrl_bench.records import SCHEMA_VERSION, EpisodeRecord
from jitrl_bench.run import received
from jitrl_bench.run.protocols import part_dirs
from jitrl_bench.run.repeats import replica_dirs
from jitrl_bench.run.rundir import CONFIG, RunDirectory, existing_run

if TYPE_CHECKING:
    import pandas as pd

Row = dict[str, Any]
TABLES = ("episodes", "steps", "decisions", "neighbours", "memory")
KEY = ["run", "task", "agent", "episode"]
"""Every table starts with these (memory rows: the episode uid stands for the episode)."""


@dataclass
class EpisodeRows:
    """The rows one committed episode contributes to each per-step table."""

    steps: list[Row] = field(default_factory=list)
    decisions: list[Row] = field(default_factory=list)
    neighbours: list[Row] = field(default_factory=list)


def open_run(path: str | Path, name: str | None = None) -> Run:
    """The run at `path` (a folder `jitrl-bench run` wrote, finished or not); UserError when it is not one. `name` is
    its `run` column (default: the folder's name)."""
    run_dir = Path(path)
    received.check_run(run_dir)  # no link, pipe or oversized file inside: before anything is read
    subs = [str(p) for p in replica_dirs(run_dir)] + [str(p) for _, _, p in part_dirs(run_dir)]
    if subs:
        raise UserError(
            f"{run_dir} holds sub-runs (run.repeats or run.protocol): open one of them, e.g. open_run('{subs[0]}'), "
            "or export the folder (jitrl-bench export gives every sub-run, each row labelled with it)"
        )
    return Run(run_dir, existing_run(run_dir), name or run_dir.name)


class Run:
    """One run's records as DataFrames, each read on first use. `config` is plain data, never interpolated."""

    def __init__(self, path: Path, run_dir: RunDirectory, name: str) -> None:
        self.path = path
        self._dir = run_dir
        self.config: dict[str, Any] = received.read_config(path) if (path / CONFIG).is_file() else {}
        meta = self.config.get("_meta")
        version = meta.get("schema_version", 1) if isinstance(meta, dict) else 1
        if not isinstance(version, int) or isinstance(version, bool) or version > SCHEMA_VERSION:
            raise UserError(
                f"{path / CONFIG}: schema_version {version!r} is newer than this jitrl-bench reads "
                f"({SCHEMA_VERSION}): upgrade jitrl-bench to read this run"
            )
        self.schema_version = version
        self.name = name

    @cached_property
    def records(self) -> list[EpisodeRecord]:
        """The committed episodes, in commit order."""
        return self._dir.finished()

    @cached_property
    def episodes(self) -> pd.DataFrame:
        return _frame([episode_row(self.name, r) for r in self.records], "episodes")

    @cached_property
    def _per_step(self) -> EpisodeRows:
        rows = EpisodeRows()
        for _, one in self.iter_episode_rows():
            rows.steps += one.steps
            rows.decisions += one.decisions
            rows.neighbours += one.neighbours
        return rows

    @property
    def steps(self) -> pd.DataFrame:
        return _frame(self._per_step.steps, "steps")

    @property
    def decisions(self) -> pd.DataFrame:
        return _frame(self._per_step.decisions, "decisions")

    @property
    def neighbours(self) -> pd.DataFrame:
        return _frame(self._per_step.neighbours, "neighbours")

    @cached_property
    def memory(self) -> pd.DataFrame:
        return _frame(list(self.iter_memory_rows()), "memory")

    def iter_episode_rows(self) -> Iterator[tuple[EpisodeRecord, EpisodeRows]]:
        """Each committed episode with its per-step rows, one episode's steps file in memory at a time."""
        for record in self.records:
            rows = EpisodeRows()
            path = self._dir.steps_path(record)
            if record.status == "error" or not path.is_file():
                yield record, rows
                continue
            for number, line in enumerate(received.read_text(path).splitlines(), start=1):
                if not line.strip():
                    continue
                step = _json_object(line, path, number)
                key = {"run": self.name, "task": record.task, "agent": record.agent, "episode": record.episode}
                rows.steps.append(step_row(key, step))
                rows.decisions += decision_rows(key, step)
                rows.neighbours += neighbour_rows(key, step)
            yield record, rows

    def iter_memory_rows(self) -> Iterator[Row]:
        """Every memory entry an agent of this run could read: written by a committed episode, or imported from
        another run (`memory.load_from`), in id order per agent."""
        committed = {r.episode_uid for r in self.records}
        meta = self.config.get("_meta")
        run_id = str(meta.get("run_id", "")) if isinstance(meta, dict) else ""
        memory = self.path / "memory"
        if not memory.is_dir():
            return
        for folder in sorted(p for p in memory.iterdir() if p.is_dir()):
            entries = folder / "entries.jsonl"
            if not entries.is_file():
                continue
            for number, line in enumerate(received.read_lines(entries), start=1):
                if not line.endswith(b"\n"):
                    break  # a cut last line: never committed
                entry = checked_record(line, entries, number, number - 1)  # the store's own rules
                imported = bool(run_id) and str(entry.get("run_id", run_id)) != run_id
                if imported or str(entry.get("episode", "")) in committed:
                    yield memory_row(self.name, folder.name, entry, imported)


def episode_row(run: str, record: EpisodeRecord) -> Row:
    """An episodes.jsonl record as a flat row: its mappings (usage by purpose, artifacts, seconds) as JSON text."""
    row: Row = {"run": run}
    for key, value in asdict(record).items():
        text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
        row["return" if key == "ret" else key] = text
    return row


def step_row(key: Row, step: Row) -> Row:
    decision = _mapping(step.get("decision"))
    usage = _mapping(decision.get("usage"))
    return {
        **key,
        "step": step.get("step"),
        "action": step.get("action"),
        "reward": step.get("reward"),
        "score": step.get("score"),
        "observation": step.get("observation", ""),
        "observation_sha1": step.get("observation_sha1"),
        "chosen": decision.get("index"),
        "candidates": len(decision.get("candidates") or []),
        "candidates_cut": step.get("candidates_cut", 0),
        "bias_applied": decision.get("bias_applied"),
        "prompt_sha1": decision.get("prompt_sha1", ""),
        "proposal_fallback": decision.get("proposal_fallback", ""),
        "llm_calls": usage.get("calls", 0),
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "completion_tokens": usage.get("completion_tokens", 0),
        "blocked_requests": len(step.get("blocked_requests") or []),
        "notes": json.dumps(decision.get("notes", {}), ensure_ascii=False),
    }


def decision_rows(key: Row, step: Row) -> list[Row]:
    """One row per candidate: z = log π_θ (null where the policy scored none), Â, z' = z + Â/β, π*, and the choice."""
    decision = _mapping(step.get("decision"))
    candidates = list(decision.get("candidates") or [])
    columns = {name: list(decision.get(name) or []) for name in ("z", "advantage", "z_prime", "probs")}
    chosen = decision.get("index")
    return [
        {
            **key,
            "step": step.get("step"),
            "candidate": i,
            "text": text,
            "z": _at(columns["z"], i),
            "advantage": _at(columns["advantage"], i),
            "z_prime": _at(columns["z_prime"], i),
            "prob": _at(columns["probs"], i),
            "chosen": i == chosen,
        }
        for i, text in enumerate(candidates)
    ]


def neighbour_rows(key: Row, step: Row) -> list[Row]:
    """One row per memory entry retrieved for the step, in rank order."""
    decision = _mapping(step.get("decision"))
    return [
        {
            **key,
            "step": step.get("step"),
            "rank": rank,
            "id": _mapping(nb).get("id"),
            "similarity": _mapping(nb).get("similarity"),
            "return": _mapping(nb).get("return"),
            "action": _mapping(nb).get("action"),
        }
        for rank, nb in enumerate(decision.get("neighbours") or [])
    ]


def memory_row(run: str, agent: str, entry: Row, imported: bool) -> Row:
    rewards = entry.get("rewards") or []
    return {
        "run": run,
        "task": entry.get("task"),
        "agent": agent,
        "episode_uid": entry.get("episode"),
        "id": entry.get("id"),
        "step": entry.get("step"),
        "state": entry.get("state"),
        "action": entry.get("action"),
        "action_key": entry.get("action_key"),
        "success": entry.get("success"),
        "rewards": [float(r) for r in rewards],
        "imported": imported,
    }


def _frame(rows: list[Row], table: str) -> pd.DataFrame:
    import pandas as pd

    from jitrl_bench.results.export import columns_of

    return pd.DataFrame(rows, columns=columns_of(table))


def _json_object(line: str, path: Path, number: int) -> Row:
    try:
        value = json.loads(line)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise UserError(f"{path} line {number} is not a JSON object: restore the file from a copy")
    return value


def _mapping(value: Any) -> Row:
    return value if isinstance(value, dict) else {}


def _at(values: list[Any], i: int) -> Any:
    return values[i] if i < len(values) else None
