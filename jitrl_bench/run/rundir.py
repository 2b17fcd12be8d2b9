"""The run directory: its files, the order they are written in, and what a folder must hold to be a run.

Commit order for one episode: memory entries (tagged with a fresh episode uid) → steps file (atomic rename) → one line
in episodes.jsonl (fsync). episodes.jsonl is the commit log: on resume, memory entries whose uid it does not list are
ignored, so a kill at any point loses nothing finished and counts nothing twice. A kill can cut the log's last line:
that line never committed, so it is ignored, and the next commit removes it. Any other unreadable line is damage: it
is named, and nothing is guessed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jitrl_bench.errors import UserError
from jitrl_bench.records import EpisodeRecord, StepRecord

CONFIG = "config.yaml"
EPISODES = "episodes.jsonl"


class RunDirectory:
    """The files of one run and their append/atomic-write rules."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = path
        self.episodes_path = path / EPISODES
        self.cut_tail = False
        """True when the log's last line was cut by a kill (it is ignored; the next commit starts a fresh line)."""
        if create:
            make_writable_dir(path, "run.dir")

    def finished(self) -> list[EpisodeRecord]:
        """Episodes committed so far. A cut last line (a kill mid-write) is ignored; a bad line elsewhere is a
        UserError naming the file and the line."""
        if not self.episodes_path.exists():
            return []
        try:
            data = self.episodes_path.read_bytes()
        except OSError as e:
            raise UserError(f"{self.episodes_path} cannot be read: {e}") from None
        lines = data.split(b"\n")
        self.cut_tail = bool(lines[-1].strip())  # no newline after the last record: it never finished writing
        rows = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(EpisodeRecord.from_json(line.decode()))
            except (ValueError, TypeError, UnicodeDecodeError) as e:
                if number == len(lines) and self.cut_tail:
                    continue
                raise UserError(
                    f"{self.episodes_path} line {number} is not an episode record ({first_line(e)}): restore the "
                    "file from a copy, or delete that line (its episode will be played again on resume)"
                ) from None
        return rows

    def write_steps(self, record: EpisodeRecord, steps: list[StepRecord]) -> None:
        self.write_step_rows(record, [asdict(s) for s in steps])

    def write_step_rows(self, record: EpisodeRecord, rows: list[dict[str, Any]]) -> None:
        """The episode's steps file, whole or not at all (written aside, then renamed)."""
        path = self.steps_path(record)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        os.replace(tmp, path)

    def steps_path(self, record: EpisodeRecord) -> Path:
        return self.path / "steps" / safe_name(record.task) / safe_name(record.agent) / f"{record.episode}.jsonl"

    def rewards_path(self, record: EpisodeRecord) -> Path:
        return self.path / "rewards" / safe_name(record.task) / safe_name(record.agent) / f"{record.episode}.json"

    def write_rewards(self, record: EpisodeRecord, kept: dict[str, Any]) -> None:
        """What the episode's reward source kept (an LLM evaluator's replies and scores), beside its steps."""
        if not kept:
            return
        path = self.rewards_path(record)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"episode_uid": record.episode_uid, **kept}, ensure_ascii=False, indent=1) + "\n")
        os.replace(tmp, path)

    def commit(self, record: EpisodeRecord) -> None:
        with open(self.episodes_path, "a+b") as f:
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a kill cut the last record: it never committed, drop it (rare: read all)
                    f.seek(0)
                    f.truncate(f.read().rfind(b"\n") + 1)
            f.seek(0, os.SEEK_END)
            f.write((record.to_json() + "\n").encode())
            f.flush()
            os.fsync(f.fileno())


def existing_run(path: Path) -> RunDirectory:
    """A finished or partial run to read (table, regrade, load_from): UserError when `path` is not one."""
    if not path.is_dir():
        raise UserError(f"{path}: no such run directory (give the folder `jitrl-bench run` printed)")
    if not (path / EPISODES).is_file():
        what = "it has a config.yaml but no episode finished yet" if (path / CONFIG).is_file() else "no episodes.jsonl"
        raise UserError(f"{path} is not a run with results ({what})")
    return RunDirectory(path, create=False)


def make_writable_dir(path: Path, key: str) -> None:
    """Create `path` (and parents) and prove it can be written, before anything expensive starts."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{key}={path} is a file, not a folder: choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{key}={path} cannot be written ({e.strerror or e}): choose a folder you can write") from None


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
