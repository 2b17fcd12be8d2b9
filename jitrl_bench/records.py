"""Typed records written to the run directory as JSON lines (never pickles)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Decision:
    """Everything behind one action: z (log π_θ), Â, the neighbours used, z' = z + Â/β, π*, and the choice."""

    action: str
    index: int
    candidates: list[str]
    z: list[float | None]
    """log π_θ per candidate; None for a candidate the policy did not score (the paper's memory actions)."""
    advantage: list[float] = field(default_factory=list)
    z_prime: list[float] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    """[{id, similarity, return, action}] of the retrieved entries."""
    notes: dict[str, Any] = field(default_factory=dict)
    """Estimator internals worth keeping (V̂, λ, w, memory actions added)."""


@dataclass
class StepRecord:
    step: int
    observation_sha1: str
    action: str
    reward: float
    score: float
    decision: Decision


@dataclass
class EpisodeRecord:
    """One finished episode: a row of episodes.jsonl. Carries its protocol (model, env, budget, seed, agent)."""

    task: str
    episode: int
    agent: str
    policy: str
    env: str
    seed: int
    max_steps: int
    score: float
    max_score: float
    norm_score: float
    success: bool
    steps: int
    ret: float
    wall_s: float
    tokens: int
    episode_uid: str
    run_id: str
    config_hash: str
    status: str = "ok"
    """`ok`; `error` (the task could not run: bad game file, crash; or its infrastructure failed); `ungraded` (played,
    but the grader could not score it, e.g. no LLM judge: `regrade` can later). Only `ok` rows enter success rates."""
    error: str = ""
    artifacts: dict[str, Any] = field(default_factory=dict)
    """What the env graded the episode from (web: the answer, the HAR, the site URLs), for `jitrl-bench regrade`."""

    def to_json(self) -> str:
        row = asdict(self)
        row["return"] = row.pop("ret")
        return json.dumps(row, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> EpisodeRecord:
        row = json.loads(line)
        row["ret"] = row.pop("return")
        return cls(**row)


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]
