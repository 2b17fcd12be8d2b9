"""BabyAI: grid-world instruction levels (go to the red ball, open the door, put the key next to the box, ...) from
`minigrid`, seen as text and played as `TextGameEnv`s.

The observation describes the agent's 7 x 7 egocentric view in words: each object with its colour and where it lies
relative to the agent ("a red ball 2 steps forward and 1 step left"), what is right in front, and the nearest wall
ahead and to each side. Candidates are the level's actions in words. A level is generated from the episode's env
seed; the score is the level's reward (1 - 0.9 x steps / the level's step limit on success, else 0).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jitrl_bench.checks import Checked, each_one_of, name, non_empty, one_or_many
from jitrl_bench.contract import GameFiles, Regrader, Requirement, SharedCopies
from jitrl_bench.envs.text.game import TextGameEnv
from jitrl_bench.errors import UserError

COMMANDS = {"turn left": 0, "turn right": 1, "go forward": 2, "pick up": 3, "drop": 4, "toggle": 5}
"""minigrid's action set in words, without `done` (no BabyAI level needs it)."""
OBJECTS = {2: "wall", 4: "door", 5: "key", 6: "ball", 7: "box", 8: "goal", 9: "lava"}
COLOURS = ("red", "green", "blue", "purple", "yellow", "grey")
DOOR_STATES = ("open", "closed", "locked")
VIEW = 7  # minigrid's default agent view: the agent stands at (3, 6) of its view, facing up (decreasing y)


def _minigrid() -> Any:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame's banner on import
    import gymnasium as gym
    import minigrid  # registers the BabyAI-* ids on import

    del minigrid
    return gym


def levels() -> list[str]:
    """The BabyAI level names minigrid registers (`BabyAI-<name>-v0`)."""
    gym = _minigrid()
    found = [key[len("BabyAI-") :].rsplit("-v", 1)[0] for key in gym.registry if key.startswith("BabyAI-")]
    return sorted(dict.fromkeys(found))


def _steps(n: int, way: str) -> str:
    return f"{n} step{'s' if n > 1 else ''} {way}"


def _where(forward: int, side: int) -> str:
    """'2 steps forward and 1 step left' for a cell `forward` ahead and `side` to the right (negative: left)."""
    parts = [_steps(forward, "forward")] if forward else []
    if side:
        parts.append(_steps(abs(side), "right" if side > 0 else "left"))
    return " and ".join(parts)


def _thing(cell: np.ndarray) -> str:
    kind, colour, state = (int(v) for v in cell)
    what = OBJECTS[kind]
    if kind == 4:
        return f"a {DOOR_STATES[state]} {COLOURS[colour]} door"
    return f"a {what}" if kind in (2, 8, 9) else f"a {COLOURS[colour]} {what}"


