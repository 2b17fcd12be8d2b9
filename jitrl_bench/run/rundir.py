"""The run directory: its files, the order they are written in, and what a folder must hold to be a run.

Commit order for one episode: memory entries (tagged with a fresh episode uid) → notes → steps file → rewards file
(each written aside, synced, renamed) → one line in episodes.jsonl (synced). episodes.jsonl is the commit log: on
resume, memory entries and notes whose uid it does not list are ignored, so a kill at any point loses nothing finished
and counts nothing twice. A torn write can only be the log's last line: a complete record that lost only its newline
is committed (it is counted, and its newline is restored before the next line); a cut one never committed (it is
ignored, and removed before the next line). Either way what a resume counts is what the log keeps. The last committed
episode's steps and rewards files are checked on resume too: one that is not whole takes its episode out of the log,
to be played again. Any other unreadable line is damage: it is named, and nothing is guessed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

from jitrl_bench.errors import UserError
from jitrl_bench.records import EpisodeRecord, StepRecord
from jitrl_bench.text import first_line

CONFIG = "config.yaml"
EPISODES = "episodes.jsonl"


class RunDirectory:
    """The files of one run and their append/atomic-write rules."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = path
        self.episodes_path = path / EPISODES
        if create:
            make_writable_dir(path, "run.dir")

    def finished(self) -> list[EpisodeRecord]:
        """Episodes committed so far. A cut last line (a kill mid-write) is ignored; a complete last record without
        its newline counts; a bad line elsewhere is a UserError naming the file and the line."""
        if not self.episodes_path.exists():
            return []
        try:
            data = self.episodes_path.read_bytes()
        except OSError as e:
            raise UserError(f"{self.episodes_path} cannot be read: {e}") from None
        lines = data.split(b"\n")
        rows = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(parse_record(line))
            except ValueError as e:
                if number == len(lines):  # no newline after it: a record a kill cut, never committed
                    continue
                raise UserError(
                    f"{self.episodes_path} line {number} is not an episode record ({first_line(e)}): restore the "
                    "file from a copy, or delete that line (its episode will be played again on resume)"
                ) from None
        return rows

    def recover(self) -> list[str]:
        """Before a resume writes anything: the log ends with a whole line, and the last committed episode's steps
        and rewards files are whole (a torn write the system never flushed takes the episode out of the log: it is
        played again, its memory and notes ignored as uncommitted). Returns one line per repair."""
        if not self.episodes_path.exists():
            return []
        with open(self.episodes_path, "r+b") as f:
            mend_tail(f)
            f.seek(0)
            data = f.read()
            start = data.rstrip(b"\n").rfind(b"\n") + 1
            try:
                last = parse_record(data[start:])
            except ValueError:  # nothing committed yet, or damage `finished` names
                return []
            damaged = self.damaged(last)
            if damaged is None:
                return []
            f.truncate(start)
            f.flush()
            os.fsync(f.fileno())
        return [f"{damaged} is not whole: {last.task} episode {last.episode} ({last.agent}) will be played again"]

    def damaged(self, record: EpisodeRecord) -> Path | None:
        """The committed episode's steps or rewards file when it is not whole; a whole one that lost only its last
        newline gets it back."""
        if record.status == "error":
            return None  # an error row has no files
        steps = self.steps_path(record)
        if not steps.is_file():
            return steps
        text = steps.read_bytes()
        rows = text.split(b"\n")
        if rows[-1] == b"":
            rows.pop()
        if len(rows) != record.steps or not all(parses(row) for row in rows):
            return steps
        if text and not text.endswith(b"\n"):
            write_synced(steps, text + b"\n")
        rewards = self.rewards_path(record)
        if rewards.is_file():
            kept = rewards.read_bytes()
            if not parses(kept):
                return rewards
            if not kept.endswith(b"\n"):
                write_synced(rewards, kept + b"\n")
        return None

    def write_steps(self, record: EpisodeRecord, steps: list[StepRecord]) -> None:
        self.write_step_rows(record, [asdict(s) for s in steps])

    def write_step_rows(self, record: EpisodeRecord, rows: list[dict[str, Any]]) -> None:
        """The episode's steps file, whole or not at all (written aside, synced, then renamed)."""
        path = self.steps_path(record)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_synced(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode())

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
        text = json.dumps({"episode_uid": record.episode_uid, **kept}, ensure_ascii=False, indent=1) + "\n"
        write_synced(path, text.encode())

    def commit(self, record: EpisodeRecord) -> None:
        with open(self.episodes_path, "a+b") as f:
            mend_tail(f)
            f.seek(0, os.SEEK_END)
            f.write((record.to_json() + "\n").encode())
            f.flush()
            os.fsync(f.fileno())


def mend_tail(f: BinaryIO) -> None:
    """Make the log end with a newline the way `finished` reads it: a complete last record keeps its place and gets
    its newline; a cut one (it never committed) is removed. Never the other way round: a record that was counted is
    never deleted."""
    end = f.seek(0, os.SEEK_END)
    if end == 0:
        return
    f.seek(end - 1)
    if f.read(1) == b"\n":
        return
    f.seek(0)
    data = f.read()  # rare (only after a kill): read it all
    start = data.rfind(b"\n") + 1
    if parses_as_record(data[start:]):
        f.seek(0, os.SEEK_END)
        f.write(b"\n")
    else:
        f.truncate(start)
    f.flush()
    os.fsync(f.fileno())


def parse_record(line: bytes) -> EpisodeRecord:
    """One log line as a record; ValueError (with what is wrong) when it is not one."""
    try:
        return EpisodeRecord.from_json(line.decode())
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(first_line(e)) from None


def parses_as_record(line: bytes) -> bool:
    try:
        parse_record(line)
    except ValueError:
        return False
    return True


def parses(text: bytes) -> bool:
    """`text` is one whole JSON value."""
    try:
        json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def write_synced(path: Path, data: bytes) -> None:
    """`path` holds `data` whole or keeps what it held: written aside, synced, renamed (a crash of the machine, not
    only of the process, leaves no short file behind a committed line)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
    try:  # even the look can fail (a name too long for the filesystem): one line, not a traceback
        if path.exists() and not path.is_dir():
            raise UserError(f"{key}={path} is a file, not a folder: choose another path")
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{key}={path} cannot be written ({e.strerror or e}): choose a folder you can write") from None


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
