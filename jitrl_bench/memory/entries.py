"""What a memory folder's files must hold, checked where they are read: `meta.json`, and each line of `entries.jsonl`.

A file that breaks these rules was not written by a crash (a crash only cuts the end, which the store repairs), so it
is one UserError naming the file and the line: a raw KeyError or ZeroDivisionError deep in a run says nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jitrl_bench.errors import UserError

FIX = "restore the file, or delete the memory folder to start the memory afresh"
TEXT_FIELDS = ("state", "action", "action_key", "episode", "task")
OPTIONAL_TEXT = ("run_id", "config_hash")


def read_meta(path: Path) -> dict[str, Any]:
    """A memory folder's meta.json; UserError naming it when it is not one."""
    try:
        meta = json.loads(path.read_text())
        dim = meta["dim"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(
            f"{path} is not a jitrl-bench memory's meta.json ({type(e).__name__}: {e}); "
            "point at another memory folder, or delete this folder to start the memory afresh"
        ) from None
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise UserError(f"{path}: dim must be a positive integer (the embedding size), not {dim!r}; {FIX}")
    return dict(meta)


def parse_line(line: bytes) -> dict[str, Any] | None:
    """A line as a JSON object, or None."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def checked_record(line: bytes, path: Path, number: int, expected_id: int) -> dict[str, Any]:
    """The record on line `number` of entries.jsonl, whose id must be `expected_id` (ids count up from 0, one per
    line); UserError naming the file and line when it is not a memory record."""
    record = parse_line(line)
    problem = "not a JSON object" if record is None else _problem(record, expected_id)
    if problem:
        raise UserError(f"{path} line {number}: not a memory record ({problem}); {FIX}")
    assert record is not None
    return record


def _problem(record: dict[str, Any], expected_id: int) -> str:
    entry_id = record.get("id")
    if isinstance(entry_id, bool) or not isinstance(entry_id, int):
        return f"id {entry_id!r} is not an integer"
    if entry_id != expected_id:
        return f"id {entry_id} where {expected_id} comes next"
    for name in TEXT_FIELDS:
        if not isinstance(record.get(name), str):
            return f"no {name} text" if name not in record else f"{name} is not text"
    for name in OPTIONAL_TEXT:
        if not isinstance(record.get(name, ""), str):
            return f"{name} is not text"
    step = record.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        return "step is not an integer"
    if not isinstance(record.get("success"), bool):
        return "success is not true/false"
    rewards = record.get("rewards")
    if not isinstance(rewards, list) or not all(_number(r) for r in rewards):
        return "rewards is not a list of numbers"
    fields = record.get("fields", {})
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        return "fields is not a mapping of texts"
    return ""


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
