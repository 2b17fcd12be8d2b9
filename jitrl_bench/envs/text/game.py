"""One Gymnasium env for every text game: the adapters only supply a small `GameBackend`.

Reset, step, reward, termination and the info dict of the contract (`envs/base.py`) live here once, so TextWorld and
Jericho cannot drift apart in how they report a step.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym

from jitrl_bench.contract import Candidate, StepView
from jitrl_bench.envs.base import text_space
from jitrl_bench.envs.text.prompt import TEXT_GAME
from jitrl_bench.text import action_key, clean_text, valid_text

# Offered when the game lists no candidates (e.g. after the game ended, or a game without valid-action support), so an
# agent that picks from the candidates always has something to pick: the commands every parser understands.
FALLBACK_COMMANDS = ("look", "inventory", "north", "south", "east", "west", "up", "down")

FIELD_CHARS = 1000  # cap on each state field: retrieval embeds them, long texts only dilute the embedding
OBS_CHARS = 100_000  # observation_space's max_length
COMMAND_CHARS = 198  # frotz's input line holds 198 bytes; Jericho truncates longer commands with a warning


class GameBackend(Protocol):
    """A running text game, seen through the few calls the env needs."""

    @property
    def score(self) -> float: ...

    @property
    def max_score(self) -> float:
        """0 when the game does not know it."""
        ...

    @property
    def won(self) -> bool: ...

    @property
    def lost(self) -> bool: ...

    def reset(self, seed: int | None) -> str:
        """Restart the game and return its opening text. `seed` None means the game's own default seed."""
        ...

    def step(self, command: str) -> str:
        """Play one command and return the game's reply."""
        ...

    def candidates(self) -> list[str]:
        """The admissible commands in the current state (may be empty or contain duplicates)."""
        ...

    def state_fields(self) -> dict[str, str]:
        """`location` and `inventory` texts, read without spending a game move."""
        ...

    def played(self) -> dict[str, str]:
        """What the simulator itself reports it is playing since the last reset (its task, instance, split), kept with
        each episode as evidence; {} when the game is one fixed file."""
        ...

    def goal(self) -> str:
        """The task as the simulator states it apart from the observation; "" when the opening text states it."""
        ...

    def walkthrough(self) -> list[str]:
        """Commands that win the game from a reset with the default seed; empty when none is known."""
        ...

    def close(self) -> None: ...


def clean_command(action: str) -> str:
    """One command line: the interpreter reads a newline as the end of a command (so one step could play several)
    and a backslash as a frotz meta-command (e.g. "\\q"), so both are removed; cut to what frotz reads."""
    line = " ".join(valid_text(str(action))[0].replace("\\", " ").split())
    return line.encode()[:COMMAND_CHARS].decode(errors="ignore")


def candidate_list(commands: list[str], limit: int | None = None) -> tuple[list[str], int]:
    """Deduplicated and sorted (a stable order across runs), never empty (see FALLBACK_COMMANDS); past `limit`, the
    first in the simulator's order are kept. Returns the list and how many were cut."""
    cleaned = list(dict.fromkeys(clean_text(clean_command(c), COMMAND_CHARS) for c in commands))
    cleaned = [c for c in cleaned if c]
    kept = cleaned if limit is None else cleaned[:limit]
    return sorted(kept or FALLBACK_COMMANDS), len(cleaned) - len(kept)


class TextGameEnv(gym.Env[str, str]):
    """A text game under the env contract. Any text command is accepted; the candidates only suggest.

    `reset(seed=s)` restarts the game with the game's random generator seeded by `s`; `reset()` without a seed reuses
    the last seed (the game's default at first), so every episode of a run replays the same game unless asked otherwise.
    """

    def __init__(self, backend: GameBackend, task: str, max_candidates: int | None = None) -> None:
        self.backend = backend
        self.task = task
        self.max_candidates = max_candidates
        self.observation_space = text_space(OBS_CHARS)
        self.action_space = text_space(COMMAND_CHARS)
        self._game_seed: int | None = None
        self._score = 0.0
        self._started = False
        self._view: StepView | None = None
        self._played: dict[str, str] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._game_seed = seed
        obs = clean_text(self.backend.reset(self._game_seed), OBS_CHARS)
        self._played = {key: clean_text(value, FIELD_CHARS) for key, value in self.backend.played().items()}
        self._score = self.backend.score
        self._started = True
        self._view = self._read(obs)
        return obs, self._view.info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        obs = clean_text(self.backend.step(clean_command(action)), OBS_CHARS)
        score = self.backend.score
        reward, self._score = score - self._score, score
        terminated = self.backend.won or self.backend.lost
        self._view = self._read(obs)
        return obs, float(reward), terminated, False, self._view.info()

    def view(self) -> StepView:
        if self._view is None:
            raise RuntimeError("call reset() before view()")
        return self._view

    def end_episode(self) -> StepView:
        """A text game's score is final at every step: nothing to grade after a cut episode."""
        return self.view()

    def close(self) -> None:
        self.backend.close()
        self._started = False

    def walkthrough(self) -> list[str]:
        """A winning command sequence from `reset()` with no seed (for tests and sanity checks); may be empty."""
        return self.backend.walkthrough()

    def _read(self, obs: str) -> StepView:
        fields = self.backend.state_fields()
        state = {key: clean_text(fields.get(key, ""), FIELD_CHARS) for key in ("location", "inventory")}
        state["observation"] = clean_text(obs, FIELD_CHARS)
        commands, cut = candidate_list(self.backend.candidates(), self.max_candidates)
        keys: dict[str, str] = {}  # two commands that differ only in case would share a key: keep the first
        for command in commands:
            keys.setdefault(action_key(command), command)
        return StepView(
            task=self.task,
            observation=obs,
            candidates=tuple(Candidate(command, key, command) for key, command in keys.items()),
            state=state,
            layout=TEXT_GAME,
            goal=clean_text(self.backend.goal(), FIELD_CHARS),
            score=float(self._score),
            max_score=float(self.backend.max_score),
            won=bool(self.backend.won),
            lost=bool(self.backend.lost),
            free_text=True,
            candidates_cut=cut,
            artifacts=self._played,
        )
