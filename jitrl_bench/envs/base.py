"""The environment contract every adapter honours (Gymnasium API, text observations).

`reset(seed=...) -> (obs, info)` and `step(action) -> (obs, reward, terminated, truncated, info)` where `action` is a
string (any text command; the candidates are a suggestion set, not a restriction) and `info` always carries:

    candidates: list[str]        the admissible actions offered to the agent this step
    state:      dict[str, str]   named state fields used for retrieval (e.g. location, inventory, observation)
    score, max_score: float      game score so far and its maximum (max_score 0 when unknown)
    won, lost:  bool             terminal outcome flags
    task:       str              task id (e.g. game name)

Optional info keys: `action_keys` (list parallel to candidates: the normalised key that matches an action across
pages and episodes, e.g. a web element's role[label] instead of its volatile id), `goal` (task text shown to the
agent), `instruction` (the env's own system prompt), `artifacts` (what the episode's grade was computed from, kept
with the episode for a later re-grade), `ungraded` (non-empty: why the finished episode could not be graded).

`reward` is the score delta of the step. `terminated` means the game ended (won or lost); truncation by a step budget is
the runner's job, adapters never truncate on their own.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym

INFO_KEYS = ("candidates", "state", "score", "max_score", "won", "lost", "task")

TEXT_CHARSET = frozenset(chr(c) for c in range(32, 127)) | frozenset("\n\t")


def text_space(max_length: int = 100_000) -> gym.spaces.Text:
    """A Text space that accepts ordinary printable text (gymnasium's default charset is alphanumeric only)."""
    return gym.spaces.Text(max_length=max_length, min_length=0, charset="".join(sorted(TEXT_CHARSET)))


def state_text(state: dict[str, str]) -> str:
    """The text that is embedded for retrieval: the named fields in a stable order."""
    return "\n".join(f"{k}: {v.strip()}" for k, v in sorted(state.items()) if v and v.strip())


class EnvConfig(Protocol):
    """What a `configs/env/*.yaml` builds: the list of task ids and an env per task."""

    name: str

    def task_names(self) -> list[str]: ...

    def make(self, task: str) -> gym.Env[Any, Any]: ...