def describe(image: np.ndarray) -> str:
    """The egocentric view (minigrid's `image`, indexed [x, y]) in words."""
    me = (VIEW // 2, VIEW - 1)
    lines = []
    ahead = image[me[0], me[1] - 1]
    lines.append(f"In front of you: {_thing(ahead)}." if int(ahead[0]) in OBJECTS else "In front of you: nothing.")
    for x in range(VIEW):
        for y in range(VIEW):
            kind = int(image[x, y][0])
            if (x, y) not in (me, (me[0], me[1] - 1)) and kind in OBJECTS and kind != 2:
                lines.append(f"You see {_thing(image[x, y])} {_where(me[1] - y, x - me[0])}.")
    rays = {"forward": [(me[0], y) for y in range(me[1] - 1, -1, -1)],
            "left": [(x, me[1]) for x in range(me[0] - 1, -1, -1)],
            "right": [(x, me[1]) for x in range(me[0] + 1, VIEW)]}  # fmt: skip
    for way, cells in rays.items():
        for distance, (x, y) in enumerate(cells, start=1):
            kind = int(image[x, y][0])
            if kind == 2:
                lines.append(f"The nearest wall {way} is {_steps(distance, 'away')}.")
            if kind not in (1, 3):  # empty or floor: look further
                break
    return "\n".join(lines)


class BabyAIBackend:
    """One BabyAI level in minigrid; unknown commands spend no step (the level's own actions are the only moves)."""

    def __init__(self, level: str) -> None:
        self._gym = _minigrid()
        self._id = f"BabyAI-{level}-v0"
        self._env: Any = self._gym.make(self._id)
        self._seed = 0
        self._obs: dict[str, Any] = {}
        self._score, self._done, self._won = 0.0, False, False

    @property
    def score(self) -> float:
        return self._score

    @property
    def max_score(self) -> float:
        return 1.0

    @property
    def won(self) -> bool:
        return self._won

    @property
    def lost(self) -> bool:
        return self._done and not self._won  # out of the level's steps, or into lava

    def reset(self, seed: int | None) -> str:
        self._seed = 0 if seed is None else int(seed)
        self._obs, _ = self._env.reset(seed=self._seed)
        self._score, self._done, self._won = 0.0, False, False
        return describe(self._obs["image"])

    def step(self, command: str) -> str:
        action = COMMANDS.get(" ".join(command.lower().split()))
        if action is None:
            return f"Nothing happens. The actions are: {', '.join(COMMANDS)}.\n" + describe(self._obs["image"])
        if self._done:
            return "The level is over.\n" + describe(self._obs["image"])
        self._obs, reward, terminated, truncated, _ = self._env.step(action)
        self._score += float(reward)
        self._done = bool(terminated or truncated)
        self._won = bool(terminated and reward > 0)
        return describe(self._obs["image"])

    def candidates(self) -> list[str]:
        return list(COMMANDS)

    def state_fields(self) -> dict[str, str]:
        carrying = self._env.unwrapped.carrying
        held = f"a {carrying.color} {carrying.type}" if carrying is not None else "nothing"
        return {"location": "", "inventory": f"You are carrying {held}."}

    def played(self) -> dict[str, str]:
        return {"level": self._id, "mission": str(self._obs.get("mission", "")), "seed": str(self._seed)}

    def goal(self) -> str:
        return str(self._obs.get("mission", ""))

    def walkthrough(self) -> list[str]:
        """BabyAI's own bot, playing a copy of the default level (seed 0) to its end."""
        from minigrid.utils import baby_ai_bot

        make_bot: Any = baby_ai_bot.BabyAIBot  # untyped
        copy: Any = self._gym.make(self._id)
        try:
            copy.reset(seed=0)
            bot, words, plan = make_bot(copy.unwrapped), {v: k for k, v in COMMANDS.items()}, []
            for _ in range(copy.unwrapped.max_steps):
                action = int(bot.replan())
                plan.append(words[action])
                _, _, terminated, truncated, _ = copy.step(action)
                if terminated or truncated:
                    break
            return plan
        finally:
            copy.close()

    def close(self) -> None:
        self._env.close()


@dataclass
class BabyAIConfig(Checked):
    """BabyAI levels by name, one task each (configs/env/babyai.yaml)."""

    name: str = "babyai"
    """Environment name in results."""
    level: Any = field(default_factory=lambda: ["GoToRedBall"])
    """A level name as minigrid registers it without `BabyAI-` and `-v0`, or a list of them: GoToRedBall,
    [GoToRedBall, OpenDoor] (typed Any: see `checks.one_or_many`)."""

    def check(self) -> None:
        name("name", self.name)
        non_empty("level", self.task_names())
        each_one_of("level", self.task_names(), levels())

    def task_names(self) -> list[str]:
        return one_or_many(self.level)

    def test_split(self) -> dict[str, str]:
        return {}  # levels are generated by seed: the split is the run's (held-out levels or seeds)

    def use_run_dir(self, path: Path) -> None:
        return None

    def regrader(self) -> Regrader | None:
        return None  # the level's reward is final

    def shared(self) -> SharedCopies | None:
        return None  # each episode plays its own copy of the level

    def requirements(self) -> list[Requirement]:
        found = importlib.util.find_spec("minigrid") is not None
        detail = "minigrid package" + ("" if found else " missing")
        return [Requirement("env=babyai", found, detail, "pip install minigrid==3.2.0")]

    def game_files(self) -> GameFiles | None:
        return None  # minigrid generates each level from its seed

    def make(self, task: str) -> TextGameEnv:
        if task not in self.task_names():
            raise UserError(f"unknown BabyAI level {task!r}; this config has: {', '.join(self.task_names())}")
        return TextGameEnv(BabyAIBackend(task), task)
